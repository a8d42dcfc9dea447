//! The dashboard: static HTML, CSS and JS from `web/assets/`, embedded at
//! compile time (no build step, no CDN: it works offline), served from one
//! table ([`ASSETS`]) by one handler at `/` and `/assets/{file}` under the
//! strict Content-Security-Policy. The scripts are ES modules: `index.html`
//! loads `main.js`, which imports the rest by relative path; the CSP's
//! `script-src 'self'` admits same-origin modules.

use crate::error::ApiError;
use crate::openapi::{Access, Doc, Routes};
use axum::http::{header, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// The [`ASSETS`] entry of a file of `web/assets/`, served at `/assets/<file>`.
macro_rules! asset {
    ($file:literal, $content_type:expr) => {
        (
            concat!("/assets/", $file),
            $content_type,
            include_str!(concat!("../assets/", $file)),
        )
    };
}

/// Every file the dashboard serves: URL path, content type, body.
const ASSETS: &[(&str, &str, &str)] = &[
    ("/", HTML, include_str!("../assets/index.html")),
    asset!("app.css", CSS),
    asset!("main.js", JS),
    asset!("state.js", JS),
    asset!("dom.js", JS),
    asset!("time.js", JS),
    asset!("i18n.js", JS),
    asset!("api.js", JS),
    asset!("auth.js", JS),
    asset!("ws.js", JS),
    asset!("sessions.js", JS),
    asset!("qr.js", JS),
    asset!("phone.js", JS),
    asset!("admission.js", JS),
    asset!("log.js", JS),
    asset!("send.js", JS),
    asset!("otp.js", JS),
    asset!("sim.js", JS),
    asset!("conversations.js", JS),
    asset!("campaigns.js", JS),
    asset!("tenants.js", JS),
    asset!("webhooks.js", JS),
    asset!("autoreplies.js", JS),
    asset!("access.js", JS),
    asset!("chart.js", JS),
];

type Responses = &'static [(u16, &'static str)];

/// The routes that reach [`serve`], with their summaries, responses and
/// content types.
const PATHS: [(&str, &str, Responses, &[&str]); 2] = [
    ("/", "The dashboard", &[(200, "the page")], &[HTML]),
    (
        "/assets/{file}",
        "A dashboard file: a script module or the styles",
        &[(200, "the file"), (404, "no such file")],
        &[JS, CSS],
    ),
];

