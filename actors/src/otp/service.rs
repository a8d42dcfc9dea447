//! The OTP service: issues a code (limits, budget, HMAC, the message in
//! the outbox), verifies one, sends a new one, and follows the carrying
//! messages on the bus to announce `otp.sent` and to void a code whose
//! message failed. The decisions are [`super::rules`]'s; the store runs
//! each read-modify-write in one transaction. It checks no caller: the
//! web layer has already made sure the session (or the OTP) is the
//! caller's tenant's.
//!
//! A code to a number its session never talked to spends the session's
//! new-contact budget (`messaging/budget.rs`) when it is sent. It is
//! asked for at issue: over budget, the answer is a refusal with the time
//! there is room again, not a code that would wait hours in the queue and
//! expire there; the sender never defers an admitted code.

use super::code::{self, Code};
use super::delivery::{self, Delivery};
use super::phone::{PhoneError, E164};
use super::rules::{self, ResendRefusal, Verdict};
use crate::bus::{Bus, BusEvent, MessageStatusEvent, OtpEvent, OtpEventKind};
use crate::clock::{SharedClock, Timestamp};
use crate::config::OtpConfig;
use crate::ids::{SessionId, TenantId};
use crate::messaging::budget::{self, ContactBudget};
use crate::messaging::{Outbox, OutboxError};
use crate::store::{
    ContactRepo, Issue, MessageRecord, MessageRepo, MessageStatus, OtpPurpose, OtpRecord, OtpRepo,
    OtpStatus, SendLimit, SessionRecord, SessionRepo, StoreError,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::broadcast;

/// What the service needs of the node's store besides the codes: the
/// sessions, the queued messages carrying codes, the contacts the
/// new-contact budget counts.
pub trait OtpStore: MessageRepo + SessionRepo + ContactRepo {}

impl<T: MessageRepo + SessionRepo + ContactRepo> OtpStore for T {}

const DAY: Duration = Duration::from_secs(24 * 3600);
const HOUR: Duration = Duration::from_secs(3600);

/// Why a code is not sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReason {
    /// `otp.per_phone_per_day` codes went to this phone in the last 24 h.
    PhoneLimit,
    /// `otp.per_address_per_hour` codes were asked from this address in
    /// the last hour.
    AddressLimit,
    /// The session's new-contact budget is spent: the code would wait.
    NewContactBudget,
}

