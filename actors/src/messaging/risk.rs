//! The ban-risk view of one session: what its number did over the last
//! 24 hours and 7 days, and a level from documented thresholds.
//!
//! What gets numbers banned once they are connected is sending to people
//! who never wrote to them, at volume, and being ignored or reported by
//! them (WebWhatsapp-Wrapper #416, yowsup #63, go-whatsapp #359, Baileys
//! #2131). So the signals are the new-contact sends against the budget's
//! pace, how many of those new contacts wrote back, and how many numbers of
//! a list are not on WhatsApp at all (a bought or stale list). Pure: the
//! counts come in, the level goes out; [`super::risk_watch`] reads the
//! store and acts on it.

use super::budget::ContactBudget;
use crate::clock::Timestamp;
use serde::{Deserialize, Serialize};

/// The thresholds (`[risk]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RiskPolicy {
    /// Rates are judged only over at least this many messages (new
    /// contacts for the reply rate, sends for the not-on-WhatsApp share).
    pub min_sample: u32,
    /// Of the new contacts written to in 7 days, the share that wrote back
    /// below which risk is `high`.
    pub high_reply_rate: f64,
    /// … and below which it is `elevated`.
    pub elevated_reply_rate: f64,
    /// Of the last 24 h's sends, the share to numbers not on WhatsApp at
    /// or above which risk is `high`.
    pub high_not_on_whatsapp: f64,
    /// … and at or above which it is `elevated`.
    pub elevated_not_on_whatsapp: f64,
    /// A session whose risk is `high` pauses its running campaigns (and
    /// none can be started or resumed until it falls).
    pub pause_campaigns: bool,
}

impl Default for RiskPolicy {
    fn default() -> Self {
        Self {
            min_sample: 10,
            high_reply_rate: 0.10,
            elevated_reply_rate: 0.25,
            high_not_on_whatsapp: 0.20,
            elevated_not_on_whatsapp: 0.10,
            pause_campaigns: true,
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    Low,
    Elevated,
    High,
}

impl RiskLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::Elevated => "elevated",
            RiskLevel::High => "high",
        }
    }

    /// 0, 1, 2: the `/metrics` gauge.
    pub fn rank(self) -> u8 {
        self as u8
    }
}

/// Why the level is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RiskReason {
    /// More new contacts in 24 h than the budget allows (`high`): a budget
    /// lowered, or sends that went around it.
    OverNewContactPace,
    /// The day's new-contact budget is used up (`elevated`): the session
    /// sends to strangers at the most the budget allows.
    NewContactBudgetSpent,
    /// Few of the new contacts of the last 7 days wrote back.
    LowNewContactReplyRate,
    /// Many of the last 24 h's sends went to numbers not on WhatsApp.
    NotOnWhatsapp,
}

impl RiskReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RiskReason::OverNewContactPace => "over_new_contact_pace",
            RiskReason::NewContactBudgetSpent => "new_contact_budget_spent",
            RiskReason::LowNewContactReplyRate => "low_new_contact_reply_rate",
            RiskReason::NotOnWhatsapp => "not_on_whatsapp",
        }
    }
}

/// One span of a session's activity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Window {
    /// Messages that reached `sent`.
    pub sent: u64,
    /// Of them, first messages to numbers the session never talked to.
    pub new_contacts: u64,
    /// Of those new contacts, how many wrote back.
    pub new_contacts_replied: u64,
    /// Messages received.
    pub replies_received: u64,
    /// `replies_received / sent`; absent with nothing sent.
    pub reply_rate: Option<f64>,
    /// `new_contacts_replied / new_contacts`; absent with no new contact.
    pub new_contact_reply_rate: Option<f64>,
    /// Messages that failed, whatever the cause.
    pub failed: u64,
    /// Of `failed`, those to numbers not on WhatsApp.
    pub not_on_whatsapp: u64,
    /// Messages that had to wait for the new-contact budget.
    pub deferred: u64,
}

impl Window {
    /// The window's rates from its counts.
    pub fn with_rates(mut self) -> Self {
        let rate = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
        self.reply_rate = rate(self.replies_received, self.sent);
        self.new_contact_reply_rate = rate(self.new_contacts_replied, self.new_contacts);
        self
    }
}

/// The new-contact budget as the session stands now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BudgetStatus {
    /// New contacts allowed in the rolling 24 h today (smaller while
    /// warming up).
    pub allowance: u32,
    /// New contacts written to in the last 24 h.
    pub used: u32,
    pub remaining: u32,
    /// While the number warms up: its day since pairing (1 is the first).
    pub warmup_day: Option<u32>,
    pub warmup_days: u32,
    /// With nothing left: when the next new contact may be written to.
    pub next_at: Option<Timestamp>,
}

