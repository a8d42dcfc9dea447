//! Anti-ban admission control. The supervisor asks [`Admission::admit`]
//! before every connection attempt — a user's connect, a restore after a
//! restart, a restart after a crash — and gets either a start time in the
//! connection queue or a denial with a reason a person can read, how long to
//! wait, and until when (seed 003's names).
//!
//! [`evaluate`] is the pure rule set over the ledger projection; [`Admission`]
//! adds the queue (delay, jitter, spacing) and persistence: an admitted
//! attempt is in the ledger on disk before `admit` returns, so killing the
//! process at any moment never lets a rolling window exceed its limit.
//! Beside them sit the other pure policy answers the supervisor acts on:
//! what a session's stop means ([`outcome_of`]) and whether
//! `auto_reconnect` tries again ([`auto_reconnect_after`]). Scheduling the
//! tries, and restoring paired sessions through their breaker
//! ([`recovery`](super::recovery)), are not here.

use super::ledger::{in_window, Ledger, LedgerEvent, LedgerRepo, WindowSlice, DAY, HOUR};
use crate::clock::Timestamp;
use crate::config::AntibanConfig;
use crate::engine::DisconnectReason;
use crate::ids::{SessionId, TenantId};
use crate::session::SessionState;
use crate::store::{DesiredState, StoreError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

pub use crate::store::AttemptKind;

/// Why an attempt was refused (the names of seed 003).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    ServerRateLimit,
    DailyLimit,
    CooldownAfterFailure,
    Error515Block,
    Capacity,
    TenantSessionLimit,
    /// Too many pairing codes for one phone number or one egress path.
    PairingCodeLimit,
    /// WhatsApp refused the tenant's network path (PROXYBLOCK): held until
    /// the session's proxy is changed or an admin unblocks the tenant.
    ProxyBlock,
    /// A tenant's Cloud API sessions connected too often this hour
    /// (`antiban.cloud_connects_per_hour`).
    CloudConnectLimit,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServerRateLimit => "server_rate_limit",
            Self::DailyLimit => "daily_limit",
            Self::CooldownAfterFailure => "cooldown_after_failure",
            Self::Error515Block => "error_515_block",
            Self::Capacity => "capacity",
            Self::TenantSessionLimit => "tenant_session_limit",
            Self::PairingCodeLimit => "pairing_code_limit",
            Self::ProxyBlock => "proxy_block",
            Self::CloudConnectLimit => "cloud_connect_limit",
        }
    }
}

/// A refusal: why, how long to wait, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: DenyReason,
    pub wait: Duration,
    pub block_until: Timestamp,
    /// For a proxy hold: the refused path (no end time; `block_until` is now).
    pub proxy: Option<String>,
}

impl Denial {
    fn until(reason: DenyReason, until: Timestamp, now: Timestamp) -> Self {
        Self {
            reason,
            wait: until.since(now),
            block_until: until,
            proxy: None,
        }
    }

    /// A refusal that lasts until someone acts (no end time).
    pub fn is_hold(&self) -> bool {
        self.proxy.is_some()
    }

    /// When the refusal ends: `None` for a hold.
    pub fn ends_at(&self) -> Option<Timestamp> {
        (!self.is_hold()).then_some(self.block_until)
    }

