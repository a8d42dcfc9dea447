//! The membership loop: the one task that keeps this node in the fleet. It
//! registers the node, heartbeats, renews the node's leases, claims orphans
//! and tells the node's [`TenantHost`] (the supervisor, wired elsewhere)
//! which tenants to start and stop. It is the only writer of [`Owned`].
//!
//! Every `period` it:
//! 1. registers the node (once, and again if the node row went missing);
//! 2. heartbeats;
//! 3. renews: a held tenant missing from the answer was lost (another node
//!    has it, or the lease ran out on the database's clock) — it leaves
//!    [`Owned`], then the host releases it ([`Release::Lost`]); a lease in the
//!    answer that [`Owned`] does not hold (a renewal that landed after the
//!    deadline gave the tenant up, or a restart of this node) is given back
//!    with [`Leases::release`], so it is claimed afresh at the next epoch;
//! 4. gives up the tenants an operator moves to another node
//!    ([`Release::Move`], as a drain does);
//! 5. claims orphans, at most `claim_batch` a period, and never more than
//!    the node's free capacity — [`Leases::claim_orphans`] decides that, and
//!    capacity counts *tenants*, not sessions (live sessions are capped by
//!    the supervisor's own limit). Each lease won joins [`Owned`], then the
//!    host adopts it (one whose deadline passed first goes back unadopted).
//!    The loop never adopts anything else.
//!
//! **The deadline.** The instant before each renewal is taken (`sent`); once
//! it succeeds, no lease of this node ends before `sent + ttl` (the database
//! extends it from a later now). The loop holds its tenants until
//! `sent + ttl − margin` and, with no newer success by then, gives every one
//! up ([`Release::Deadline`]) — while the database is unreachable, a renewal
//! hangs, or the process was stopped (`Instant` keeps counting through a
//! SIGSTOP, so the timer fires at once on resume, before any renewal). The
//! margin is the time the host has to stop the browsers before another node
//! may take them; the guarantee holds only if its release is that quick.
//! The loop goes on renewing and claiming afterwards: when the database is
//! back, the lapsed leases are claimed again like any orphan.
//!
//! **Drain** ([`MemberHandle::drain`]): no more claims; each tenant leaves
//! [`Owned`], the host releases it ([`Release::Drain`]), and its lease is
//! given back at once, so another node need not wait out the ttl. The
//! leases not yet given back keep being renewed meanwhile.
//!
//! Database errors are logged and retried next period; nothing here panics.
//! The host's calls for one tenant never overlap: the loop is one task, and
//! calls made together (for distinct tenants) are awaited before the next.

use crate::{Fleet, FleetError, Lease, Leases, NodeSpec, Owned};
use centinela_actors::ids::TenantId;
use futures::future::join_all;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant, MissedTickBehavior};
use tracing::Instrument;

/// What the node does with tenants it wins and loses (the supervisor, wired
/// elsewhere). Calls are quick or bounded: while one runs the loop neither
/// renews nor watches its deadline.
#[async_trait::async_trait]
pub trait TenantHost: Send + Sync + 'static {
    /// This node now holds `lease` (already in [`Owned`]): start the
    /// tenant's sessions.
    async fn adopt(&self, lease: &Lease);
    /// This node no longer holds the tenant (already removed from
    /// [`Owned`]), or gives it up: stop its browsers at once, write nothing
    /// about it; return once they are stopped.
    async fn release(&self, tenant: &TenantId, why: Release);
}

/// Why a tenant is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Release {
    /// A renewal did not return it: fenced, another node may own it now.
    Lost,
    /// It could not be renewed in time (database unreachable, or this
    /// process was paused): its lease may run out before we know.
    Deadline,
    /// This node is leaving the fleet.
    Drain,
    /// An operator moves the tenant to another node
    /// ([`crate::Fleet::move_tenant`]): given up as on a drain, and its
    /// lease released for the target.
    Move,
}

/// How the loop paces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberConfig {
    /// Each lease's length (`fleet.lease_ttl`, 3 s to 10 min).
    pub ttl: Duration,
    /// Time between two rounds. Must be well under `ttl − margin`, or the
    /// deadline passes between two renewals.
    pub period: Duration,
    /// How long before a lease can end this node gives its tenants up: the
    /// time the host has to stop the browsers.
    pub margin: Duration,
    /// Orphans claimed at most per period.
    pub claim_batch: u32,
}

