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
    #[error("store failure: {0}")]
    Store(String),
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
        let (records, replies): (Vec<MessageRecord>, Vec<_>) = batch.into_iter().unzip();
        let sessions_asked: Vec<SessionId> = records.iter().map(|m| m.session.clone()).collect();
        let repo = repo.clone();
        let written = tokio::task::spawn_blocking(move || repo.accept(&records))
            .await
            .unwrap_or_else(|e| Err(StoreError::Db(e.to_string())));
        match written {
            Ok(answers) => {
                let sessions: BTreeSet<_> = answers
                    .iter()
                    .flatten()
                    .map(|m| m.session.clone())
                    .collect();
                for ((answer, reply), asked) in
                    answers.into_iter().zip(replies).zip(&sessions_asked)
                {
                    let _ =
                        reply.send(answer.ok_or_else(|| OutboxError::SessionGone(asked.clone())));
                }
                if let Some(notify) = &notify {
                    for session in sessions {
                        notify.messages_queued(session);
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "outbox write failed; nothing of the batch was accepted");
                for reply in replies {
                    let _ = reply.send(Err(OutboxError::Store(e.to_string())));
                }
            }
        }
    }
}
