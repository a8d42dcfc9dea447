//! The restart budget of one session actor: at most `budget` restarts within
//! a sliding `window`, each after a backoff that doubles. Pure; the
//! supervisor owns one per session.

use crate::clock::Timestamp;
use std::collections::VecDeque;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RestartBudget {
    budget: u32,
    window: Duration,
    backoff: Duration,
    recent: VecDeque<Timestamp>,
}

impl RestartBudget {
    pub fn new(budget: u32, window: Duration, backoff: Duration) -> Self {
        Self {
            budget,
            window,
            backoff,
            recent: VecDeque::new(),
        }
    }

    /// Records a crash at `now`; returns the delay before the restart, or
    /// `None` when the budget within the window is spent.
    pub fn on_crash(&mut self, now: Timestamp) -> Option<Duration> {
        let horizon = now.minus(self.window);
        while self.recent.front().is_some_and(|t| *t <= horizon) {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.budget as usize {
            return None;
        }
        self.recent.push_back(now);
        let doublings = u32::try_from(self.recent.len() - 1)
            .unwrap_or(u32::MAX)
            .min(16);
        Some(self.backoff.saturating_mul(1 << doublings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_then_stop_when_the_budget_is_spent() {
        let mut b = RestartBudget::new(3, Duration::from_secs(600), Duration::from_secs(1));
        let t = Timestamp::from_millis(0);
        assert_eq!(b.on_crash(t), Some(Duration::from_secs(1)));
        assert_eq!(b.on_crash(t), Some(Duration::from_secs(2)));
        assert_eq!(b.on_crash(t), Some(Duration::from_secs(4)));
        assert_eq!(b.on_crash(t), None);
    }

    #[test]
    fn the_window_slides() {
        let mut b = RestartBudget::new(1, Duration::from_secs(600), Duration::ZERO);
        let t = Timestamp::from_millis(0);
        assert_eq!(b.on_crash(t), Some(Duration::ZERO));
        assert_eq!(b.on_crash(t.plus(Duration::from_secs(599))), None);
        assert_eq!(
            b.on_crash(t.plus(Duration::from_secs(601))),
            Some(Duration::ZERO)
        );
    }
}
