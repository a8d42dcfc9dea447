//! The supervisor's [`SharedAdmission`] on PostgreSQL: every decision and
//! every outcome about a tenant is fenced by the lease this node holds on
//! it ([`Owned`]), so a node that lost a tenant — paused past its lease,
//! cut off, or simply late — writes nothing about it and is told
//! [`SharedError::Fenced`], its cue to stop the tenant's browsers. An
//! admin's override is not fenced (it may come from any node). A database
//! that does not answer within [`crate::ACQUIRE_TIMEOUT`] is
//! [`SharedError::Unavailable`]: nothing is admitted until it is back.

use crate::admission::{FleetAdmission, Verdict};
use crate::lease::{Fence, Leases};
use crate::owned::Owned;
use crate::FleetError;
use centinela_actors::clock::Timestamp;
use centinela_actors::ids::TenantId;
use centinela_actors::supervisor::admission::{AttemptRequest, Denial};
use centinela_actors::supervisor::ledger::Ledger;
use centinela_actors::supervisor::shared::{
    SharedAdmission, SharedError, SharedVerdict, TenantEvent,
};

/// Admission shared through the fleet's database, fenced by this node's
/// leases.
#[derive(Debug, Clone)]
pub struct PgSharedAdmission {
    admission: FleetAdmission,
    leases: Leases,
    owned: Owned,
}

impl PgSharedAdmission {
    /// `owned` is the membership's view of the tenants this node holds:
    /// the lease a write is fenced with is read from it at each call.
    pub fn new(admission: FleetAdmission, leases: Leases, owned: Owned) -> Self {
        Self {
            admission,
            leases,
            owned,
        }
    }

    fn lease(&self, tenant: &TenantId) -> Result<crate::Lease, SharedError> {
        self.owned
            .get(tenant)
            .ok_or_else(|| SharedError::Fenced(tenant.clone()))
    }

    /// A write fenced by `lease`.
    fn fence<'a>(&'a self, lease: &'a crate::Lease) -> Fence<'a> {
        Fence {
            leases: &self.leases,
            lease,
        }
    }
}

/// A fleet failure as the supervisor sees it.
fn shared(e: FleetError) -> SharedError {
    match e {
        FleetError::Fenced { tenant, .. } => SharedError::Fenced(tenant),
        other => SharedError::Unavailable(other.to_string()),
    }
}

#[async_trait::async_trait]
impl SharedAdmission for PgSharedAdmission {
    async fn decide(&self, req: &AttemptRequest) -> Result<SharedVerdict, SharedError> {
        let lease = self.lease(&req.tenant)?;
        match self
            .admission
            .decide(req, Some(self.fence(&lease)))
            .await
            .map_err(shared)?
        {
            Verdict::Admitted { attempt, .. } => Ok(SharedVerdict::Admitted { attempt }),
            Verdict::Denied(denial) => Ok(SharedVerdict::Denied(denial)),
        }
    }

    async fn record(
        &self,
        tenant: &TenantId,
        event: TenantEvent,
        fenced: bool,
    ) -> Result<(), SharedError> {
        let lease = fenced.then(|| self.lease(tenant)).transpose()?;
        let fence = lease.as_ref().map(|lease| self.fence(lease));
        self.admission
            .record(tenant, event, fence)
            .await
            .map(|_| ())
            .map_err(shared)
    }

    async fn cancel(&self, attempt: u64) -> Result<(), SharedError> {
        self.admission
            .cancel(attempt)
            .await
            .map(|_| ())
            .map_err(shared)
    }

    async fn pairing_code(
        &self,
        tenant: &TenantId,
        phone: &str,
        egress: &str,
    ) -> Result<Result<(), Denial>, SharedError> {
        let lease = self.lease(tenant)?;
        self.admission
            .pairing_code(tenant, phone, egress, Some(self.fence(&lease)))
            .await
            .map_err(shared)
    }

    async fn view(
        &self,
        tenant: &TenantId,
        egress: &str,
    ) -> Result<(Ledger, Timestamp), SharedError> {
        self.admission.view(tenant, egress).await.map_err(shared)
    }
}
