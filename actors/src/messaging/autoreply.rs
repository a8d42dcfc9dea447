//! Auto-replies: per-tenant rules (a keyword found in an incoming text →
//! a reply), off unless the tenant enables them. A matching incoming
//! message queues its reply in the outbox, so it is durable and paced like
//! every other send. The first matching rule wins; a session never answers
//! itself twice for one incoming message. Replies are rationed by
//! [`ReplyLimit`] (a per-sender cooldown and a per-session hourly cap,
//! `[autoreply]` in the config), so strangers cannot make the number spam.
//! Each rule has its own on/off switch: a rule switched off is skipped, so
//! the next matching rule answers (and "try it" says so).
//! The reply names the chat it answers, so its session marks that chat
//! read just before it types the reply (`session/outgoing.rs`): read,
//! type, send, as a person does, and still in that order if the reply
//! waits in the queue across a restart.

use super::reply_limit::{ReplyLimit, Verdict};
use super::{Outbox, OutboxError};
use crate::bus::{Bus, BusEvent, MessageEvent};
use crate::clock::SharedClock;
use crate::config::AutoReplyConfig;
use crate::store::{AutoReplyRepo, AutoReplyRules, MessageRecord};
use std::sync::Arc;
use tokio::sync::broadcast;

/// The reply for `text` under `rules`, if any (case-insensitive keyword).
pub fn reply_for<'a>(rules: &'a AutoReplyRules, text: &str) -> Option<&'a str> {
    if !rules.enabled {
        return None;
    }
    rule_for(rules, text).map(|i| rules.rules[i].reply.as_str())
}

/// The position of the rule that matches `text` (the first switched-on
/// rule whose keyword it contains, case-insensitively), whether or not the
/// tenant's rules are on: the dashboard's "try it" box shows it next to
/// the tenant-wide switch.
pub fn rule_for(rules: &AutoReplyRules, text: &str) -> Option<usize> {
    let text = text.to_lowercase();
    rules.rules.iter().position(|r| {
        r.enabled && !r.keyword.trim().is_empty() && text.contains(&r.keyword.to_lowercase())
    })
}

/// A rule's switch when its stored record has none (written before rules
/// had one): on, as every rule was then.
pub fn on_unless_stored_off() -> bool {
    true
}