impl LimitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitReason::PhoneLimit => "phone_limit",
            LimitReason::AddressLimit => "address_limit",
            LimitReason::NewContactBudget => "new_contact_budget",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OtpError {
    #[error(transparent)]
    Phone(#[from] PhoneError),
    #[error("session {0} not found")]
    SessionNotFound(SessionId),
    #[error("OTP {0} not found")]
    NotFound(String),
    #[error("no code may be sent now ({}): retry after {retry_at}", reason.as_str())]
    Limited {
        reason: LimitReason,
        retry_at: Timestamp,
        /// From the time of the refusal to `retry_at`.
        wait: Duration,
    },
    #[error("a new code may be sent from {at}")]
    TooSoon { at: Timestamp, wait: Duration },
    #[error("this code was used already")]
    AlreadyUsed,
    /// Exhausted, superseded or undelivered: a new OTP is needed.
    #[error("this code was voided ({0:?}): ask for a new one")]
    Voided(OtpStatus),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// A code to send.
#[derive(Debug, Clone)]
pub struct NewOtp {
    pub tenant: TenantId,
    pub session: SessionId,
    /// As the client typed it; checked here.
    pub phone: String,
    pub purpose: OtpPurpose,
    /// The client address the request came from; requests without one
    /// share one allowance.
    pub client: Option<IpAddr>,
}

struct Inner {
    otps: Arc<dyn OtpRepo>,
    store: Arc<dyn OtpStore>,
    outbox: Outbox,
    bus: Bus,
    clock: SharedClock,
    cfg: OtpConfig,
    budget: ContactBudget,
    secret: Vec<u8>,
    rng: Mutex<StdRng>,
    /// When expired OTPs were last pruned (at most once per
    /// [`PRUNE_EVERY`], on an issue: records only grow there).
    pruned_at: Mutex<Option<Timestamp>>,
}

/// How often expired OTPs past `otp.retention` are pruned.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Handle to the service; cheap to clone.
#[derive(Clone)]
pub struct Otp {
    inner: Arc<Inner>,
}

/// What the service is made of.
pub struct OtpParts {
    /// The codes: the node's store, or the fleet's in fleet mode (a code
    /// sent through one node is verified through any).
    pub otps: Arc<dyn OtpRepo>,
    pub store: Arc<dyn OtpStore>,
    pub outbox: Outbox,
    pub clock: SharedClock,
    pub config: OtpConfig,
    pub budget: ContactBudget,
    /// The HMAC key codes are stored under.
    pub secret: Vec<u8>,
}

impl Otp {
    /// The service, and the task following its messages on `bus` (it ends
    /// with the bus).
    pub fn start(parts: OtpParts, bus: &Bus) -> (Otp, tokio::task::JoinHandle<()>) {
        let otp = Otp {
            inner: Arc::new(Inner {
                otps: parts.otps,
                store: parts.store,
                outbox: parts.outbox,
                bus: bus.clone(),
                clock: parts.clock,
                cfg: parts.config,
                budget: parts.budget,
                secret: parts.secret,
                rng: Mutex::new(StdRng::from_os_rng()),
                pruned_at: Mutex::new(None),
            }),
        };
        // The follower holds the service weakly: it must not keep the
        // outbox and the store alive once every handle is gone.
        let task = tokio::spawn(follow(Arc::downgrade(&otp.inner), bus.subscribe()));
        (otp, task)
    }

    pub fn config(&self) -> &OtpConfig {
        &self.inner.cfg
    }

    /// An OTP, whoever's it is.
    pub fn get(&self, id: &str) -> Result<Option<OtpRecord>, OtpError> {
        Ok(self.inner.otps.otp(id)?)
    }

    /// Issues a code to `req.phone` through `req.session` (the tenant's):
    /// stored as its HMAC, voiding the phone's previous code, and queued
    /// durably before the answer. Refused over a limit or the session's
    /// new-contact budget, with the time there is room again.
    pub async fn create(&self, req: NewOtp) -> Result<OtpRecord, OtpError> {
        let phone = E164::parse(&req.phone)?;
        let me = &self.inner;
        let now = me.clock.now();
        self.prune_if_due(now);
        let session = me
            .store
            .get_session(&req.session)?
            .filter(|s| s.tenant == req.tenant)
            .ok_or_else(|| OtpError::SessionNotFound(req.session.clone()))?;
        self.within_budget(&session, &phone, now)?;
        let id = format!("otp_{}", uuid::Uuid::new_v4().simple());
        let (digest, message) = self.message(&session, &id, &phone, now);
        let record = OtpRecord {
            id,
            tenant: session.tenant.clone(),
            session: session.id.clone(),
            phone: phone.to_string(),
            purpose: req.purpose,
            digest,
            status: OtpStatus::Pending,
            attempts_left: me.cfg.max_attempts,
            created_at: now,
            issued_at: now,
            expires_at: now.plus(me.cfg.ttl),
            resend_at: now.plus(me.cfg.resend_after),
            sends: 1,
            message_id: Some(message.id.clone()),
            updated_at: now,
        };
        let limits = self.limits(&phone, req.client);
        let issued = me
            .otps
            .issue_otp(&record, &limits, now, &mut |found| found.is_none())?;
        match issued {
            Issue::Stored { superseded } => {
                self.withdraw(
                    superseded.iter().filter_map(|o| o.message_id.as_deref()),
                    now,
                );
            }
            Issue::Limited { index, retry_at } => return Err(limited(index, retry_at, now)),
            Issue::Refused(_) => {
                return Err(StoreError::Db("an OTP id was drawn twice".into()).into())
            }
        }
        tracing::info!(tenant = %record.tenant, session = %record.session, otp = %record.id, purpose = ?record.purpose, "verification code issued");
        self.deliver(record, message).await
    }

    /// Checks `code` against OTP `id` (one attempt); the verdict and the
    /// record after it.
    pub fn verify(&self, id: &str, code: &str) -> Result<(Verdict, OtpRecord), OtpError> {
        let me = &self.inner;
        let now = me.clock.now();
        let (mut verdict, mut counted) = (None, false);
        let record = me
            .otps
            .update_otp(id, &mut |r| {
                let right = code::matches(&me.secret, &r.id, &r.digest, code);
                let (v, changed) = rules::verify(r, right, now);
                (verdict, counted) = (Some(v), changed);
                changed
            })?
            .ok_or_else(|| OtpError::NotFound(id.to_owned()))?;
        let verdict = verdict.expect("update_otp calls the change on the record it found");
        // Announced: what an attempt did to a live code, and a try on an
        // expired one; tries on a code already used or voided change nothing.
        let kind = match verdict {
            Verdict::Verified => Some((OtpEventKind::Verified, None)),
            Verdict::Expired => Some((OtpEventKind::Failed, verdict.failure())),
            v if counted => v
                .failure()
                .map(|reason| (OtpEventKind::Failed, Some(reason))),
            _ => None,
        };
        tracing::info!(tenant = %record.tenant, session = %record.session, otp = %record.id, verdict = ?verdict, attempts_left = record.attempts_left, "verification attempt");
        if let Some((kind, reason)) = kind {
            self.announce(&record, kind, reason, now);
        }
        Ok((verdict, record))
    }

    /// A new code for OTP `id` (the old one stops working), once its
    /// resend time has come; the same limits as a first code.
    pub async fn resend(&self, id: &str, client: Option<IpAddr>) -> Result<OtpRecord, OtpError> {
        let me = &self.inner;
        let now = me.clock.now();
        let current = me
            .otps
            .otp(id)?
            .ok_or_else(|| OtpError::NotFound(id.to_owned()))?;
        rules::resend(&current, now).map_err(|r| refused(r, now))?;
        let phone = E164::parse(&current.phone)?;
        let session = me
            .store
            .get_session(&current.session)?
            .ok_or_else(|| OtpError::SessionNotFound(current.session.clone()))?;
        self.within_budget(&session, &phone, now)?;
        let (digest, message) = self.message(&session, id, &phone, now);
        let mut next = current.clone();
        rules::reissue(
            &mut next,
            digest,
            now,
            me.cfg.ttl,
            me.cfg.resend_after,
            me.cfg.max_attempts,
        );
        next.message_id = Some(message.id.clone());
        let mut refusal = None;
        let issued =
            me.otps.issue_otp(
                &next,
                &self.limits(&phone, client),
                now,
                &mut |found| match found.map(|r| rules::resend(r, now)) {
                    Some(Ok(())) => true,
                    Some(Err(r)) => {
                        refusal = Some(r);
                        false
                    }
                    None => false,
                },
            )?;
        match issued {
            Issue::Stored { superseded } => {
                let old = current.message_id.as_deref().into_iter();
                let others = superseded.iter().filter_map(|o| o.message_id.as_deref());
                self.withdraw(old.chain(others), now);
            }
            Issue::Limited { index, retry_at } => return Err(limited(index, retry_at, now)),
            Issue::Refused(_) => {
                return Err(
                    refusal.map_or_else(|| OtpError::NotFound(id.to_owned()), |r| refused(r, now))
                )
            }
        }
        tracing::info!(tenant = %next.tenant, session = %next.session, otp = %next.id, sends = next.sends, "verification code sent again");
        self.deliver(next, message).await
    }

    /// Removes the OTPs that expired more than `otp.retention` ago, if the
    /// last prune is [`PRUNE_EVERY`] old. A failure is logged; the next
    /// issue tries again.
    fn prune_if_due(&self, now: Timestamp) {
        let me = &self.inner;
        {
            let mut at = me.pruned_at.lock().unwrap_or_else(|p| p.into_inner());
            if at.is_some_and(|t| now.since(t) < PRUNE_EVERY) {
                return;
            }
            *at = Some(now);
        }
        match me.otps.prune_otps(now.minus(me.cfg.retention)) {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "expired verification codes pruned"),
            Err(e) => tracing::warn!(error = %e, "could not prune expired verification codes"),
        }
    }

    /// A fresh code's fingerprint for OTP `id` and the message carrying it.
    fn message(
        &self,
        session: &SessionRecord,
        id: &str,
        phone: &E164,
        now: Timestamp,
    ) -> (String, MessageRecord) {
        let me = &self.inner;
        let code = {
            let mut rng = me.rng.lock().unwrap_or_else(|p| p.into_inner());
            Code::generate(&mut *rng)
        };
        let (text, template) = match delivery::for_engine(session.engine, &code, &me.cfg) {
            Delivery::Text(text) => (text, None),
            Delivery::Template(t) => (String::new(), Some(t)),
        };
        let mut message = MessageRecord::queued(
            session.tenant.clone(),
            session.id.clone(),
            phone.digits().to_owned(),
            text,
            now,
        )
        .carrying_code(id.to_owned(), now.plus(me.cfg.ttl));
        message.template = template;
        (code::digest(&me.secret, id, code.reveal()), message)
    }

    /// The limits a code to `phone` asked from `client` counts against.
    fn limits(&self, phone: &E164, client: Option<IpAddr>) -> [SendLimit; 2] {
        let cfg = &self.inner.cfg;
        let addr = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        [
            SendLimit {
                scope: format!("phone:{phone}"),
                max: cfg.per_phone_per_day,
                window: DAY,
            },
            SendLimit {
                scope: format!("addr:{addr}"),
                max: cfg.per_address_per_hour,
                window: HOUR,
            },
        ]
    }

    /// Refuses a code the session's new-contact budget could not send now.
    fn within_budget(
        &self,
        session: &SessionRecord,
        phone: &E164,
        now: Timestamp,
    ) -> Result<(), OtpError> {
        let store = &self.inner.store;
        if store.is_known(&session.id, phone.digits())? {
            return Ok(());
        }
        let recent = store.new_contact_sends(&session.id, now.minus(budget::DAY))?;
        match self.inner.budget.verdict(&recent, session.paired_at, now) {
            budget::Verdict::Now => Ok(()),
            budget::Verdict::Wait(retry_at) => {
                tracing::info!(tenant = %session.tenant, session = %session.id, retry_at = %retry_at, "verification code refused: the new-contact budget is spent");
                Err(OtpError::Limited {
                    reason: LimitReason::NewContactBudget,
                    retry_at,
                    wait: retry_at.since(now),
                })
            }
        }
    }

    /// Queues the code's message; if the outbox refuses it, the code is
    /// void (it can never arrive).
    async fn deliver(
        &self,
        record: OtpRecord,
        message: MessageRecord,
    ) -> Result<OtpRecord, OtpError> {
        match self.inner.outbox.accept(message).await {
            Ok(_) => Ok(record),
            Err(e) => {
                self.undelivered(&record.id, record.message_id.as_deref());
                Err(e.into())
            }
        }
    }

    /// Takes the messages of voided codes out of the queue, if they are
    /// still in it.
    fn withdraw<'a>(&self, messages: impl Iterator<Item = &'a str>, now: Timestamp) {
        let me = &self.inner;
        for id in messages {
            let Ok(Some(mut m)) = me.store.message(id) else {
                continue;
            };
            if !matches!(m.status, MessageStatus::Queued | MessageStatus::Deferred) {
                continue;
            }
            m.status = MessageStatus::Failed;
            m.error = Some("superseded".into());
            m.updated_at = now;
            if let Err(e) = me.store.update(&m) {
                tracing::error!(message = %m.id, error = %e, "could not withdraw a voided code's message");
                continue;
            }
            me.bus.publish(BusEvent::MessageStatus(MessageStatusEvent {
                tenant: m.tenant.clone(),
                session: m.session.clone(),
                message_id: m.id.clone(),
                status: m.status,
                otp: m.otp.clone(),
                at: now,
            }));
        }
    }

    /// OTP `id`'s current message `message` cannot arrive: the code is
    /// void (unless it moved on meanwhile).
    fn undelivered(&self, id: &str, message: Option<&str>) {
        let me = &self.inner;
        let now = me.clock.now();
        let mut changed = false;
        let updated = me.otps.update_otp(id, &mut |r| {
            changed = r.status == OtpStatus::Pending && r.message_id.as_deref() == message;
            if changed {
                r.status = OtpStatus::Undelivered;
                r.updated_at = now;
            }
            changed
        });
        match updated {
            Ok(Some(r)) if changed => {
                tracing::warn!(tenant = %r.tenant, session = %r.session, otp = %r.id, "verification code could not be delivered: voided");
                self.announce(&r, OtpEventKind::Failed, Some("undelivered"), now);
            }
            Ok(_) => {}
            Err(e) => tracing::error!(otp = id, error = %e, "could not void an undelivered code"),
        }
    }

    fn announce(
        &self,
        r: &OtpRecord,
        kind: OtpEventKind,
        reason: Option<&'static str>,
        at: Timestamp,
    ) {
        self.inner.bus.publish(BusEvent::Otp(OtpEvent {
            tenant: r.tenant.clone(),
            session: r.session.clone(),
            otp: r.id.clone(),
            kind,
            reason,
            attempts_left: r.attempts_left,
            at,
        }));
    }
}

