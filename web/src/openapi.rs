//! The OpenAPI 3.1 document, generated from the code that registers the
//! routes and from the Rust types the handlers take and return: every route
//! is added through [`Routes::route`] with its [`Doc`], so a route cannot
//! exist undocumented, and a body's schema comes from its type
//! (`utoipa::ToSchema`), so the document cannot drift from what is sent.
//! Served at `GET /api/openapi.json`. It owns the document's shape, not the
//! routes' behaviour; the build downloads nothing.

use crate::error::ErrorBody;
use crate::AppState;
use axum::routing::MethodRouter;
use axum::Router;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, Parameter, ParameterBuilder, ParameterIn, Paths,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, Required,
    ResponseBuilder, Schema,
};
use utoipa::{IntoParams, ToSchema};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// A login token or a tenant API key.
    Authenticated,
    Admin,
}

/// A named type's schema as a reference, with every schema it needs.
#[derive(Clone)]
pub struct Body {
    reference: RefOr<Schema>,
    components: Vec<(String, RefOr<Schema>)>,
    /// An example value (request bodies), and whether a value is a `T`.
    example: Option<Value>,
    accepts: fn(&Value) -> bool,
}

impl Body {
    pub fn of<T: ToSchema>() -> Body {
        let mut components = Vec::new();
        T::schemas(&mut components);
        components.push((T::name().into_owned(), T::schema()));
        Body {
            reference: Ref::from_schema_name(T::name()).into(),
            components,
            example: None,
            accepts: |_| true,
        }
    }

    /// A request body of type `T`, shown with `example`.
    fn request<T: ToSchema + DeserializeOwned>(example: Option<Value>) -> Body {
        Body {
            example,
            accepts: |v| serde_json::from_value::<T>(v.clone()).is_ok(),
            ..Body::of::<T>()
        }
    }

    pub fn example(&self) -> Option<&Value> {
        self.example.as_ref()
    }

    /// Whether `value` reads as the body's type (the handler's own parse).
    pub fn accepts(&self, value: &Value) -> bool {
        (self.accepts)(value)
    }
}

/// An OpenAPI document (this one), described as any JSON object.
pub struct Document;

impl utoipa::PartialSchema for Document {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("An OpenAPI 3.1 document"))
            .into()
    }
}

impl ToSchema for Document {
    fn name() -> std::borrow::Cow<'static, str> {
        "OpenApiDocument".into()
    }
}

/// One operation (a method on a path).
#[derive(Clone)]
pub struct Doc {
    pub method: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    pub access: Access,
    /// The JSON request body, when the operation takes one.
    pub body: Option<Body>,
    /// Whether the body may be left out.
    pub body_optional: bool,
    /// The query parameters.
    pub query: Vec<Parameter>,
    /// Status codes and what they mean.
    pub responses: &'static [(u16, &'static str)],
    /// The JSON body of every 2xx answer but 204.
    pub reply: Option<Body>,
    /// Non-JSON bodies a 2xx answer may have instead (or only), by
    /// content type.
    pub other_content: Vec<&'static str>,
}

impl Doc {
    pub fn new(
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
            body_optional: false,
            query: Vec::new(),
            responses,
            reply: None,
            other_content: Vec::new(),
        }
    }

    /// The request body is a `T`, such as `example`.
    pub fn body<T: ToSchema + DeserializeOwned>(mut self, example: Value) -> Doc {
        self.body = Some(Body::request::<T>(Some(example)));
        self
    }

    /// The request body, when there is one, is a `T`.
    pub fn optional_body<T: ToSchema + DeserializeOwned>(mut self) -> Doc {
        self.body = Some(Body::request::<T>(None));
        self.body_optional = true;
        self
    }

    /// The example request body, for a body that is always sent.
    pub fn example(&self) -> Option<&Value> {
        self.body
            .as_ref()
            .filter(|_| !self.body_optional)
            .and_then(Body::example)
    }

    /// The query string is a `T`.
    pub fn query<T: IntoParams>(mut self) -> Doc {
        self.query = T::into_params(|| Some(ParameterIn::Query));
        self
    }

    /// A successful answer is a `T`.
    pub fn reply<T: ToSchema>(mut self) -> Doc {
        self.reply = Some(Body::of::<T>());
        self
    }

    /// A successful answer may be a document of `content_type` (text or
    /// bytes) instead.
    pub fn content(mut self, content_type: &'static str) -> Doc {
        self.other_content.push(content_type);
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

fn http_method(method: &str) -> HttpMethod {
    match method {
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "PATCH" => HttpMethod::Patch,
        "DELETE" => HttpMethod::Delete,
        _ => HttpMethod::Get,
    }
}

/// `post_api_v1_sessions__id__connect` for `POST /api/v1/sessions/{id}/connect`.
fn operation_id(method: &str, path: &str) -> String {
    format!(
        "{}_{}",
        method.to_lowercase(),
        path.trim_matches('/')
            .replace(['/', '{', '}', '-', '.'], "_")
    )
}

fn path_parameters(path: &str) -> Vec<Parameter> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build()
        })
        .collect()
}

fn security(access: Access) -> Vec<SecurityRequirement> {
    let bearer = SecurityRequirement::new("bearer", Vec::<String>::new());
    let key = SecurityRequirement::new("apiKey", Vec::<String>::new());
    match access {
        Access::Public => Vec::new(),
        Access::Authenticated => vec![bearer, key],
        Access::Admin => vec![bearer],
    }
}

