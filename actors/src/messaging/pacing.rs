//! Human pacing: a random delay between two sends of a session, and a cap
//! per rolling minute. Pure: given the recent send times and a random draw,
//! when may the next send happen.

use crate::clock::Timestamp;
use rand::Rng;
use std::collections::VecDeque;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub per_minute: u32,
}

const MINUTE: Duration = Duration::from_secs(60);

impl Pacing {
    /// The earliest moment for the next send, `recent` being this session's
    /// send times (oldest first; pruned here to the last minute).
    pub fn next_send(
        &self,
        recent: &mut VecDeque<Timestamp>,
        now: Timestamp,
        rng: &mut impl Rng,
    ) -> Timestamp {
        while recent.front().is_some_and(|t| *t <= now.minus(MINUTE)) {
            recent.pop_front();
        }
        let delay = if self.max_delay > self.min_delay {
            rng.random_range(self.min_delay..=self.max_delay)
        } else {
            self.min_delay
        };
        let paced = recent
            .back()
            .map_or(now, |last| (*last).plus(delay).max(now));
        let capped = if recent.len() >= self.per_minute.max(1) as usize {
            recent[recent.len() - self.per_minute.max(1) as usize].plus(MINUTE)
        } else {
            now
        };
        paced.max(capped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn sends_are_spaced_and_capped_per_minute() {
        let p = Pacing {
            min_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(5),
            per_minute: 3,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut recent = VecDeque::new();
        let mut now = Timestamp::from_millis(0);
        let mut sends = Vec::new();
        for _ in 0..7 {
            let at = p.next_send(&mut recent, now, &mut rng);
            assert!(at >= now);
            now = at;
            recent.push_back(at);
            sends.push(at);
        }
        for w in sends.windows(2) {
            let gap = w[1].since(w[0]);
            assert!(gap >= Duration::from_secs(2), "{gap:?}");
        }
        for w in sends.windows(4) {
            assert!(
                w[3].since(w[0]) >= MINUTE,
                "never more than 3 in a rolling minute"
            );
        }
    }

    #[test]
    fn the_first_send_may_go_at_once() {
        let p = Pacing {
            min_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(2),
            per_minute: 10,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let now = Timestamp::from_millis(5_000);
        assert_eq!(p.next_send(&mut VecDeque::new(), now, &mut rng), now);
    }
}
