//! The supervisor's registry: every session's record, live view, actor,
//! restart budget, pending start and breaker, plus the reads built from
//! them (details, capacity, the rate-limit report) and the one place that
//! spawns a session actor. It decides no policy; attempts and commands
//! change it, the actor owns it.

use super::admission::Admission;
use super::recovery::Breaker;
use super::restart::RestartBudget;
use super::shared::FleetSeam;
use super::{RateLimitReport, SupervisorError, SupervisorMsg};
use crate::clock::{Timer, Timestamp};
use crate::config::Config;
use crate::engine::EngineSet;
use crate::ids::{SessionId, TenantId};
use crate::session::actor::SessionEnv;
use crate::session::{SessionActor, SessionArgs, SessionMsg, SessionState, SessionView};
use crate::store::{AuditEntry, AuditRepo, SessionRecord, SessionRepo};
use ractor::{Actor, ActorId, ActorRef};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

pub(super) struct Pending {
    pub ticket: u64,
    pub kind: super::admission::AttemptKind,
    pub start_at: Timestamp,
    pub timer: Timer<SupervisorMsg>,
}

pub(super) struct Entry {
    pub record: SessionRecord,
    pub actor: Option<ActorRef<SessionMsg>>,
    pub view: SessionView,
    pub budget: RestartBudget,
    /// Bumped whenever a scheduled start is made or cancelled.
    pub epoch: u64,
    pub pending: Option<Pending>,
    /// Automatic reconnect tries since the session was last READY.
    pub reconnect_tries: u32,
    /// The last refusal, until the next admitted attempt.
    pub last_denial: Option<super::admission::Denial>,
    /// Automatic restores after local faults.
    pub breaker: Breaker,
    /// The epoch of a connect being decided by the shared ledger (fleet).
    pub deciding: Option<u64>,
}

pub(crate) struct SupervisorState {
    pub(super) config: Config,
    pub(super) repo: Arc<dyn SessionRepo>,
    pub(super) audit: Arc<dyn AuditRepo>,
    pub(super) engines: EngineSet,
    pub(super) env: SessionEnv,
    pub(super) admission: Admission,
    pub(super) sessions: HashMap<SessionId, Entry>,
    pub(super) by_actor: HashMap<ActorId, SessionId>,
    /// In a fleet: the shared admission and this node's egress.
    pub(super) fleet: Option<FleetSeam>,
    /// In a fleet: the tenants this node hosts now (adopted, not released).
    pub(super) owned: HashSet<TenantId>,
}

impl SupervisorState {
    pub(super) fn now(&self) -> Timestamp {
        self.env.clock.now()
    }

    pub(super) fn entry(&mut self, id: &SessionId) -> Result<&mut Entry, SupervisorError> {
        self.sessions
            .get_mut(id)
            .ok_or_else(|| SupervisorError::NotFound(id.clone()))
    }

    pub(super) fn new_entry(&self, record: SessionRecord, state: SessionState) -> Entry {
        let s = &self.config.supervisor;
        Entry {
            view: SessionView {
                id: record.id.clone(),
                tenant: record.tenant.clone(),
                name: record.name.clone(),
                state,
                since: self.now(),
                pairing_code: None,
                pairing_durable_at: None,
            },
            record,
            actor: None,
            budget: RestartBudget::new(s.restart_budget, s.restart_window, s.restart_backoff),
            epoch: 0,
            pending: None,
            reconnect_tries: 0,
            last_denial: None,
            breaker: Breaker::default(),
            deciding: None,
        }
    }

    /// The egress a session's attempts are counted against: its proxy
    /// without credentials, else the server's own path (`server`, or in a
    /// fleet this node's egress identity).
    pub(super) fn egress_of(&self, record: &SessionRecord) -> String {
        match (&record.proxy, &self.fleet) {
            (None, Some(fleet)) => fleet.egress.clone(),
            (proxy, _) => crate::proxy::egress(proxy.as_deref()),
        }
    }

    /// Why a session is not in the registry: it does not exist, or (in a
    /// fleet) its tenant is hosted by another node — the shared records
    /// know it — which is `NotOwner`, not a 404.
    pub(super) fn missing(&self, id: SessionId) -> SupervisorError {
        if self.fleet.is_none() {
            return SupervisorError::NotFound(id);
        }
        match self.repo.get_session(&id) {
            Ok(Some(record)) => SupervisorError::NotOwner(record.tenant),
            Ok(None) => SupervisorError::NotFound(id),
            Err(e) => SupervisorError::Store(e),
        }
    }

