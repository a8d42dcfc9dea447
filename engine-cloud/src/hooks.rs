//! Meta's webhooks for the numbers of running cloud sessions: which driver
//! a POST is for (by `metadata.phone_number_id`, as Evolution API routes
//! them), whether it is signed by that number's app
//! (`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(raw body, app secret)>`,
//! compared in constant time over the raw bytes), and what it says:
//! `messages[]` become incoming messages, `statuses[]` acks by `wamid`
//! (a `failed` one with Meta's error code).
//!
//! Meta retries any answer but 200 for days, so 200 means "kept": an
//! incoming message is in the store (the session's inbox, which knows
//! each id once, across restarts) before the answer; a status is in its
//! session's queue. When neither can be done now (the store fails, the
//! queue is full, or the number is a stopped session's), the answer is
//! 503 and Meta's retry brings it again. Statuses handed over are
//! remembered (bounded, in memory) and a repeat is dropped; one repeated
//! after a restart changes nothing either, since statuses only move
//! forward.
//!
//! Sources: developers.facebook.com/docs/graph-api/webhooks/getting-started
//! (handshake, signature); .../whatsapp/webhooks/reference/messages
//! (payload shapes).

use centinela_actors::clock::SharedClock;
use centinela_actors::engine::cloud::{CloudHooks, HookOutcome};
use centinela_actors::engine::EngineEvent;
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::store::{InboxRepo, Incoming, IncomingRecord};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;

/// Events remembered for deduplication (the oldest forgotten first).
const MAX_SEEN: usize = 50_000;

/// One running cloud driver's webhook end.
pub struct Route {
    /// Which registration this is (a restarted session registers anew;
    /// the old driver's goodbye must not remove the new one).
    pub ticket: u64,
    pub tenant: TenantId,
    pub session: SessionId,
    pub app_secret: String,
    pub verify_token: String,
    pub events: mpsc::Sender<EngineEvent>,
}

/// Whether a phone number id is a stored (not running) session's.
pub type KnownNumber = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Where incoming messages are kept before Meta is answered, and which
/// numbers belong to stopped sessions. Without it (unit tests), messages
/// go to the session to store and nothing is known beyond the routes.
#[derive(Clone)]
pub struct Keeping {
    pub inbox: Arc<dyn InboxRepo>,
    pub known: KnownNumber,
    pub clock: SharedClock,
}

/// The routes by phone number id, and what was already handed over.
#[derive(Default)]
pub struct Hooks {
    inner: Mutex<Inner>,
    tickets: AtomicU64,
    unknown: AtomicU64,
    keeping: Option<Keeping>,
}