    /// Minutes to wait, rounded up (a 30 s wait is 1 minute, not 0).
    pub fn wait_minutes(&self) -> u64 {
        self.wait.as_secs().div_ceil(60)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start no earlier than `start_at`; `ticket` identifies the queued attempt.
    Admitted {
        ticket: u64,
        start_at: Timestamp,
    },
    Denied(Denial),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRequest {
    pub tenant: TenantId,
    pub session: SessionId,
    pub kind: AttemptKind,
    /// Sessions live or queued on the server now, not counting this one.
    pub live: u32,
    /// The network path the attempt goes out through ([`egress`]).
    pub egress: String,
    /// The session's engine: a Cloud API connect is judged by its own
    /// rule ([`evaluate_cloud`]).
    pub engine: crate::engine::EngineKind,
}

pub use crate::proxy::egress;

/// How an attempt (or a live session) ended, as far as admission cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Never paired: QR not scanned, engine error before AUTHENTICATED.
    Failure,
    /// TOS_BLOCK, SMB_TOS_BLOCK, or a stream error 515 outside the restart grace.
    Banned,
}

/// What a session's stop means for admission: a ban blocks the tenant; a
/// QR never scanned, or a fault while pairing, is a failed attempt (a
/// cooldown). A local fault on a paired profile is not a failed pairing: it
/// is restored and costs nothing. Anything else is no outcome. Pure.
pub fn outcome_of(from: &SessionState, reason: DisconnectReason, paired: bool) -> Option<Outcome> {
    use DisconnectReason as R;
    match reason {
        R::Banned => Some(Outcome::Banned),
        R::EngineError | R::BrowserCrashed | R::MemoryLimit if paired => None,
        R::QrTimeout | R::EngineError | R::BrowserCrashed
            if matches!(from, SessionState::Connecting | SessionState::Qr { .. }) =>
        {
            Some(Outcome::Failure)
        }
        _ => None,
    }
}

/// Whether `auto_reconnect` tries a stopped session again by itself, and
/// after how long. Only with the setting on, only after a local fault (a
/// browser crash, an engine error: not WhatsApp's verdict), only while the
/// session should run, and at most `reconnect_max_tries` times in a row
/// (`tries` so far); the wait doubles per try from `reconnect_backoff_base`
/// up to `reconnect_backoff_max`. The try is then admitted like any other
/// attempt. Pure.
pub fn auto_reconnect_after(
    cfg: &AntibanConfig,
    reason: DisconnectReason,
    desired: DesiredState,
    tries: u32,
) -> Option<Duration> {
    if !cfg.auto_reconnect || !reason.is_local_fault() {
        return None;
    }
    if desired != DesiredState::Running || tries >= cfg.reconnect_max_tries {
        return None;
    }
    Some(backoff(
        cfg.reconnect_backoff_base,
        cfg.reconnect_backoff_max,
        tries,
    ))
}

/// `base * 2^tries`, capped at `max`.
pub fn backoff(base: Duration, max: Duration, tries: u32) -> Duration {
    base.saturating_mul(1u32 << tries.min(20)).min(max)
}

/// The pairing-code limits over `codes` (phone, egress, when; any
/// order): at most `pairing_codes_per_phone_per_hour` for `phone` and
/// `pairing_codes_per_egress_per_hour` through `egress` in the rolling
/// hour before `now`. Denied until enough of them leave the hour. A single
/// node judges its own ledger with it; a fleet, every node's.
pub fn judge_pairing_code(
    cfg: &AntibanConfig,
    codes: &VecDeque<(String, String, Timestamp)>,
    phone: &str,
    egress: &str,
    now: Timestamp,
) -> Result<(), Denial> {
    let oldest_over = |limit: u32, mine: &dyn Fn(&(String, String, Timestamp)) -> bool| {
        let mut times: Vec<Timestamp> = codes
            .iter()
            .filter(|e| mine(e) && e.2 > now.minus(HOUR))
            .map(|e| e.2)
            .collect();
        times.sort();
        // The request is allowed again once enough of them leave the hour.
        (times.len() >= limit as usize).then(|| times[times.len() - limit as usize])
    };
    let by_phone = oldest_over(cfg.pairing_codes_per_phone_per_hour, &|e| e.0 == phone);
    let by_egress = oldest_over(cfg.pairing_codes_per_egress_per_hour, &|e| e.1 == egress);
    match [by_phone, by_egress].into_iter().flatten().max() {
        Some(first) => Err(Denial::until(
            DenyReason::PairingCodeLimit,
            first.plus(HOUR),
            now,
        )),
        None => Ok(()),
    }
}

/// Whether this kind of attempt spends the hourly and daily budgets.
pub fn counts(cfg: &AntibanConfig, kind: AttemptKind) -> bool {
    match kind {
        AttemptKind::Connect | AttemptKind::CrashRestart | AttemptKind::Reconnect => true,
        AttemptKind::Restore => cfg.restore_counts_as_attempt,
    }
}

/// The rules, most lasting first, for an attempt of `kind` by `tenant`
/// through `egress` with `live` sessions live or queued on the server. It
/// needs no session: it judges the tenant, the path and the server. Pure.
pub fn evaluate(
    cfg: &AntibanConfig,
    ledger: &Ledger,
    tenant: &TenantId,
    kind: AttemptKind,
    live: u32,
    egress: &str,
    now: Timestamp,
) -> Result<(), Denial> {
    if let Some(t) = ledger.tenant(tenant) {
        if t.proxy_blocked.contains_key(egress) {
            return Err(Denial {
                reason: DenyReason::ProxyBlock,
                wait: Duration::ZERO,
                block_until: now,
                proxy: Some(egress.to_owned()),
            });
        }
        if let Some(until) = t.blocked_until.filter(|u| *u > now) {
            return Err(Denial::until(DenyReason::Error515Block, until, now));
        }
        if let Some(until) = t.cooldown_until.filter(|u| *u > now) {
            return Err(Denial::until(DenyReason::CooldownAfterFailure, until, now));
        }
    }
    if counts(cfg, kind) {
        if let Some(t) = ledger.tenant(tenant) {
            let day = in_window(&t.attempts, now, DAY);
            if let Some(until) = window_full(day, cfg.tenant_attempts_per_day, DAY) {
                return Err(Denial::until(DenyReason::DailyLimit, until, now));
            }
        }
        let hour = in_window(&ledger.global, now, HOUR);
        if let Some(until) = window_full(hour, cfg.global_attempts_per_hour, HOUR) {
            return Err(Denial::until(DenyReason::ServerRateLimit, until, now));
        }
    }
    if live >= cfg.max_live_sessions {
        return Err(Denial {
            reason: DenyReason::Capacity,
            wait: Duration::ZERO,
            block_until: now,
            proxy: None,
        });
    }
    Ok(())
}

/// The rule for a Cloud API session's connect: at most
/// `cloud_connects_per_hour` per tenant in any rolling hour. Nothing of
/// WhatsApp Web's applies (no pairing, no browser, no egress budget). Pure.
pub fn evaluate_cloud(
    cfg: &AntibanConfig,
    ledger: &Ledger,
    tenant: &TenantId,
    now: Timestamp,
) -> Result<(), Denial> {
    let Some(t) = ledger.tenant(tenant) else {
        return Ok(());
    };
    let hour = in_window(&t.cloud, now, HOUR);
    match window_full(hour, cfg.cloud_connects_per_hour, HOUR) {
        Some(until) => Err(Denial::until(DenyReason::CloudConnectLimit, until, now)),
        None => Ok(()),
    }
}

/// When a window holding `attempts` (oldest first) is full, the moment a slot
/// frees: when enough of the oldest ones have left the window.
fn window_full(attempts: WindowSlice<'_>, limit: u32, window: Duration) -> Option<Timestamp> {
    let limit = limit as usize;
    if attempts.len() < limit {
        return None;
    }
    attempts.get(attempts.len() - limit).map(|t| t.plus(window))
}

/// The limits on creating sessions. Pure.
pub fn check_create(
    cfg: &AntibanConfig,
    tenant_sessions: u32,
    all_sessions: u32,
    now: Timestamp,
) -> Result<(), Denial> {
    let reason = if tenant_sessions >= cfg.max_sessions_per_tenant {
        DenyReason::TenantSessionLimit
    } else if all_sessions >= cfg.max_sessions {
        DenyReason::Capacity
    } else {
        return Ok(());
    };
    Err(Denial {
        reason,
        wait: Duration::ZERO,
        block_until: now,
        proxy: None,
    })
}

/// An admitted attempt waiting for its start time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuedAttempt {
    pub ticket: u64,
    pub tenant: TenantId,
    pub session: SessionId,
    pub start_at: Timestamp,
}

