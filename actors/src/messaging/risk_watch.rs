//! The ban-risk watch: reads a session's activity and new contacts from
//! the store and turns them into its risk report ([`super::risk`]), its
//! new-contact budget as it stands, and a campaign's outlook
//! ([`super::outlook`]). Its task follows the bus: when a session's
//! messages move, its risk is assessed again; a change of level is
//! published (`session.risk`), and a session that reaches `high` pauses
//! its running campaigns (`risk.pause_campaigns`) with that reason.

use super::budget::{ContactBudget, DAY};
use super::outlook::{outlook, Outlook, Step};
use super::risk::{assess, BudgetStatus, RiskLevel, RiskPolicy, RiskReason, Window};
use super::template::render;
use super::{Campaigns, Pacing, Typing};
use crate::bus::{Bus, BusEvent, RiskEvent};
use crate::clock::{SharedClock, Timestamp};
use crate::ids::{SessionId, TenantId};
use crate::store::{
    ActivityRepo, CampaignRecord, ContactRepo, SessionRecord, SessionRepo, StoreError,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// How often every watched session is assessed again, events or not (the
/// windows slide).
const SWEEP: Duration = Duration::from_secs(300);

/// Everything the watch reads.
pub trait RiskStore: ContactRepo + ActivityRepo + SessionRepo {}

impl<T: ContactRepo + ActivityRepo + SessionRepo> RiskStore for T {}

/// A session's ban-risk report.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RiskReport {
    pub level: RiskLevel,
    /// What raised the level, highest first.
    pub reasons: Vec<RiskReason>,
    /// The last 24 h.
    pub day: Window,
    /// The last 7 days.
    pub week: Window,
    pub budget: BudgetStatus,
    pub at: Timestamp,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct RiskWatch {
    store: Arc<dyn RiskStore>,
    clock: SharedClock,
    budget: ContactBudget,
    policy: RiskPolicy,
    pacing: Pacing,
    typing: Typing,
    /// The last level seen of each session assessed, with its tenant.
    levels: Arc<Mutex<BTreeMap<SessionId, (TenantId, RiskLevel)>>>,
}

impl RiskWatch {
    pub fn new(
        store: Arc<dyn RiskStore>,
        clock: SharedClock,
        config: &crate::config::Config,
    ) -> Self {
        Self {
            store,
            clock,
            budget: config.messaging.contact_budget(),
            policy: config.risk,
            pacing: config.messaging.pacing(),
            typing: config.messaging.typing(),
            levels: Arc::default(),
        }
    }

    pub fn policy(&self) -> &RiskPolicy {
        &self.policy
    }

    /// The report of `session` now; `None` without its record.
    pub fn report(&self, session: &SessionId) -> Result<Option<RiskReport>, StoreError> {
        let Some(record) = self.store.get_session(session)? else {
            return Ok(None);
        };
        Ok(Some(self.report_of(&record)?))
    }

    /// `session`'s new-contact budget now, without the rest of its report;
    /// `None` without its record.
    pub fn budget(&self, session: &SessionId) -> Result<Option<BudgetStatus>, StoreError> {
        let Some(record) = self.store.get_session(session)? else {
            return Ok(None);
        };
        let now = self.clock.now();
        let recent = self.store.new_contact_sends(session, now.minus(DAY))?;
        Ok(Some(BudgetStatus::of(
            &self.budget,
            &recent,
            record.paired_at,
            now,
        )))
    }

    pub fn report_of(&self, record: &SessionRecord) -> Result<RiskReport, StoreError> {
        let now = self.clock.now();
        let window = |since: Timestamp| -> Result<(Window, Vec<Timestamp>), StoreError> {
            let counts = self.store.activity(&record.id, since)?;
            let new = self.store.new_contacts(&record.id, since)?;
            let w = Window {
                sent: counts.sent,
                new_contacts: new.sends.len() as u64,
                new_contacts_replied: new.replied as u64,
                replies_received: counts.received,
                failed: counts.failed,
                not_on_whatsapp: counts.not_on_whatsapp,
                deferred: counts.deferred,
                ..Window::default()
            };
            Ok((w.with_rates(), new.sends))
        };
        let (day, recent) = window(now.minus(DAY))?;
        let (week, _) = window(now.minus(DAY * 7))?;
        let budget = BudgetStatus::of(&self.budget, &recent, record.paired_at, now);
        let (level, found) = assess(&day, &week, budget.allowance, &self.policy);
        Ok(RiskReport {
            level,
            reasons: found.into_iter().map(|f| f.1).collect(),
            day,
            week,
            budget,
            at: now,
        })
    }

    /// The last level seen of every session assessed since the start.
    pub fn levels(&self) -> Vec<(TenantId, SessionId, RiskLevel)> {
        let levels = self.levels.lock().unwrap_or_else(|e| e.into_inner());
        levels
            .iter()
            .map(|(s, (t, l))| (t.clone(), s.clone(), *l))
            .collect()
    }

    /// `c`'s recipients still to go, replayed through the session's budget,
    /// pacing and typing; `waiting_until` is when its current message is
    /// due, if it waits.
    pub fn outlook(
        &self,
        c: &CampaignRecord,
        waiting_until: Option<Timestamp>,
    ) -> Result<Outlook, StoreError> {
        let now = self.clock.now();
        let record = self.store.get_session(&c.session)?;
        let paired_at = record.as_ref().and_then(|r| r.paired_at);
        // The official API has no new-contact budget: nobody counts as new.
        let official = record.is_some_and(|r| r.engine == crate::engine::EngineKind::Cloud);
        let left = c.recipients.get(c.next..).unwrap_or_default();
        let peers: Vec<&str> = left.iter().map(|r| r.to.as_str()).collect();
        let known = if official {
            vec![true; peers.len()]
        } else {
            self.store.known(&c.session, &peers)?
        };
        let pace = (self.pacing.min_delay + self.pacing.max_delay) / 2;
        let pace = pace.max(Duration::from_secs(60) / self.pacing.per_minute.max(1));
        let steps: Vec<Step> = left
            .iter()
            .zip(known)
            .map(|(r, known)| {
                let text = render(&c.template, &r.vars).unwrap_or_default();
                Step {
                    to: r.to.clone(),
                    known,
                    takes: pace + self.typing.duration(&text).unwrap_or_default(),
                }
            })
            .collect();
        let recent = self.store.new_contact_sends(&c.session, now.minus(DAY))?;
        Ok(outlook(
            &steps,
            &self.budget,
            &recent,
            paired_at,
            now,
            waiting_until.unwrap_or(now),
        ))
    }

    /// Follows the bus until shutdown.
    pub fn start(
        &self,
        bus: &Bus,
        campaigns: Campaigns,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let (mut rx, bus) = (bus.subscribe(), bus.clone());
        tokio::spawn(async move {
            let mut sweep = tokio::time::interval(SWEEP);
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let mut due = BTreeSet::new();
                tokio::select! {
                    ev = rx.recv() => match ev {
                        Ok(ev) => note(&mut due, &ev),
                        Err(broadcast::error::RecvError::Lagged(_)) => due.extend(me.watched()),
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = sweep.tick() => due.extend(me.watched()),
                    _ = stop.wait_for(|s| *s) => return,
                }
                // Whatever else is waiting joins this round: a burst of
                // status changes is one assessment per session.
                loop {
                    match rx.try_recv() {
                        Ok(ev) => note(&mut due, &ev),
                        Err(broadcast::error::TryRecvError::Lagged(_)) => due.extend(me.watched()),
                        Err(_) => break,
                    }
                }
                for session in due {
                    if let Err(e) = me.assess(&bus, &campaigns, &session).await {
                        tracing::error!(session = %session, error = %e, "could not assess the ban risk");
                    }
                }
            }
        })
    }

    fn watched(&self) -> Vec<SessionId> {
        let levels = self.levels.lock().unwrap_or_else(|e| e.into_inner());
        levels.keys().cloned().collect()
    }

    /// Assesses `session`; announces a change of level, and pauses its
    /// campaigns while it is high.
    async fn assess(
        &self,
        bus: &Bus,
        campaigns: &Campaigns,
        session: &SessionId,
    ) -> Result<(), StoreError> {
        let Some(record) = self.store.get_session(session)? else {
            self.levels
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(session);
            return Ok(());
        };
        let report = self.report_of(&record)?;
        let was = self
            .levels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(session.clone(), (record.tenant.clone(), report.level))
            .map_or(RiskLevel::Low, |(_, l)| l);
        if was != report.level {
            let reasons: Vec<&'static str> = report.reasons.iter().map(|r| r.as_str()).collect();
            tracing::info!(tenant = %record.tenant, session = %session, level = report.level.as_str(), was = was.as_str(), reasons = ?reasons, "ban risk changed");
            bus.publish(BusEvent::Risk(RiskEvent {
                tenant: record.tenant.clone(),
                session: session.clone(),
                level: report.level.as_str(),
                was: was.as_str(),
                reasons,
                at: report.at,
            }));
        }
        if report.level == RiskLevel::High && self.policy.pause_campaigns {
            let detail = report
                .reasons
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            if let Err(e) = campaigns.pause_session(session, "risk_high", &detail).await {
                tracing::error!(session = %session, error = %e, "could not pause the campaigns of a session at high risk");
            }
        }
        Ok(())
    }
}

/// The session whose risk `ev` may have moved.
fn note(due: &mut BTreeSet<SessionId>, ev: &BusEvent) {
    match ev {
        BusEvent::MessageStatus(m) => {
            due.insert(m.session.clone());
        }
        BusEvent::MessageIn(m) => {
            due.insert(m.session.clone());
        }
        _ => {}
    }
}
