//! The sender's own limits for one Cloud API number, so Meta rarely has to
//! say no: at most `per_second` messages in any second (Meta's throughput,
//! 80 msg/s by default; over it: 130429) and one message per
//! `pair_interval` to the same recipient (Meta's pair rate, ~1 per 6 s;
//! over it: 131056). And the backoff after Meta said no anyway. A pure
//! structure over timestamps: the driver asks it with the clock's `now`.

use centinela_actors::clock::Timestamp;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Meta's throughput error, as the limiter answers it too.
pub const THROUGHPUT: u32 = 130_429;
/// Meta's pair-rate error, as the limiter answers it too.
pub const PAIR_RATE: u32 = 131_056;
/// The longest backoff after repeated refusals.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Recipients remembered (the oldest forgotten first).
const MAX_RECIPIENTS: usize = 10_000;

#[derive(Debug)]
pub struct Limits {
    per_second: usize,
    pair_interval: Duration,
    recent: VecDeque<Timestamp>,
    last_to: HashMap<String, Timestamp>,
    /// Meta's refusals in a row: per number (130429) and per recipient
    /// (131056); a success clears them.
    number_strikes: u32,
    pair_strikes: HashMap<String, u32>,
}

impl Limits {
    pub fn new(per_second: u32, pair_interval: Duration) -> Self {
        Self {
            per_second: per_second.max(1) as usize,
            pair_interval,
            recent: VecDeque::new(),
            last_to: HashMap::new(),
            number_strikes: 0,
            pair_strikes: HashMap::new(),
        }
    }

    /// Whether a message to `to` may go at `now`; if so it is counted.
    /// Otherwise the Meta code it would earn and how long to wait.
    pub fn take(&mut self, to: &str, now: Timestamp) -> Result<(), (u32, Duration)> {
        let second = Duration::from_secs(1);
        while self.recent.front().is_some_and(|t| now.since(*t) >= second) {
            self.recent.pop_front();
        }
        if let Some(last) = self.last_to.get(to) {
            let gone = now.since(*last);
            if gone < self.pair_interval {
                return Err((PAIR_RATE, self.pair_interval - gone));
            }
        }
        if self.recent.len() >= self.per_second {
            let oldest = *self.recent.front().expect("full, so not empty");
            return Err((THROUGHPUT, second - now.since(oldest)));
        }
        self.recent.push_back(now);
        if self.last_to.len() >= MAX_RECIPIENTS {
            self.last_to
                .retain(|_, t| now.since(*t) < self.pair_interval);
        }
        self.last_to.insert(to.to_owned(), now);
        Ok(())
    }

    /// Meta accepted a message to `to`: the refusals in a row are over.
    pub fn accepted(&mut self, to: &str) {
        self.number_strikes = 0;
        self.pair_strikes.remove(to);
    }

    /// Meta refused a message to `to` with `code` (130429 or 131056): how
    /// long before it is tried again, doubling with each refusal in a row
    /// (1 s for the number's throughput, the pair interval for the
    /// recipient), capped at five minutes.
    pub fn refused(&mut self, code: u32, to: &str) -> Duration {
        let (base, strikes) = match code {
            PAIR_RATE => {
                let n = self.pair_strikes.entry(to.to_owned()).or_insert(0);
                *n += 1;
                (self.pair_interval.max(Duration::from_secs(1)), *n)
            }
            _ => {
                self.number_strikes += 1;
                (Duration::from_secs(1), self.number_strikes)
            }
        };
        base.saturating_mul(1u32 << (strikes - 1).min(16))
            .min(MAX_BACKOFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn a_second_message_to_one_recipient_waits_the_pair_interval() {
        let mut l = Limits::new(80, Duration::from_secs(6));
        assert!(l.take("1", at(0)).is_ok());
        assert_eq!(
            l.take("1", at(1_000)),
            Err((PAIR_RATE, Duration::from_secs(5)))
        );
        assert!(l.take("2", at(1_000)).is_ok(), "another recipient goes");
        assert!(l.take("1", at(6_000)).is_ok());
    }

    #[test]
    fn the_number_sends_at_most_per_second_messages_in_any_second() {
        let mut l = Limits::new(3, Duration::ZERO);
        for i in 0..3 {
            assert!(l.take(&format!("{i}"), at(100 * i)).is_ok());
        }
        assert_eq!(
            l.take("9", at(500)),
            Err((THROUGHPUT, Duration::from_millis(500)))
        );
        assert!(l.take("9", at(1_000)).is_ok(), "the first left the window");
    }

    #[test]
    fn backoff_doubles_per_refusal_and_a_success_resets_it() {
        let mut l = Limits::new(80, Duration::from_secs(6));
        assert_eq!(l.refused(THROUGHPUT, "1"), Duration::from_secs(1));
        assert_eq!(l.refused(THROUGHPUT, "1"), Duration::from_secs(2));
        assert_eq!(l.refused(PAIR_RATE, "1"), Duration::from_secs(6));
        assert_eq!(l.refused(PAIR_RATE, "1"), Duration::from_secs(12));
        assert_eq!(l.refused(PAIR_RATE, "2"), Duration::from_secs(6));
        l.accepted("1");
        assert_eq!(l.refused(THROUGHPUT, "1"), Duration::from_secs(1));
        assert_eq!(l.refused(PAIR_RATE, "1"), Duration::from_secs(6));
        for _ in 0..20 {
            l.refused(THROUGHPUT, "1");
        }
        assert_eq!(l.refused(THROUGHPUT, "1"), MAX_BACKOFF);
    }
}
