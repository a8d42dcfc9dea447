//! A campaign's outlook: of the recipients still to go, how many are new
//! contacts, and when the last one should go out once the new-contact
//! budget, its warm-up, the pacing and the typing have had their way. Pure:
//! the sender's rules replayed over the list in order, as the runner feeds
//! it (one at a time: a deferred recipient holds up the ones behind it).

use super::budget::{ContactBudget, Verdict, DAY};
use crate::clock::Timestamp;
use std::collections::HashSet;
use std::time::Duration;

/// One recipient still to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub to: String,
    /// The session already exchanged a message with them.
    pub known: bool,
    /// The pacing's gap before it and its typing time.
    pub takes: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outlook {
    /// Distinct recipients still to go whom the number never talked to.
    pub new_contacts: usize,
    /// The rest of the recipients still to go.
    pub known_contacts: usize,
    /// When the last one should go out.
    pub eta: Timestamp,
    /// The day, counting today as 1, that `eta` falls on: how many days
    /// the budget needs to reach them all (0 with nobody left).
    pub days_needed: u32,
}

/// Replays `steps` from `start` (now, or later when the campaign's current
/// message waits), `recent` being the session's new-contact sends of the
/// last day.
pub fn outlook(
    steps: &[Step],
    budget: &ContactBudget,
    recent: &[Timestamp],
    paired_at: Option<Timestamp>,
    now: Timestamp,
    start: Timestamp,
) -> Outlook {
    let mut sent: Vec<Timestamp> = recent
        .iter()
        .copied()
        .filter(|t| t.plus(DAY) > now)
        .collect();
    let mut new_peers = HashSet::new();
    let (mut new_contacts, mut known_contacts) = (0, 0);
    let mut at = start.max(now);
    let mut last = None;
    for (i, step) in steps.iter().enumerate() {
        if i > 0 {
            at = at.plus(step.takes);
        }
        if !step.known && new_peers.insert(step.to.as_str()) {
            new_contacts += 1;
            if let Verdict::Wait(later) = budget.verdict(&sent, paired_at, at) {
                at = later;
            }
            sent.retain(|t| t.plus(DAY) > at);
            sent.push(at);
        } else {
            known_contacts += 1;
        }
        last = Some(at);
    }
    let days_needed = last.map_or(0, |eta| {
        u32::try_from(eta.since(now).as_secs() / DAY.as_secs() + 1).unwrap_or(u32::MAX)
    });
    Outlook {
        new_contacts,
        known_contacts,
        eta: last.unwrap_or(now),
        days_needed,
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

    fn t0() -> Timestamp {
        Timestamp::from_millis(1_800_000_000_000)
    }

    fn new(n: usize, takes: Duration) -> Vec<Step> {
        (0..n)
            .map(|i| Step {
                to: format!("54911{i:08}"),
                known: false,
                takes,
            })
            .collect()
    }

    #[test]
    fn five_hundred_new_recipients_take_the_budgets_arithmetic() {
        let steps = new(500, Duration::ZERO);
        let o = outlook(&steps, &BUDGET, &[], None, t0(), t0());
        assert_eq!(o.eta, BUDGET.last_of(500, &[], None, t0()));
        assert_eq!(o.eta, t0().plus(DAY * 24), "20 a day: the 500th on day 25");
        assert_eq!(
            (o.new_contacts, o.known_contacts, o.days_needed),
            (500, 0, 25)
        );
        // With 4 s a message: each day's 20 go 4 s apart from the day's
        // first, so the 500th is the 20th of day 25.
        let gap = Duration::from_secs(4);
        let o = outlook(&new(500, gap), &BUDGET, &[], None, t0(), t0());
        assert_eq!(o.eta, t0().plus(DAY * 24 + gap * 19));
        // Paired now, the warm-up week gives 77, and the 500th is on day 29.
        let o = outlook(&steps, &BUDGET, &[], Some(t0()), t0(), t0());
        assert_eq!((o.eta, o.days_needed), (t0().plus(DAY * 28), 29));
    }

    #[test]
    fn known_and_repeated_recipients_cost_no_budget_but_wait_behind_a_deferred_one() {
        let gap = Duration::from_secs(5);
        let mut steps = new(21, gap);
        steps.push(Step {
            to: steps[0].to.clone(),
            known: false,
            takes: gap,
        });
        steps.push(Step {
            to: "5491199999999".into(),
            known: true,
            takes: gap,
        });
        let o = outlook(&steps, &BUDGET, &[], None, t0(), t0());
        assert_eq!((o.new_contacts, o.known_contacts), (21, 2));
        // The 21st new one waits a day after the first; the two behind it
        // follow at the pace.
        assert_eq!(o.eta, t0().plus(DAY + gap * 2));
        assert_eq!(o.days_needed, 2);
        let none = outlook(&[], &BUDGET, &[], None, t0(), t0());
        assert_eq!((none.eta, none.days_needed), (t0(), 0));
    }

    #[test]
    fn the_days_earlier_sends_and_a_waiting_message_push_the_eta() {
        let hour = Duration::from_secs(3600);
        let recent: Vec<Timestamp> = (0..20).map(|_| t0().minus(hour)).collect();
        let o = outlook(&new(1, Duration::ZERO), &BUDGET, &recent, None, t0(), t0());
        assert_eq!(o.eta, t0().plus(DAY - hour), "the budget of today is spent");
        let later = t0().plus(hour * 3);
        let o = outlook(&new(1, Duration::ZERO), &BUDGET, &[], None, t0(), later);
        assert_eq!(o.eta, later);
    }
}
