//! Fleet mode: any node answers any request. A request for a tenant that
//! another node hosts is sent on to that node (its `fleet.advertise_url`),
//! and the owner's answer is this node's answer.
//!
//! How a node knows: it runs the request itself first. Every handler that
//! touches a tenant's sessions asks the supervisor before it does anything
//! else, and the supervisor of a node that does not host the tenant says
//! so ([`ApiError::Elsewhere`], 503 `tenant_moving`) before anything is
//! written. The response carries [`Elsewhere`]; the [`forward`] middleware
//! then looks the tenant's owner up ([`Owners`]) and, when it is another
//! live node, sends it the same request (method, path and query, headers,
//! the buffered body). With no live owner (the tenant is between nodes)
//! the 503 stands, with `Retry-After`. Requests this node hosts cost
//! nothing more than the body's buffering.
//!
//! A forwarded request carries [`TOKEN`]: the forwarding node's id, the
//! time, and an HMAC-SHA256 under the fleet's secret (derived from
//! `storage.secret_key`, which every node of a fleet shares) over the
//! node, the time, the method and the path with its query. The owner
//! checks it (a minute's skew at most) and never forwards such a request
//! again: if it lost the tenant meanwhile, its own 503 is the answer. A
//! wrong or stale token is 401 `invalid_fleet_token`. The caller's own
//! credentials travel unchanged and the owner checks them (the accounts
//! are the fleet's); the client address the forwarding node saw travels in
//! [`CLIENT`] and is believed only with a valid token.
//!
//! A tenant's webhook target and auto-reply rules
//! (`/api/v1/tenants/{id}/webhook…`, `…/auto-replies…`) are kept and used
//! by the node that hosts the tenant — it sends the webhooks and the
//! replies — and no supervisor is asked on the way: these requests go to
//! the tenant's owner before this node runs them ([`owned_path`]; one
//! lookup), or are run here when no node hosts the tenant.
//!
//! The session list (`GET /api/v1/sessions`) is the fleet's: the node
//! asks every other live node for its own (forwarded, so each answers
//! only what it hosts and checks the caller itself) and answers them all,
//! each session once. A node that does not answer is named in
//! [`PARTIAL`]; its sessions are missing from that answer.
//!
//! Every response of a fleet node says who served it ([`SERVED_BY`]).
//! WebSocket upgrades are never forwarded: each node's `/ws` carries the
//! events of the whole fleet instead.

use crate::error::ApiError;
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use centinela_actors::ids::TenantId;
use centinela_actors::secret::{hex, unhex};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `<node> <unix seconds> <hex HMAC>` on a forwarded request.
pub const TOKEN: &str = "x-centinela-fleet";
/// The client address the forwarding node saw.
pub const CLIENT: &str = "x-centinela-client";
/// The node that answered.
pub const SERVED_BY: &str = "x-centinela-node";
/// On a fleet-wide list: the nodes that did not answer (comma-separated).
pub const PARTIAL: &str = "x-centinela-partial";
/// The fleet-wide list.
const LIST: &str = "/api/v1/sessions";
/// The most a forwarded request's time may differ from the owner's clock.
const SKEW_SECS: u64 = 60;
/// How long the owner may take to answer a forwarded request.
const TIMEOUT: Duration = Duration::from_secs(60);

/// On a response: the tenant it was about is hosted elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elsewhere(pub TenantId);

/// On a request another node forwarded, its token checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The node that forwarded it.
    pub by: String,
    /// The client address that node saw.
    pub client: Option<IpAddr>,
}

/// Another node, as requests reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub node: String,
    pub url: String,
}

/// Who hosts a tenant now (the fleet's database).
#[async_trait::async_trait]
pub trait Owners: Send + Sync + 'static {
    /// The node holding a live lease on `tenant`, if any; `Err` when the
    /// database cannot be read.
    async fn owner(&self, tenant: &TenantId) -> Result<Option<Peer>, String>;

    /// Every node that heartbeat within a lease, this one included.
    async fn peers(&self) -> Result<Vec<Peer>, String>;
}

/// Why a forwarded request's token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the fleet token is malformed")]
    Malformed,
    #[error("the fleet token is older or newer than a minute")]
    Stale,
    #[error("the fleet token was not made with this fleet's secret")]
    Wrong,
}

/// This node's side of forwarding.
pub struct Forwarder {
    node: String,
    key: Vec<u8>,
    owners: Arc<dyn Owners>,
    http: reqwest::Client,
    /// Requests sent on to their owner.
    pub forwarded: AtomicU64,
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes a key of any length")
}

