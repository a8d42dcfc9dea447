//! The supervisor's commands: create, delete (one session or a tenant's),
//! stop and logout, update, pairing codes, direct sends and the admin
//! overrides. Each changes the registry and the store in one supervisor
//! step; slow work on a session actor (a logout, a send) runs in a task
//! that answers the caller, so one slow browser never stalls the supervisor.

use super::admission::check_create;
use super::attempts;
use super::registry::{spawn_session, SupervisorState};
use super::shared::{SharedError, TenantEvent};
use super::{NewSession, SupervisorError, SupervisorMsg};
use crate::ids::{SessionId, TenantId};
use crate::session::actor::{PairingCode, PairingCodeError};
use crate::session::{DisconnectReason, SessionMsg, SessionState, SessionView};
use crate::store::{DesiredState, SessionRecord};
use ractor::{ActorRef, RpcReplyPort};

/// An admin override of admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Override {
    /// Lift a tenant's ban block (and any proxy hold).
    Unblock,
    /// End a tenant's cooldown.
    ResetCooldown,
}

/// Applies an override, audited with `by`; answers whether one was in
/// force. In a fleet it goes to the shared ledger (from a task, unfenced:
/// an admin may act from any node).
pub(super) fn admin_override(
    st: &mut SupervisorState,
    which: Override,
    tenant: TenantId,
    by: String,
    reply: RpcReplyPort<Result<bool, SupervisorError>>,
) {
    let (action, field) = match which {
        Override::Unblock => ("antiban.unblock", "was_blocked"),
        Override::ResetCooldown => ("antiban.reset_cooldown", "was_cooling"),
    };
    let now = st.now();
    let Some(fleet) = st.fleet.clone() else {
        let done = match which {
            Override::Unblock => st.admission.unblock(&tenant, &by, now),
            Override::ResetCooldown => st.admission.reset_cooldown(&tenant, &by, now),
        };
        let out = done.map_err(SupervisorError::from);
        if let Ok(was) = out {
            audit_override(&*st.audit, &tenant, &by, action, field, was, now);
        }
        let _ = reply.send(out);
        return;
    };
    let audit = st.audit.clone();
    tokio::spawn(async move {
        let out = shared_override(&fleet, which, &tenant, &by).await;
        if let Ok((was, at)) = out {
            audit_override(&*audit, &tenant, &by, action, field, was, at);
        }
        let _ = reply.send(out.map(|(was, _)| was));
    });
}

/// Logs and audits an applied override.
fn audit_override(
    audit: &dyn crate::store::AuditRepo,
    tenant: &TenantId,
    by: &str,
    action: &str,
    field: &str,
    was: bool,
    at: crate::clock::Timestamp,
) {
    tracing::warn!(tenant = %tenant, by = %by, was, action, "admin override of admission");
    let entry = crate::store::AuditEntry {
        seq: 0,
        at,
        actor: by.to_owned(),
        action: action.to_owned(),
        tenant: Some(tenant.clone()),
        data: serde_json::json!({ field: was }),
    };
    if let Err(e) = audit.audit(&entry) {
        tracing::error!(error = %e, action, "could not write the audit log");
    }
}

/// An override in the shared ledger: whether one was in force (read from
/// the shared view first), then the event; answers the shared clock's now.
async fn shared_override(
    fleet: &super::shared::FleetSeam,
    which: Override,
    tenant: &TenantId,
    by: &str,
) -> Result<(bool, crate::clock::Timestamp), SupervisorError> {
    let unavailable = |e: SharedError| SupervisorError::FleetUnavailable(e.to_string());
    let (ledger, now) = fleet
        .admission
        .view(tenant, &fleet.egress)
        .await
        .map_err(unavailable)?;
    let t = ledger.tenant(tenant);
    let (was, event) = match which {
        Override::Unblock => (
            t.is_some_and(|t| {
                t.blocked_until.is_some_and(|u| u > now) || !t.proxy_blocked.is_empty()
            }),
            TenantEvent::Unblocked { by: by.to_owned() },
        ),
        Override::ResetCooldown => (
            t.and_then(|t| t.cooldown_until).is_some_and(|u| u > now),
            TenantEvent::CooldownReset { by: by.to_owned() },
        ),
    };
    fleet
        .admission
        .record(tenant, event, false)
        .await
        .map_err(unavailable)?;
    Ok((was, now))
}