/// Starts the task that answers incoming messages, within `limits`.
pub fn start(
    repo: Arc<dyn AutoReplyRepo>,
    outbox: Outbox,
    bus: &Bus,
    clock: SharedClock,
    limits: &AutoReplyConfig,
) -> tokio::task::JoinHandle<()> {
    let mut rx = bus.subscribe();
    let mut limit = ReplyLimit::new(limits);
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(BusEvent::MessageIn(m)) => answer(&repo, &outbox, &clock, &mut limit, m).await,
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
    limit: &mut ReplyLimit,
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
    // Counted once admitted: a reply the outbox then fails to take is not
    // retried, which errs on the side of sending less.
    match limit.admit(&m.session, &m.from, now) {
        Verdict::Reply => {}
        v @ (Verdict::Cooldown { until } | Verdict::SessionCap { until }) => {
            tracing::info!(tenant = %m.tenant, session = %m.session, limit = v.as_str(), until = %until, "auto-reply withheld");
            return;
        }
    }
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
        Err(OutboxError::SessionGone(_)) => {
            tracing::info!(tenant = %m.tenant, session = %m.session, "auto-reply dropped: the session is gone")
        }
        Err(e) => tracing::error!(tenant = %m.tenant, error = %e, "could not queue an auto-reply"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::MessageEvent;
    use crate::clock::{Clock, ManualClock, Timestamp};
    use crate::ids::{SessionId, TenantId};
    use crate::messaging::outbox::Notify;
    use crate::store::{
        AccountRepo, AutoReplyRule, MessageRepo, SessionRecord, SessionRepo, Store, TenantRecord,
    };
    use std::time::Duration;
    use tokio::sync::mpsc;

    /// Tells the test which session got a reply queued.
    struct Queued(mpsc::UnboundedSender<SessionId>);

    impl Notify for Queued {
        fn messages_queued(&self, session: SessionId) {
            let _ = self.0.send(session);
        }
    }

    /// A store in a temp dir with the tenant `shop` on record.
    fn shop_store() -> (tempfile::TempDir, Store, TenantId) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let shop = TenantId::new("shop").expect("id");
        store
            .create_tenant(&TenantRecord {
                id: shop.clone(),
                name: "shop".into(),
                created_at: Timestamp::from_millis(1),
            })
            .expect("tenant");
        (dir, store, shop)
    }

    struct Harness {
        store: Store,
        bus: Bus,
        clock: Arc<ManualClock>,
        queued: mpsc::UnboundedReceiver<SessionId>,
        next_id: u32,
        _dir: tempfile::TempDir,
    }

    impl Harness {
        fn start(limits: AutoReplyConfig) -> Harness {
            let (dir, store, shop) = shop_store();
            let rules = AutoReplyRules {
                enabled: true,
                rules: vec![AutoReplyRule {
                    keyword: "horario".into(),
                    reply: "Abrimos de 9 a 18".into(),
                    enabled: true,
                }],
            };
            assert!(store.set_auto_replies(&shop, &rules).expect("rules"));
            for s in ["s1", "s2"] {
                let s = SessionId::new(s).expect("id");
                store
                    .put_session(&SessionRecord::of(&shop, &s))
                    .expect("session");
            }
            let (tx, queued) = mpsc::unbounded_channel();
            let (outbox, _) = Outbox::start(Arc::new(store.clone()), Some(Arc::new(Queued(tx))));
            let bus = Bus::default();
            let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_000_000)));
            start(
                Arc::new(store.clone()),
                outbox,
                &bus,
                clock.clone(),
                &limits,
            );
            Harness {
                store,
                bus,
                clock,
                queued,
                next_id: 0,
                _dir: dir,
            }
        }

        /// An incoming "horario?" from `from` on `session`.
        fn incoming(&mut self, session: &str, from: &str) {
            self.next_id += 1;
            self.bus.publish(BusEvent::MessageIn(MessageEvent {
                tenant: TenantId::new("shop").expect("id"),
                session: SessionId::new(session).expect("id"),
                id: format!("in{}", self.next_id),
                from: from.into(),
                jid: format!("{from}@c.us"),
                text: "¿horario?".into(),
                at: self.clock.now(),
            }));
        }

        /// Waits until a reply on `session` is queued. The task handles
        /// events in order, so every earlier event has been decided too.
        async fn replied(&mut self, session: &str) {
            let want = SessionId::new(session).expect("id");
            loop {
                let got = tokio::time::timeout(Duration::from_secs(10), self.queued.recv())
                    .await
                    .expect("a reply within the wait")
                    .expect("outbox open");
                if got == want {
                    return;
                }
            }
        }

        /// The replies queued on `session`, by recipient.
        fn replies_to(&self, session: &str, to: &str) -> usize {
            self.store
                .messages(&SessionId::new(session).expect("id"), 1000, None)
                .expect("read")
                .iter()
                .filter(|m| m.to == to)
                .count()
        }
    }

    fn limits(cooldown: Duration, per_hour: u32) -> AutoReplyConfig {
        AutoReplyConfig {
            per_sender_cooldown: cooldown,
            max_per_session_per_hour: per_hour,
        }
    }

    #[tokio::test]
    async fn one_sender_gets_one_reply_per_cooldown() {
        let mut h = Harness::start(limits(Duration::from_secs(600), 30));
        h.incoming("s1", "5491100000001");
        h.replied("s1").await;
        h.clock.advance(Duration::from_secs(9 * 60));
        h.incoming("s1", "5491100000001");
        // Another sender's reply: once it is queued, the repeat was decided.
        h.incoming("s1", "5491100000002");
        h.replied("s1").await;
        assert_eq!(
            h.replies_to("s1", "5491100000001"),
            1,
            "within the cooldown"
        );
        assert_eq!(
            h.replies_to("s1", "5491100000002"),
            1,
            "others are answered"
        );
        h.clock.advance(Duration::from_secs(60));
        h.incoming("s1", "5491100000001");
        h.replied("s1").await;
        assert_eq!(h.replies_to("s1", "5491100000001"), 2, "after the cooldown");
    }

    #[tokio::test]
    async fn the_hourly_cap_stops_a_sessions_replies_within_the_hour() {
        let mut h = Harness::start(limits(Duration::from_secs(600), 3));
        for i in 1..=5 {
            h.incoming("s1", &format!("54911000000{i:02}"));
        }
        // Another session is not capped: once its reply is queued, all five
        // of s1 were decided.
        h.incoming("s2", "5491100000001");
        h.replied("s2").await;
        let replied = |h: &Harness| {
            (1..=6)
                .map(|i| h.replies_to("s1", &format!("54911000000{i:02}")))
                .sum::<usize>()
        };
        assert_eq!(replied(&h), 3, "three strangers answered, two not");
        h.clock.advance(Duration::from_secs(3599));
        h.incoming("s1", "5491100000006");
        h.incoming("s2", "5491100000002");
        h.replied("s2").await;
        assert_eq!(replied(&h), 3, "still within the hour");
        h.clock.advance(Duration::from_secs(1));
        h.incoming("s1", "5491100000006");
        h.replied("s1").await;
        assert_eq!(replied(&h), 4, "the hour has passed");
    }

    #[test]
    fn the_first_matching_keyword_answers_and_only_when_enabled() {
        let mut rules = AutoReplyRules {
            enabled: false,
            rules: vec![
                AutoReplyRule {
                    keyword: "Precio".into(),
                    reply: "Los precios están en la web".into(),
                    enabled: true,
                },
                AutoReplyRule {
                    keyword: "horario".into(),
                    reply: "Abrimos de 9 a 18".into(),
                    enabled: true,
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

    #[test]
    fn the_rule_that_would_answer_is_found_even_while_the_rules_are_off() {
        let rules = AutoReplyRules {
            enabled: false,
            rules: vec![
                AutoReplyRule {
                    keyword: " ".into(),
                    reply: "never".into(),
                    enabled: true,
                },
                AutoReplyRule {
                    keyword: "Turno".into(),
                    reply: "Pida turno en la web".into(),
                    enabled: true,
                },
            ],
        };
        assert_eq!(rule_for(&rules, "¿hay TURNO el lunes?"), Some(1));
        assert_eq!(
            rule_for(&rules, "hola"),
            None,
            "a blank keyword matches nothing"
        );
        assert_eq!(reply_for(&rules, "¿hay turno?"), None, "off: no reply");
    }

    #[test]
    fn a_rule_switched_off_never_answers_and_the_next_match_does() {
        let rule = |keyword: &str, reply: &str, enabled| AutoReplyRule {
            keyword: keyword.into(),
            reply: reply.into(),
            enabled,
        };
        let mut rules = AutoReplyRules {
            enabled: true,
            rules: vec![
                rule("turno", "Pida turno al 555", false),
                rule("horario", "Abrimos de 9 a 18", true),
            ],
        };
        assert_eq!(
            rule_for(&rules, "¿turno?"),
            None,
            "only the rule that is off"
        );
        assert_eq!(reply_for(&rules, "¿turno?"), None);
        assert_eq!(
            rule_for(&rules, "turno y horario"),
            Some(1),
            "skipped, the next match answers"
        );
        assert_eq!(
            reply_for(&rules, "turno y horario"),
            Some("Abrimos de 9 a 18")
        );
        rules.rules[0].enabled = true;
        assert_eq!(
            reply_for(&rules, "turno y horario"),
            Some("Pida turno al 555")
        );
    }

    #[test]
    fn a_rule_stored_before_the_switch_reads_as_on() {
        let old = r#"{"enabled":true,"rules":[{"keyword":"horario","reply":"Abrimos de 9 a 18"}]}"#;
        let rules: AutoReplyRules = serde_json::from_str(old).expect("an old record");
        assert!(rules.rules[0].enabled);
        assert_eq!(reply_for(&rules, "¿horario?"), Some("Abrimos de 9 a 18"));
        let off = r#"{"keyword":"horario","reply":"Abrimos de 9 a 18","enabled":false}"#;
        let off: AutoReplyRule = serde_json::from_str(off).expect("a new record");
        assert!(!off.enabled);
    }

    #[test]
    fn a_rule_switched_off_is_stored_switched_off() {
        let (_dir, store, shop) = shop_store();
        let off = AutoReplyRules {
            enabled: true,
            rules: vec![AutoReplyRule {
                keyword: "horario".into(),
                reply: "Abrimos de 9 a 18".into(),
                enabled: false,
            }],
        };
        assert!(store.set_auto_replies(&shop, &off).expect("rules"));
        assert_eq!(
            store.auto_replies(&shop).expect("read"),
            off,
            "the switch is stored"
        );
    }
}
