//! Webhook delivery: incoming messages and outgoing status changes of a
//! tenant are POSTed to the tenant's configured URL (and only there: no
//! redirect is followed, no proxy is used), signed with
//! `X-Centinela-Signature: sha256=<HMAC-SHA256 of the raw body>`
//! ([`signature`]). Each delivery is written to the store before its first
//! attempt and after each one; failures are retried with a doubling
//! backoff, and after `max_attempts` the delivery is dead (listed, and
//! redeliverable by hand). Pending deliveries survive restarts; finished
//! ones are pruned after `webhooks.retention`.
//!
//! A webhook reaches public addresses only ([`address`]): the host is
//! checked when the URL is set and again at every connect, by the client's
//! own resolver ([`resolve`]), so DNS rebinding gets no address; the
//! operator opens ranges with `webhooks.allow_private`. A failure is
//! stored as a generic code ([`failure`]), never the client's text. Each
//! tenant's deliveries run in their own lane ([`lanes`]), so one slow
//! receiver delays only its own tenant.

mod address;
#[cfg(test)]
mod attempt_tests;
mod failure;
mod lanes;
mod resolve;
mod signature;

pub use address::AddressPolicy;
pub use resolve::{Lookup, LookupFuture, SystemLookup, TargetError};
pub use signature::{hmac_sha256_hex, verify_signature};

use crate::bus::{Bus, BusEvent};
use crate::clock::SharedClock;
use crate::config::WebhooksConfig;
use crate::store::{Delivery, DeliveryStatus, StoreError, WebhookRepo};
use resolve::Guard;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, Notify};

/// What the delivery loop did, for whoever watches (tests wait on these
/// instead of polling the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// An attempt's outcome, as recorded in the store.
    Attempted(Delivery),
    /// Finished deliveries past the retention were deleted (`count` may be 0).
    Pruned { count: usize },
}

/// Handle to the delivery task; cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    repo: Arc<dyn WebhookRepo>,
    clock: SharedClock,
    kick: Arc<Notify>,
    guard: Guard,
    events: broadcast::Sender<WebhookEvent>,
    /// How long a set-time DNS check may take.
    check_wait: Duration,
}

impl Webhooks {
    /// Starts delivery with the system's resolver.
    pub fn start(
        repo: Arc<dyn WebhookRepo>,
        bus: &Bus,
        clock: SharedClock,
        cfg: WebhooksConfig,
    ) -> (Webhooks, tokio::task::JoinHandle<()>) {
        Self::start_with(repo, bus, clock, cfg, Arc::new(SystemLookup))
    }

    /// Starts delivery with host names looked up by `lookup`.
    pub fn start_with(
        repo: Arc<dyn WebhookRepo>,
        bus: &Bus,
        clock: SharedClock,
        cfg: WebhooksConfig,
        lookup: Arc<dyn Lookup>,
    ) -> (Webhooks, tokio::task::JoinHandle<()>) {
        let guard = Guard::new(AddressPolicy::new(cfg.allow_private.clone()), lookup);
        let me = Webhooks {
            repo,
            clock,
            kick: Arc::new(Notify::new()),
            guard: guard.clone(),
            events: broadcast::channel(1024).0,
            check_wait: cfg.timeout,
        };
        let bus = bus.subscribe();
        let task = match client(cfg.timeout, guard) {
            Ok(client) => tokio::spawn(lanes::run(me.clone(), client, bus, cfg)),
            Err(e) => {
                tracing::error!(error = %e, "webhooks disabled: no HTTP client");
                tokio::spawn(async {})
            }
        };
        (me, task)
    }

    /// Every attempt recorded and every prune from now on.
    pub fn events(&self) -> broadcast::Receiver<WebhookEvent> {
        self.events.subscribe()
    }

    /// Whether `url` may be set as a tenant's webhook: an http(s) URL whose
    /// host is not, and does not resolve only to, an address deliveries may
    /// not reach. Deliveries check again at every connect.
    pub async fn check_target(&self, url: &str) -> Result<(), TargetError> {
        self.guard.check_url(url, self.check_wait).await
    }

    /// Puts a delivery back in the queue with fresh attempts; `None` when
    /// it is gone (its tenant deleted meanwhile).
    pub fn redeliver(&self, mut d: Delivery) -> Result<Option<Delivery>, StoreError> {
        d.status = DeliveryStatus::Pending;
        d.attempts = 0;
        d.next_at = self.clock.now();
        d.last_error = None;
        if !self.repo.update_delivery(&d)? {
            return Ok(None);
        }
        self.kick.notify_one();
        Ok(Some(d))
    }