impl Forwarder {
    /// `secret` is the fleet's shared secret (`storage.secret_key`); the
    /// tokens' key is derived from it, so it is never used as is.
    pub fn new(node: impl Into<String>, secret: &[u8], owners: Arc<dyn Owners>) -> Self {
        let mut derive = mac(secret);
        derive.update(b"centinela fleet forwarding v1");
        // reqwest is built without a TLS provider of its own (an owner's
        // advertise_url may be https://): the process's, ring.
        centinela_actors::messaging::webhooks::install_tls_provider();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .build()
            .expect("an HTTP client");
        Self {
            node: node.into(),
            key: derive.finalize().into_bytes().to_vec(),
            owners,
            http,
            forwarded: AtomicU64::new(0),
        }
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn signature(&self, node: &str, at: u64, method: &str, target: &str) -> HmacSha256 {
        let mut m = mac(&self.key);
        m.update(format!("{node}\n{at}\n{method}\n{target}").as_bytes());
        m
    }

    /// The token for `method target` sent at `at` (Unix seconds).
    pub fn token(&self, at: u64, method: &str, target: &str) -> String {
        let sig = self.signature(&self.node, at, method, target).finalize();
        format!("{} {at} {}", self.node, hex(&sig.into_bytes()))
    }

    /// The forwarding node's id when `token` is good for `method target`
    /// at `now` (Unix seconds).
    pub fn verify(
        &self,
        token: &str,
        method: &str,
        target: &str,
        now: u64,
    ) -> Result<String, TokenError> {
        let mut parts = token.split(' ');
        let (Some(node), Some(at), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let at: u64 = at.parse().map_err(|_| TokenError::Malformed)?;
        let sig = unhex(sig).ok_or(TokenError::Malformed)?;
        if node.is_empty() {
            return Err(TokenError::Malformed);
        }
        if now.abs_diff(at) > SKEW_SECS {
            return Err(TokenError::Stale);
        }
        self.signature(node, at, method, target)
            .verify_slice(&sig)
            .map_err(|_| TokenError::Wrong)?;
        Ok(node.to_owned())
    }

    /// Sends the request on to `peer` and answers what it answered.
    async fn send(
        &self,
        peer: &Peer,
        req: Buffered,
        client: Option<IpAddr>,
    ) -> Result<Response, reqwest::Error> {
        let target = target(&req.uri);
        let url = format!("{}{target}", peer.url.trim_end_matches('/'));
        let mut headers = HeaderMap::new();
        for (name, value) in &req.headers {
            if !hop_by_hop(name) && name != header::HOST && name != header::CONTENT_LENGTH {
                headers.append(name.clone(), value.clone());
            }
        }
        let token = self.token(unix_now(), req.method.as_str(), &target);
        if let Ok(v) = HeaderValue::from_str(&token) {
            headers.insert(TOKEN, v);
        }
        if let Some(ip) = client {
            if let Ok(v) = HeaderValue::from_str(&ip.to_string()) {
                headers.insert(CLIENT, v);
            }
        }
        let answer = self
            .http
            .request(req.method, url)
            .headers(headers)
            .body(req.body)
            .send()
            .await?;
        let status = answer.status();
        let mut out = HeaderMap::new();
        for (name, value) in answer.headers() {
            if !hop_by_hop(name) && name != header::CONTENT_LENGTH {
                out.append(name.clone(), value.clone());
            }
        }
        let body = answer.bytes().await?;
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        *response.headers_mut() = out;
        Ok(response)
    }
}

/// A request kept to be sent again.
struct Buffered {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

fn target(uri: &Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Headers of one connection, never passed on (RFC 9110 §7.6.1).
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// The middleware (see the module's text); a no-op on a single node.
pub async fn forward(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(fwd) = state.forward.clone() else {
        return next.run(req).await;
    };
    let (mut parts, body) = req.into_parts();
    let served_by = HeaderValue::from_str(fwd.node()).ok();
    if let Some(token) = parts.headers.remove(TOKEN) {
        let client = parts
            .headers
            .remove(CLIENT)
            .and_then(|v| v.to_str().ok().and_then(|s| s.parse().ok()));
        let checked = token
            .to_str()
            .map_err(|_| TokenError::Malformed)
            .and_then(|t| fwd.verify(t, parts.method.as_str(), &target(&parts.uri), unix_now()));
        let by = match checked {
            Ok(by) => by,
            Err(why) => {
                tracing::warn!(path = %parts.uri.path(), error = %why, "forwarded request refused");
                return ApiError::BadFleetToken(why.to_string()).into_response();
            }
        };
        parts.extensions.insert(Forwarded { by, client });
        return with_node(next.run(Request::from_parts(parts, body)).await, served_by);
    }
    parts.headers.remove(CLIENT);
    if parts.headers.contains_key(header::UPGRADE) {
        return with_node(next.run(Request::from_parts(parts, body)).await, served_by);
    }
    let limit = state.web.max_body_bytes.max(1024);
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return ApiError::PayloadTooLarge.into_response();
    };
    let client = crate::client_addr::peer_client(&parts, &state);
    let early = owned_path(parts.uri.path());
    let again = Buffered {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        headers: parts.headers.clone(),
        body: bytes.clone(),
    };
    if let Some(tenant) = early {
        match fwd.owners.owner(&tenant).await {
            Ok(Some(peer)) if peer.node != fwd.node => {
                return match fwd.send(&peer, again, client).await {
                    Ok(answer) => answer,
                    Err(e) => {
                        tracing::warn!(%tenant, node = %peer.node, error = %e, "the tenant's owner did not answer a forwarded request");
                        with_node(moving(&tenant).into_response(), served_by)
                    }
                };
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(%tenant, error = %e, "cannot read the tenant's owner");
                return with_node(
                    ApiError::Later {
                        code: "fleet_unavailable",
                        message: format!("the fleet's database is unavailable: {e}"),
                        retry_after_secs: 5,
                    }
                    .into_response(),
                    served_by,
                );
            }
        }
    }
    let local = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if again.method == Method::GET && again.uri.path() == LIST && local.status().is_success() {
        return with_node(gather(&fwd, again, client, local).await, served_by);
    }
    let Some(Elsewhere(tenant)) = local.extensions().get::<Elsewhere>().cloned() else {
        return with_node(local, served_by);
    };
    let peer = match fwd.owners.owner(&tenant).await {
        Ok(Some(peer)) if peer.node != fwd.node => peer,
        Ok(_) => return with_node(local, served_by),
        Err(e) => {
            tracing::warn!(%tenant, error = %e, "cannot read the tenant's owner to forward to it");
            return with_node(local, served_by);
        }
    };
    match fwd.send(&peer, again, client).await {
        Ok(answer) => answer,
        Err(e) => {
            tracing::warn!(%tenant, node = %peer.node, error = %e, "the tenant's owner did not answer a forwarded request");
            with_node(local, served_by)
        }
    }
}

/// The tenant of a path whose request its owner runs, asked before this
/// node runs it: `/api/v1/tenants/{id}/webhook…` and `…/auto-replies…`.
pub fn owned_path(path: &str) -> Option<TenantId> {
    let rest = path.strip_prefix("/api/v1/tenants/")?;
    let (tenant, sub) = rest.split_once('/')?;
    let first = sub.split('/').next().unwrap_or_default();
    if !matches!(first, "webhook" | "auto-replies") {
        return None;
    }
    TenantId::new(tenant).ok()
}

fn moving(tenant: &TenantId) -> ApiError {
    ApiError::Elsewhere {
        tenant: tenant.to_string(),
        message: format!("tenant {tenant} is moving between nodes: try again in a moment"),
    }
}

/// The session list of every live node, `local` first, each id once.
async fn gather(
    fwd: &Forwarder,
    req: Buffered,
    client: Option<IpAddr>,
    local: Response,
) -> Response {
    let (parts, body) = local.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::internal("the local session list could not be read").into_response();
    };
    let Ok(mut all) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let peers = match fwd.owners.peers().await {
        Ok(peers) => peers,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the fleet's nodes: the session list is this node's");
            Vec::new()
        }
    };
    let others: Vec<Peer> = peers.into_iter().filter(|p| p.node != fwd.node).collect();
    let answers = futures::future::join_all(others.iter().map(|peer| {
        let copy = Buffered {
            method: req.method.clone(),
            uri: req.uri.clone(),
            headers: req.headers.clone(),
            body: req.body.clone(),
        };
        fwd.send(peer, copy, client)
    }))
    .await;
    let mut missing = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut merged = Vec::new();
    let mine = all["sessions"].as_array().cloned().unwrap_or_default();
    let mut lists = vec![Some(mine)];
    for (peer, answer) in others.iter().zip(answers) {
        let list = match answer {
            Ok(r) if r.status().is_success() => {
                let bytes = axum::body::to_bytes(r.into_body(), usize::MAX).await.ok();
                bytes
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|v| v["sessions"].as_array().cloned())
            }
            _ => None,
        };
        if list.is_none() {
            missing.push(peer.node.clone());
        }
        lists.push(list);
    }
    for s in lists.into_iter().flatten().flatten() {
        let id = s["id"].as_str().unwrap_or_default().to_owned();
        if seen.insert(id) {
            merged.push(s);
        }
    }
    all["sessions"] = serde_json::Value::Array(merged);
    let mut response = Response::from_parts(parts, Body::from(all.to_string()));
    response.headers_mut().remove(header::CONTENT_LENGTH);
    if !missing.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&missing.join(",")) {
            response.headers_mut().insert(PARTIAL, v);
        }
    }
    response
}