    /// Whether this node hosts `tenant`'s sessions: always on a single
    /// node; in a fleet, while it holds the tenant.
    pub(super) fn hosts(&self, tenant: &TenantId) -> bool {
        self.fleet.is_none() || self.owned.contains(tenant)
    }

    /// Persists a changed record (written before anyone is told).
    pub(super) fn save(
        &mut self,
        id: &SessionId,
        change: impl FnOnce(&mut SessionRecord),
    ) -> Result<(), SupervisorError> {
        let entry = self.entry(id)?;
        let mut record = entry.record.clone();
        change(&mut record);
        if record != entry.record {
            self.repo.put_session(&record)?;
            self.entry(id)?.record = record;
        }
        Ok(())
    }

    /// Sessions live or queued, except `except`: what capacity counts.
    pub(super) fn live_count(&self, except: Option<&SessionId>) -> u32 {
        let n = self
            .sessions
            .values()
            .filter(|e| Some(&e.record.id) != except)
            .filter(|e| e.view.state.is_live() || e.pending.is_some() || e.deciding.is_some())
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    pub(super) fn detail(&self, e: &Entry) -> super::SessionDetail {
        let now = self.now();
        let admission = match (&e.pending, &e.last_denial) {
            (Some(p), _) => Some(super::AdmissionStatus::Queued {
                start_at: p.start_at,
                position: self.admission.position(p.ticket).unwrap_or(1),
            }),
            (None, Some(d))
                if d.proxy.as_deref().map_or(d.block_until > now, |p| {
                    // A fleet's holds are in the shared ledger: the last
                    // refusal stands until the next admitted attempt.
                    self.fleet.is_some() || self.admission.holds(&e.record.tenant, p)
                }) =>
            {
                Some(super::AdmissionStatus::Denied {
                    reason: d.reason,
                    wait_time_minutes: d.block_until.since(now).as_secs().div_ceil(60),
                    block_until: d.ends_at(),
                    proxy: d.proxy.clone(),
                })
            }
            _ => None,
        };
        super::SessionDetail {
            view: e.view.clone(),
            admission,
            egress: self.egress_of(&e.record),
            recovery: e.breaker.status(),
            engine: e.record.engine,
            cloud: e.record.cloud.clone(),
        }
    }

    pub(super) fn rate_limit_report(&self, tenant: Option<TenantId>) -> RateLimitReport {
        let now = self.now();
        let live = self.live_count(None);
        let tenants: BTreeSet<TenantId> = match tenant {
            Some(t) => BTreeSet::from([t]),
            None => self
                .admission
                .known_tenants()
                .into_iter()
                .chain(self.sessions.values().map(|e| e.record.tenant.clone()))
                .collect(),
        };
        RateLimitReport {
            global: self.admission.global_status(now),
            organizations: tenants
                .iter()
                .map(|t| self.admission.tenant_status(t, live, now))
                .collect(),
        }
    }

    pub(super) fn audit(
        &self,
        actor: &str,
        action: &str,
        tenant: &TenantId,
        data: serde_json::Value,
    ) {
        let entry = AuditEntry {
            seq: 0,
            at: self.now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            tenant: Some(tenant.clone()),
            data,
        };
        if let Err(e) = self.audit.audit(&entry) {
            tracing::error!(error = %e, action, "could not write the audit log");
        }
    }
}

pub(super) async fn spawn_session(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    id: &SessionId,
) -> Result<ActorRef<SessionMsg>, SupervisorError> {
    let entry = st.entry(id)?;
    if let Some(actor) = &entry.actor {
        return Ok(actor.clone());
    }
    let record = entry.record.clone();
    let initial = entry.view.state.clone();
    let args = SessionArgs {
        engine: st.engines.get(record.engine),
        record,
        initial,
        env: st.env.clone(),
        supervisor: Some(myself.clone()),
    };
    let (actor, _) = Actor::spawn_linked(None, SessionActor, args, myself.get_cell())
        .await
        .map_err(|e| {
            tracing::error!(session = %id, error = %e, "could not spawn a session actor");
            SupervisorError::Unavailable
        })?;
    st.by_actor.insert(actor.get_id(), id.clone());
    st.entry(id)?.actor = Some(actor.clone());
    Ok(actor)
}