/// Seed 003's global status fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GlobalStatus {
    pub global_attempts_last_hour: u32,
    pub global_limit: u32,
    pub global_blocked: bool,
    /// When each of those attempts was counted, oldest first (the
    /// dashboard charts them over the rolling hour).
    pub global_attempt_times: Vec<Timestamp>,
}

/// Seed 003's per-organization status fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TenantStatus {
    pub organization_id: TenantId,
    pub can_connect: bool,
    pub block_reason: Option<DenyReason>,
    pub wait_time_minutes: u64,
    pub attempts_last_24h: u32,
    pub daily_limit: u32,
    pub is_blocked_515: bool,
    pub last_failure: Option<Timestamp>,
    pub block_until: Option<Timestamp>,
    /// Network paths WhatsApp refused (PROXYBLOCK), held until an admin
    /// unblocks the tenant; a session on another path may still connect.
    pub proxy_blocked: Vec<String>,
    /// When each attempt of the last 24 h was counted, oldest first (the
    /// dashboard charts them against `daily_limit`).
    pub attempt_times: Vec<Timestamp>,
    /// The end of the cooldown after a failed attempt, while it runs.
    pub cooldown_until: Option<Timestamp>,
    /// The end of the ban block (Error 515 / a WhatsApp ban), while it runs.
    pub blocked_until: Option<Timestamp>,
}