fn with_node(mut response: Response, node: Option<HeaderValue>) -> Response {
    if let Some(node) = node {
        response.headers_mut().entry(SERVED_BY).or_insert(node);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nobody;

    #[async_trait::async_trait]
    impl Owners for Nobody {
        async fn owner(&self, _: &TenantId) -> Result<Option<Peer>, String> {
            Ok(None)
        }

        async fn peers(&self) -> Result<Vec<Peer>, String> {
            Ok(Vec::new())
        }
    }

    fn node(name: &str, secret: &[u8]) -> Forwarder {
        Forwarder::new(name, secret, Arc::new(Nobody))
    }

    #[test]
    fn a_token_holds_for_its_request_its_minute_and_its_fleet_only() {
        let (a, b) = (node("a", b"fleet secret"), node("b", b"fleet secret"));
        let t = a.token(1_000, "POST", "/api/v1/sessions/s1/connect");
        assert_eq!(
            b.verify(&t, "POST", "/api/v1/sessions/s1/connect", 1_030),
            Ok("a".into())
        );
        assert_eq!(
            b.verify(&t, "POST", "/api/v1/sessions/s1/connect", 1_061),
            Err(TokenError::Stale)
        );
        assert_eq!(
            b.verify(&t, "POST", "/api/v1/sessions/s1/connect", 939),
            Err(TokenError::Stale)
        );
        assert_eq!(
            b.verify(&t, "DELETE", "/api/v1/sessions/s1/connect", 1_000),
            Err(TokenError::Wrong)
        );
        assert_eq!(
            b.verify(&t, "POST", "/api/v1/sessions/s2/connect", 1_000),
            Err(TokenError::Wrong)
        );
        let other = node("b", b"another fleet");
        assert_eq!(
            other.verify(&t, "POST", "/api/v1/sessions/s1/connect", 1_000),
            Err(TokenError::Wrong)
        );
        // Claiming to be another node breaks the signature.
        let forged = t.replacen("a ", "c ", 1);
        assert_eq!(
            b.verify(&forged, "POST", "/api/v1/sessions/s1/connect", 1_000),
            Err(TokenError::Wrong)
        );
        for bad in [
            "",
            "a",
            "a 1000",
            "a x ff",
            "a 1000 zz",
            "a 1000 ff extra",
            " 1000 ff",
        ] {
            assert_eq!(
                b.verify(bad, "POST", "/", 1_000),
                Err(TokenError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_tenants_webhook_and_auto_replies_are_the_owners_to_run() {
        let t = |s: &str| TenantId::new(s).ok();
        assert_eq!(owned_path("/api/v1/tenants/clinic/webhook"), t("clinic"));
        assert_eq!(
            owned_path("/api/v1/tenants/clinic/webhook/deliveries/d1/redeliver"),
            t("clinic")
        );
        assert_eq!(
            owned_path("/api/v1/tenants/clinic/auto-replies/try"),
            t("clinic")
        );
        for other in [
            "/api/v1/tenants/clinic",
            "/api/v1/tenants/clinic/api-keys",
            "/api/v1/tenants/clinic/unblock",
            "/api/v1/tenants/clinic/webhooks",
            "/api/v1/tenants//webhook",
            "/api/v1/sessions/s1/webhook",
        ] {
            assert_eq!(owned_path(other), None, "{other}");
        }
    }

    #[test]
    fn the_tokens_key_is_derived_from_the_secret_not_the_secret_itself() {
        let a = node("a", b"fleet secret");
        assert_ne!(a.key, b"fleet secret".to_vec());
        assert_eq!(a.key.len(), 32);
    }
}
