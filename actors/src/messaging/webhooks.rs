//! Webhook delivery: incoming messages and outgoing status changes of a
//! tenant are POSTed to the tenant's configured URL (and only there: no
//! redirect is followed), signed with `X-Centinela-Signature:
//! sha256=<HMAC-SHA256 of the raw body>`. Each delivery is written to the
//! store before its first attempt and after each one; failures are retried
//! with a doubling backoff, and after `max_attempts` the delivery is dead
//! (listed, and redeliverable by hand). Pending deliveries survive restarts.

use crate::bus::{Bus, BusEvent};
use crate::clock::{SharedClock, Timestamp};
use crate::config::WebhooksConfig;
use crate::store::{Delivery, DeliveryStatus, StoreError, WebhookRepo};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, Notify};

/// HMAC-SHA256 (RFC 2104, RustCrypto's `hmac`), as lowercase hex.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    let mut mac = mac(key);
    mac.update(message);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `header` (`sha256=<hex>`, as sent in `X-Centinela-Signature`)
/// signs `body` under `secret`. The comparison takes the same time however
/// many bytes match.
pub fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Some(tag) = decode_hex(hex) else {
        return false;
    };
    let mut mac = mac(secret);
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes a key of any length")
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Handle to the delivery task; cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    repo: Arc<dyn WebhookRepo>,
    clock: SharedClock,
    kick: Arc<Notify>,
}

