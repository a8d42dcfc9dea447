//! What every fenced repository of the fleet holds ([`Fencing`]): the
//! pool, this node's leases and the tenants it holds, with the two steps
//! each of their writes starts with — the lease this node holds on the
//! tenant (none: [`FleetError::Fenced`], nothing is written) and the
//! fence on it inside the write's transaction.

use crate::lease::Leases;
use crate::owned::Owned;
use crate::{Epoch, Fleet, FleetError, Lease};
use centinela_actors::ids::TenantId;
use sqlx::postgres::{PgConnection, PgPool};

#[derive(Clone)]
pub(crate) struct Fencing {
    pool: PgPool,
    leases: Leases,
    owned: Owned,
}

impl std::fmt::Debug for Fencing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fencing")
            .field("node", self.leases.node())
            .finish_non_exhaustive()
    }
}

impl Fencing {
    pub(crate) fn new(fleet: &Fleet, leases: Leases, owned: Owned) -> Self {
        Self {
            pool: fleet.pool().clone(),
            leases,
            owned,
        }
    }

    /// The pool the repository queries.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The lease this node holds on `tenant`; [`FleetError::Fenced`] when
    /// it holds none.
    pub(crate) fn held(&self, tenant: &TenantId) -> Result<Lease, FleetError> {
        self.owned.get(tenant).ok_or_else(|| FleetError::Fenced {
            tenant: tenant.clone(),
            epoch: Epoch(-1),
        })
    }

    /// Fences `tx` on this node's lease of `tenant`; answers the lease.
    pub(crate) async fn fence(
        &self,
        tx: &mut PgConnection,
        tenant: &TenantId,
    ) -> Result<Lease, FleetError> {
        let lease = self.held(tenant)?;
        self.leases.fence(tx, &lease).await?;
        Ok(lease)
    }

    /// The tenants this node holds, as the queries bind them.
    pub(crate) fn held_tenants(&self) -> Vec<String> {
        self.owned
            .leases()
            .into_iter()
            .map(|l| l.tenant.as_str().to_owned())
            .collect()
    }
}
