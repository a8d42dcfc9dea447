//! Which tenants this node hosts, in a fleet. A single node hosts every
//! tenant and never comes here. In a fleet, the node's membership (in
//! `centinela-fleet`) wins and loses tenants' leases and tells the
//! supervisor: [`adopt`] takes a tenant's sessions in from the session
//! store and restores the running ones through admission (a restore, no
//! QR: the profile holds the pairing); [`release`] lets them go.
//!
//! A release writes nothing: the tenant's records stay as the owner left
//! them (`desired = running` stays running), because the node releasing is
//! either giving the tenant to another owner (a drain) or has already lost
//! it — and then the new owner's writes are the true ones. Its browsers
//! stop at once; nothing of it answers here afterwards (its sessions are
//! not found on this node).

use super::attempts;
use super::registry::SupervisorState;
use super::SupervisorMsg;
use crate::ids::TenantId;
use crate::session::SessionMsg;
use crate::store::StoreError;
use ractor::ActorRef;
use std::time::Duration;

/// Hosts `tenant` from now on: its sessions come in from the store, each
/// with its actor, and the running ones are restored. Answers how many
/// sessions came in (none when they were here already).
pub(super) async fn adopt(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    tenant: TenantId,
) -> Result<usize, StoreError> {
    let records: Vec<_> = st
        .repo
        .list_sessions()?
        .into_iter()
        .filter(|r| r.tenant == tenant)
        .collect();
    st.owned.insert(tenant.clone());
    let taken = attempts::take_in(myself, st, records).await;
    tracing::info!(tenant = %tenant, sessions = taken, "tenant adopted");
    Ok(taken)
}

/// Stops hosting `tenant`: queued starts and decisions under way are
/// cancelled, its sessions leave the registry (so their actors' last
/// reports and exits are ignored), and nothing is written. Answers how
/// many sessions left and their actors, for [`stop_all`].
pub(super) fn release(
    st: &mut SupervisorState,
    tenant: &TenantId,
) -> (usize, Vec<ActorRef<SessionMsg>>) {
    st.owned.remove(tenant);
    let mut ids: Vec<_> = st
        .sessions
        .values()
        .filter(|e| e.record.tenant == *tenant)
        .map(|e| e.record.id.clone())
        .collect();
    ids.sort();
    let mut actors = Vec::new();
    for id in &ids {
        attempts::cancel_pending(st, id);
        if let Some(entry) = st.sessions.remove(id) {
            if let Some(actor) = entry.actor {
                st.by_actor.remove(&actor.get_id());
                actors.push(actor);
            }
        }
    }
    tracing::info!(tenant = %tenant, sessions = ids.len(), "tenant released");
    (ids.len(), actors)
}

/// Stops released sessions' actors; each closes its driver in its own
/// `post_stop` (the browser exits, the profile stays).
pub(super) async fn stop_all(actors: Vec<ActorRef<SessionMsg>>, why: &str, timeout: Duration) {
    let stops = actors.into_iter().map(|actor| {
        let why = why.to_owned();
        async move {
            let _ = actor.stop_and_wait(Some(why), Some(timeout)).await;
        }
    });
    futures::future::join_all(stops).await;
}