#[derive(Default)]
struct Inner {
    routes: HashMap<String, Route>,
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl Hooks {
    pub fn new(keeping: Keeping) -> Self {
        Self {
            keeping: Some(keeping),
            ..Self::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding it leaves plain maps: still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn ticket(&self) -> u64 {
        self.tickets.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn register(&self, phone_number_id: &str, route: Route) {
        self.lock().routes.insert(phone_number_id.to_owned(), route);
    }

    pub fn unregister(&self, phone_number_id: &str, ticket: u64) {
        let mut inner = self.lock();
        if inner
            .routes
            .get(phone_number_id)
            .is_some_and(|r| r.ticket == ticket)
        {
            inner.routes.remove(phone_number_id);
        }
    }

    /// Remembers `key` as handed over.
    fn remember(inner: &mut Inner, key: String) {
        if inner.order.len() >= MAX_SEEN {
            if let Some(old) = inner.order.pop_front() {
                inner.seen.remove(&old);
            }
        }
        if inner.seen.insert(key.clone()) {
            inner.order.push_back(key);
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    value: Value,
}

#[derive(Deserialize)]
struct Value {
    metadata: Metadata,
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    statuses: Vec<Status>,
    /// Errors about the number or the app (not one message's), e.g. a
    /// throttled app: logged with their codes.
    #[serde(default)]
    errors: Vec<MetaError>,
}

#[derive(Deserialize)]
struct MetaError {
    code: u32,
    #[serde(default)]
    title: String,
}

#[derive(Deserialize)]
struct Metadata {
    phone_number_id: String,
}

#[derive(Deserialize)]
struct Message {
    from: String,
    id: String,
    #[serde(rename = "type")]
    kind: String,
    text: Option<Text>,
}

#[derive(Deserialize)]
struct Text {
    body: String,
}

#[derive(Deserialize)]
struct Status {
    id: String,
    status: String,
    /// Why, on a `failed` status.
    #[serde(default)]
    errors: Vec<MetaError>,
}

/// `sha256=<hex>` over `body` with `secret`, checked in constant time.
pub fn signature_ok(secret: &str, header: Option<&str>, body: &[u8]) -> bool {
    let Some(tag) = header
        .and_then(|h| h.strip_prefix("sha256="))
        .and_then(unhex)
    else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// `sha256=<hex>` for `body` (what Meta sends; the Graph simulator signs
/// with it).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// Meta's status names as acks (1 server, 2 device, 3 read, -1 failed).
fn ack_of(status: &str) -> Option<i8> {
    match status {
        "sent" => Some(1),
        "delivered" => Some(2),
        "read" => Some(3),
        "failed" => Some(-1),
        _ => None,
    }
}

/// A failed status's reason, as a failed send's would read.
fn failure_of(errors: &[MetaError]) -> Option<String> {
    let e = errors.first()?;
    Some(match e.code {
        crate::graph::OUTSIDE_WINDOW => "needs_template".to_owned(),
        code => format!("cloud_error_{code}"),
    })
}

/// A status as the event its session takes, with its dedup key.
fn status_event(s: Status) -> Option<(String, EngineEvent)> {
    let ack = ack_of(&s.status)?;
    let key = format!("s:{}:{}", s.id, s.status);
    let event = match (ack, failure_of(&s.errors)) {
        (-1, Some(error)) => EngineEvent::Failed {
            message_id: s.id,
            error,
        },
        _ => EngineEvent::Ack {
            message_id: s.id,
            ack,
        },
    };
    Some((key, event))
}

/// One number's part of a delivery, with where it goes.
struct Target {
    pnid: String,
    tenant: TenantId,
    session: SessionId,
    tx: mpsc::Sender<EngineEvent>,
}

/// Why a delivery cannot be kept now (Meta is told to retry).
struct NotNow;

impl Hooks {
    /// Keeps one number's messages and statuses; counts what it handed
    /// over and what it had already.
    fn take(&self, t: &Target, value: Value, counts: &mut (usize, usize)) -> Result<(), NotNow> {
        for e in &value.errors {
            tracing::warn!(phone_number_id = %t.pnid, code = e.code, title = %e.title, "Meta reported an error for the number");
        }
        for m in value.messages {
            let (Some(text), "text") = (m.text, m.kind.as_str()) else {
                tracing::debug!(kind = %m.kind, "cloud message of a kind not handled: skipped");
                continue;
            };
            if self.message(t, m.id, m.from, text.body)? {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
        }
        for s in value.statuses {
            let Some((key, event)) = status_event(s) else {
                continue;
            };
            if self.lock().seen.contains(&key) {
                counts.1 += 1;
                continue;
            }
            if t.tx.try_send(event).is_err() {
                tracing::warn!(phone_number_id = %t.pnid, "cloud session's event queue is full: Meta is asked to retry");
                return Err(NotNow);
            }
            Self::remember(&mut self.lock(), key);
            counts.0 += 1;
        }
        Ok(())
    }

    /// One incoming text: stored before the answer (when there is a
    /// store), then announced. `false` for one kept already.
    fn message(&self, t: &Target, id: String, from: String, text: String) -> Result<bool, NotNow> {
        let Some(keep) = &self.keeping else {
            let key = format!("m:{id}");
            if self.lock().seen.contains(&key) {
                return Ok(false);
            }
            let event = EngineEvent::MessageIn {
                id,
                jid: from.clone(),
                from,
                text,
            };
            if t.tx.try_send(event).is_err() {
                return Err(NotNow);
            }
            Self::remember(&mut self.lock(), key);
            return Ok(true);
        };
        let record = IncomingRecord {
            seq: 0,
            id,
            tenant: t.tenant.clone(),
            session: t.session.clone(),
            jid: Some(from.clone()),
            from,
            text,
            at: keep.clock.now(),
        };
        match keep.inbox.store_incoming(&record) {
            Ok(Incoming::Duplicate(_)) => Ok(false),
            Ok(Incoming::New(seq)) => {
                let mut stored = record;
                stored.seq = seq;
                if t.tx.try_send(EngineEvent::MessageStored(stored)).is_err() {
                    // Kept in the inbox; only its live announcement is lost.
                    tracing::warn!(phone_number_id = %t.pnid, "cloud session's event queue is full: a stored message goes unannounced");
                }
                Ok(true)
            }
            Err(e) => {
                tracing::error!(phone_number_id = %t.pnid, error = %e, "could not store an incoming cloud message: Meta is asked to retry");
                Err(NotNow)
            }
        }
    }
}

impl CloudHooks for Hooks {
    fn verify_token_matches(&self, token: &str) -> bool {
        use subtle_free::eq;
        self.lock()
            .routes
            .values()
            .any(|r| eq(r.verify_token.as_bytes(), token.as_bytes()))
    }

    fn deliver(&self, signature: Option<&str>, body: &[u8]) -> HookOutcome {
        let Ok(envelope) = serde_json::from_slice::<Envelope>(body) else {
            return HookOutcome::Malformed;
        };
        let values: Vec<Value> = envelope
            .entry
            .into_iter()
            .flat_map(|e| e.changes)
            .map(|c| c.value)
            .collect();
        let inner = self.lock();
        // The app that signed it: the first number we know. Changes for
        // numbers of another app are not trusted by this signature.
        let Some(secret) = values
            .iter()
            .find_map(|v| inner.routes.get(&v.metadata.phone_number_id))
            .map(|r| r.app_secret.clone())
        else {
            drop(inner);
            let stopped = self.keeping.as_ref().and_then(|k| {
                values
                    .iter()
                    .map(|v| &v.metadata.phone_number_id)
                    .find(|pnid| (k.known)(pnid))
            });
            if let Some(pnid) = stopped {
                tracing::info!(phone_number_id = %pnid, "Meta webhook for a stopped cloud session: Meta is asked to retry");
                return HookOutcome::Stopped;
            }
            self.unknown.fetch_add(1, Ordering::Relaxed);
            return HookOutcome::UnknownNumber;
        };
        if !signature_ok(&secret, signature, body) {
            return HookOutcome::BadSignature;
        }
        let targets: Vec<Option<Target>> = values
            .iter()
            .map(|v| {
                let pnid = &v.metadata.phone_number_id;
                inner
                    .routes
                    .get(pnid)
                    .filter(|r| r.app_secret == secret)
                    .map(|r| Target {
                        pnid: pnid.clone(),
                        tenant: r.tenant.clone(),
                        session: r.session.clone(),
                        tx: r.events.clone(),
                    })
            })
            .collect();
        drop(inner);
        let mut counts = (0, 0);
        for (value, target) in values.into_iter().zip(targets) {
            let Some(target) = target else {
                continue;
            };
            if self.take(&target, value, &mut counts).is_err() {
                return HookOutcome::NotNow;
            }
        }
        HookOutcome::Accepted {
            events: counts.0,
            duplicates: counts.1,
        }
    }

    fn unknown_numbers(&self) -> u64 {
        self.unknown.load(Ordering::Relaxed)
    }
}

/// Constant-time equality of two byte strings (the verify token), without
/// another dependency: the length may leak, the content does not.
mod subtle_free {
    pub fn eq(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// The hooks, shared between the engine (which registers drivers) and the
/// web routes (which deliver).
pub type SharedHooks = Arc<Hooks>;

#[cfg(test)]
mod tests {
    use super::*;

    fn route(tx: mpsc::Sender<EngineEvent>) -> Route {
        Route {
            ticket: 1,
            tenant: TenantId::new("t").expect("id"),
            session: SessionId::new("s1").expect("id"),
            app_secret: "app-secret".into(),
            verify_token: "verify-me".into(),
            events: tx,
        }
    }

    fn payload(pnid: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550001111", "phone_number_id": pnid},
                "messages": [{"from": "5491122334455", "id": "wamid.IN1", "timestamp": "1", "type": "text", "text": {"body": "hola"}}],
                "statuses": [{"id": "wamid.OUT1", "status": "delivered", "timestamp": "1", "recipient_id": "5491122334455"}]
            }}]}]
        }))
        .expect("json")
    }

    #[test]
    fn a_signed_post_becomes_events_once() {
        let hooks = Hooks::default();
        let (tx, mut rx) = mpsc::channel(8);
        hooks.register("123", route(tx));
        let body = payload("123");
        let sig = sign("app-secret", &body);
        assert_eq!(
            hooks.deliver(Some(&sig), &body),
            HookOutcome::Accepted {
                events: 2,
                duplicates: 0
            }
        );
        assert!(matches!(rx.try_recv(), Ok(EngineEvent::MessageIn { text, .. }) if text == "hola"));
        assert_eq!(
            rx.try_recv().ok(),
            Some(EngineEvent::Ack {
                message_id: "wamid.OUT1".into(),
                ack: 2
            })
        );
        assert_eq!(
            hooks.deliver(Some(&sig), &body),
            HookOutcome::Accepted {
                events: 0,
                duplicates: 2
            }
        );
        assert!(rx.try_recv().is_err(), "a retry hands nothing over");
    }

    #[test]
    fn a_wrong_or_missing_signature_changes_nothing() {
        let hooks = Hooks::default();
        let (tx, mut rx) = mpsc::channel(8);
        hooks.register("123", route(tx));
        let body = payload("123");
        let wrong = sign("another-secret", &body);
        assert_eq!(
            hooks.deliver(Some(&wrong), &body),
            HookOutcome::BadSignature
        );
        assert_eq!(hooks.deliver(None, &body), HookOutcome::BadSignature);
        assert_eq!(
            hooks.deliver(Some("sha256=zz"), &body),
            HookOutcome::BadSignature
        );
        assert!(rx.try_recv().is_err());
        // And the rejected ones were not remembered as seen.
        let sig = sign("app-secret", &body);
        assert!(matches!(
            hooks.deliver(Some(&sig), &body),
            HookOutcome::Accepted { events: 2, .. }
        ));
    }

    #[test]
    fn an_unknown_number_is_counted_not_refused() {
        let hooks = Hooks::default();
        let body = payload("999");
        assert_eq!(hooks.deliver(None, &body), HookOutcome::UnknownNumber);
        assert_eq!(hooks.unknown_numbers(), 1);
        assert_eq!(hooks.deliver(None, b"not json"), HookOutcome::Malformed);
    }

    /// Hooks that keep messages in a real store, with numbers `stopped`
    /// known as stopped sessions'.
    fn kept(
        dir: &std::path::Path,
        stopped: &'static str,
    ) -> (Hooks, centinela_actors::store::Store) {
        let store = centinela_actors::store::Store::open(dir).expect("open");
        let hooks = Hooks::new(Keeping {
            inbox: Arc::new(store.clone()),
            known: Arc::new(move |pnid: &str| pnid == stopped),
            clock: Arc::new(centinela_actors::clock::SystemClock),
        });
        (hooks, store)
    }

    #[test]
    fn a_kept_message_is_in_the_store_before_the_answer_and_once_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s1 = SessionId::new("s1").expect("id");
        let body = payload("123");
        let sig = sign("app-secret", &body);
        {
            let (hooks, store) = kept(dir.path(), "none");
            let (tx, mut rx) = mpsc::channel(8);
            hooks.register("123", route(tx));
            assert_eq!(
                hooks.deliver(Some(&sig), &body),
                HookOutcome::Accepted {
                    events: 2,
                    duplicates: 0
                }
            );
            let inbox = store.incoming(&s1, 10, None).expect("read");
            assert_eq!(inbox.len(), 1, "stored before the answer");
            assert!(
                matches!(rx.try_recv(), Ok(EngineEvent::MessageStored(r)) if r.text == "hola" && r.seq == 1)
            );
        }
        // A new process: the in-memory memory of statuses is gone, the
        // inbox still knows the message.
        let (hooks, store) = kept(dir.path(), "none");
        let (tx, mut rx) = mpsc::channel(8);
        hooks.register("123", route(tx));
        assert_eq!(
            hooks.deliver(Some(&sig), &body),
            HookOutcome::Accepted {
                events: 1,
                duplicates: 1
            },
            "the message is a duplicate; the status goes again (statuses only move forward)"
        );
        assert!(matches!(rx.try_recv(), Ok(EngineEvent::Ack { ack: 2, .. })));
        assert_eq!(store.incoming(&s1, 10, None).expect("read").len(), 1);
    }

    #[test]
    fn a_stopped_sessions_number_and_a_full_queue_ask_meta_to_retry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (hooks, _store) = kept(dir.path(), "777");
        assert_eq!(hooks.deliver(None, &payload("777")), HookOutcome::Stopped);
        assert_eq!(
            hooks.unknown_numbers(),
            0,
            "a stopped session's number is not unknown"
        );
        assert_eq!(
            hooks.deliver(None, &payload("999")),
            HookOutcome::UnknownNumber
        );

        let (tx, mut rx) = mpsc::channel(1);
        hooks.register("123", route(tx));
        let body = payload("123");
        let sig = sign("app-secret", &body);
        // Room for the message's announcement only: the status cannot be
        // handed over, so the whole delivery is to be retried.
        assert_eq!(hooks.deliver(Some(&sig), &body), HookOutcome::NotNow);
        assert!(matches!(rx.try_recv(), Ok(EngineEvent::MessageStored(_))));
        // The retry: the message is known, the status goes now.
        assert_eq!(
            hooks.deliver(Some(&sig), &body),
            HookOutcome::Accepted {
                events: 1,
                duplicates: 1
            }
        );
        assert!(matches!(rx.try_recv(), Ok(EngineEvent::Ack { .. })));
    }