fn limited(index: usize, retry_at: Timestamp, now: Timestamp) -> OtpError {
    let reason = match index {
        0 => LimitReason::PhoneLimit,
        _ => LimitReason::AddressLimit,
    };
    OtpError::Limited {
        reason,
        retry_at,
        wait: retry_at.since(now),
    }
}

fn refused(r: ResendRefusal, now: Timestamp) -> OtpError {
    match r {
        ResendRefusal::AlreadyUsed => OtpError::AlreadyUsed,
        ResendRefusal::Voided(status) => OtpError::Voided(status),
        ResendRefusal::TooSoon(at) => OtpError::TooSoon {
            at,
            wait: at.since(now),
        },
    }
}

/// Announces `otp.sent` when a code's current message reaches WhatsApp,
/// and voids the code when it fails (not on WhatsApp, expired in the
/// queue). Ends with the bus.
async fn follow(service: Weak<Inner>, mut rx: broadcast::Receiver<BusEvent>) {
    loop {
        let ev = match rx.recv().await {
            Ok(BusEvent::MessageStatus(ev)) => ev,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(id) = ev.otp.as_deref() else {
            continue;
        };
        let Some(inner) = service.upgrade() else {
            return;
        };
        let otp = Otp { inner };
        match ev.status {
            MessageStatus::Sent => {
                let current = otp.get(id).ok().flatten();
                if let Some(r) = current.filter(|r| r.message_id.as_ref() == Some(&ev.message_id)) {
                    otp.announce(&r, OtpEventKind::Sent, None, ev.at);
                }
            }
            MessageStatus::Failed => otp.undelivered(id, Some(&ev.message_id)),
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
