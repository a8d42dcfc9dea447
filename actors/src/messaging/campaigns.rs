//! The campaign runner: feeds each running campaign's recipients into the
//! outbox one at a time — the next only once the previous left the queue —
//! so a campaign is paced exactly like single sends by the session's sender.
//! Every message carries the idempotency key `campaign/<id>/<index>`, so a
//! restart never queues a recipient twice. At most `max_running` campaigns
//! run server-wide. Texts are rendered by [`super::template`]: a campaign
//! whose recipients do not all render is refused at creation, and a
//! recipient of a stored campaign that does not (one written before the
//! caps, or behind the API's back) is counted failed and skipped.

use super::template::{render, RenderError};
use super::{Outbox, OutboxError};
use crate::bus::{Bus, BusEvent};
use crate::clock::SharedClock;
use crate::store::{
    CampaignRecord, CampaignRepo, CampaignStatus, MessageRecord, MessageRepo, MessageStatus,
    StoreError,
};
use std::sync::Arc;
use tokio::sync::{broadcast, Notify};

/// Everything the runner needs of the store.
pub trait CampaignStore: CampaignRepo + MessageRepo {}

impl<T: CampaignRepo + MessageRepo> CampaignStore for T {}

#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error("campaign {0} not found")]
    NotFound(String),
    #[error("{0}")]
    State(&'static str),
    #[error("at most {0} campaigns may run at once")]
    Limit(usize),
    /// Recipient `index` (0-based) cannot be rendered.
    #[error("recipient {index}: {error}")]
    Render { index: usize, error: RenderError },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

fn key(c: &CampaignRecord, index: usize) -> String {
    format!("campaign/{}/{index}", c.id)
}

/// Handle to the runner; cheap to clone.
#[derive(Clone)]
pub struct Campaigns {
    repo: Arc<dyn CampaignStore>,
    bus: Bus,
    clock: SharedClock,
    kick: Arc<Notify>,
    max_running: usize,
    /// Serializes every read-modify-write of campaign records (the runner's
    /// steps and the API's start/pause/cancel), so none undoes another.
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Campaigns {
    pub fn start(
        repo: Arc<dyn CampaignStore>,
        outbox: Outbox,
        bus: &Bus,
        clock: SharedClock,
        max_running: usize,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> (Campaigns, tokio::task::JoinHandle<()>) {
        let me = Campaigns {
            repo,
            bus: bus.clone(),
            clock,
            kick: Arc::new(Notify::new()),
            max_running,
            lock: Arc::default(),
        };
        let task = tokio::spawn(run(me.clone(), outbox, bus.subscribe(), stop));
        (me, task)
    }

    /// Stores a new campaign once every recipient's text renders within
    /// the caps (the first that does not is named in the error).
    pub fn create(&self, c: &CampaignRecord) -> Result<(), CampaignError> {
        Self::check(c)?;
        Ok(self.repo.put_campaign(c)?)
    }

    /// Whether every recipient's text renders within the caps.
    pub fn check(c: &CampaignRecord) -> Result<(), CampaignError> {
        for (index, r) in c.recipients.iter().enumerate() {
            if let Err(error) = render(&c.template, &r.vars) {
                return Err(CampaignError::Render { index, error });
            }
        }
        Ok(())
    }

    /// The message of `c`'s last queued recipient, if any.
    pub fn current(&self, c: &CampaignRecord) -> Result<Option<MessageRecord>, CampaignError> {
        if c.next == 0 {
            return Ok(None);
        }
        Ok(self
            .repo
            .by_idempotency_key(&c.tenant, &key(c, c.next - 1))?)
    }

    pub fn get(&self, id: &str) -> Result<CampaignRecord, CampaignError> {
        self.repo
            .campaign(id)?
            .ok_or_else(|| CampaignError::NotFound(id.to_owned()))
    }

    pub fn list(&self) -> Result<Vec<CampaignRecord>, CampaignError> {
        Ok(self.repo.campaigns()?)
    }

    /// Starts (from draft) or resumes (from paused) a campaign, within the cap.
    pub async fn run(&self, id: &str) -> Result<CampaignRecord, CampaignError> {
        let _guard = self.lock.lock().await;
        let mut c = self.get(id)?;
        if !matches!(c.status, CampaignStatus::Draft | CampaignStatus::Paused) {
            return Err(CampaignError::State(
                "only a draft or paused campaign can run",
            ));
        }
        let running = self.repo.running_campaigns()?.len();
        if running >= self.max_running {
            return Err(CampaignError::Limit(self.max_running));
        }
        c.status = CampaignStatus::Running;
        c.paused = None;
        self.save(&mut c)?;
        self.kick.notify_one();
        Ok(c)
    }

    /// Pauses every running campaign of `session` on the server's own
    /// account (`reason`, with `detail` for a person); returns how many.
    pub async fn pause_session(
        &self,
        session: &crate::ids::SessionId,
        reason: &str,
        detail: &str,
    ) -> Result<usize, CampaignError> {
        let _guard = self.lock.lock().await;
        let running: Vec<CampaignRecord> = self
            .repo
            .running_campaigns()?
            .into_iter()
            .filter(|c| c.session == *session)
            .collect();
        for mut c in running.iter().cloned() {
            c.status = CampaignStatus::Paused;
            c.paused = Some(crate::store::CampaignPause {
                reason: reason.to_owned(),
                detail: detail.to_owned(),
                at: self.clock.now(),
            });
            self.save(&mut c)?;
            tracing::warn!(campaign = %c.id, tenant = %c.tenant, session = %session, reason, detail, "campaign paused by the server");
        }
        Ok(running.len())
    }

    pub async fn pause(&self, id: &str) -> Result<CampaignRecord, CampaignError> {
        let _guard = self.lock.lock().await;
        let mut c = self.get(id)?;
        if c.status != CampaignStatus::Running {
            return Err(CampaignError::State(
                "only a running campaign can be paused",
            ));
        }
        c.status = CampaignStatus::Paused;
        self.save(&mut c)?;
        Ok(c)
    }

    /// Stops for good; a recipient queued but not yet sent is withdrawn.
    pub async fn cancel(&self, id: &str) -> Result<CampaignRecord, CampaignError> {
        let _guard = self.lock.lock().await;
        let mut c = self.get(id)?;
        if matches!(
            c.status,
            CampaignStatus::Cancelled | CampaignStatus::Completed
        ) {
            return Err(CampaignError::State("the campaign has ended"));
        }
        if c.next > 0 {
            if let Some(mut m) = self
                .repo
                .by_idempotency_key(&c.tenant, &key(&c, c.next - 1))?
            {
                if matches!(m.status, MessageStatus::Queued | MessageStatus::Deferred) {
                    m.status = MessageStatus::Failed;
                    m.error = Some("campaign cancelled".into());
                    m.updated_at = self.clock.now();
                    self.repo.update(&m)?;
                }
            }
        }
        c.status = CampaignStatus::Cancelled;
        self.save(&mut c)?;
        Ok(c)
    }

    /// Holds the runner (and every start, pause and cancel) until the guard
    /// drops. A tenant purge runs under it, so no step in flight writes
    /// back a campaign the purge removed.
    pub async fn hold(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.lock.clone().lock_owned().await
    }

    /// Writes the record, then announces the progress.
    fn save(&self, c: &mut CampaignRecord) -> Result<(), StoreError> {
        c.updated_at = self.clock.now();
        self.repo.put_campaign(c)?;
        self.bus
            .publish(BusEvent::Campaign(crate::bus::CampaignEvent {
                tenant: c.tenant.clone(),
                session: c.session.clone(),
                campaign: c.id.clone(),
                status: c.status,
                total: c.recipients.len(),
                queued: c.next,
                sent: c.sent,
                failed: c.failed,
                at: c.updated_at,
            }));
        Ok(())
    }
}

/// Completes when the server shuts down.
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await.map(|_| ());
}

/// Runs until shutdown (the runner holds a bus sender of its own, so it
/// cannot wait for the bus to close).
async fn run(
    me: Campaigns,
    outbox: Outbox,
    mut bus: broadcast::Receiver<BusEvent>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = step_all(&me, &outbox).await {
            tracing::error!(error = %e, "campaign runner step failed");
        }
        // Wake on a message status change (a campaign message may have left
        // the queue), a session READY (in fleet mode, perhaps one whose
        // campaigns another node ran) or a kick (a campaign started or
        // resumed).
        loop {
            tokio::select! {
                ev = bus.recv() => match ev {
                    Ok(BusEvent::MessageStatus(_)) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Ok(BusEvent::Transition(t)) if matches!(t.to, crate::session::SessionState::Ready { .. }) => break,
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = me.kick.notified() => break,
                _ = stopped(&mut stop) => return,
            }
        }
    }
}

/// For each running campaign whose last queued message has left the queue:
/// count its outcome, then queue the next recipient (or complete). The
/// counts and the position are saved together after the next is queued; a
/// crash in between re-queues the same recipient, which the idempotency key
/// turns into the same message.
async fn step_all(me: &Campaigns, outbox: &Outbox) -> Result<(), CampaignError> {
    let running: Vec<String> = me
        .repo
        .running_campaigns()?
        .into_iter()
        .map(|c| c.id)
        .collect();
    for id in running {
        let _guard = me.lock.lock().await;
        // Re-read under the lock: a pause or cancel may have just landed.
        let Some(mut c) = me
            .repo
            .campaign(&id)?
            .filter(|c| c.status == CampaignStatus::Running)
        else {
            continue;
        };
        if c.next > 0 {
            let last = me
                .repo
                .by_idempotency_key(&c.tenant, &key(&c, c.next - 1))?;
            match last.map(|m| m.status) {
                Some(MessageStatus::Queued | MessageStatus::Deferred | MessageStatus::Sending) => {
                    continue
                }
                Some(
                    MessageStatus::Sent
                    | MessageStatus::Delivered
                    | MessageStatus::Read
                    | MessageStatus::Played,
                ) => c.sent += 1,
                Some(MessageStatus::Failed | MessageStatus::Unknown) | None => c.failed += 1,
            }
        }
        let Some((index, to, text)) = next_renderable(&mut c) else {
            c.status = CampaignStatus::Completed;
            me.save(&mut c)?;
            tracing::info!(campaign = %c.id, sent = c.sent, failed = c.failed, "campaign completed");
            continue;
        };
        match queue(me, outbox, &c, index, to, text).await {
            Ok(()) => c.next = index + 1,
            Err(OutboxError::SessionGone(session)) => {
                // Deleted (or its tenant): nothing more can be sent.
                c.status = CampaignStatus::Cancelled;
                tracing::info!(campaign = %c.id, tenant = %c.tenant, session = %session, "campaign cancelled: its session is gone");
            }
            Err(e) => return Err(e.into()),
        }
        me.save(&mut c)?;
    }
    Ok(())
}

/// The next recipient from `c.next` whose text renders, with the text.
/// Those before it that do not render are counted failed and passed (so
/// `c.next - 1` is always the last one queued, or the end).
fn next_renderable(c: &mut CampaignRecord) -> Option<(usize, String, String)> {
    while let Some(r) = c.recipients.get(c.next) {
        match render(&c.template, &r.vars) {
            Ok(text) => return Some((c.next, r.to.clone(), text)),
            Err(e) => {
                tracing::warn!(campaign = %c.id, tenant = %c.tenant, index = c.next, error = %e, "campaign recipient cannot be rendered: failed");
                c.failed += 1;
                c.next += 1;
            }
        }
    }
    None
}

async fn queue(
    me: &Campaigns,
    outbox: &Outbox,
    c: &CampaignRecord,
    index: usize,
    to: String,
    text: String,
) -> Result<(), OutboxError> {
    let now = me.clock.now();
    let m = MessageRecord::queued(c.tenant.clone(), c.session.clone(), to, text, now)
        .with_key(Some(key(c, index)));
    outbox.accept(m).await?;
    Ok(())
}

#[cfg(test)]
#[path = "campaigns_tests.rs"]
mod runner_tests;
