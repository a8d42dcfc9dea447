//! Hardening on every API and dashboard route (and, in demo mode, on the
//! simulator's): security headers, a Content-Security-Policy fit for the
//! dashboard (same-origin scripts, styles and connections only), the
//! request body limit, and CORS for configured origins (the API only), with
//! `*` matching one dot- or colon-separated part (seed 002 #9:
//! `http://192.168.*.*:5000`).

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

pub const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Whether `origin` matches `pattern`, where `*` stands for one part of the
/// host or port (never for a `.`, `:` or `/`). In a host whose other labels
/// are numbers (`192.168.*.*`) a `*` stands for 1 to 3 digits only, so it
/// cannot match `192.168.evil.com`.
pub fn origin_matches(pattern: &str, origin: &str) -> bool {
    fn tokens(s: &str) -> Vec<&str> {
        s.split_inclusive(['.', ':', '/']).collect()
    }
    fn base(t: &str) -> &str {
        t.trim_end_matches(['.', ':', '/'])
    }
    let (p, o) = (tokens(pattern), tokens(origin));
    let host = host_labels(&p);
    let fixed: Vec<&str> = p[host.clone()]
        .iter()
        .map(|t| base(t))
        .filter(|b| *b != "*")
        .collect();
    let numeric_host =
        !fixed.is_empty() && fixed.iter().all(|b| b.bytes().all(|c| c.is_ascii_digit()));
    let wildcard_fits = |i: usize, ob: &str| {
        !ob.is_empty()
            && (!numeric_host
                || !host.contains(&i)
                || ob.len() <= 3 && ob.bytes().all(|c| c.is_ascii_digit()))
    };
    p.len() == o.len()
        && p.iter().zip(&o).enumerate().all(|(i, (p, o))| {
            let (pb, ob) = (base(p), base(o));
            // The same separator after the part (or none), and the part
            // itself equal or matched by `*`.
            p[pb.len()..] == o[ob.len()..] && (pb == "*" && wildcard_fits(i, ob) || pb == ob)
        })
}

/// The indexes of the host's labels among an origin's tokens: after
/// `scheme://`, up to the one before `:port` or a `/`.
fn host_labels(tokens: &[&str]) -> std::ops::Range<usize> {
    let start = tokens
        .windows(2)
        .position(|w| w == ["/", "/"])
        .map_or(0, |i| i + 2);
    let end = tokens[start.min(tokens.len())..]
        .iter()
        .position(|t| t.ends_with([':', '/']))
        .map_or(tokens.len(), |i| start + i + 1);
    start..end.max(start)
}

/// The security headers and the request body limit (at least 1 KiB) of
/// every API and dashboard route, and of the simulator's routes when
/// `serve --demo` mounts them: one function, so the two cannot drift apart.
pub fn harden(router: Router, max_body_bytes: usize) -> Router {
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
    router.layer(DefaultBodyLimit::max(max_body_bytes.max(1024)))
}

/// CORS for the configured origins (the API's; never the simulator's,
/// whose control API no other origin has any business calling).
pub fn cors(router: Router, cors_origins: &[String]) -> Router {
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

    #[test]
    fn a_wildcard_among_numbers_matches_numbers_only() {
        let p = "http://192.168.*.*:5000";
        assert!(!origin_matches(p, "http://192.168.evil.com:5000"));
        assert!(!origin_matches(p, "http://192.168.1.1000:5000"));
        assert!(origin_matches(p, "http://192.168.10.200:5000"));
        assert!(origin_matches("http://*.*.0.1:*", "http://10.20.0.1:12345"));
        assert!(origin_matches(
            "https://*.example.com:*",
            "https://a.example.com:8443"
        ));
    }
}
