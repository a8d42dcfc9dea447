//! The set of tenants this node holds, each with the lease (epoch) it won
//! it at. The membership loop ([`crate::member`]) is its only writer: it
//! inserts what `claim_orphans` won and removes what renewal lost, what the
//! deadline gave up or what a drain releases. Every fenced writer reads the
//! lease to fence with from here, so a tenant removed here is one nobody on
//! this node writes about any more.
//!
//! It does not talk to the database and decides nothing; it is the shared
//! answer to "which epoch do I hold this tenant at, if any". A poisoned lock
//! (a panic while holding it) is recovered, not propagated: every operation
//! is a single map call, so the map is never left half-changed.

use crate::Lease;
use centinela_actors::ids::TenantId;
use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The tenants this node holds right now, at the epoch it won each with.
/// Shared by the membership loop (which writes it) and every fenced writer
/// (which reads the lease to fence with). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Owned(Arc<RwLock<HashMap<TenantId, Lease>>>);

impl Owned {
    /// The lease this node holds on `tenant`, if it holds it.
    pub fn get(&self, tenant: &TenantId) -> Option<Lease> {
        self.read().get(tenant).cloned()
    }

    pub fn contains(&self, tenant: &TenantId) -> bool {
        self.read().contains_key(tenant)
    }

    /// Holds `lease`, replacing any older lease on the same tenant.
    pub fn insert(&self, lease: Lease) {
        self.write().insert(lease.tenant.clone(), lease);
    }

    /// Stops holding `tenant`; the lease it was held at, if it was.
    pub fn remove(&self, tenant: &TenantId) -> Option<Lease> {
        self.write().remove(tenant)
    }

    /// Every held lease, sorted.
    pub fn leases(&self) -> Vec<Lease> {
        let mut leases: Vec<Lease> = self.read().values().cloned().collect();
        leases.sort();
        leases
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<TenantId, Lease>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<TenantId, Lease>> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Epoch;

    fn lease(tenant: &str, epoch: i64) -> Lease {
        Lease {
            tenant: TenantId::new(tenant).expect("tenant id"),
            epoch: Epoch(epoch),
        }
    }

    #[test]
    fn a_newer_lease_replaces_the_older_one_and_clones_share_the_set() {
        let owned = Owned::default();
        let reader = owned.clone();
        owned.insert(lease("b", 1));
        owned.insert(lease("a", 3));
        owned.insert(lease("b", 2));
        assert_eq!(reader.leases(), vec![lease("a", 3), lease("b", 2)]);
        assert_eq!(reader.len(), 2);
        assert_eq!(reader.get(&lease("b", 0).tenant), Some(lease("b", 2)));
        assert_eq!(owned.remove(&lease("a", 0).tenant), Some(lease("a", 3)));
        assert!(!reader.contains(&lease("a", 0).tenant));
        assert_eq!(owned.remove(&lease("a", 0).tenant), None);
        owned.remove(&lease("b", 0).tenant);
        assert!(reader.is_empty());
    }

    #[test]
    fn a_poisoned_lock_is_recovered_not_propagated() {
        let owned = Owned::default();
        owned.insert(lease("a", 1));
        let inner = owned.clone();
        let panicked = std::thread::spawn(move || {
            let _guard = inner.0.write().expect("first lock");
            panic!("poison the lock");
        })
        .join();
        assert!(panicked.is_err());
        assert!(owned.0.is_poisoned());
        assert_eq!(owned.get(&lease("a", 0).tenant), Some(lease("a", 1)));
        owned.insert(lease("b", 1));
        assert_eq!(owned.len(), 2);
    }
}