/// The attempt times of a window, oldest first.
fn times(window: WindowSlice<'_>) -> Vec<Timestamp> {
    (0..window.len()).filter_map(|i| window.get(i)).collect()
}

/// The policy with its ledger, queue and persistence. Owned by the
/// supervisor actor, so `&mut self` needs no locks.
pub struct Admission {
    cfg: AntibanConfig,
    ledger: Ledger,
    repo: Arc<dyn LedgerRepo>,
    rng: StdRng,
    queue: BTreeMap<u64, QueuedAttempt>,
    queue_tail: Option<Timestamp>,
}

impl Admission {
    /// Rebuilds the projection from the persisted ledger.
    pub fn load(
        cfg: AntibanConfig,
        repo: Arc<dyn LedgerRepo>,
        rng_seed: Option<u64>,
        now: Timestamp,
    ) -> Result<Self, StoreError> {
        let mut ledger = Ledger::default();
        for event in repo.load(now)? {
            ledger.apply(&event);
        }
        ledger.expire(now);
        let rng = match rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Ok(Self {
            cfg,
            ledger,
            repo,
            rng,
            queue: BTreeMap::new(),
            queue_tail: None,
        })
    }

    pub fn config(&self) -> &AntibanConfig {
        &self.cfg
    }

    fn persist(&mut self, event: LedgerEvent) -> Result<(), StoreError> {
        self.repo.append(&event)?;
        self.ledger.apply(&event);
        Ok(())
    }

    /// Decides one attempt; an admitted one is on disk before this returns.
    pub fn admit(&mut self, req: &AttemptRequest, now: Timestamp) -> Result<Decision, StoreError> {
        self.ledger.expire(now);
        if req.engine == crate::engine::EngineKind::Cloud {
            return self.admit_cloud(req, now);
        }
        let verdict = evaluate(
            &self.cfg,
            &self.ledger,
            &req.tenant,
            req.kind,
            req.live,
            &req.egress,
            now,
        );
        if let Err(denial) = verdict {
            return Ok(Decision::Denied(denial));
        }
        let ticket = self.ledger.next_id;
        self.persist(LedgerEvent::Attempt {
            id: ticket,
            tenant: req.tenant.clone(),
            session: req.session.clone(),
            kind: req.kind,
            counted: counts(&self.cfg, req.kind),
            at: now,
            cloud: false,
        })?;
        Ok(self.enqueue(ticket, req, now))
    }

    /// Puts an attempt admitted as `ticket` in the queue and answers its
    /// start: a Cloud API connect at once, anything else after its delay and
    /// jitter, spaced after the previous start. [`Admission::admit`] calls it
    /// after its own ledger admitted the attempt; in a fleet the shared
    /// ledger admits, and the node that starts the browser still queues it.
    pub fn enqueue(&mut self, ticket: u64, req: &AttemptRequest, now: Timestamp) -> Decision {
        let start_at = if req.engine == crate::engine::EngineKind::Cloud {
            now
        } else {
            let at = self.start_time(req.kind, now);
            self.queue_tail = Some(at);
            at
        };
        self.queue.insert(
            ticket,
            QueuedAttempt {
                ticket,
                tenant: req.tenant.clone(),
                session: req.session.clone(),
                start_at,
            },
        );
        Decision::Admitted { ticket, start_at }
    }

