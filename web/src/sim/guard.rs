//! Who may reach the simulator when `serve --demo` mounts it beside the
//! API. Its control API plays the phone and WhatsApp for every tenant (read
//! any QR, pair it, read what was sent, inject messages, ban), so:
//!
//! - every `/sim` route answers only to a `Host` that names this server
//!   (`localhost`, a loopback address or the listen address; any IP address
//!   when listening on every interface), never to another DNS name: that is
//!   how a page on the web reaches a local server by DNS rebinding;
//! - on a public demo (`--demo-public`) the control routes also want the
//!   token printed at start in `X-Sim-Token`. The page and the page's own
//!   API stay open: they are WhatsApp Web and WhatsApp's servers, which the
//!   engine's browser loads without any secret, and each device there is
//!   named by a random id only its own page knows.
//!
//! It does not decide which routes are control routes (`routes.rs` does)
//! nor refuse a public address without `--demo-public` (the binary does,
//! before it listens).

use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The header a public demo's control token travels in.
pub const TOKEN_HEADER: &str = "x-sim-token";

/// Who may use the control API, on top of the `Host` check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlAccess {
    /// Anyone who reaches the server: it listens on loopback only.
    Open,
    /// Only requests carrying this token (`--demo-public`).
    Token(String),
}

/// The checks for one mounted simulator; cheap to clone.
#[derive(Debug, Clone)]
pub struct Guard {
    listen: IpAddr,
    access: Arc<ControlAccess>,
}

impl Guard {
    /// For a server listening on `listen`.
    pub fn new(listen: SocketAddr, access: ControlAccess) -> Self {
        Self {
            listen: listen.ip(),
            access: Arc::new(access),
        }
    }

    /// Whether a `Host` header names this server: `localhost`, a loopback
    /// address, the listen address, or any IP address when the server
    /// listens on every interface. The port is not compared: a port
    /// mapping (containers) changes it, and a rebinding page shows itself
    /// by its name, not its port.
    pub fn host_allowed(&self, host: &str) -> bool {
        let Some(name) = host_name(host) else {
            return false;
        };
        if name.eq_ignore_ascii_case("localhost") {
            return true;
        }
        match name.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback() || ip == self.listen || self.listen.is_unspecified(),
            Err(_) => false,
        }
    }

    /// `Ok` when the control API may be used with these headers.
    fn control_allowed(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let ControlAccess::Token(expected) = &*self.access else {
            return Ok(());
        };
        let given = headers.get(TOKEN_HEADER).ok_or(ApiError::SimTokenMissing)?;
        if same_secret(given.as_bytes(), expected.as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::SimTokenWrong)
        }
    }
}

/// The host part of a `Host` header (`name`, `name:port`, `[v6]:port`);
/// `None` when it is malformed.
fn host_name(host: &str) -> Option<&str> {
    if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        return (after.is_empty() || after.starts_with(':')).then_some(v6);
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return None,
        None => host,
    };
    (!name.is_empty() && !name.contains(':')).then_some(name)
}

/// Compares two secrets in time that depends on their length only.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Middleware on every `/sim` route: the `Host` must name this server.
pub(super) async fn check_host(
    State(guard): State<Guard>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    if !host.is_some_and(|h| guard.host_allowed(h)) {
        return Err(ApiError::HostNotAllowed);
    }
    Ok(next.run(req).await)
}

/// Middleware on the control routes: a public demo's token.
pub(super) async fn check_control(
    State(guard): State<Guard>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    guard.control_allowed(req.headers())?;
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(listen: &str) -> Guard {
        Guard::new(listen.parse().expect("addr"), ControlAccess::Open)
    }

    #[test]
    fn loopback_names_and_the_listen_address_are_this_server() {
        let g = on("127.0.0.1:3012");
        for host in [
            "127.0.0.1:3012",
            "127.0.0.1",
            "localhost:3012",
            "LOCALHOST",
            "[::1]:3012",
            "127.0.0.2:8080",
        ] {
            assert!(g.host_allowed(host), "{host}");
        }
        assert!(on("192.168.1.5:3012").host_allowed("192.168.1.5:3012"));
        assert!(!on("192.168.1.5:3012").host_allowed("192.168.1.6:3012"));
    }

    #[test]
    fn other_names_are_refused_whatever_they_look_like() {
        let g = on("127.0.0.1:3012");
        for host in [
            "attacker.example:3012",
            "127.0.0.1.attacker.example",
            "localhost.attacker.example:3012",
            "10.0.0.1:3012",
            "",
            ":3012",
            "127.0.0.1:30x2",
            "[::1",
            "[::1]x",
            "::1",
        ] {
            assert!(!g.host_allowed(host), "{host}");
        }
    }

    #[test]
    fn every_interface_allows_any_address_but_no_name() {
        let g = on("0.0.0.0:3012");
        assert!(g.host_allowed("10.0.0.1:3012"));
        assert!(g.host_allowed("[fe80::1]:3012"));
        assert!(g.host_allowed("localhost:3012"));
        assert!(!g.host_allowed("demo.example.com:3012"));
    }

    #[test]
    fn a_token_guard_wants_the_exact_token() {
        let g = Guard::new(
            "0.0.0.0:3012".parse().expect("addr"),
            ControlAccess::Token("s3cret-token".into()),
        );
        let mut h = HeaderMap::new();
        assert!(matches!(
            g.control_allowed(&h),
            Err(ApiError::SimTokenMissing)
        ));
        for wrong in ["s3cret-tokeN", "s3cret-token ", "s3cret", ""] {
            h.insert(TOKEN_HEADER, wrong.parse().expect("value"));
            assert!(
                matches!(g.control_allowed(&h), Err(ApiError::SimTokenWrong)),
                "{wrong:?}"
            );
        }
        h.insert(TOKEN_HEADER, "s3cret-token".parse().expect("value"));
        assert!(g.control_allowed(&h).is_ok());
        assert!(on("127.0.0.1:3012")
            .control_allowed(&HeaderMap::new())
            .is_ok());
    }
}
