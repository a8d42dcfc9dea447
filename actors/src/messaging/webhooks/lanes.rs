//! The delivery loop: it queues the bus's events as deliveries, and gives
//! every tenant its own lane — at most one attempt of a tenant in flight,
//! lanes side by side up to `webhooks.max_in_flight` — so a receiver that
//! never answers holds its own tenant's lane until the timeout and nobody
//! else's. Each attempt is recorded in the store (and announced as a
//! [`WebhookEvent`]) before its lane takes the next delivery; within a
//! lane, due deliveries go soonest first.
//!
//! Once an hour (of the injected clock) it deletes the deliveries finished
//! longer than `webhooks.retention` ago. When the bus closes it lets the
//! attempts in flight finish and be recorded, then ends.

use super::{failure, resolve, WebhookEvent, Webhooks};
use crate::bus::BusEvent;
use crate::clock::Timestamp;
use crate::config::WebhooksConfig;
use crate::ids::TenantId;
use crate::store::{Delivery, DeliveryError, DeliveryStatus, WebhookTarget};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::task::{Id, JoinSet};

/// How often finished deliveries are pruned, and the longest the loop
/// sleeps with nothing due.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The loop's own state: which lanes are busy, and when it last pruned.
struct Lanes {
    me: Webhooks,
    client: reqwest::Client,
    cfg: Arc<WebhooksConfig>,
    running: JoinSet<()>,
    /// The tenant of each attempt in flight (a panicked attempt still
    /// frees its lane: its task id comes back with the error).
    tenants: HashMap<Id, TenantId>,
    busy: HashSet<TenantId>,
    pruned_at: Option<Timestamp>,
}

pub(super) async fn run(
    me: Webhooks,
    client: reqwest::Client,
    mut bus: broadcast::Receiver<BusEvent>,
    cfg: WebhooksConfig,
) {
    let mut lanes = Lanes {
        me,
        client,
        cfg: Arc::new(cfg),
        running: JoinSet::new(),
        tenants: HashMap::new(),
        busy: HashSet::new(),
        pruned_at: None,
    };
    let kick = lanes.me.kick.clone();
    // The queue is read again only when it may have changed: a delivery
    // queued, a kick (a redelivery, a test event), an attempt recorded,
    // the wait for the next due one over, or a session's state changed (in
    // fleet mode: perhaps a tenant this node now holds, with deliveries
    // another node left). Most bus events queue nothing (no target).
    let mut changed = true;
    let mut wake = tokio::time::Instant::now();
    loop {
        lanes.prune_if_due();
        if changed {
            wake = tokio::time::Instant::now() + lanes.dispatch_due();
        }
        changed = true;
        tokio::select! {
            ev = bus.recv() => match ev {
                Ok(e) => changed = lanes.me.enqueue(&e) || matches!(e, BusEvent::Transition(_)),
                Err(broadcast::error::RecvError::Lagged(n)) => tracing::error!(missed = n, "webhook queue lagged behind the bus"),
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = kick.notified() => {}
            Some(done) = lanes.running.join_next_with_id(), if !lanes.running.is_empty() => lanes.finished(done),
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
    while let Some(done) = lanes.running.join_next_with_id().await {
        lanes.finished(done);
    }
}

impl Lanes {
    /// Starts the due deliveries of idle lanes; returns how long until the
    /// next one of an idle lane is due (a busy lane wakes the loop when it
    /// frees).
    fn dispatch_due(&mut self) -> Duration {
        let pending = match self.me.repo.pending() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "could not read the webhook queue");
                return Duration::from_secs(5);
            }
        };
        let now = self.me.clock.now();
        let mut next: Option<Timestamp> = None;
        for d in pending {
            if self.busy.contains(&d.tenant) {
                continue;
            }
            if d.next_at > now {
                next = Some(next.map_or(d.next_at, |n| n.min(d.next_at)));
                continue;
            }
            if self.running.len() >= self.cfg.max_in_flight as usize {
                break;
            }
            let tenant = d.tenant.clone();
            let task = self.running.spawn(attempt(
                self.me.clone(),
                self.client.clone(),
                self.cfg.clone(),
                d,
            ));
            self.tenants.insert(task.id(), tenant.clone());
            self.busy.insert(tenant);
        }
        next.map_or(PRUNE_EVERY, |n| n.since(now).min(PRUNE_EVERY))
    }

    fn finished(&mut self, done: Result<(Id, ()), tokio::task::JoinError>) {
        let id = match done {
            Ok((id, ())) => id,
            Err(e) => {
                tracing::error!(error = %e, "a webhook attempt panicked");
                e.id()
            }
        };
        if let Some(tenant) = self.tenants.remove(&id) {
            self.busy.remove(&tenant);
        }
    }

    fn prune_if_due(&mut self) {
        let now = self.me.clock.now();
        if self.pruned_at.is_some_and(|at| now.since(at) < PRUNE_EVERY) {
            return;
        }
        self.pruned_at = Some(now);
        match self.me.repo.prune_deliveries(now.minus(self.cfg.retention)) {
            Ok(count) => {
                if count > 0 {
                    tracing::info!(
                        pruned = count,
                        "finished webhook deliveries past their retention deleted"
                    );
                }
                let _ = self.me.events.send(WebhookEvent::Pruned { count });
            }
            Err(e) => tracing::error!(error = %e, "could not prune webhook deliveries"),
        }
    }
}