pub(super) async fn create(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    new: NewSession,
) -> Result<SessionView, SupervisorError> {
    if !st.hosts(&new.tenant) {
        return Err(SupervisorError::NotOwner(new.tenant));
    }
    let now = st.now();
    let of_tenant = st
        .sessions
        .values()
        .filter(|e| e.record.tenant == new.tenant)
        .count();
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    if let Err(denial) = check_create(
        &st.config.antiban,
        count(of_tenant),
        count(st.sessions.len()),
        now,
    ) {
        tracing::info!(tenant = %new.tenant, reason = denial.reason.as_str(), "session creation denied");
        return Err(SupervisorError::Denied(denial));
    }
    if let Some(number) = new.cloud.as_ref().map(|c| &c.phone_number_id) {
        let taken = st
            .sessions
            .values()
            .any(|e| e.record.cloud.as_ref().map(|c| &c.phone_number_id) == Some(number));
        if taken {
            tracing::info!(tenant = %new.tenant, phone_number_id = %number, "cloud session refused: the number has a session already");
            return Err(SupervisorError::NumberTaken(number.clone()));
        }
    }
    let record = SessionRecord {
        id: SessionId::generate(),
        tenant: new.tenant,
        name: new.name,
        engine: new.engine,
        desired: DesiredState::Stopped,
        user_agent: new.user_agent,
        proxy: new.proxy,
        last_reason: None,
        paired: false,
        paired_at: None,
        created_at: now,
        cloud: new.cloud,
    };
    st.repo.put_session(&record)?;
    let id = record.id.clone();
    tracing::info!(tenant = %record.tenant, session = %id, "session created");
    let reason = DisconnectReason::NeverConnected;
    let entry = st.new_entry(record, SessionState::Disconnected { reason });
    st.sessions.insert(id.clone(), entry);
    spawn_session(myself, st, &id).await?;
    Ok(st.entry(&id)?.view.clone())
}

/// Removes a session from the registry and the store at once; answers
/// `reply` when its actor has logged out and stopped, which the returned
/// future does (run it off the supervisor: a browser can be slow).
pub(super) fn delete(
    st: &mut SupervisorState,
    id: SessionId,
    reply: RpcReplyPort<Result<(), SupervisorError>>,
) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
    match remove(st, &id) {
        Err(e) => {
            let _ = reply.send(Err(e));
            None
        }
        Ok(stop) => Some(async move {
            stop.await;
            let _ = reply.send(Ok(()));
        }),
    }
}

/// Deletes every session of `tenant` in this one message: no create for
/// the tenant can land between the listing and the deletes.
pub(super) fn delete_tenant(
    st: &mut SupervisorState,
    tenant: TenantId,
    reply: RpcReplyPort<Result<usize, SupervisorError>>,
) {
    let mut ids: Vec<SessionId> = st
        .sessions
        .values()
        .filter(|e| e.record.tenant == tenant)
        .map(|e| e.record.id.clone())
        .collect();
    ids.sort();
    let mut stops = Vec::with_capacity(ids.len());
    for id in &ids {
        match remove(st, id) {
            Ok(stop) => stops.push(stop),
            Err(e) => {
                let _ = reply.send(Err(e));
                tokio::spawn(futures::future::join_all(stops));
                return;
            }
        }
    }
    // Only when there were any: a tenant's deletion asks again after its
    // purge, and a line under its id then would outlive the purge.
    if !ids.is_empty() {
        tracing::info!(tenant = %tenant, sessions = ids.len(), "tenant's sessions deleted");
    }
    tokio::spawn(async move {
        futures::future::join_all(stops).await;
        let _ = reply.send(Ok(ids.len()));
    });
}

