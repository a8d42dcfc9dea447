//! The outbox writer: one task that takes accept requests from any number of
//! callers, writes them in batches — one durable commit for up to
//! [`BATCH`] messages — and answers each caller only after its batch is on
//! disk. Then it tells whoever listens ([`Notify`], the supervisor in the
//! service) which sessions have new messages. It does not send anything.

use crate::ids::SessionId;
use crate::store::{MessageRecord, MessageRepo, StoreError};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most messages one commit carries.
pub const BATCH: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("the outbox is closed")]
    Closed,
    /// The session was deleted (or its tenant) while the message was on
    /// its way; nothing was stored.
    #[error("session {0} not found")]
    SessionGone(SessionId),
    /// Nothing was stored: the store failed, or (fleet mode) the tenant
    /// is not this node's any more ([`StoreError::NotHeld`]).
    #[error("store failure: {0}")]
    Store(StoreError),
}

/// Told which sessions have newly queued messages (the supervisor).
pub trait Notify: Send + Sync + 'static {
    fn messages_queued(&self, session: SessionId);
}

type Request = (
    MessageRecord,
    oneshot::Sender<Result<MessageRecord, OutboxError>>,
);

/// Handle to the outbox writer; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Request>,
}

impl Outbox {
    /// Starts the writer. `notify`, when set, is told about sessions with
    /// newly queued messages.
    pub fn start(
        repo: Arc<dyn MessageRepo>,
        notify: Option<Arc<dyn Notify>>,
    ) -> (Outbox, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(BATCH * 4);
        let task = tokio::spawn(run(rx, repo, notify));
        (Outbox { tx }, task)
    }

    /// Stores `message` durably and returns the stored record (the existing
    /// one, for a repeated idempotency key); refuses a message whose session
    /// is no longer its tenant's with [`OutboxError::SessionGone`].
    pub async fn accept(&self, message: MessageRecord) -> Result<MessageRecord, OutboxError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((message, reply))
            .await
            .map_err(|_| OutboxError::Closed)?;
        rx.await.map_err(|_| OutboxError::Closed)?
    }
}

async fn run(
    mut rx: mpsc::Receiver<Request>,
    repo: Arc<dyn MessageRepo>,
    notify: Option<Arc<dyn Notify>>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        write(batch, &repo, notify.as_deref()).await;
    }
}

/// Writes one batch and answers its callers. In fleet mode a tenant this
/// node no longer holds refuses the whole commit: its messages are
/// answered that (the caller is sent to the new owner) and the rest are
/// written again without them.
async fn write(mut batch: Vec<Request>, repo: &Arc<dyn MessageRepo>, notify: Option<&dyn Notify>) {
    loop {
        let records: Vec<MessageRecord> = batch.iter().map(|(m, _)| m.clone()).collect();
        let writer = repo.clone();
        let written = tokio::task::spawn_blocking(move || writer.accept(&records))
            .await
            .unwrap_or_else(|e| Err(StoreError::Db(e.to_string())));
        match written {
            Ok(answers) => {
                let sessions: BTreeSet<_> = answers
                    .iter()
                    .flatten()
                    .map(|m| m.session.clone())
                    .collect();
                for (answer, (asked, reply)) in answers.into_iter().zip(batch) {
                    let _ = reply.send(answer.ok_or(OutboxError::SessionGone(asked.session)));
                }
                if let Some(notify) = notify {
                    for session in sessions {
                        notify.messages_queued(session);
                    }
                }
                return;
            }
            Err(StoreError::NotHeld(tenant))
                if batch.iter().any(|(m, _)| m.tenant.as_str() != tenant) =>
            {
                let (gone, rest): (Vec<_>, Vec<_>) = batch
                    .into_iter()
                    .partition(|(m, _)| m.tenant.as_str() == tenant);
                for (_, reply) in gone {
                    let _ =
                        reply.send(Err(OutboxError::Store(StoreError::NotHeld(tenant.clone()))));
                }
                batch = rest;
            }
            Err(e) => {
                tracing::error!(error = %e, "outbox write failed; nothing of the batch was accepted");
                for (_, reply) in batch {
                    let _ = reply.send(Err(OutboxError::Store(e.clone())));
                }
                return;
            }
        }
    }
}