/// One attempt of `d`, recorded (and announced) before it returns.
pub(super) async fn attempt(
    me: Webhooks,
    client: reqwest::Client,
    cfg: Arc<WebhooksConfig>,
    mut d: Delivery,
) {
    // Read again with the target, in one snapshot: a delivery listed
    // before its tenant was purged is gone now, and never goes to a
    // target a tenant re-created under the same id has set since.
    let outcome = match me.repo.delivery_and_target(&d.id) {
        Ok(None) => {
            tracing::info!(delivery = %d.id, "webhook delivery gone before its attempt");
            return;
        }
        Ok(Some((_, Some(target)))) => post(&me.guard, &client, &target, &d).await,
        Ok(Some((_, None))) => Err(DeliveryError::NoTarget),
        Err(e) => {
            tracing::error!(tenant = %d.tenant, error = %e, "could not read the webhook target");
            Err(DeliveryError::Failed)
        }
    };
    let now = me.clock.now();
    d.attempts += 1;
    d.last_attempt_at = Some(now);
    match outcome {
        Ok(()) => {
            d.status = DeliveryStatus::Delivered;
            d.last_error = None;
        }
        Err(why) => {
            d.last_error = Some(why);
            if d.attempts >= cfg.max_attempts {
                d.status = DeliveryStatus::Dead;
                tracing::warn!(tenant = %d.tenant, delivery = %d.id, attempts = d.attempts, error = %why, "webhook delivery dead-lettered");
            } else {
                d.next_at = now.plus(super::retry_delay(&cfg, d.attempts));
                tracing::info!(tenant = %d.tenant, delivery = %d.id, attempts = d.attempts, error = %why, "webhook attempt failed");
            }
        }
    }
    // Only over a row still there: a tenant deleted during the attempt
    // does not get its delivery back.
    match me.repo.update_delivery(&d) {
        Ok(true) => {
            let _ = me.events.send(WebhookEvent::Attempted(d));
        }
        Ok(false) => tracing::info!(delivery = %d.id, "webhook delivery gone during its attempt"),
        Err(e) => {
            tracing::error!(delivery = %d.id, error = %e, "could not record a webhook attempt")
        }
    }
}

/// POSTs the signed body to the target, refusing a literal address the
/// policy refuses (names are checked by the client's resolver).
pub(super) async fn post(
    guard: &resolve::Guard,
    client: &reqwest::Client,
    target: &WebhookTarget,
    d: &Delivery,
) -> Result<(), DeliveryError> {
    match resolve::target_host(&target.url) {
        Err(_) => return Err(DeliveryError::InvalidUrl),
        Ok(resolve::TargetHost::Ip(ip)) if !guard.permits(ip) => {
            return Err(DeliveryError::ForbiddenTarget)
        }
        Ok(_) => {}
    }
    let signature = format!(
        "sha256={}",
        super::hmac_sha256_hex(target.secret.as_bytes(), d.body.as_bytes())
    );
    let res = client
        .post(&target.url)
        .header("content-type", "application/json")
        .header("x-centinela-signature", signature)
        .header("x-centinela-delivery", d.id.clone())
        .body(d.body.clone())
        .send()
        .await;
    match res {
        Ok(r) => DeliveryError::from_status(r.status().as_u16()).map_or(Ok(()), Err),
        Err(e) => {
            // The client's text names addresses and ports: for the
            // operator's debug log only (the log stream tenants read
            // carries INFO and above).
            tracing::debug!(delivery = %d.id, cause = %e, "webhook request failed");
            Err(failure::classify(&e))
        }
    }
}
