//! The supervisor's typed handle: one async method per command, each
//! answering `Result<_, SupervisorError>`. Callers outside the supervisor
//! (the web layer, the binary, tests) hold a [`Supervisor`]; the actor's
//! message type and ractor's call machinery stay behind it.
//!
//! It owns no state and no policy: every method sends one message and
//! waits for the answer. A supervisor that is gone, or that drops the reply,
//! is [`SupervisorError::Unavailable`].

use super::actor::{SupervisorActor, SupervisorArgs};
use super::admission::QueuedAttempt;
use super::{
    ConnectOutcome, NewSession, RateLimitReport, SessionChange, SessionDetail, SupervisorError,
    SupervisorMsg,
};
use crate::ids::{SessionId, TenantId};
use crate::session::actor::PairingCode;
use crate::session::SessionView;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef, RpcReplyPort};
use std::time::Duration;
use tokio::task::JoinHandle;

/// A cloneable handle to the running supervisor.
#[derive(Clone)]
pub struct Supervisor {
    actor: ActorRef<SupervisorMsg>,
    /// Fleet: how a create for a tenant nobody hosts claims it first.
    claim: Option<std::sync::Arc<dyn super::shared::TenantClaim>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("actor", &self.actor.get_id())
            .finish()
    }
}

impl Supervisor {
    /// Starts the supervisor actor (it restores the sessions that were
    /// running) and returns its handle and the task that ends when it stops.
    pub async fn spawn(args: SupervisorArgs) -> Result<(Self, JoinHandle<()>), SupervisorError> {
        let (actor, task) = Actor::spawn(None, SupervisorActor, args)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "the supervisor did not start");
                SupervisorError::Unavailable
            })?;
        Ok((Self { actor, claim: None }, task))
    }

    /// The handle of an actor spawned by hand (the supervisor's own tests).
    #[cfg(test)]
    pub(crate) fn from_actor(actor: ActorRef<SupervisorMsg>) -> Self {
        Self { actor, claim: None }
    }

    /// Fleet: a create for a tenant this node does not host claims it
    /// through `claim` first (and is refused if another node holds it).
    pub fn with_claim(mut self, claim: std::sync::Arc<dyn super::shared::TenantClaim>) -> Self {
        self.claim = Some(claim);
        self
    }

    /// Stops the supervisor: every session actor closes its driver first.
    /// Unavailable when it did not stop within `timeout`.
    pub async fn stop(&self, timeout: Duration) -> Result<(), SupervisorError> {
        self.actor
            .stop_and_wait(Some("shutdown".into()), Some(timeout))
            .await
            .map_err(|_| SupervisorError::Unavailable)
    }

    /// Sends a command and waits for its `Result` answer.
    async fn ask<T: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<Result<T, SupervisorError>>) -> SupervisorMsg,
    ) -> Result<T, SupervisorError> {
        self.read(msg).await?
    }

    /// Sends a query whose answer cannot fail and waits for it.
    async fn read<T: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<T>) -> SupervisorMsg,
    ) -> Result<T, SupervisorError> {
        match self.actor.call(msg, None).await {
            Ok(CallResult::Success(out)) => Ok(out),
            Ok(CallResult::Timeout | CallResult::SenderError) | Err(_) => {
                Err(SupervisorError::Unavailable)
            }
        }
    }

    /// Creates a session. Fleet: for a tenant this node does not host, the
    /// tenant is claimed first (see [`Supervisor::with_claim`]).
    pub async fn create(&self, new: NewSession) -> Result<SessionView, SupervisorError> {
        let first = new.clone();
        match self
            .ask(|reply| SupervisorMsg::Create { new: first, reply })
            .await
        {
            Err(SupervisorError::NotOwner(tenant)) if self.claim.is_some() => {
                if let Some(claim) = &self.claim {
                    claim.claim(&tenant).await?;
                }
                self.ask(|reply| SupervisorMsg::Create { new, reply }).await
            }
            other => other,
        }
    }

    /// Deletes a session: its driver is logged out and stopped first.
    pub async fn delete(&self, id: SessionId) -> Result<(), SupervisorError> {
        self.ask(|reply| SupervisorMsg::Delete { id, reply }).await
    }

    /// Deletes every session of a tenant in one supervisor step (a create
    /// for the tenant is handled before or after, never between); answers
    /// how many there were.
    pub async fn delete_tenant(&self, tenant: TenantId) -> Result<usize, SupervisorError> {
        self.ask(|reply| SupervisorMsg::DeleteTenant { tenant, reply })
            .await
    }

    /// Asks admission for a connection attempt.
    pub async fn connect(&self, id: SessionId) -> Result<ConnectOutcome, SupervisorError> {
        self.ask(|reply| SupervisorMsg::Connect { id, reply }).await
    }

    /// Stops the session, keeping its pairing.
    pub async fn disconnect(&self, id: SessionId) -> Result<SessionView, SupervisorError> {
        self.ask(|reply| SupervisorMsg::Disconnect { id, reply })
            .await
    }

    /// Unpairs the session and deletes its profile.
    pub async fn logout(&self, id: SessionId) -> Result<SessionView, SupervisorError> {
        self.ask(|reply| SupervisorMsg::Logout { id, reply }).await
    }

    pub async fn get(&self, id: SessionId) -> Result<SessionView, SupervisorError> {
        self.ask(|reply| SupervisorMsg::Get { id, reply }).await
    }

    /// Changes a stopped session's name or proxy (`by` is audited).
    pub async fn update(
        &self,
        id: SessionId,
        change: SessionChange,
        by: String,
    ) -> Result<SessionView, SupervisorError> {
        self.ask(|reply| SupervisorMsg::Update {
            id,
            change,
            by,
            reply,
        })
        .await
    }

    /// A session with its admission status.
    pub async fn describe(&self, id: SessionId) -> Result<SessionDetail, SupervisorError> {
        self.ask(|reply| SupervisorMsg::Describe { id, reply })
            .await
    }

    /// Every session, or one tenant's, with admission status, by id.
    pub async fn describe_all(
        &self,
        tenant: Option<TenantId>,
    ) -> Result<Vec<SessionDetail>, SupervisorError> {
        self.read(|reply| SupervisorMsg::DescribeAll { tenant, reply })
            .await
    }

    /// Every session, or one tenant's, by id.
    pub async fn list(
        &self,
        tenant: Option<TenantId>,
    ) -> Result<Vec<SessionView>, SupervisorError> {
        self.read(|reply| SupervisorMsg::List { tenant, reply })
            .await
    }

    /// A pairing code for a session showing a QR (admitted per number and
    /// per egress path).
    pub async fn pairing_code(
        &self,
        id: SessionId,
        phone: String,
    ) -> Result<PairingCode, SupervisorError> {
        self.ask(|reply| SupervisorMsg::PairingCode { id, phone, reply })
            .await
    }

    /// Sends a text now, past the outbox (diagnostics and tests): answers
    /// the engine's message id.
    pub async fn send_text(
        &self,
        id: SessionId,
        to: String,
        text: String,
    ) -> Result<String, SupervisorError> {
        self.ask(|reply| SupervisorMsg::SendText {
            id,
            to,
            text,
            reply,
        })
        .await
    }

    /// The anti-ban status of every tenant, or of one.
    pub async fn rate_limit_status(
        &self,
        tenant: Option<TenantId>,
    ) -> Result<RateLimitReport, SupervisorError> {
        self.read(|reply| SupervisorMsg::RateLimitStatus { tenant, reply })
            .await
    }

    /// The connection queue in start order.
    pub async fn queue(&self) -> Result<Vec<QueuedAttempt>, SupervisorError> {
        self.read(|reply| SupervisorMsg::Queue { reply }).await
    }

    /// Admin override: lifts a tenant's ban block; answers whether there was one.
    pub async fn unblock(&self, tenant: TenantId, by: String) -> Result<bool, SupervisorError> {
        self.ask(|reply| SupervisorMsg::Unblock { tenant, by, reply })
            .await
    }

    /// Admin override: ends a tenant's cooldown; answers whether there was one.
    pub async fn reset_cooldown(
        &self,
        tenant: TenantId,
        by: String,
    ) -> Result<bool, SupervisorError> {
        self.ask(|reply| SupervisorMsg::ResetCooldown { tenant, by, reply })
            .await
    }

    /// Fleet: hosts a tenant this node now holds (its sessions come in
    /// from the store and the running ones are restored); answers how many
    /// sessions came in.
    pub async fn adopt_tenant(&self, tenant: TenantId) -> Result<usize, SupervisorError> {
        self.ask(|reply| SupervisorMsg::AdoptTenant { tenant, reply })
            .await
    }

    /// Fleet: stops hosting a tenant (lost, or given up), writing nothing
    /// about it; answers how many sessions stopped, once their browsers
    /// have.
    pub async fn release_tenant(
        &self,
        tenant: TenantId,
        why: impl Into<String>,
    ) -> Result<usize, SupervisorError> {
        let why = why.into();
        self.read(|reply| SupervisorMsg::ReleaseTenant { tenant, why, reply })
            .await
    }
}

/// The outbox tells the supervisor which sessions have messages waiting.
impl crate::messaging::outbox::Notify for Supervisor {
    fn messages_queued(&self, session: SessionId) {
        let _ = self.actor.cast(SupervisorMsg::MessagesQueued { session });
    }
}