/// A string of raw bytes or text, for the non-JSON answers.
fn raw_body(content_type: &str) -> ObjectBuilder {
    let builder = ObjectBuilder::new().schema_type(Type::String);
    if content_type.starts_with("text/") || content_type.contains("svg") {
        builder
    } else {
        builder.format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
    }
}

/// The OpenAPI 3.1 document for `docs`.
pub fn document(docs: &[(&'static str, Doc)]) -> OpenApi {
    let error = Body::of::<ErrorBody>();
    let mut schemas: BTreeMap<String, RefOr<Schema>> = error.components.iter().cloned().collect();
    let mut paths = Paths::new();
    for (path, doc) in docs {
        let mut op = OperationBuilder::new()
            .summary(Some(doc.summary))
            .tag(doc.tag)
            .operation_id(Some(operation_id(doc.method, path)))
            .parameters(Some(
                path_parameters(path).into_iter().chain(doc.query.clone()),
            ))
            .securities(Some(security(doc.access)));
        if doc.access == Access::Admin {
            op = op.description(Some("Admins only."));
        }
        if let Some(body) = &doc.body {
            schemas.extend(body.components.iter().cloned());
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(if doc.body_optional {
                        Required::False
                    } else {
                        Required::True
                    }))
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(body.reference.clone()))
                            .example(body.example.clone())
                            .build(),
                    )
                    .build(),
            ));
        }
        if let Some(reply) = &doc.reply {
            schemas.extend(reply.components.iter().cloned());
        }
        for (status, description) in doc.responses {
            let mut response = ResponseBuilder::new().description(*description);
            if *status >= 400 {
                response = response.content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(error.reference.clone()))
                        .build(),
                );
            } else if (200..300).contains(status) && *status != 204 {
                if let Some(reply) = &doc.reply {
                    response = response.content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(reply.reference.clone()))
                            .build(),
                    );
                }
                for content_type in &doc.other_content {
                    response = response.content(
                        *content_type,
                        ContentBuilder::new()
                            .schema(Some(raw_body(content_type)))
                            .build(),
                    );
                }
            }
            op = op.response(status.to_string(), response.build());
        }
        paths.add_path_operation(*path, vec![http_method(doc.method)], op.build());
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Centinela")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Multi-tenant WhatsApp session supervisor. Errors are {\"success\":false,\"error\":{\"code\",\"message\"}}; 429 carries the anti-ban reason, wait_time_minutes, block_until and Retry-After.",
                )),
        )
        .paths(paths)
        .components(Some(
            ComponentsBuilder::new()
                .schemas_from_iter(schemas)
                .security_scheme(
                    "bearer",
                    SecurityScheme::Http(
                        HttpBuilder::new()
                            .scheme(HttpAuthScheme::Bearer)
                            .bearer_format("JWT")
                            .build(),
                    ),
                )
                .security_scheme(
                    "apiKey",
                    SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
                )
                .build(),
        ))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every example request body is one its handler accepts, so the
    /// document never shows a body that would be refused.
    #[test]
    fn every_example_is_a_valid_body() {
        let docs = crate::routes().docs;
        let mut checked = 0;
        for (path, doc) in &docs {
            let Some(body) = &doc.body else { continue };
            if let Some(example) = body.example() {
                assert!(body.accepts(example), "{} {path}: {example}", doc.method);
                checked += 1;
            }
        }
        assert!(checked >= 12, "{checked} examples");
    }

    /// A message body shows a deferral: the status and why it waits.
    #[test]
    fn a_message_shows_its_deferral() {
        let doc = serde_json::to_value(document(&crate::routes().docs)).expect("json");
        let schemas = &doc["components"]["schemas"];
        let statuses = schemas["MessageStatus"]["enum"].to_string();
        assert!(statuses.contains("\"deferred\""), "{statuses}");
        let body = &schemas["MessageBody"]["properties"]["deferred"];
        assert!(body.to_string().contains("Deferral"), "{body}");
        let reason = schemas["DeferralReason"]["enum"].to_string();
        assert!(reason.contains("\"new_contact_budget\""), "{reason}");
        assert!(schemas["Deferral"]["properties"]["next_attempt_at"].is_object());
    }

    /// Every body the document names is in its components.
    #[test]
    fn every_reference_resolves() {
        let doc = serde_json::to_value(document(&crate::routes().docs)).expect("json");
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let text = doc.to_string();
        let mut refs = 0;
        for part in text.split("\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().expect("name");
            assert!(
                schemas.contains_key(name),
                "{name} is referenced but not defined"
            );
            refs += 1;
        }
        assert!(refs > 40, "{refs} references");
    }

    /// Every answer with a body says what it is: a 2xx but 204 (no
    /// content) and 101 (a WebSocket) has a schema, every error the error
    /// body's.
    #[test]
    fn every_answer_has_a_schema() {
        let doc = serde_json::to_value(document(&crate::routes().docs)).expect("json");
        let mut answers = 0;
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for (method, op) in ops.as_object().expect("operations") {
                for (status, response) in op["responses"].as_object().expect("responses") {
                    if status == "204" || status == "101" {
                        assert!(
                            response.get("content").is_none(),
                            "{method} {path} {status}"
                        );
                        continue;
                    }
                    let content = response["content"].as_object();
                    let typed = content.is_some_and(|c| {
                        !c.is_empty() && c.values().all(|m| m["schema"].is_object())
                    });
                    assert!(typed, "{method} {path} {status} has no schema: {response}");
                    answers += 1;
                }
            }
        }
        assert!(answers > 150, "{answers} answers");
    }
}
