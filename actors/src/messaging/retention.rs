//! Old-data retention (`storage.message_retention`): once an hour, finished
//! outgoing messages last changed longer ago than the retention are
//! deleted with their rows ([`MessageRepo::prune_finished`]), a batch per
//! transaction so no write waits long behind it. Off unless configured.

use crate::clock::{SharedClock, Timestamp};
use crate::store::{MessageRepo, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// Messages deleted per transaction.
pub const BATCH: usize = 5_000;
/// How often the prune runs.
pub const EVERY: Duration = Duration::from_secs(3_600);

/// Deletes every finished message changed before `now - retention`, a
/// batch at a time; returns how many went.
pub async fn prune(
    repo: &Arc<dyn MessageRepo>,
    now: Timestamp,
    retention: Duration,
) -> Result<usize, StoreError> {
    let cutoff = now.minus(retention);
    let mut total = 0;
    loop {
        let repo = repo.clone();
        let n = tokio::task::spawn_blocking(move || repo.prune_finished(cutoff, BATCH))
            .await
            .map_err(|e| StoreError::Db(format!("retention task: {e}")))??;
        total += n;
        if n < BATCH {
            return Ok(total);
        }
    }
}

/// Runs the prune at start and then every [`EVERY`] until `stop`; `None`
/// when retention is off (nothing is started).
pub fn start(
    repo: Arc<dyn MessageRepo>,
    clock: SharedClock,
    retention: Option<Duration>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let retention = retention?;
    Some(tokio::spawn(async move {
        loop {
            match prune(&repo, clock.now(), retention).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(deleted = n, retention = %humantime::format_duration(retention), "finished messages past their retention deleted")
                }
                Err(e) => tracing::error!(error = %e, "could not prune old messages"),
            }
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{SessionId, TenantId};
    use crate::store::{
        AccountRepo, MessageRecord, MessageStatus, SessionRecord, SessionRepo, Store, TenantRecord,
    };

    #[tokio::test]
    async fn the_prune_takes_every_batch_of_old_finished_messages_and_nothing_newer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let t = TenantId::new("t").expect("id");
        let s = SessionId::new("s").expect("id");
        store
            .create_tenant(&TenantRecord {
                id: t.clone(),
                name: "t".into(),
                created_at: Timestamp::from_millis(0),
            })
            .expect("tenant");
        store
            .put_session(&SessionRecord::of(&t, &s))
            .expect("session");
        let hour = 3_600_000;
        // More than one batch of old ones, and some from the last hour.
        let count = BATCH + 7;
        let batch: Vec<MessageRecord> = (0..count + 3)
            .map(|i| {
                let at = if i < count { 0 } else { 10 * hour };
                let mut m = MessageRecord::queued(
                    t.clone(),
                    s.clone(),
                    "5491100000000".into(),
                    "x".into(),
                    Timestamp::from_millis(at),
                );
                m.status = MessageStatus::Failed;
                m
            })
            .collect();
        // Stored as failed at once (one commit): the prune reads the record.
        store.accept(&batch).expect("accept");
        let repo: Arc<dyn MessageRepo> = Arc::new(store.clone());
        let now = Timestamp::from_millis(10 * hour + 1);
        let deleted = prune(&repo, now, Duration::from_secs(3_600))
            .await
            .expect("prune");
        assert_eq!(deleted, count);
        let left = store.messages(&s, 100, None).expect("list");
        assert_eq!(left.len(), 3, "the last hour's stay");
        assert_eq!(
            prune(&repo, now, Duration::from_secs(3_600))
                .await
                .expect("again"),
            0
        );
    }

    #[test]
    fn retention_off_starts_nothing() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let _enter = rt.enter();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let task = start(
            Arc::new(store),
            Arc::new(crate::clock::SystemClock),
            None,
            rx,
        );
        assert!(task.is_none());
    }
}
