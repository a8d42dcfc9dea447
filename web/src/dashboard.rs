//! The dashboard: static HTML, CSS and JS from `web/assets/`, embedded at
//! compile time (no build step, no CDN: it works offline), served at `/`
//! and `/assets/*` under the strict Content-Security-Policy.

use crate::openapi::{Access, Doc, Routes};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const I18N_JS: &str = include_str!("../assets/i18n.js");
const APP_CSS: &str = include_str!("../assets/app.css");

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

pub fn routes() -> Routes {
    let page = |s| {
        vec![Doc::new(
            "GET",
            "dashboard",
            s,
            Access::Public,
            &[(200, "the file")],
        )]
    };
    Routes::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
            page("The dashboard"),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
            page("Dashboard script"),
        )
        .route(
            "/assets/i18n.js",
            get(|| async { asset("text/javascript; charset=utf-8", I18N_JS) }),
            page("Dashboard strings"),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
            page("Dashboard styles"),
        )
}