impl MemberConfig {
    /// A round every `ttl / 3`, so the next two rounds both come before the
    /// deadline (`0.8 ttl` later at most) and one renewal may fail without
    /// losing anything; a margin of `max(ttl / 5, 500 ms)` — a fifth of the
    /// lease scales with it, and half a second is the least a host needs to
    /// kill its browsers (`ttl / 5` alone is 600 ms at the shortest lease,
    /// 3 s); 16 orphans a period, so a node joining a big fleet fills over
    /// a few periods rather than in one long transaction.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            period: ttl / 3,
            margin: (ttl / 5).max(Duration::from_millis(500)),
            claim_batch: 16,
        }
    }
}

/// What the loop has done, published after every change (for health
/// reports and for tests to wait on instead of sleeping).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberStatus {
    /// The tenants held, as in [`Owned`].
    pub held: Vec<Lease>,
    /// When the last successful renewal was sent: the leases last until
    /// this plus the ttl at least.
    pub renewed: Option<Instant>,
    /// Rounds completed, successful or not.
    pub rounds: u64,
}

/// The running loop. Dropping it detaches the loop (it goes on until the
/// runtime ends, like a dropped `JoinHandle`); [`MemberHandle::drain`]
/// is how a node leaves.
#[derive(Debug)]
pub struct MemberHandle {
    drain: oneshot::Sender<()>,
    status: watch::Receiver<MemberStatus>,
    claims: Claimer,
    task: JoinHandle<()>,
}

/// What a claim by name ([`Claimer::claim`]) came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// The tenant is this node's, and the host has adopted it.
    Held,
    /// Another node holds a live lease on it.
    Taken,
    /// This node holds `capacity` tenants already.
    Full,
    /// The fleet could not be asked (or the node is not registered yet).
    Failed(String),
}

type ClaimRequest = (TenantId, oneshot::Sender<Claimed>);

/// Asks the membership loop to claim a tenant by name — the first session
/// created for a tenant no node holds. The loop does it between its rounds,
/// so a claim never races a renewal's reconciliation of [`Owned`].
#[derive(Debug, Clone)]
pub struct Claimer {
    tx: mpsc::Sender<ClaimRequest>,
}

impl Claimer {
    pub async fn claim(&self, tenant: &TenantId) -> Claimed {
        let (reply, answer) = oneshot::channel();
        if self.tx.send((tenant.clone(), reply)).await.is_err() {
            return Claimed::Failed("the node is leaving the fleet".into());
        }
        answer
            .await
            .unwrap_or_else(|_| Claimed::Failed("the node is leaving the fleet".into()))
    }
}

impl MemberHandle {
    /// The loop's status, updated after every change.
    pub fn status(&self) -> watch::Receiver<MemberStatus> {
        self.status.clone()
    }

    /// Where claims by name go.
    pub fn claimer(&self) -> Claimer {
        self.claims.clone()
    }

    /// Leaves the fleet: stops claiming, releases every tenant (host first,
    /// then the lease), and returns once the loop has stopped.
    pub async fn drain(self) {
        // A send fails only when the loop has ended already.
        let _ = self.drain.send(());
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "fleet member loop ended abnormally");
        }
    }
}

/// The node's membership: its spec, its side of the leases, the set it
/// holds and the host that runs what it holds.
pub struct Member {
    fleet: Fleet,
    spec: NodeSpec,
    config: MemberConfig,
    leases: Leases,
    owned: Owned,
    host: Arc<dyn TenantHost>,
    registered: bool,
    /// Until when the held tenants are safe without a newer renewal.
    safe_until: Instant,
    status: watch::Sender<MemberStatus>,
    claims: (mpsc::Sender<ClaimRequest>, mpsc::Receiver<ClaimRequest>),
}

/// Why a database call of the loop gave no answer.
#[derive(Debug, thiserror::Error)]
enum Failed {
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error("no answer within the lease's ttl")]
    TimedOut,
}

impl Member {
    /// A member for the node `spec`, writing what it holds into `owned`
    /// (which should start empty: this loop is its only writer).
    pub fn new(
        fleet: Fleet,
        spec: NodeSpec,
        config: MemberConfig,
        owned: Owned,
        host: Arc<dyn TenantHost>,
    ) -> Self {
        let leases = Leases::new(&fleet, spec.id.clone(), config.ttl);
        Self {
            fleet,
            spec,
            config,
            leases,
            owned,
            host,
            registered: false,
            safe_until: Instant::now(),
            status: watch::Sender::new(MemberStatus::default()),
            claims: mpsc::channel(64),
        }
    }