impl Webhooks {
    pub fn start(
        repo: Arc<dyn WebhookRepo>,
        bus: &Bus,
        clock: SharedClock,
        cfg: WebhooksConfig,
    ) -> (Webhooks, tokio::task::JoinHandle<()>) {
        let kick = Arc::new(Notify::new());
        let me = Webhooks { repo, clock, kick };
        let task = tokio::spawn(run(me.clone(), bus.subscribe(), cfg));
        (me, task)
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

    fn enqueue(&self, event: &BusEvent) {
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
            _ => return,
        };
        let now = self.clock.now();
        let id = format!("d_{}", uuid::Uuid::new_v4().simple());
        let mut body = body;
        body["delivery_id"] = json!(id);
        let d = Delivery {
            id,
            tenant: tenant.clone(),
            body: body.to_string(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_at: now,
            last_error: None,
            created_at: now,
        };
        // Queued only if the tenant has a target and the session is still
        // on record (see `queue_delivery`): no target is the common case.
        if let Err(e) = self.repo.queue_delivery(&d, session) {
            tracing::error!(tenant = %tenant, error = %e, "could not queue a webhook delivery");
        }
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
/// the system's roots), no redirects, a timeout on every request.
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    install_tls_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
}

async fn run(me: Webhooks, mut bus: broadcast::Receiver<BusEvent>, cfg: WebhooksConfig) {
    let client = match client(cfg.timeout) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhooks disabled: no HTTP client");
            return;
        }
    };
    loop {
        let wait = dispatch_due(&me, &client, &cfg).await;
        tokio::select! {
            ev = bus.recv() => match ev {
                Ok(e) => me.enqueue(&e),
                Err(broadcast::error::RecvError::Lagged(n)) => tracing::error!(missed = n, "webhook queue lagged behind the bus"),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = me.kick.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Attempts every due delivery; returns how long until the next one is due.
async fn dispatch_due(me: &Webhooks, client: &reqwest::Client, cfg: &WebhooksConfig) -> Duration {
    let pending = match me.repo.pending() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "could not read the webhook queue");
            return Duration::from_secs(5);
        }
    };
    let mut next: Option<Timestamp> = None;
    for d in pending {
        if d.next_at > me.clock.now() {
            next = Some(next.map_or(d.next_at, |n| n.min(d.next_at)));
            continue;
        }
        let Some(d) = attempt(me, client, cfg, d).await else {
            continue;
        };
        if d.status == DeliveryStatus::Pending {
            next = Some(next.map_or(d.next_at, |n| n.min(d.next_at)));
        }
    }
    next.map_or(Duration::from_secs(3600), |n| n.since(me.clock.now()))
}

async fn attempt(
    me: &Webhooks,
    client: &reqwest::Client,
    cfg: &WebhooksConfig,
    mut d: Delivery,
) -> Option<Delivery> {
    // Read again with the target, in one snapshot: a delivery listed
    // before its tenant was purged is gone now, and never goes to a
    // target a tenant re-created under the same id has set since.
    let target = match me.repo.delivery_and_target(&d.id) {
        Ok(None) => {
            tracing::info!(delivery = %d.id, "webhook delivery gone before its attempt");
            return None;
        }
        Ok(Some((_, target))) => Ok(target),
        Err(e) => Err(e),
    };
    let outcome = match target {
        Ok(Some(target)) => {
            let signature = format!(
                "sha256={}",
                hmac_sha256_hex(target.secret.as_bytes(), d.body.as_bytes())
            );
            let res = client
                .post(&target.url)
                .header("content-type", "application/json")
                .header("x-centinela-signature", signature)
                .header("x-centinela-delivery", d.id.clone())
                .body(d.body.clone())
                .send()
                .await;
            match res {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
                Err(e) => Err(e.to_string()),
            }
        }
        Ok(None) => Err("no webhook is configured for the tenant".into()),
        Err(e) => Err(e.to_string()),
    };
    d.attempts += 1;
    match outcome {
        Ok(()) => {
            d.status = DeliveryStatus::Delivered;
            d.last_error = None;
        }
        Err(why) => {
            d.last_error = Some(why);
            if d.attempts >= cfg.max_attempts {
                d.status = DeliveryStatus::Dead;
                tracing::warn!(tenant = %d.tenant, delivery = %d.id, attempts = d.attempts, "webhook delivery dead-lettered");
            } else {
                d.next_at = me.clock.now().plus(retry_delay(cfg, d.attempts));
            }
        }
    }
    // Only over a row still there: a tenant deleted during the attempt
    // does not get its delivery back.
    match me.repo.update_delivery(&d) {
        Ok(true) => {}
        Ok(false) => tracing::info!(delivery = %d.id, "webhook delivery gone during its attempt"),
        Err(e) => {
            tracing::error!(delivery = %d.id, error = %e, "could not record a webhook attempt")
        }
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_secret_and_body() {
        let header = format!("sha256={}", hmac_sha256_hex(b"secret", b"{\"a\":1}"));
        assert!(verify_signature(b"secret", b"{\"a\":1}", &header));
        assert!(!verify_signature(b"other", b"{\"a\":1}", &header));
        assert!(!verify_signature(b"secret", b"{\"a\":2}", &header));
        assert!(!verify_signature(b"secret", b"{\"a\":1}", &header[7..]));
        assert!(!verify_signature(b"secret", b"{\"a\":1}", "sha256=zz"));
        assert!(!verify_signature(b"secret", b"{\"a\":1}", "sha256=abc"));
        assert!(!verify_signature(b"secret", b"{\"a\":1}", &header[..20]));
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let long_key = [0xaa_u8; 131];
        assert_eq!(
            hmac_sha256_hex(
                &long_key,
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn the_https_client_builds_with_the_ring_provider() {
        assert!(client(Duration::from_secs(1)).is_ok());
    }

    #[tokio::test]
    async fn a_delivery_listed_before_its_tenant_was_purged_never_reaches_a_later_target() {
        use crate::clock::ManualClock;
        use crate::ids::{SessionId, TenantId};
        use crate::store::WebhookTarget;
        use crate::store::{AccountRepo, SessionRecord, SessionRepo, Store, TenantRecord};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let clinic = TenantId::new("clinic").expect("id");
        let create = |store: &Store| {
            store
                .create_tenant(&TenantRecord {
                    id: clinic.clone(),
                    name: "clinic".into(),
                    created_at: Timestamp::from_millis(1),
                })
                .expect("tenant");
        };
        create(&store);
        let s1 = SessionId::new("s1").expect("id");
        store
            .put_session(&SessionRecord::of(&clinic, &s1))
            .expect("session");
        let old = WebhookTarget {
            tenant: clinic.clone(),
            url: "http://127.0.0.1:9/old-customer".into(),
            secret: "the-old-customers-secret".into(),
        };
        assert!(store.set_target(&old).expect("set"));
        let d = Delivery {
            id: "d1".into(),
            tenant: clinic.clone(),
            body: "{\"text\":\"the old customer's message\"}".into(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_at: Timestamp::from_millis(1),
            last_error: None,
            created_at: Timestamp::from_millis(1),
        };
        assert!(store.queue_delivery(&d, &s1).expect("queue"));
        // The task lists what is due, then the tenant is purged and
        // re-created with a target of its own before the attempt.
        let listed = store.pending().expect("list");
        store.purge_tenant(&clinic).expect("purge");
        create(&store);
        let new_customer = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        new_customer.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}/hook", new_customer.local_addr().expect("addr"));
        let new = WebhookTarget {
            tenant: clinic.clone(),
            url,
            secret: "the-new-customers-secret".into(),
        };
        assert!(store.set_target(&new).expect("set"));

        let me = Webhooks {
            repo: Arc::new(store.clone()),
            clock: Arc::new(ManualClock::new(Timestamp::from_millis(1_000))),
            kick: Arc::new(Notify::new()),
        };
        let cfg = WebhooksConfig {
            max_attempts: 3,
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(60),
            timeout: Duration::from_millis(500),
        };
        let http = client(cfg.timeout).expect("client");
        for d in listed {
            assert_eq!(attempt(&me, &http, &cfg, d).await, None, "skipped: gone");
        }
        // Had it been sent, its connection would be waiting by now.
        assert_eq!(
            new_customer.accept().map_err(|e| e.kind()).err(),
            Some(std::io::ErrorKind::WouldBlock),
            "nothing connected to the new customer's URL"
        );
        assert_eq!(
            store.delivery("d1").expect("read"),
            None,
            "not written back"
        );
    }

    #[test]
    fn retries_back_off_and_cap() {
        let cfg = WebhooksConfig {
            max_attempts: 8,
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
        };
        assert_eq!(retry_delay(&cfg, 1), Duration::from_secs(5));
        assert_eq!(retry_delay(&cfg, 2), Duration::from_secs(10));
        assert_eq!(retry_delay(&cfg, 5), Duration::from_secs(60));
    }
}
