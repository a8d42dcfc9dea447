//! A tracing layer that turns the actors' structured events (transitions,
//! admissions, denials, restarts, engine errors: every event of the
//! `centinela_actors` target at INFO or above) into [`LogEvent`]s for the
//! event hub. It never blocks: when the hub is behind, events are counted
//! as dropped rather than queued without bound.
//!
//! The layer is global (tracing has one subscriber per process); every
//! server started in the process subscribes its hub with [`subscribe`].

use crate::hub::LogEvent;
use centinela_actors::clock::{Clock, SystemClock};
use centinela_actors::ids::TenantId;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Where captured events go: every subscribed hub.
#[derive(Default)]
struct Fanout {
    senders: std::sync::Mutex<Vec<mpsc::Sender<LogEvent>>>,
    dropped: AtomicU64,
}

fn fanout() -> &'static Arc<Fanout> {
    static FANOUT: std::sync::OnceLock<Arc<Fanout>> = std::sync::OnceLock::new();
    FANOUT.get_or_init(Arc::default)
}

/// A receiver of every captured event from now on (one per hub).
pub fn subscribe(capacity: usize) -> mpsc::Receiver<LogEvent> {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    fanout()
        .senders
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(tx);
    rx
}

/// Events dropped because a hub was behind.
pub fn dropped() -> u64 {
    fanout().dropped.load(Ordering::Relaxed)
}

/// The layer to add to the process's tracing subscriber.
pub struct LogStreamLayer;

pub fn layer() -> LogStreamLayer {
    LogStreamLayer
}

/// For tests: installs a global subscriber made of this layer alone, unless
/// one is installed already.
pub fn install_global() {
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry().with(layer());
    let _ = tracing::subscriber::set_global_default(subscriber);
}

#[derive(Default)]
struct Fields {
    message: String,
    map: Map<String, Value>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, json!(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, json!(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, json!(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, json!(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, json!(format!("{value:?}")));
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = value
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string());
        } else {
            self.map.insert(field.name().to_owned(), value);
        }
    }
}

impl<S: Subscriber> Layer<S> for LogStreamLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if !meta.target().starts_with("centinela_actors") || *meta.level() > Level::INFO {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let tenant = fields
            .map
            .get("tenant")
            .and_then(Value::as_str)
            .and_then(|t| TenantId::new(t).ok());
        let log = LogEvent {
            level: *meta.level(),
            target: meta.target().to_owned(),
            message: fields.message,
            fields: fields.map,
            tenant,
            at: SystemClock.now(),
        };
        let fan = fanout();
        let mut senders = fan.senders.lock().unwrap_or_else(|p| p.into_inner());
        senders.retain(|tx| match tx.try_send(log.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                fan.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn actor_events_reach_subscribers_with_their_fields() {
        install_global();
        let mut rx = subscribe(16);
        tracing::info!(target: "centinela_actors::supervisor", tenant = "clinic", session = "s1", "connection admitted");
        tracing::debug!(target: "centinela_actors::supervisor", "too verbose");
        tracing::info!(target: "hyper", "not ours");
        let e = rx.recv().await.expect("event");
        assert_eq!(e.message, "connection admitted");
        assert_eq!(e.tenant.as_ref().map(|t| t.as_str()), Some("clinic"));
        assert_eq!(e.fields["session"], "s1");
        assert!(
            rx.try_recv().is_err(),
            "only INFO+ events of centinela_actors"
        );
    }
}