/// Takes a session out of the registry and the store (the registry keeps
/// it when the store refuses); the returned future logs its actor out and
/// stops it.
pub(super) fn remove(
    st: &mut SupervisorState,
    id: &SessionId,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static, SupervisorError> {
    attempts::cancel_pending(st, id);
    let Some(entry) = st.sessions.remove(id) else {
        return Err(SupervisorError::NotFound(id.clone()));
    };
    if let Err(e) = st.repo.delete_session(id) {
        // Keep the registry consistent with the store.
        st.sessions.insert(id.clone(), entry);
        return Err(e.into());
    }
    tracing::info!(tenant = %entry.record.tenant, session = %id, "session deleted");
    if let Some(actor) = &entry.actor {
        st.by_actor.remove(&actor.get_id());
    }
    let timeout = st.config.server.shutdown_timeout;
    Ok(async move {
        let Some(actor) = entry.actor else {
            return;
        };
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let _ = ractor::call_t!(actor, SessionMsg::Logout, millis);
        let _ = actor
            .stop_and_wait(Some("deleted".into()), Some(timeout))
            .await;
    })
}

pub(super) async fn stop_session(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    id: SessionId,
    logout: bool,
    reply: RpcReplyPort<Result<SessionView, SupervisorError>>,
) {
    attempts::cancel_pending(st, &id);
    if let Some(entry) = st.sessions.get_mut(&id) {
        entry.breaker.reset();
    }
    if let Err(e) = st.save(&id, |r| r.desired = DesiredState::Stopped) {
        let _ = reply.send(Err(e));
        return;
    }
    let actor = match spawn_session(myself, st, &id).await {
        Ok(actor) => actor,
        Err(e) => {
            let _ = reply.send(Err(e));
            return;
        }
    };
    tokio::spawn(async move {
        let out = if logout {
            ractor::call!(actor, SessionMsg::Logout)
        } else {
            ractor::call!(actor, SessionMsg::Stop)
        };
        let _ = reply.send(out.map_err(|_| SupervisorError::Unavailable));
    });
}

/// Changes a stopped session's name or proxy. A new proxy is a new network
/// path: a hold on the old one no longer applies to this session.
pub(super) fn update(
    st: &mut SupervisorState,
    id: &SessionId,
    change: super::SessionChange,
    by: &str,
) -> Result<SessionView, SupervisorError> {
    let entry = st.entry(id)?;
    if entry.view.state.is_live() || entry.pending.is_some() {
        return Err(SupervisorError::Live);
    }
    let before = st.egress_of(&st.sessions[id].record);
    st.save(id, |r| {
        if let Some(name) = change.name {
            r.name = name;
        }
        if let Some(proxy) = change.proxy {
            r.proxy = proxy;
        }
    })?;
    let after = st.egress_of(&st.sessions[id].record);
    let entry = st.entry(id)?;
    entry.view.name = entry.record.name.clone();
    if before != after {
        entry.last_denial = None;
    }
    if let Some(actor) = &entry.actor {
        let _ = actor.cast(SessionMsg::Reconfigure(entry.record.clone()));
    }
    let (view, tenant) = (entry.view.clone(), entry.record.tenant.clone());
    st.audit(
        by,
        "session.update",
        &tenant,
        serde_json::json!({"session": id, "name": view.name, "egress": after}),
    );
    Ok(view)
}

/// Admits a pairing-code request (per phone number, per egress path: the
/// tenant's proxy without its credentials, or the server itself), then asks
/// the session. Refused before the ledger when the session shows no QR.
pub(super) fn pairing_code(
    st: &mut SupervisorState,
    id: SessionId,
    phone: String,
    reply: Option<RpcReplyPort<Result<PairingCode, SupervisorError>>>,
) {
    let answer = |reply: Option<RpcReplyPort<_>>, out: Result<PairingCode, SupervisorError>| {
        if let Some(reply) = reply {
            let _ = reply.send(out);
        }
    };
    let now = st.now();
    let (actor, tenant, egress) = match st.entry(&id) {
        Err(e) => return answer(reply, Err(e)),
        Ok(e) if !matches!(e.view.state, SessionState::Qr { .. }) => {
            return answer(reply, Err(SupervisorError::NotShowingQr))
        }
        Ok(e) => (e.actor.clone(), e.record.tenant.clone(), e.record.clone()),
    };
    let egress = st.egress_of(&egress);
    let Some(actor) = actor else {
        return answer(reply, Err(SupervisorError::Unavailable));
    };
    // Fleet: the limits are every node's, decided off the mailbox.
    if let Some(fleet) = st.fleet.clone() {
        tokio::spawn(async move {
            let out = match fleet.admission.pairing_code(&tenant, &phone, &egress).await {
                Ok(Ok(())) => ask_code(actor, phone).await,
                Ok(Err(denial)) => {
                    tracing::warn!(tenant = %tenant, session = %id, reason = denial.reason.as_str(), wait_minutes = denial.wait_minutes(), "pairing code refused");
                    Err(SupervisorError::Denied(denial))
                }
                Err(SharedError::Fenced(tenant)) => Err(SupervisorError::NotOwner(tenant)),
                Err(SharedError::Unavailable(why)) => Err(SupervisorError::FleetUnavailable(why)),
            };
            answer(reply, out);
        });
        return;
    }
    match st
        .admission
        .admit_pairing_code(&tenant, &phone, &egress, now)
    {
        Err(e) => return answer(reply, Err(e.into())),
        Ok(Err(denial)) => {
            tracing::warn!(tenant = %tenant, session = %id, reason = denial.reason.as_str(), wait_minutes = denial.wait_minutes(), "pairing code refused");
            return answer(reply, Err(SupervisorError::Denied(denial)));
        }
        Ok(Ok(())) => {}
    }
    tokio::spawn(async move {
        answer(reply, ask_code(actor, phone).await);
    });
}

/// Asks the session's actor for a pairing code (admitted already).
async fn ask_code(
    actor: ActorRef<SessionMsg>,
    phone: String,
) -> Result<PairingCode, SupervisorError> {
    match ractor::call!(actor, |r| SessionMsg::PairingCode { phone, reply: r }) {
        Ok(Ok(code)) => Ok(code),
        Ok(Err(PairingCodeError::NotShowingQr)) => Err(SupervisorError::NotShowingQr),
        Ok(Err(PairingCodeError::Engine(e))) => Err(SupervisorError::Engine(e)),
        Err(_) => Err(SupervisorError::Unavailable),
    }
}

pub(super) fn send_text(
    st: &mut SupervisorState,
    id: SessionId,
    to: String,
    text: String,
    reply: RpcReplyPort<Result<String, SupervisorError>>,
) {
    let actor = match st.entry(&id).map(|e| e.actor.clone()) {
        Err(e) => {
            let _ = reply.send(Err(e));
            return;
        }
        Ok(None) => {
            let _ = reply.send(Err(SupervisorError::Unavailable));
            return;
        }
        Ok(Some(actor)) => actor,
    };
    tokio::spawn(async move {
        let out = ractor::call!(actor, |r| SessionMsg::SendText { to, text, reply: r });
        let _ = reply.send(match out {
            Ok(sent) => sent.map_err(SupervisorError::from),
            Err(_) => Err(SupervisorError::Unavailable),
        });
    });
}