    /// A Cloud API connect: recorded (uncounted by WhatsApp Web's budgets)
    /// and started at once, outside the connection queue's spacing.
    fn admit_cloud(
        &mut self,
        req: &AttemptRequest,
        now: Timestamp,
    ) -> Result<Decision, StoreError> {
        if let Err(denial) = evaluate_cloud(&self.cfg, &self.ledger, &req.tenant, now) {
            return Ok(Decision::Denied(denial));
        }
        let ticket = self.ledger.next_id;
        self.persist(LedgerEvent::Attempt {
            id: ticket,
            tenant: req.tenant.clone(),
            session: req.session.clone(),
            kind: req.kind,
            counted: false,
            at: now,
            cloud: true,
        })?;
        Ok(self.enqueue(ticket, req, now))
    }

    /// Mandatory delay (not for restores) + jitter, at least `queue_spacing`
    /// after the previous queued start.
    fn start_time(&mut self, kind: AttemptKind, now: Timestamp) -> Timestamp {
        let (lo, hi) = (self.cfg.connect_jitter_min, self.cfg.connect_jitter_max);
        let jitter = if hi > lo {
            self.rng.random_range(lo..=hi)
        } else {
            lo
        };
        let delay = match kind {
            AttemptKind::Restore => Duration::ZERO,
            AttemptKind::Connect | AttemptKind::CrashRestart | AttemptKind::Reconnect => {
                self.cfg.connect_delay
            }
        };
        let earliest = now.plus(delay + jitter);
        match self.queue_tail {
            Some(tail) => earliest.max(tail.plus(self.cfg.queue_spacing)),
            None => earliest,
        }
    }

    /// The attempt left the queue and is starting.
    pub fn started(&mut self, ticket: u64) {
        self.queue.remove(&ticket);
    }

    /// Cancels a queued attempt and refunds its budget. False if not queued.
    pub fn cancel(&mut self, ticket: u64, now: Timestamp) -> Result<bool, StoreError> {
        if !self.queue.contains_key(&ticket) {
            return Ok(false);
        }
        self.persist(LedgerEvent::Cancelled {
            id: ticket,
            at: now,
        })?;
        self.queue.remove(&ticket);
        Ok(true)
    }

    /// Takes a queued attempt out of the queue without a ledger event: in
    /// a fleet the refund is the shared ledger's. False if not queued.
    pub fn dequeue(&mut self, ticket: u64) -> bool {
        self.queue.remove(&ticket).is_some()
    }

    /// The queue in start order.
    pub fn queue(&self) -> Vec<QueuedAttempt> {
        let mut q: Vec<QueuedAttempt> = self.queue.values().cloned().collect();
        q.sort_by_key(|a| (a.start_at, a.ticket));
        q
    }

    /// 1-based position of a ticket in the queue.
    pub fn position(&self, ticket: u64) -> Option<usize> {
        self.queue()
            .iter()
            .position(|a| a.ticket == ticket)
            .map(|i| i + 1)
    }

    /// Admits one pairing-code request: at most
    /// `pairing_codes_per_phone_per_hour` for `phone` and
    /// `pairing_codes_per_egress_per_hour` through `egress`, rolling. An
    /// admitted request is in the ledger before this returns.
    pub fn admit_pairing_code(
        &mut self,
        tenant: &TenantId,
        phone: &str,
        egress: &str,
        now: Timestamp,
    ) -> Result<Result<(), Denial>, StoreError> {
        self.ledger.expire(now);
        if let Err(denial) =
            judge_pairing_code(&self.cfg, &self.ledger.pairing_codes, phone, egress, now)
        {
            return Ok(Err(denial));
        }
        self.persist(LedgerEvent::PairingCode {
            tenant: tenant.clone(),
            phone: phone.to_owned(),
            egress: egress.to_owned(),
            at: now,
        })?;
        Ok(Ok(()))
    }

    /// Records how an attempt or session ended.
    pub fn record(
        &mut self,
        tenant: &TenantId,
        session: &SessionId,
        outcome: Outcome,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let event = match outcome {
            Outcome::Failure => LedgerEvent::Failure {
                tenant: tenant.clone(),
                session: session.clone(),
                at: now,
                until: now.plus(self.cfg.cooldown_after_failure),
            },
            Outcome::Banned => LedgerEvent::Banned {
                tenant: tenant.clone(),
                session: session.clone(),
                at: now,
                until: now.plus(self.cfg.ban_block),
            },
        };
        self.persist(event)
    }