    #[test]
    fn a_failed_status_carries_metas_code_and_number_errors_are_read() {
        let hooks = Hooks::default();
        let (tx, mut rx) = mpsc::channel(8);
        hooks.register("123", route(tx));
        let body = serde_json::to_vec(&serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550001111", "phone_number_id": "123"},
                "errors": [{"code": 131_056, "title": "Pair rate limit hit"}],
                "statuses": [
                    {"id": "wamid.A", "status": "failed", "timestamp": "1", "recipient_id": "1",
                     "errors": [{"code": 131_047, "title": "Re-engagement message"}]},
                    {"id": "wamid.B", "status": "failed", "timestamp": "1", "recipient_id": "1",
                     "errors": [{"code": 131_026, "title": "Message undeliverable"}]},
                    {"id": "wamid.C", "status": "failed", "timestamp": "1", "recipient_id": "1"}
                ]
            }}]}]
        }))
        .expect("json");
        let sig = sign("app-secret", &body);
        assert!(matches!(
            hooks.deliver(Some(&sig), &body),
            HookOutcome::Accepted { events: 3, .. }
        ));
        assert_eq!(
            rx.try_recv().ok(),
            Some(EngineEvent::Failed {
                message_id: "wamid.A".into(),
                error: "needs_template".into()
            })
        );
        assert_eq!(
            rx.try_recv().ok(),
            Some(EngineEvent::Failed {
                message_id: "wamid.B".into(),
                error: "cloud_error_131026".into()
            })
        );
        assert_eq!(
            rx.try_recv().ok(),
            Some(EngineEvent::Ack {
                message_id: "wamid.C".into(),
                ack: -1
            })
        );
    }

    #[test]
    fn an_old_drivers_goodbye_leaves_the_new_route() {
        let hooks = Hooks::default();
        let (tx, _rx) = mpsc::channel(8);
        let mut r = route(tx);
        r.ticket = 2;
        hooks.register("123", r);
        hooks.unregister("123", 1);
        assert!(hooks.verify_token_matches("verify-me"));
        hooks.unregister("123", 2);
        assert!(!hooks.verify_token_matches("verify-me"));
    }
}
