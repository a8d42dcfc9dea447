//! Response hardening on every API and dashboard response: security
//! headers, a Content-Security-Policy fit for the dashboard (same-origin
//! scripts, styles and connections only), and CORS for configured origins,
//! with `*` matching one dot- or colon-separated part (seed 002 #9:
//! `http://192.168.*.*:5000`).

use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

pub const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Whether `origin` matches `pattern`, where `*` stands for one part of the
/// host or port (never for a `.`, `:` or `/`).
pub fn origin_matches(pattern: &str, origin: &str) -> bool {
    fn tokens(s: &str) -> Vec<&str> {
        s.split_inclusive(['.', ':', '/']).collect()
    }
    let (p, o) = (tokens(pattern), tokens(origin));
    p.len() == o.len()
        && p.iter().zip(&o).all(|(p, o)| {
            let (pb, ob) = (
                p.trim_end_matches(['.', ':', '/']),
                o.trim_end_matches(['.', ':', '/']),
            );
            p.ends_with(['.', ':', '/']) == o.ends_with(['.', ':', '/'])
                && p.chars().last() == o.chars().last()
                && (pb == "*" && !ob.is_empty() || pb == ob)
        })
}

pub fn apply(router: Router, cors_origins: &[String]) -> Router {
    let headers: [(HeaderName, &'static str); 5] = [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (
            HeaderName::from_static("permissions-policy"),
            "camera=(), microphone=(), geolocation=()",
        ),
    ];
    let mut router = router;
    for (name, value) in headers {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    if cors_origins.is_empty() {
        return router;
    }
    let patterns = cors_origins.to_vec();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            origin
                .to_str()
                .is_ok_and(|o| patterns.iter().any(|p| origin_matches(p, o)))
        }))
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-api-key"),
        ]);
    router.layer(cors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_one_part_only() {
        let p = "http://192.168.*.*:5000";
        assert!(origin_matches(p, "http://192.168.1.94:5000"));
        assert!(!origin_matches(p, "http://192.168.1.94:5001"));
        assert!(!origin_matches(p, "http://10.0.1.94:5000"));
        assert!(!origin_matches(p, "http://192.168.1.2.3:5000"));
        assert!(origin_matches(
            "http://localhost:5000",
            "http://localhost:5000"
        ));
        assert!(!origin_matches(
            "http://localhost:5000",
            "http://localhost:50000"
        ));
        assert!(origin_matches(
            "https://*.example.com",
            "https://app.example.com"
        ));
        assert!(!origin_matches(
            "https://*.example.com",
            "https://example.com"
        ));
    }
}
