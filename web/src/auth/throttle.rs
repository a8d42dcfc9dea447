//! Login throttling: after `limit` attempts within `window` that were not
//! taken back by a right password, for one username or one client address,
//! further attempts get 429 with `Retry-After` until the oldest leaves the
//! window. An attempt is counted before its password is checked, in the
//! same step as the check, so parallel guesses cannot all pass while the
//! first ones are still hashing. In memory: a restart forgives.

use centinela_actors::clock::{SharedClock, Timestamp};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

type Counts = HashMap<String, VecDeque<Timestamp>>;

pub struct Throttle {
    clock: SharedClock,
    limit: usize,
    window: Duration,
    attempts: Mutex<Counts>,
}

/// An attempt already counted against its keys: a failure unless
/// [`Attempt::succeeded`] takes it back.
#[must_use]
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    keys: Vec<String>,
    at: Timestamp,
}

impl Throttle {
    pub fn new(clock: SharedClock, limit: usize, window: Duration) -> Self {
        Self {
            clock,
            limit,
            window,
            attempts: Mutex::default(),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.attempts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long until every key is below the limit again, if one is not.
    fn wait(&self, counts: &mut Counts, keys: &[String], now: Timestamp) -> Option<Duration> {
        let horizon = now.minus(self.window);
        keys.iter()
            .filter_map(|k| {
                let q = counts.get_mut(k)?;
                while q.front().is_some_and(|t| *t <= horizon) {
                    q.pop_front();
                }
                (q.len() >= self.limit).then(|| {
                    q.front()
                        .map_or(Duration::ZERO, |t| t.plus(self.window).since(now))
                })
            })
            .max()
    }

    /// `Some(wait)` when any of `keys` is throttled now (what the tests
    /// read; requests go through [`Throttle::attempt`]).
    #[cfg(test)]
    fn blocked(&self, keys: &[String]) -> Option<Duration> {
        let now = self.clock.now();
        self.wait(&mut self.counts(), keys, now)
    }

    /// Counts an attempt against every key, or refuses it (`Err(wait)`)
    /// when one of them is throttled — one step under one lock.
    pub fn attempt(&self, keys: &[String]) -> Result<Attempt<'_>, Duration> {
        let now = self.clock.now();
        let mut counts = self.counts();
        if let Some(wait) = self.wait(&mut counts, keys, now) {
            return Err(wait);
        }
        for k in keys {
            counts.entry(k.clone()).or_default().push_back(now);
        }
        if counts.len() > 100_000 {
            let horizon = now.minus(self.window);
            counts.retain(|_, q| q.back().is_some_and(|t| *t > horizon));
        }
        Ok(Attempt {
            throttle: self,
            keys: keys.to_vec(),
            at: now,
        })
    }
}

impl Attempt<'_> {
    /// The password was right: the attempt is taken back from every key,
    /// and `forgiven` (the username) is forgiven its earlier failures too
    /// (an address is not).
    pub fn succeeded(self, forgiven: &str) {
        let mut counts = self.throttle.counts();
        for k in &self.keys {
            if k == forgiven {
                counts.remove(k);
            } else if let Some(q) = counts.get_mut(k) {
                if let Some(i) = q.iter().rposition(|t| *t == self.at) {
                    q.remove(i);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use centinela_actors::clock::ManualClock;
    use std::sync::Arc;

    fn keys() -> Vec<String> {
        vec!["user:ana".to_owned(), "ip:10.0.0.1".to_owned()]
    }

    #[test]
    fn five_attempts_in_fifteen_minutes_throttle_until_the_oldest_expires() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
        let t = Throttle::new(clock.clone(), 5, Duration::from_secs(900));
        for _ in 0..4 {
            drop(t.attempt(&keys()).expect("not throttled yet"));
            clock.advance(Duration::from_secs(60));
        }
        assert_eq!(t.blocked(&keys()), None);
        drop(t.attempt(&keys()).expect("the fifth is still let through"));
        assert_eq!(t.blocked(&keys()), Some(Duration::from_secs(900 - 240)));
        assert!(t.attempt(&keys()).is_err(), "the sixth is refused");
        clock.advance(Duration::from_secs(900 - 240));
        assert_eq!(t.blocked(&keys()), None);
    }

    /// The check and the count are one step: attempts still being checked
    /// count, so a burst gets `limit` tries, not one per request.
    #[test]
    fn attempts_in_flight_count_before_their_outcome() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
        let t = Throttle::new(clock, 5, Duration::from_secs(900));
        let in_flight: Vec<_> = (0..200).filter_map(|_| t.attempt(&keys()).ok()).collect();
        assert_eq!(in_flight.len(), 5);
    }

    #[test]
    fn a_right_password_takes_its_attempt_back_and_forgives_the_username() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
        let t = Throttle::new(clock.clone(), 2, Duration::from_secs(900));
        drop(t.attempt(&keys()).expect("first"));
        clock.advance(Duration::from_secs(1));
        t.attempt(&keys()).expect("second").succeeded("user:ana");
        assert_eq!(t.blocked(&["user:ana".to_owned()]), None, "forgiven");
        // The address keeps the one failure, not the success.
        drop(t.attempt(&["ip:10.0.0.1".to_owned()]).expect("one left"));
        assert!(t.blocked(&["ip:10.0.0.1".to_owned()]).is_some());
    }
}
