//! How often auto-replies may go out: one reply per sender per session
//! within `autoreply.per_sender_cooldown`, and at most
//! `autoreply.max_per_session_per_hour` replies per session in any rolling
//! hour, so a stranger (or many) cannot make a tenant's number spam. A pure
//! policy of (state, event, now): the auto-reply task asks it before
//! queueing a reply. The state is in memory only — a restart forgets it,
//! which at worst allows one more reply per sender.

use crate::clock::Timestamp;
use crate::config::AutoReplyConfig;
use crate::ids::SessionId;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

/// Senders remembered before the expired ones are dropped.
const PRUNE_AT: usize = 10_000;

/// What the limits say about one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it (and it is counted).
    Reply,
    /// This sender was answered on this session less than the cooldown ago.
    Cooldown { until: Timestamp },
    /// The session sent its hourly allowance of replies.
    SessionCap { until: Timestamp },
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Reply => "reply",
            Verdict::Cooldown { .. } => "sender_cooldown",
            Verdict::SessionCap { .. } => "session_hourly_cap",
        }
    }
}

/// The replies recently sent, per sender and per session.
#[derive(Debug)]
pub struct ReplyLimit {
    cooldown: Duration,
    per_hour: usize,
    last_to: HashMap<(SessionId, String), Timestamp>,
    sent: HashMap<SessionId, VecDeque<Timestamp>>,
}

impl ReplyLimit {
    pub fn new(cfg: &AutoReplyConfig) -> Self {
        Self {
            cooldown: cfg.per_sender_cooldown,
            per_hour: usize::try_from(cfg.max_per_session_per_hour).unwrap_or(usize::MAX),
            last_to: HashMap::new(),
            sent: HashMap::new(),
        }
    }

    /// Decides a reply to `from` on `session` at `now`, counting it when
    /// it may go out.
    pub fn admit(&mut self, session: &SessionId, from: &str, now: Timestamp) -> Verdict {
        let key = (session.clone(), from.to_owned());
        if let Some(&last) = self.last_to.get(&key) {
            let until = last.plus(self.cooldown);
            if now < until {
                return Verdict::Cooldown { until };
            }
        }
        let window = self.sent.entry(session.clone()).or_default();
        let hour_ago = now.minus(HOUR);
        while window.front().is_some_and(|&t| t <= hour_ago) {
            window.pop_front();
        }
        if window.len() >= self.per_hour {
            let oldest = window.front().copied().unwrap_or(now);
            return Verdict::SessionCap {
                until: oldest.plus(HOUR),
            };
        }
        window.push_back(now);
        self.last_to.insert(key, now);
        if self.last_to.len() > PRUNE_AT {
            let cooldown = self.cooldown;
            self.last_to.retain(|_, &mut t| now < t.plus(cooldown));
        }
        Verdict::Reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(cooldown_secs: u64, per_hour: u32) -> ReplyLimit {
        ReplyLimit::new(&AutoReplyConfig {
            per_sender_cooldown: Duration::from_secs(cooldown_secs),
            max_per_session_per_hour: per_hour,
        })
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_millis(1_000_000 + secs * 1000)
    }

    fn s(id: &str) -> SessionId {
        SessionId::new(id).expect("id")
    }

    #[test]
    fn a_sender_is_answered_once_per_cooldown_on_each_session() {
        let mut l = limit(600, 30);
        assert_eq!(l.admit(&s("s1"), "549111", at(0)), Verdict::Reply);
        assert_eq!(
            l.admit(&s("s1"), "549111", at(599)),
            Verdict::Cooldown { until: at(600) }
        );
        assert_eq!(
            l.admit(&s("s1"), "549222", at(599)),
            Verdict::Reply,
            "another sender"
        );
        assert_eq!(
            l.admit(&s("s2"), "549111", at(599)),
            Verdict::Reply,
            "another session"
        );
        assert_eq!(
            l.admit(&s("s1"), "549111", at(600)),
            Verdict::Reply,
            "the cooldown is over"
        );
    }

    #[test]
    fn a_refused_reply_does_not_extend_the_cooldown() {
        let mut l = limit(600, 30);
        l.admit(&s("s1"), "549111", at(0));
        l.admit(&s("s1"), "549111", at(500));
        assert_eq!(l.admit(&s("s1"), "549111", at(600)), Verdict::Reply);
    }

    #[test]
    fn the_hourly_cap_holds_per_session_over_a_rolling_hour() {
        let mut l = limit(0, 3);
        for (i, from) in ["1", "2", "3"].iter().enumerate() {
            assert_eq!(l.admit(&s("s1"), from, at(i as i64 * 60)), Verdict::Reply);
        }
        assert_eq!(
            l.admit(&s("s1"), "4", at(1000)),
            Verdict::SessionCap { until: at(3600) }
        );
        assert_eq!(
            l.admit(&s("s2"), "4", at(1000)),
            Verdict::Reply,
            "another session"
        );
        assert_eq!(
            l.admit(&s("s1"), "4", at(3599)),
            Verdict::SessionCap { until: at(3600) }
        );
        assert_eq!(
            l.admit(&s("s1"), "4", at(3600)),
            Verdict::Reply,
            "the first left the hour"
        );
        assert_eq!(
            l.admit(&s("s1"), "5", at(3600)),
            Verdict::SessionCap { until: at(3660) }
        );
    }

    #[test]
    fn a_zero_cooldown_answers_every_message_within_the_cap() {
        let mut l = limit(0, 2);
        assert_eq!(l.admit(&s("s1"), "1", at(0)), Verdict::Reply);
        assert_eq!(l.admit(&s("s1"), "1", at(0)), Verdict::Reply);
        assert!(matches!(
            l.admit(&s("s1"), "1", at(0)),
            Verdict::SessionCap { .. }
        ));
    }

    #[test]
    fn expired_senders_are_forgotten() {
        let mut l = limit(60, u32::MAX);
        for i in 0..=PRUNE_AT {
            l.admit(&s("s1"), &i.to_string(), at(0));
        }
        assert_eq!(l.last_to.len(), PRUNE_AT + 1, "all within the cooldown");
        l.admit(&s("s1"), "late", at(61));
        assert_eq!(l.last_to.len(), 1, "only the one still cooling");
    }
}
