//! Meta's webhooks for the numbers of running cloud sessions: which driver
//! a POST is for (by `metadata.phone_number_id`, as Evolution API routes
//! them), whether it is signed by that number's app
//! (`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(raw body, app secret)>`,
//! compared in constant time over the raw bytes), and what it says:
//! `messages[]` become incoming messages, `statuses[]` acks by `wamid`.
//! Meta retries a delivery for days, so what was handed over once is
//! remembered (bounded) and a repeat is dropped.
//!
//! Sources: developers.facebook.com/docs/graph-api/webhooks/getting-started
//! (handshake, signature); .../whatsapp/webhooks/reference/messages
//! (payload shapes).

use centinela_actors::engine::cloud::{CloudHooks, HookOutcome};
use centinela_actors::engine::EngineEvent;
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
    pub app_secret: String,
    pub verify_token: String,
    pub events: mpsc::Sender<EngineEvent>,
}

/// The routes by phone number id, and what was already handed over.
#[derive(Default)]
pub struct Hooks {
    inner: Mutex<Inner>,
    tickets: AtomicU64,
    unknown: AtomicU64,
}

#[derive(Default)]
struct Inner {
    routes: HashMap<String, Route>,
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl Hooks {
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

    /// Whether `key` is new (and remembers it).
    fn first_time(inner: &mut Inner, key: String) -> bool {
        if inner.seen.contains(&key) {
            return false;
        }
        if inner.order.len() >= MAX_SEEN {
            if let Some(old) = inner.order.pop_front() {
                inner.seen.remove(&old);
            }
        }
        inner.seen.insert(key.clone());
        inner.order.push_back(key);
        true
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

fn events_of(value: Value) -> Vec<(String, EngineEvent)> {
    let mut out = Vec::new();
    for m in value.messages {
        let (Some(text), "text") = (m.text, m.kind.as_str()) else {
            tracing::debug!(kind = %m.kind, "cloud message of a kind not handled: skipped");
            continue;
        };
        let event = EngineEvent::MessageIn {
            id: m.id.clone(),
            jid: m.from.clone(),
            from: m.from,
            text: text.body,
        };
        out.push((format!("m:{}", m.id), event));
    }
    for s in value.statuses {
        let Some(ack) = ack_of(&s.status) else {
            continue;
        };
        let key = format!("s:{}:{}", s.id, s.status);
        out.push((
            key,
            EngineEvent::Ack {
                message_id: s.id,
                ack,
            },
        ));
    }
    out
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
        let mut inner = self.lock();
        // The app that signed it: the first number we know. Changes for
        // numbers of another app are not trusted by this signature.
        let Some(secret) = values
            .iter()
            .find_map(|v| inner.routes.get(&v.metadata.phone_number_id))
            .map(|r| r.app_secret.clone())
        else {
            drop(inner);
            self.unknown.fetch_add(1, Ordering::Relaxed);
            return HookOutcome::UnknownNumber;
        };
        if !signature_ok(&secret, signature, body) {
            return HookOutcome::BadSignature;
        }
        let (mut events, mut duplicates) = (0, 0);
        for value in values {
            let pnid = value.metadata.phone_number_id.clone();
            let Some(tx) = inner
                .routes
                .get(&pnid)
                .filter(|r| r.app_secret == secret)
                .map(|r| r.events.clone())
            else {
                continue;
            };
            for (key, event) in events_of(value) {
                if !Hooks::first_time(&mut inner, key) {
                    duplicates += 1;
                    continue;
                }
                if tx.try_send(event).is_err() {
                    tracing::warn!(phone_number_id = %pnid, "cloud session's event queue is full: webhook event dropped");
                    continue;
                }
                events += 1;
            }
        }
        HookOutcome::Accepted { events, duplicates }
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