    /// The loop's status, before it starts (a host that wants to see it
    /// from its first call); [`MemberHandle::status`] once it runs.
    pub fn status(&self) -> watch::Receiver<MemberStatus> {
        self.status.subscribe()
    }

    /// Starts the loop on the current tokio runtime.
    pub fn spawn(self) -> MemberHandle {
        let (drain, asked) = oneshot::channel();
        let status = self.status.subscribe();
        let claims = Claimer {
            tx: self.claims.0.clone(),
        };
        let span = tracing::info_span!("fleet_member", node = %self.spec.id);
        let MemberConfig {
            ttl,
            period,
            margin,
            ..
        } = self.config;
        if period + margin >= ttl {
            tracing::warn!(
                ?ttl,
                ?period,
                ?margin,
                "period + margin >= ttl: tenants are given up between renewals"
            );
        }
        let task = tokio::spawn(self.run(asked).instrument(span));
        MemberHandle {
            drain,
            status,
            claims,
            task,
        }
    }

    async fn run(mut self, mut asked: oneshot::Receiver<()>) {
        let mut tick = tokio::time::interval(self.config.period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut detached = false;
        loop {
            tokio::select! {
                biased;
                asked = &mut asked, if !detached => {
                    if asked.is_ok() {
                        return self.drain().await;
                    }
                    detached = true;
                }
                () = sleep_until(self.safe_until), if !self.owned.is_empty() => {
                    self.give_up_all(Release::Deadline).await;
                }
                _ = tick.tick() => {
                    self.round().await;
                    self.status.send_modify(|s| s.rounds += 1);
                }
                Some((tenant, reply)) = self.claims.1.recv() => {
                    let claimed = self.claim_named(&tenant).await;
                    let _ = reply.send(claimed);
                }
            }
        }
    }

    /// A claim by name: within capacity, one conditional claim, then the
    /// host adopts it like an orphan won in a round.
    async fn claim_named(&mut self, tenant: &TenantId) -> Claimed {
        if self.owned.contains(tenant) {
            return Claimed::Held;
        }
        if !self.registered {
            // A claim before the first round finished (a busy start).
            if let Err(e) = self.db(self.fleet.register(&self.spec)).await {
                return Claimed::Failed(format!("the node could not register: {e}"));
            }
            self.registered = true;
        }
        if self.owned.len() >= self.spec.capacity as usize {
            return Claimed::Full;
        }
        let lease = match self.db(self.leases.claim(tenant)).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return Claimed::Taken,
            Err(e) => return Claimed::Failed(e.to_string()),
        };
        if self.owned.is_empty() {
            // Nothing held: the deadline may be long past. The claim itself
            // just extended every lease of ours.
            self.safe_until = Instant::now() + self.config.ttl.saturating_sub(self.config.margin);
        }
        self.adopt(vec![lease]).await;
        if self.owned.contains(tenant) {
            Claimed::Held
        } else {
            Claimed::Failed("the lease's deadline passed while adopting".into())
        }
    }

