//! Auto-replies: per-tenant rules (a keyword found in an incoming text →
//! a reply), off unless the tenant enables them. A matching incoming
//! message queues its reply in the outbox, so it is durable and paced like
//! every other send. The first matching rule wins; a session never answers
//! itself twice for one incoming message. The reply names the chat it
//! answers, so its session marks that chat read just before it types the
//! reply (`session/outgoing.rs`): read, type, send, as a person does, and
//! still in that order if the reply waits in the queue across a restart.

use super::Outbox;
use crate::bus::{Bus, BusEvent, MessageEvent};
use crate::clock::SharedClock;
use crate::store::{AutoReplyRepo, AutoReplyRules, MessageRecord};
use std::sync::Arc;
use tokio::sync::broadcast;

/// The reply for `text` under `rules`, if any (case-insensitive keyword).
pub fn reply_for<'a>(rules: &'a AutoReplyRules, text: &str) -> Option<&'a str> {
    if !rules.enabled {
        return None;
    }
    let text = text.to_lowercase();
    rules
        .rules
        .iter()
        .find(|r| !r.keyword.trim().is_empty() && text.contains(&r.keyword.to_lowercase()))
        .map(|r| r.reply.as_str())
}

/// Starts the task that answers incoming messages.
pub fn start(
    repo: Arc<dyn AutoReplyRepo>,
    outbox: Outbox,
    bus: &Bus,
    clock: SharedClock,
) -> tokio::task::JoinHandle<()> {
    let mut rx = bus.subscribe();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(BusEvent::MessageIn(m)) => answer(&repo, &outbox, &clock, m).await,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "auto-replies lagged behind the bus")
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

async fn answer(
    repo: &Arc<dyn AutoReplyRepo>,
    outbox: &Outbox,
    clock: &SharedClock,
    m: MessageEvent,
) {
    let rules = match repo.auto_replies(&m.tenant) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(tenant = %m.tenant, error = %e, "could not read the auto-reply rules");
            return;
        }
    };
    let Some(reply) = reply_for(&rules, &m.text) else {
        return;
    };
    let now = clock.now();
    let record = MessageRecord::queued(
        m.tenant.clone(),
        m.session.clone(),
        m.from.clone(),
        reply.to_owned(),
        now,
    )
    // One reply per incoming message, even if the event is seen twice.
    .with_key(Some(format!("auto-reply/{}/{}", m.session, m.id)))
    // Read before answered: the session marks the chat seen right before
    // it types the reply (`messaging.send_seen`).
    .answering(Some(m.jid.clone()));
    match outbox.accept(record).await {
        Ok(r) => {
            tracing::info!(tenant = %m.tenant, session = %m.session, message = %r.id, "auto-reply queued")
        }
        Err(e) => tracing::error!(tenant = %m.tenant, error = %e, "could not queue an auto-reply"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AutoReplyRule;

    #[test]
    fn the_first_matching_keyword_answers_and_only_when_enabled() {
        let mut rules = AutoReplyRules {
            enabled: false,
            rules: vec![
                AutoReplyRule {
                    keyword: "Precio".into(),
                    reply: "Los precios están en la web".into(),
                },
                AutoReplyRule {
                    keyword: "horario".into(),
                    reply: "Abrimos de 9 a 18".into(),
                },
            ],
        };
        assert_eq!(
            reply_for(&rules, "¿cuál es el precio?"),
            None,
            "off by default"
        );
        rules.enabled = true;
        assert_eq!(
            reply_for(&rules, "¿Cuál es el PRECIO y el horario?"),
            Some("Los precios están en la web")
        );
        assert_eq!(reply_for(&rules, "horario?"), Some("Abrimos de 9 a 18"));
        assert_eq!(reply_for(&rules, "hola"), None);
    }
}