    /// WhatsApp refused `egress` (PROXYBLOCK): the tenant's attempts through
    /// it are held until [`Admission::unblock`].
    pub fn record_proxy_block(
        &mut self,
        tenant: &TenantId,
        session: &SessionId,
        egress: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.persist(LedgerEvent::ProxyBlocked {
            tenant: tenant.clone(),
            session: session.clone(),
            egress: egress.to_owned(),
            at: now,
        })
    }

    /// Whether the tenant is held on `egress` (a refused proxy).
    pub fn holds(&self, tenant: &TenantId, egress: &str) -> bool {
        self.ledger
            .tenant(tenant)
            .is_some_and(|t| t.proxy_blocked.contains_key(egress))
    }

    /// Admin override: lift a ban block and any proxy hold. Returns whether
    /// one was in force.
    pub fn unblock(
        &mut self,
        tenant: &TenantId,
        by: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let blocked = self.ledger.tenant(tenant).is_some_and(|t| {
            t.blocked_until.is_some_and(|u| u > now) || !t.proxy_blocked.is_empty()
        });
        self.persist(LedgerEvent::Unblocked {
            tenant: tenant.clone(),
            by: by.to_owned(),
            at: now,
        })?;
        Ok(blocked)
    }

    /// Admin override: end a cooldown. Returns whether one was in force.
    pub fn reset_cooldown(
        &mut self,
        tenant: &TenantId,
        by: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let cooling = self
            .ledger
            .tenant(tenant)
            .and_then(|t| t.cooldown_until)
            .is_some_and(|u| u > now);
        self.persist(LedgerEvent::CooldownReset {
            tenant: tenant.clone(),
            by: by.to_owned(),
            at: now,
        })?;
        Ok(cooling)
    }

    pub fn global_status(&self, now: Timestamp) -> GlobalStatus {
        global_status_in(&self.cfg, &self.ledger, now)
    }

    /// A tenant's status as a user connect through the server's own path
    /// would be judged now.
    pub fn tenant_status(&self, tenant: &TenantId, live: u32, now: Timestamp) -> TenantStatus {
        tenant_status_in(&self.cfg, &self.ledger, tenant, live, &egress(None), now)
    }

    /// Every tenant the ledger knows.
    pub fn known_tenants(&self) -> Vec<TenantId> {
        self.ledger.tenants.keys().cloned().collect()
    }
}

/// The hourly status of `ledger`'s global window (a single node's every
/// attempt, or in a fleet one egress's). Pure.
pub fn global_status_in(cfg: &AntibanConfig, ledger: &Ledger, now: Timestamp) -> GlobalStatus {
    let window = in_window(&ledger.global, now, HOUR);
    let used = window.len() as u32;
    GlobalStatus {
        global_attempts_last_hour: used,
        global_limit: cfg.global_attempts_per_hour,
        global_blocked: used >= cfg.global_attempts_per_hour,
        global_attempt_times: times(window),
    }
}

/// A tenant's status in `ledger` as a user connect through `via` would be
/// judged now. Pure.
pub fn tenant_status_in(
    cfg: &AntibanConfig,
    ledger: &Ledger,
    tenant: &TenantId,
    live: u32,
    via: &str,
    now: Timestamp,
) -> TenantStatus {
    let verdict = evaluate(cfg, ledger, tenant, AttemptKind::Connect, live, via, now);
    let t = ledger.tenant(tenant).cloned().unwrap_or_default();
    let denial = verdict.err();
    TenantStatus {
        organization_id: tenant.clone(),
        can_connect: denial.is_none(),
        block_reason: denial.as_ref().map(|d| d.reason),
        wait_time_minutes: denial.as_ref().map_or(0, |d| d.wait_minutes()),
        attempts_last_24h: in_window(&t.attempts, now, DAY).len() as u32,
        attempt_times: times(in_window(&t.attempts, now, DAY)),
        cooldown_until: t.cooldown_until.filter(|u| *u > now),
        blocked_until: t.blocked_until.filter(|u| *u > now),
        daily_limit: cfg.tenant_attempts_per_day,
        is_blocked_515: t.blocked_until.is_some_and(|u| u > now),
        last_failure: t.last_failure,
        block_until: denial.as_ref().map(|d| d.block_until).filter(|u| *u > now),
        proxy_blocked: t.proxy_blocked.keys().cloned().collect(),
    }
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