    /// Queues a `webhook.test` event for `tenant`, so its receiver can be
    /// checked from the dashboard without waiting for a message; `None`
    /// when the tenant has no target (nothing is stored). It is a delivery
    /// like any other: signed, retried, listed and redeliverable.
    pub fn test_event(
        &self,
        tenant: &crate::ids::TenantId,
    ) -> Result<Option<Delivery>, StoreError> {
        if self.repo.target(tenant)?.is_none() {
            return Ok(None);
        }
        let now = self.clock.now();
        let d = pending(
            tenant,
            json!({"event": "webhook.test", "tenant_id": tenant, "at": now}),
            now,
        );
        // A tenant purged between the check and this write leaves a
        // delivery with no target: its attempt records `no_target` and
        // the retention prunes it.
        self.repo.put_delivery(&d)?;
        self.kick.notify_one();
        Ok(Some(d))
    }

    /// Queues `event` as a delivery if it is one a receiver gets; answers
    /// whether one was queued.
    fn enqueue(&self, event: &BusEvent) -> bool {
        let (tenant, session, body) = match event {
            BusEvent::MessageIn(m) => (
                &m.tenant,
                &m.session,
                json!({"event": "message.in", "tenant_id": m.tenant, "session_id": m.session, "message_id": m.id, "from": m.from, "text": m.text, "at": m.at}),
            ),
            BusEvent::MessageStatus(m) if m.status != crate::store::MessageStatus::Sending => (
                &m.tenant,
                &m.session,
                json!({"event": "message.status", "tenant_id": m.tenant, "session_id": m.session, "message_id": m.message_id, "status": m.status, "at": m.at}),
            ),
            // What became of a verification code: the CRM that asked for
            // it learns it was sent, verified or failed (never the code).
            BusEvent::Otp(o) => (
                &o.tenant,
                &o.session,
                json!({"event": o.kind.name(), "tenant_id": o.tenant, "session_id": o.session, "otp_id": o.otp, "reason": o.reason, "attempts_left": o.attempts_left, "at": o.at}),
            ),
            _ => return false,
        };
        let d = pending(tenant, body, self.clock.now());
        // Queued only if the tenant has a target and the session is still
        // on record (see `queue_delivery`): no target is the common case.
        match self.repo.queue_delivery(&d, session) {
            Ok(queued) => queued,
            Err(e) => {
                tracing::error!(tenant = %tenant, error = %e, "could not queue a webhook delivery");
                false
            }
        }
    }
}

/// A new delivery of `body` to `tenant`'s receiver, due at `now`, under a
/// fresh id that the body carries as `delivery_id`.
fn pending(
    tenant: &crate::ids::TenantId,
    mut body: serde_json::Value,
    now: crate::clock::Timestamp,
) -> Delivery {
    let id = format!("d_{}", uuid::Uuid::new_v4().simple());
    body["delivery_id"] = json!(id);
    Delivery {
        id,
        tenant: tenant.clone(),
        body: body.to_string(),
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_at: now,
        last_error: None,
        created_at: now,
        last_attempt_at: None,
    }
}

/// `base * 2^(attempts-1)`, capped.
pub fn retry_delay(cfg: &WebhooksConfig, attempts: u32) -> Duration {
    cfg.backoff_base
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
        .min(cfg.backoff_max)
}

/// Makes rustls's ring provider the process default (needed before any
/// HTTPS client is built; a no-op when one is installed already).
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTP client for deliveries: HTTPS through rustls (ring provider,
/// the system's roots), no redirects (a 3xx is a failure, so a redirect
/// cannot lead anywhere the guard would refuse), no proxy (the environment's
/// `HTTP_PROXY` would resolve the target instead of the guard), no retries
/// of its own (the queue retries, and records each attempt), names resolved
/// by the guard, a timeout on every request.
fn client(timeout: Duration, guard: Guard) -> Result<reqwest::Client, reqwest::Error> {
    install_tls_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .retry(reqwest::retry::never())
        .no_proxy()
        .dns_resolver(guard)
        .timeout(timeout)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_https_client_builds_with_the_ring_provider() {
        let guard = Guard::new(AddressPolicy::default(), Arc::new(SystemLookup));
        assert!(client(Duration::from_secs(1), guard).is_ok());
    }

    #[test]
    fn retries_back_off_and_cap() {
        let cfg = WebhooksConfig {
            max_attempts: 8,
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            allow_private: crate::cidr::CidrSet::default(),
            retention: Duration::from_secs(7 * 86_400),
            max_in_flight: 4,
        };
        assert_eq!(retry_delay(&cfg, 1), Duration::from_secs(5));
        assert_eq!(retry_delay(&cfg, 2), Duration::from_secs(10));
        assert_eq!(retry_delay(&cfg, 5), Duration::from_secs(60));
    }
}