/// The table entry for the request's path, or 404.
async fn serve(uri: Uri) -> Response {
    match ASSETS.iter().find(|(path, _, _)| *path == uri.path()) {
        Some(&(_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
        None => ApiError::NotFound("no such dashboard file".into()).into_response(),
    }
}

pub fn routes() -> Routes {
    PATHS.iter().fold(
        Routes::new(),
        |routes, &(path, summary, responses, types)| {
            let doc = types.iter().fold(
                Doc::new("GET", "dashboard", summary, Access::Public, responses),
                |doc, content_type| doc.content(content_type),
            );
            routes.route(path, get(serve), vec![doc])
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::Router;
    use http_body_util::BodyExt;
    use std::collections::BTreeSet;
    use tower::ServiceExt;

    fn router() -> Router {
        PATHS.iter().fold(Router::new(), |r, &(path, _, _, _)| {
            r.route(path, get(serve))
        })
    }

    async fn fetch(path: &str) -> (StatusCode, String, String) {
        let res = router()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = res.status();
        let content_type = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().expect("ascii").to_owned())
            .unwrap_or_default();
        let body = res.into_body().collect().await.expect("body").to_bytes();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).expect("utf-8"),
        )
    }

    /// The quoted specifier of each `import … from '…'` / `import '…'` /
    /// `export … from '…'` statement (a statement may span lines).
    fn module_specifiers(js: &str) -> Vec<String> {
        let mut found = Vec::new();
        let mut statement = String::new();
        for line in js.lines() {
            let trimmed = line.trim_start();
            let starts = trimmed.starts_with("import ")
                || trimmed.starts_with("import{")
                || trimmed.starts_with("import'")
                || trimmed.starts_with("import\"")
                || (trimmed.starts_with("export ") && trimmed.contains(" from "));
            if statement.is_empty() && !starts {
                continue;
            }
            statement.push_str(trimmed);
            statement.push(' ');
            if !trimmed.contains(';') {
                continue;
            }
            let spec = statement.rfind(['\'', '"']).and_then(|end| {
                let quote = statement[end..].chars().next()?;
                let start = statement[..end].rfind(quote)?;
                Some(statement[start + 1..end].to_owned())
            });
            found.push(spec.unwrap_or_else(|| panic!("no module path in `{statement}`")));
            statement.clear();
        }
        found
    }

    /// The `src` of each `<script …>` tag (each one a module).
    fn script_sources(html: &str) -> Vec<String> {
        html.split("<script")
            .skip(1)
            .map(|tag| {
                let tag = &tag[..tag.find('>').expect("a closed tag")];
                assert!(tag.contains("type=\"module\""), "<script{tag}> is a module");
                let src = tag.split("src=\"").nth(1).expect("a script src");
                src[..src.find('"').expect("a closed src")].to_owned()
            })
            .collect()
    }

    /// A module specifier as the browser resolves it from `/assets/…`.
    fn resolve(spec: &str, from: &str) -> String {
        if let Some(rest) = spec.strip_prefix("./") {
            format!("/assets/{rest}")
        } else if spec.starts_with("/assets/") {
            spec.to_owned()
        } else {
            panic!("{from} loads {spec:?}: only ./x.js or /assets/x.js is served")
        }
    }

    /// A module that is imported but missing from the table (or served as
    /// something other than JavaScript) fails here, not in a person's
    /// browser; and every script in the table is reached from the page.
    #[tokio::test]
    async fn every_loaded_module_is_served_as_javascript() {
        let mut loaded = BTreeSet::new();
        for &(path, content_type, body) in ASSETS {
            let specs = if content_type == HTML {
                script_sources(body)
            } else if content_type == JS {
                module_specifiers(body)
            } else {
                continue;
            };
            loaded.extend(specs.iter().map(|s| resolve(s, path)));
        }
        assert!(loaded.contains("/assets/main.js"), "{loaded:?}");
        for path in &loaded {
            let entry = ASSETS.iter().find(|(p, _, _)| p == path);
            assert!(entry.is_some(), "{path} is loaded but not in ASSETS");
            let (status, content_type, body) = fetch(path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(
                content_type.starts_with("text/javascript"),
                "{path} is served as {content_type:?}"
            );
            assert_eq!(Some(body.as_str()), entry.map(|e| e.2), "{path}");
        }
        let scripts: BTreeSet<String> = ASSETS
            .iter()
            .filter(|(_, content_type, _)| *content_type == JS)
            .map(|(path, _, _)| path.to_string())
            .collect();
        assert_eq!(scripts, loaded, "every script is loaded, and only those");
    }

    /// Each file of `web/assets/` is in the table, served with its body.
    #[tokio::test]
    async fn every_asset_file_is_served() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let mut files = 0;
        for entry in std::fs::read_dir(&dir).expect("web/assets") {
            let name = entry
                .expect("entry")
                .file_name()
                .into_string()
                .expect("utf-8");
            let path = if name == "index.html" {
                "/".to_owned()
            } else {
                format!("/assets/{name}")
            };
            let on_disk = std::fs::read_to_string(dir.join(&name)).expect("read");
            let (status, content_type, body) = fetch(&path).await;
            assert_eq!(status, StatusCode::OK, "{name} is not served at {path}");
            assert!(!content_type.is_empty(), "{path}");
            assert_eq!(body, on_disk, "{path}");
            files += 1;
        }
        assert_eq!(files, ASSETS.len(), "no table entry without its file");
        let (status, _, body) = fetch("/assets/missing.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("not_found"), "{body}");
    }
}