    /// One period: register, heartbeat, renew, claim.
    async fn round(&mut self) {
        if !self.registered {
            if let Err(e) = self.db(self.fleet.register(&self.spec)).await {
                return tracing::warn!(error = %e, "fleet registration failed");
            }
            tracing::info!(capacity = self.spec.capacity, "registered in the fleet");
            self.registered = true;
        }
        match self.db(self.fleet.heartbeat(&self.spec.id)).await {
            Ok(()) => {}
            Err(Failed::Fleet(FleetError::UnknownNode(_))) => {
                tracing::warn!("node row missing: registering again");
                self.registered = false;
                return;
            }
            Err(e) => tracing::warn!(error = %e, "fleet heartbeat failed"),
        }
        let sent = Instant::now();
        let renewed = match self.db(self.leases.renew()).await {
            Ok(renewed) => renewed,
            Err(e) => return tracing::warn!(error = %e, "lease renewal failed"),
        };
        self.safe_until = sent + self.config.ttl.saturating_sub(self.config.margin);
        self.status.send_modify(|s| s.renewed = Some(sent));
        self.settle(renewed).await;
        match self.db(self.leases.moving()).await {
            Ok(moving) => self.hand_over(moving).await,
            Err(e) => tracing::warn!(error = %e, "reading the tenants to move failed"),
        }
        let claimed = match self
            .db(self.leases.claim_orphans(self.config.claim_batch))
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => return tracing::warn!(error = %e, "claiming orphans failed"),
        };
        if Instant::now() >= self.safe_until {
            // The deadline passed during the claim: adopting now would be
            // given up at once. Back to the fleet; claimed again later.
            return self.give_back(&claimed).await;
        }
        self.adopt(claimed).await;
    }

    /// Squares [`Owned`] with a renewal's answer.
    async fn settle(&self, renewed: Vec<Lease>) {
        let (lost, stray) = reconcile(&self.owned.leases(), renewed);
        for lease in &lost {
            tracing::warn!(tenant = %lease.tenant, epoch = %lease.epoch, "lease lost");
            self.owned.remove(&lease.tenant);
        }
        self.publish();
        join_all(
            lost.iter()
                .map(|l| self.host.release(&l.tenant, Release::Lost)),
        )
        .await;
        self.give_back(&stray).await;
    }

    /// Gives up each held tenant an operator moves to another node, as a
    /// drain does one: out of [`Owned`], released by the host (browsers
    /// closed, profiles stored), its lease given back for the target.
    async fn hand_over(&self, moving: Vec<Lease>) {
        let held: Vec<Lease> = moving
            .into_iter()
            .filter(|l| self.owned.get(&l.tenant).as_ref() == Some(l))
            .collect();
        if held.is_empty() {
            return;
        }
        for lease in &held {
            tracing::info!(tenant = %lease.tenant, epoch = %lease.epoch, "tenant moving to another node");
            self.owned.remove(&lease.tenant);
        }
        self.publish();
        join_all(held.iter().map(|lease| async move {
            self.host.release(&lease.tenant, Release::Move).await;
            if let Err(e) = self.db(self.leases.release(lease)).await {
                tracing::warn!(tenant = %lease.tenant, error = %e, "releasing a moving tenant failed");
            }
        }))
        .await;
    }

    /// Each lease won joins [`Owned`], then the host adopts it — unless the
    /// deadline has passed by then (the process was paused while adopting
    /// the others): such a lease leaves [`Owned`] unadopted and goes back.
    async fn adopt(&self, claimed: Vec<Lease>) {
        for lease in &claimed {
            tracing::info!(tenant = %lease.tenant, epoch = %lease.epoch, "tenant claimed");
            self.owned.insert(lease.clone());
        }
        self.publish();
        let adopted = join_all(claimed.iter().map(|lease| async move {
            if Instant::now() >= self.safe_until {
                return false;
            }
            self.host.adopt(lease).await;
            true
        }))
        .await;
        let late: Vec<Lease> = claimed
            .into_iter()
            .zip(adopted)
            .filter_map(|(lease, adopted)| (!adopted).then_some(lease))
            .collect();
        if late.is_empty() {
            return;
        }
        for lease in &late {
            self.owned.remove(&lease.tenant);
        }
        self.publish();
        self.give_back(&late).await;
    }

    /// Leases this node holds in the database but not in [`Owned`] (nothing
    /// runs them): released so that any node can claim them afresh.
    async fn give_back(&self, leases: &[Lease]) {
        for lease in leases {
            tracing::info!(tenant = %lease.tenant, epoch = %lease.epoch, "lease given back");
            if let Err(e) = self.db(self.leases.release(lease)).await {
                tracing::warn!(tenant = %lease.tenant, error = %e, "giving a lease back failed");
            }
        }
    }

    /// Every tenant leaves [`Owned`] first (no fenced writer uses their
    /// leases any more), then the host stops them all together.
    async fn give_up_all(&self, why: Release) {
        let leases = self.owned.leases();
        for lease in &leases {
            self.owned.remove(&lease.tenant);
        }
        tracing::warn!(tenants = leases.len(), ?why, "giving every tenant up");
        self.publish();
        join_all(leases.iter().map(|l| self.host.release(&l.tenant, why))).await;
    }

    /// Leaves the fleet (see the module doc). Renewals go on while the host
    /// stops the browsers, so no lease runs out under a browser still up.
    async fn drain(self) {
        let leases = self.owned.leases();
        tracing::info!(tenants = leases.len(), "draining");
        for lease in &leases {
            self.owned.remove(&lease.tenant);
        }
        self.publish();
        let this = &self;
        let releases = join_all(leases.iter().map(|lease| async move {
            this.host.release(&lease.tenant, Release::Drain).await;
            match this.db(this.leases.release(lease)).await {
                Ok(()) => tracing::info!(tenant = %lease.tenant, "lease released"),
                Err(e) => {
                    tracing::warn!(tenant = %lease.tenant, error = %e, "lease release failed")
                }
            }
        }));
        let keep_alive = async {
            let mut tick = tokio::time::interval(self.config.period);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.db(self.leases.renew()).await {
                    tracing::warn!(error = %e, "lease renewal failed while draining");
                }
            }
        };
        tokio::select! {
            _ = releases => {}
            () = keep_alive => {}
        }
        tracing::info!("drained");
    }

    /// A database call bounded by the ttl. If the deadline passes while it
    /// runs, every tenant is given up then (the call goes on: a claim that
    /// succeeds late is not lost, only given back).
    async fn db<T>(&self, call: impl Future<Output = Result<T, FleetError>>) -> Result<T, Failed> {
        let call = tokio::time::timeout(self.config.ttl, call);
        tokio::pin!(call);
        let mut gave_up = false;
        loop {
            tokio::select! {
                // The deadline first: an answer that arrives together with
                // it (a process resumed after a pause) must not keep going.
                biased;
                () = sleep_until(self.safe_until), if !gave_up && !self.owned.is_empty() => {
                    self.give_up_all(Release::Deadline).await;
                    gave_up = true;
                }
                out = &mut call => return out.map_err(|_| Failed::TimedOut)?.map_err(Failed::from),
            }
        }
    }

    fn publish(&self) {
        let held = self.owned.leases();
        self.status.send_if_modified(|s| {
            let changed = s.held != held;
            s.held = held;
            changed
        });
    }
}

