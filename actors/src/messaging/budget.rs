//! The new-contact budget: how many messages a session may send, in any
//! rolling 24 hours, to people its number has never exchanged a message
//! with. Users lose numbers after ~17–20 first messages to strangers
//! (WebWhatsapp-Wrapper #416, yowsup #63), sometimes after 5 (go-whatsapp
//! #359), and lately get a 24 h restriction on new chats while replies
//! still work (Baileys #2131, where users also advise warming new numbers
//! up). So first messages are rationed and replies are not, and a number
//! paired recently gets a smaller budget that ramps up day by day.
//!
//! Pure: given the times of this session's recent new-contact sends, when
//! it was paired and the time, when may the next new-contact message go
//! out. Where the times are kept, and which recipient is new, is the
//! store's and the sender's business.

use crate::clock::Timestamp;
use std::time::Duration;

/// The rolling window of the budget.
pub const DAY: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactBudget {
    /// New contacts in any rolling 24 h once warmed up.
    pub per_day: u32,
    /// How many days after pairing the budget ramps up.
    pub warmup_days: u32,
    /// The budget of the first day after pairing.
    pub warmup_start: u32,
}

/// What the budget says of the next new-contact message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Now,
    /// Over budget: the earliest moment it is within it again.
    Wait(Timestamp),
}

impl ContactBudget {
    /// The budget at `now` for a number paired at `paired_at` (unknown:
    /// the full budget). Day 1 is the first 24 h after pairing; over
    /// `warmup_days` days it rises in equal steps from `warmup_start`
    /// towards `per_day`, which it reaches on the day after.
    pub fn allowance(&self, paired_at: Option<Timestamp>, now: Timestamp) -> u32 {
        let full = self.per_day;
        let start = self.warmup_start.min(full);
        let Some(paired) = paired_at else {
            return full;
        };
        let day = now.since(paired).as_secs() / DAY.as_secs(); // 0 on day 1
        if self.warmup_days == 0 || day >= u64::from(self.warmup_days) {
            return full;
        }
        let step = u64::from(full - start) * day / u64::from(self.warmup_days);
        start + u32::try_from(step).unwrap_or(0)
    }

    /// Whether a new-contact message may go out at `now`, `recent` being
    /// the times of this session's new-contact sends (any order; those over
    /// a day old are ignored).
    pub fn verdict(
        &self,
        recent: &[Timestamp],
        paired_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Verdict {
        let mut times: Vec<Timestamp> = recent
            .iter()
            .copied()
            .filter(|t| t.plus(DAY) > now)
            .collect();
        times.sort();
        let fits = |at: Timestamp| {
            let used = times
                .iter()
                .filter(|t| t.plus(DAY) > at && **t <= at)
                .count();
            used < self.allowance(paired_at, at) as usize
        };
        if fits(now) {
            return Verdict::Now;
        }
        // The count only falls when a send turns a day old, and the
        // allowance only rises at a day boundary after pairing: the first
        // of those moments at which it fits.
        let mut moments: Vec<Timestamp> = times.iter().map(|t| t.plus(DAY)).collect();
        if let Some(paired) = paired_at {
            moments.extend(
                (1..=self.warmup_days)
                    .map(|d| paired.plus(DAY * d))
                    .filter(|m| *m > now),
            );
        }
        moments.sort();
        let at = moments.into_iter().find(|m| fits(*m)).expect(
            "once every recent send is a day old the count is 0, below any budget of 1 or more",
        );
        Verdict::Wait(at)
    }

    /// When the last of `count` new contacts could go out, each as early as
    /// the budget allows, after `recent` (the campaign ETA's arithmetic;
    /// the per-send pacing is seconds and is left out).
    pub fn last_of(
        &self,
        count: usize,
        recent: &[Timestamp],
        paired_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Timestamp {
        let mut sent: Vec<Timestamp> = recent
            .iter()
            .copied()
            .filter(|t| t.plus(DAY) > now)
            .collect();
        let mut at = now;
        for _ in 0..count {
            if let Verdict::Wait(later) = self.verdict(&sent, paired_at, at) {
                at = later;
            }
            sent.retain(|t| t.plus(DAY) > at);
            sent.push(at);
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: ContactBudget = ContactBudget {
        per_day: 20,
        warmup_days: 7,
        warmup_start: 5,
    };
    const HOUR: Duration = Duration::from_secs(3600);

    fn t0() -> Timestamp {
        Timestamp::from_millis(1_800_000_000_000)
    }

    #[test]
    fn the_21st_new_contact_in_a_day_waits_until_the_first_turns_a_day_old() {
        let sends: Vec<Timestamp> = (0..20).map(|i| t0().plus(HOUR * i / 4)).collect();
        let now = t0().plus(HOUR * 6);
        assert_eq!(BUDGET.verdict(&sends[..19], None, now), Verdict::Now);
        assert_eq!(
            BUDGET.verdict(&sends, None, now),
            Verdict::Wait(t0().plus(DAY))
        );
        assert_eq!(BUDGET.verdict(&sends, None, t0().plus(DAY)), Verdict::Now);
    }

    #[test]
    fn warm_up_ramps_from_the_start_budget_to_the_full_one_over_seven_days() {
        let paired = Some(t0());
        let by_day: Vec<u32> = (0..9)
            .map(|d| BUDGET.allowance(paired, t0().plus(DAY * d + HOUR)))
            .collect();
        assert_eq!(by_day, vec![5, 7, 9, 11, 13, 15, 17, 20, 20]);
        assert_eq!(
            BUDGET.allowance(None, t0()),
            20,
            "an unknown pairing time is not warmed up"
        );
    }

    #[test]
    fn a_warming_number_over_its_day_budget_waits_for_the_next_days_larger_one() {
        let paired = Some(t0());
        let sends: Vec<Timestamp> = (0..5).map(|i| t0().plus(HOUR * i)).collect();
        let now = t0().plus(HOUR * 10);
        // Day 2 allows 7 in the rolling window, and all 5 are still in it.
        assert_eq!(
            BUDGET.verdict(&sends, paired, now),
            Verdict::Wait(t0().plus(DAY))
        );
    }

    #[test]
    fn five_hundred_new_contacts_take_the_budgets_arithmetic() {
        // Warmed up: 20 a day, so the 500th goes out at the start of day 25.
        let last = BUDGET.last_of(500, &[], None, t0());
        assert_eq!(last, t0().plus(DAY * 24));
        // Paired now: 5+7+9+11+13+15+17 = 77 in the first week, then 20 a day:
        // 423 more take 21 full days and the 500th goes on day 29 (index 28).
        let last = BUDGET.last_of(500, &[], Some(t0()), t0());
        assert_eq!(last, t0().plus(DAY * 28));
    }
}
