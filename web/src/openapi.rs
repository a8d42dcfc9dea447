//! The OpenAPI 3 document, generated from the code that registers the
//! routes: every route is added through [`Routes::route`] with its
//! documentation, so a route cannot exist undocumented. Served at
//! `GET /api/openapi.json`. Built at run time from static data; the build
//! downloads nothing.

use crate::AppState;
use axum::routing::MethodRouter;
use axum::Router;
use serde_json::{json, Map, Value};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// A login token or a tenant API key.
    Authenticated,
    Admin,
}

/// One operation (a method on a path).
#[derive(Debug, Clone)]
pub struct Doc {
    pub method: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    pub access: Access,
    /// An example request body, when the operation takes one.
    pub body: Option<Value>,
    /// Status codes and what they mean.
    pub responses: &'static [(u16, &'static str)],
}

impl Doc {
    pub const fn new(
        method: &'static str,
        tag: &'static str,
        summary: &'static str,
        access: Access,
        responses: &'static [(u16, &'static str)],
    ) -> Doc {
        Doc {
            method,
            summary,
            tag,
            access,
            body: None,
            responses,
        }
    }

    pub fn body(mut self, example: Value) -> Doc {
        self.body = Some(example);
        self
    }
}

/// A router under construction, with the documentation of every route.
pub struct Routes {
    pub router: Router<AppState>,
    pub docs: Vec<(&'static str, Doc)>,
}

impl Default for Routes {
    fn default() -> Self {
        Self {
            router: Router::new(),
            docs: Vec::new(),
        }
    }
}

impl Routes {
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Registers `path` with its handlers and one [`Doc`] per method.
    pub fn route(
        mut self,
        path: &'static str,
        handlers: MethodRouter<AppState>,
        docs: Vec<Doc>,
    ) -> Routes {
        self.router = self.router.route(path, handlers);
        self.docs.extend(docs.into_iter().map(|d| (path, d)));
        self
    }

    pub fn merge(mut self, other: Routes) -> Routes {
        self.router = self.router.merge(other.router);
        self.docs.extend(other.docs);
        self
    }
}

/// The OpenAPI 3.0 document for `docs`.
pub fn document(docs: &[(&'static str, Doc)]) -> Value {
    let mut paths = Map::new();
    for (path, doc) in docs {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut responses = Map::new();
        for (status, description) in doc.responses {
            let mut r = json!({"description": description});
            if *status != 204 {
                r["content"] = json!({"application/json": {"schema": {"$ref": if *status >= 400 { "#/components/schemas/Error" } else { "#/components/schemas/Object" }}}});
            }
            responses.insert(status.to_string(), r);
        }
        let mut op = json!({
            "summary": doc.summary,
            "tags": [doc.tag],
            "operationId": format!("{}_{}", doc.method.to_lowercase(), path.trim_matches('/').replace(['/', '{', '}', '-', '.'], "_")),
            "parameters": params,
            "responses": responses,
        });
        match doc.access {
            Access::Public => op["security"] = json!([]),
            Access::Authenticated => op["security"] = json!([{"bearer": []}, {"apiKey": []}]),
            Access::Admin => {
                op["security"] = json!([{"bearer": []}]);
                op["description"] = json!("Admins only.");
            }
        }
        if let Some(example) = &doc.body {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"type": "object"}, "example": example}}});
        }
        entry[doc.method.to_lowercase()] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Centinela",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Multi-tenant WhatsApp session supervisor. Errors are {\"error\":{\"code\",\"message\"}}; 429 carries the anti-ban reason, wait_time_minutes, block_until and Retry-After.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "schemas": {
                "Object": {"type": "object"},
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}}, "required": ["code", "message"]}}},
            },
        },
    })
}