/// What a renewal's answer means for the leases held: the ones it lacks are
/// lost (a lease held at another epoch than the answer's included), the
/// ones it has beyond them are strays to give back.
fn reconcile(held: &[Lease], renewed: Vec<Lease>) -> (Vec<Lease>, Vec<Lease>) {
    let lost = held
        .iter()
        .filter(|l| !renewed.contains(l))
        .cloned()
        .collect();
    let stray = renewed.into_iter().filter(|l| !held.contains(l)).collect();
    (lost, stray)
}

#[async_trait::async_trait]
impl centinela_actors::supervisor::shared::TenantClaim for Claimer {
    async fn claim(
        &self,
        tenant: &TenantId,
    ) -> Result<(), centinela_actors::supervisor::SupervisorError> {
        use centinela_actors::supervisor::admission::{Denial, DenyReason};
        use centinela_actors::supervisor::SupervisorError;
        match Claimer::claim(self, tenant).await {
            Claimed::Held => Ok(()),
            Claimed::Taken => Err(SupervisorError::NotOwner(tenant.clone())),
            Claimed::Full => Err(SupervisorError::Denied(Denial {
                reason: DenyReason::Capacity,
                wait: Duration::ZERO,
                block_until: centinela_actors::clock::Clock::now(
                    &centinela_actors::clock::SystemClock,
                ),
                proxy: None,
            })),
            Claimed::Failed(why) => Err(SupervisorError::FleetUnavailable(why)),
        }
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
    fn a_renewal_answer_splits_into_kept_lost_and_strays() {
        let held = [lease("a", 1), lease("b", 4), lease("c", 2)];
        let renewed = vec![lease("a", 1), lease("c", 3), lease("d", 7)];
        let (lost, stray) = reconcile(&held, renewed);
        assert_eq!(lost, vec![lease("b", 4), lease("c", 2)]);
        assert_eq!(stray, vec![lease("c", 3), lease("d", 7)]);
        let (lost, stray) = reconcile(&held, held.to_vec());
        assert!(lost.is_empty() && stray.is_empty());
    }

    #[test]
    fn the_defaults_leave_two_rounds_before_the_deadline_at_every_lease_length() {
        let c = MemberConfig::new(Duration::from_secs(3));
        assert_eq!(c.period, Duration::from_secs(1));
        assert_eq!(c.margin, Duration::from_millis(600));
        let c = MemberConfig::new(Duration::from_secs(15));
        assert_eq!(
            (c.period, c.margin),
            (Duration::from_secs(5), Duration::from_secs(3))
        );
        assert_eq!(
            MemberConfig::new(Duration::from_secs(1)).margin,
            Duration::from_millis(500)
        );
        for secs in [3, 4, 10, 15, 60, 600] {
            let c = MemberConfig::new(Duration::from_secs(secs));
            assert!(2 * c.period < c.ttl - c.margin, "ttl {secs}s: {c:?}");
        }
    }
}
