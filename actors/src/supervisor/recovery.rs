//! Recovery from local faults: a paired session whose browser crashed or
//! whose engine failed is not WhatsApp's verdict, so it is restored by
//! itself, with a backoff that doubles and a circuit breaker per session
//! (seed 001's defaults: 5 consecutive failures open it for 60 s, then one
//! half-open try). Pure; the supervisor owns one [`Breaker`] per session and
//! reads its decisions with the injected clock.

use crate::clock::Timestamp;
use crate::config::SupervisorConfig;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Restores go ahead after their backoff.
    #[default]
    Closed,
    /// Too many failures in a row: nothing is tried until `next_try_at`.
    Open,
    /// One try is under way after the breaker was open; its failure opens
    /// the breaker again, its success closes it.
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// What the session view shows of its recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RecoveryStatus {
    pub breaker: BreakerState,
    /// Local faults since the session was last READY.
    pub consecutive_failures: u32,
    /// When the next automatic restore starts, if one is due.
    pub next_try_at: Option<Timestamp>,
}

/// The breaker's settings (from `[supervisor]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryPolicy {
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub failures_to_open: u32,
    pub open_for: Duration,
}

impl RecoveryPolicy {
    pub fn from_config(c: &SupervisorConfig) -> Self {
        Self {
            backoff_base: c.restore_backoff_base,
            backoff_max: c.restore_backoff_max,
            failures_to_open: c.breaker_failures.max(1),
            open_for: c.breaker_open_for,
        }
    }
}

/// One session's breaker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Breaker {
    state: BreakerState,
    failures: u32,
    next_try: Option<Timestamp>,
}

impl Breaker {
    /// A local fault at `now` (the session dropped, or a restore failed):
    /// returns when the next try may start.
    pub fn on_fault(&mut self, policy: &RecoveryPolicy, now: Timestamp) -> Timestamp {
        self.failures = self.failures.saturating_add(1);
        let at = if self.state == BreakerState::HalfOpen || self.failures >= policy.failures_to_open
        {
            self.state = BreakerState::Open;
            now.plus(policy.open_for)
        } else {
            let doublings = (self.failures - 1).min(20);
            now.plus(
                policy
                    .backoff_base
                    .saturating_mul(1 << doublings)
                    .min(policy.backoff_max),
            )
        };
        self.next_try = Some(at);
        at
    }

    /// Whether the scheduled try may start at `now`; an open breaker turns
    /// half-open for it. A try is handed out once.
    pub fn take_due(&mut self, now: Timestamp) -> bool {
        match self.next_try {
            Some(at) if now >= at => {
                self.next_try = None;
                if self.state == BreakerState::Open {
                    self.state = BreakerState::HalfOpen;
                }
                true
            }
            _ => false,
        }
    }

    /// When the scheduled try is due.
    pub fn next_try(&self) -> Option<Timestamp> {
        self.next_try
    }

    /// Closes the breaker, forgets any scheduled try and starts the count
    /// over: the session is READY again, or was stopped by hand.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Local faults since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// `None` while nothing is wrong.
    pub fn status(&self) -> Option<RecoveryStatus> {
        (self.failures > 0 || self.state != BreakerState::Closed).then_some(RecoveryStatus {
            breaker: self.state,
            consecutive_failures: self.failures,
            next_try_at: self.next_try,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_millis(1_768_590_000_000);
    const S: Duration = Duration::from_secs(1);

    fn policy() -> RecoveryPolicy {
        RecoveryPolicy {
            backoff_base: S,
            backoff_max: 30 * S,
            failures_to_open: 5,
            open_for: 60 * S,
        }
    }

    #[test]
    fn faults_back_off_doubling_then_open_the_breaker_for_a_minute() {
        let (p, mut b) = (policy(), Breaker::default());
        assert_eq!(b.status(), None);
        let mut now = T0;
        for wait in [1, 2, 4, 8] {
            let at = b.on_fault(&p, now);
            assert_eq!(at, now.plus(wait * S));
            assert_eq!(b.state(), BreakerState::Closed);
            assert!(
                !b.take_due(at.minus(Duration::from_millis(1))),
                "not before its time"
            );
            assert!(b.take_due(at));
            assert!(!b.take_due(at), "handed out once");
            now = at;
        }
        let at = b.on_fault(&p, now);
        assert_eq!(b.state(), BreakerState::Open, "the fifth failure opens it");
        assert_eq!(at, now.plus(60 * S));
        assert_eq!(
            b.status(),
            Some(RecoveryStatus {
                breaker: BreakerState::Open,
                consecutive_failures: 5,
                next_try_at: Some(at),
            })
        );
        assert!(!b.take_due(now.plus(59 * S)));
        assert!(b.take_due(at));
        assert_eq!(b.state(), BreakerState::HalfOpen, "one half-open try");
        // The half-open try fails: open again for a minute.
        let again = b.on_fault(&p, at);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(again, at.plus(60 * S));
        assert!(b.take_due(again));
        b.reset();
        assert_eq!(b.status(), None, "READY closes it and resets the count");
        assert_eq!(b.on_fault(&p, again), again.plus(S));
    }

    #[test]
    fn the_backoff_is_capped() {
        let p = RecoveryPolicy {
            failures_to_open: 100,
            ..policy()
        };
        let mut b = Breaker::default();
        let mut last = Duration::ZERO;
        for _ in 0..50 {
            last = b.on_fault(&p, T0).since(T0);
        }
        assert_eq!(last, 30 * S);
    }
}