impl BudgetStatus {
    pub fn of(
        budget: &ContactBudget,
        recent: &[Timestamp],
        paired_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Self {
        let allowance = budget.allowance(paired_at, now);
        let used = recent
            .iter()
            .filter(|t| t.plus(super::budget::DAY) > now && **t <= now)
            .count();
        let used = u32::try_from(used).unwrap_or(u32::MAX);
        let day = paired_at.map(|p| now.since(p).as_secs() / super::budget::DAY.as_secs());
        let warmup_day = day
            .filter(|d| *d < u64::from(budget.warmup_days))
            .map(|d| d as u32 + 1);
        let next_at = match budget.verdict(recent, paired_at, now) {
            super::budget::Verdict::Now => None,
            super::budget::Verdict::Wait(at) => Some(at),
        };
        BudgetStatus {
            allowance,
            used,
            remaining: allowance.saturating_sub(used),
            warmup_day,
            warmup_days: budget.warmup_days,
            next_at,
        }
    }
}

/// The level and every reason that raised it, highest first.
pub fn assess(
    day: &Window,
    week: &Window,
    allowance: u32,
    policy: &RiskPolicy,
) -> (RiskLevel, Vec<(RiskLevel, RiskReason)>) {
    let mut found = Vec::new();
    if day.new_contacts > u64::from(allowance) {
        found.push((RiskLevel::High, RiskReason::OverNewContactPace));
    } else if allowance > 0 && day.new_contacts >= u64::from(allowance) {
        found.push((RiskLevel::Elevated, RiskReason::NewContactBudgetSpent));
    }
    let sample = u64::from(policy.min_sample.max(1));
    if week.new_contacts >= sample {
        let rate = week.new_contacts_replied as f64 / week.new_contacts as f64;
        if rate < policy.high_reply_rate {
            found.push((RiskLevel::High, RiskReason::LowNewContactReplyRate));
        } else if rate < policy.elevated_reply_rate {
            found.push((RiskLevel::Elevated, RiskReason::LowNewContactReplyRate));
        }
    }
    let attempts = day.sent + day.failed;
    if attempts >= sample {
        let share = day.not_on_whatsapp as f64 / attempts as f64;
        if share >= policy.high_not_on_whatsapp {
            found.push((RiskLevel::High, RiskReason::NotOnWhatsapp));
        } else if share >= policy.elevated_not_on_whatsapp {
            found.push((RiskLevel::Elevated, RiskReason::NotOnWhatsapp));
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    let level = found.first().map_or(RiskLevel::Low, |f| f.0);
    (level, found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn window(sent: u64, new: u64, replied: u64, failed: u64, not_on: u64) -> Window {
        Window {
            sent,
            new_contacts: new,
            new_contacts_replied: replied,
            failed,
            not_on_whatsapp: not_on,
            ..Window::default()
        }
        .with_rates()
    }

    fn level(day: Window, week: Window, allowance: u32) -> (RiskLevel, Vec<RiskReason>) {
        let (level, found) = assess(&day, &week, allowance, &RiskPolicy::default());
        (level, found.into_iter().map(|f| f.1).collect())
    }

    #[test]
    fn a_quiet_session_and_one_whose_new_contacts_answer_are_low() {
        assert_eq!(
            level(Window::default(), Window::default(), 20),
            (RiskLevel::Low, vec![])
        );
        let w = window(30, 12, 6, 0, 0);
        assert_eq!(level(w, w, 20), (RiskLevel::Low, vec![]));
    }

    #[test]
    fn the_reply_rate_of_new_contacts_rises_risk_to_elevated_under_25_and_high_under_10_percent() {
        let day = Window::default();
        assert_eq!(
            level(day, window(20, 20, 4, 0, 0), 20),
            (
                RiskLevel::Elevated,
                vec![RiskReason::LowNewContactReplyRate]
            ),
            "20 %"
        );
        assert_eq!(
            level(day, window(20, 20, 1, 0, 0), 20),
            (RiskLevel::High, vec![RiskReason::LowNewContactReplyRate]),
            "5 %"
        );
        assert_eq!(
            level(day, window(9, 9, 0, 0, 0), 20).0,
            RiskLevel::Low,
            "under the sample of 10 nothing is judged"
        );
    }

    #[test]
    fn the_budget_spent_is_elevated_and_beyond_it_high() {
        let w = window(20, 20, 10, 0, 0);
        assert_eq!(
            level(w, w, 20),
            (RiskLevel::Elevated, vec![RiskReason::NewContactBudgetSpent])
        );
        let w = window(21, 21, 10, 0, 0);
        assert_eq!(
            level(w, w, 20),
            (RiskLevel::High, vec![RiskReason::OverNewContactPace])
        );
    }

    #[test]
    fn numbers_not_on_whatsapp_over_a_fifth_of_the_days_sends_are_high() {
        let day = window(8, 0, 0, 2, 2);
        assert_eq!(
            level(day, day, 20),
            (RiskLevel::High, vec![RiskReason::NotOnWhatsapp])
        );
        let day = window(9, 0, 0, 1, 1);
        assert_eq!(
            level(day, day, 20),
            (RiskLevel::Elevated, vec![RiskReason::NotOnWhatsapp])
        );
    }

    #[test]
    fn the_budget_status_counts_the_day_and_says_when_the_next_slot_opens() {
        let budget = ContactBudget {
            per_day: 20,
            warmup_days: 7,
            warmup_start: 5,
        };
        let t0 = Timestamp::from_millis(1_800_000_000_000);
        let hour = Duration::from_secs(3600);
        let sends: Vec<Timestamp> = (0..5).map(|i| t0.plus(hour * i)).collect();
        let now = t0.plus(hour * 6);
        let s = BudgetStatus::of(&budget, &sends, Some(t0), now);
        assert_eq!(
            s,
            BudgetStatus {
                allowance: 5,
                used: 5,
                remaining: 0,
                warmup_day: Some(1),
                warmup_days: 7,
                next_at: Some(t0.plus(super::super::budget::DAY)),
            }
        );
        let s = BudgetStatus::of(&budget, &sends, None, now);
        assert_eq!(
            (s.allowance, s.remaining, s.warmup_day, s.next_at),
            (20, 15, None, None)
        );
    }
}
