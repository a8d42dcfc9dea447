//! Login throttling: after `limit` failures within `window` for one username
//! or one client address, further attempts get 429 with `Retry-After` until
//! the oldest failure leaves the window. In memory: a restart forgives.

use centinela_actors::clock::{SharedClock, Timestamp};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

pub struct Throttle {
    clock: SharedClock,
    limit: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Timestamp>>>,
}

impl Throttle {
    pub fn new(clock: SharedClock, limit: usize, window: Duration) -> Self {
        Self {
            clock,
            limit,
            window,
            failures: Mutex::default(),
        }
    }

    /// `Some(wait)` when any of `keys` is throttled now.
    pub fn blocked(&self, keys: &[String]) -> Option<Duration> {
        let now = self.clock.now();
        let horizon = now.minus(self.window);
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter_map(|k| {
                let q = map.get_mut(k)?;
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

    pub fn fail(&self, keys: &[String]) {
        let now = self.clock.now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            map.entry(k.clone()).or_default().push_back(now);
        }
        if map.len() > 100_000 {
            let horizon = now.minus(self.window);
            map.retain(|_, q| q.back().is_some_and(|t| *t > horizon));
        }
    }

    /// A success forgives the username (not the address).
    pub fn succeed(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use centinela_actors::clock::ManualClock;
    use std::sync::Arc;

    #[test]
    fn five_failures_in_fifteen_minutes_throttle_until_the_oldest_expires() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
        let t = Throttle::new(clock.clone(), 5, Duration::from_secs(900));
        let keys = vec!["user:ana".to_owned()];
        for _ in 0..4 {
            t.fail(&keys);
            clock.advance(Duration::from_secs(60));
        }
        assert_eq!(t.blocked(&keys), None);
        t.fail(&keys);
        assert_eq!(t.blocked(&keys), Some(Duration::from_secs(900 - 240)));
        clock.advance(Duration::from_secs(900 - 240));
        assert_eq!(t.blocked(&keys), None);
    }
}
