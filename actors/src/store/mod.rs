//! The embedded store: one redb file (`<data_dir>/centinela.redb`) with a
//! schema-version table and typed accessors, one write transaction per
//! logical change. Records are JSON values keyed by id.
//!
//! Domain code sees small traits ([`SessionRepo`], [`AuditRepo`], the
//! supervisor's `LedgerRepo`), not redb types, so a
//! shared database can replace redb in fleet mode. redb's default
//! `ExclusiveWriter` lock makes a second process opening the same data dir
//! fail at once with [`StoreError::Locked`].

mod accounts;
mod activity;
mod audit;
mod campaigns;
mod contacts;
mod inbox;
mod ledger;
mod messages;
mod otps;
mod purge;
#[cfg(test)]
mod rows;
mod sessions;
mod webhooks;

pub use accounts::{AccountError, AccountRepo, ApiKeyRecord, Role, TenantRecord, UserRecord};
pub use activity::{hour, ActivityRepo, Counts, HOUR_MS, KEPT as ACTIVITY_KEPT};
pub use audit::{AuditEntry, AuditRepo, AUDIT_CAPACITY};
pub use campaigns::{CampaignPause, CampaignRecord, CampaignRepo, CampaignStatus, Recipient};
pub use contacts::{ContactRepo, FirstExchange, NewContacts};
pub use inbox::{InboxRepo, Incoming, IncomingRecord, MessageStore, INBOX_CAPACITY};
pub use ledger::{AttemptKind, LedgerEvent, LedgerRepo};
pub use messages::{
    activity_change, Deferral, DeferralReason, MessageRecord, MessageRepo, MessageStatus,
    REDACTED_TEXT,
};
pub use otps::{spent, Issue, OtpPurpose, OtpRecord, OtpRepo, OtpStatus, SendLimit};
pub use purge::TenantPurged;
pub use sessions::{DesiredState, SessionRecord, SessionRepo};
pub use webhooks::{
    AutoReplyRepo, AutoReplyRule, AutoReplyRules, Delivery, DeliveryError, DeliveryStatus,
    TenantSettingsRepo, WebhookRepo, WebhookTarget,
};

use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::de::DeserializeOwned;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The schema this build writes. Bumped with a migration when a table changes.
pub const SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The index tables this build keeps (`message_order`, `outbox_places`,
/// `campaigns_running`, `webhook_due`, `webhook_finished`); a file whose
/// `meta.indexes` is lower has them built from its records at open.
const INDEXES: u64 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("data directory {path} is in use by another Centinela process (the store is locked)")]
    Locked { path: PathBuf },
    #[error("cannot open the store at {path}: {why}")]
    Open { path: PathBuf, why: String },
    #[error("store schema version {found} is newer than this build understands ({supported})")]
    SchemaTooNew { found: u64, supported: u64 },
    #[error("store error: {0}")]
    Db(String),
    #[error("corrupt record in {table}: {why}")]
    Corrupt { table: &'static str, why: String },
    /// Fleet: a write about a tenant this node does not hold (any more):
    /// nothing was written.
    #[error("tenant {0} is not held by this node: nothing was written")]
    NotHeld(String),
    /// Fleet: the shared store could not be reached.
    #[error("the fleet's database is unavailable: {0}")]
    Unavailable(String),
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.to_string())
            }
        }
    )*};
}
db_err!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Creates `dir` (and its parents) and makes it 0700.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

impl Store {
    /// Opens (or creates) the store in `data_dir`, creating the directory.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join("centinela.redb");
        let open_err = |e: std::io::Error| StoreError::Open {
            path: path.clone(),
            why: e.to_string(),
        };
        // The data dir holds every tenant's pairing (browser profiles) and
        // the database: only the service's user may read them.
        private_dir(data_dir).map_err(open_err)?;
        let db = Database::create(&path).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                path: data_dir.to_path_buf(),
            },
            other => StoreError::Open {
                path: path.clone(),
                why: other.to_string(),
            },
        })?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(open_err)?;
        let store = Store {
            db: Arc::new(db),
            path,
        };
        store.init_schema()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn init_schema(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get("schema_version")?.map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StoreError::SchemaTooNew {
                        found: v,
                        supported: SCHEMA_VERSION,
                    })
                }
                Some(_) => {}
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION)?;
                }
            }
            sessions::create_tables(&txn)?;
            ledger::create_tables(&txn)?;
            audit::create_tables(&txn)?;
            accounts::create_tables(&txn)?;
            messages::create_tables(&txn)?;
            inbox::create_inbox(&txn)?;
            webhooks::create_tables(&txn)?;
            webhooks::create_auto_replies(&txn)?;
            campaigns::create_tables(&txn)?;
            contacts::create_tables(&txn)?;
            activity::create_tables(&txn)?;
            otps::create_tables(&txn)?;
            let built = meta.get("indexes")?.map_or(0, |v| v.value());
            if built < INDEXES {
                messages::build_indexes(&txn)?;
                campaigns::build_indexes(&txn)?;
                webhooks::build_indexes(&txn)?;
                meta.insert("indexes", INDEXES)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The schema version recorded in the file.
    pub fn schema_version(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let v = meta.get("schema_version")?.map(|v| v.value());
        Ok(v.unwrap_or(0))
    }

    pub(crate) fn db(&self) -> &Database {
        &self.db
    }
}

/// The schema table's rows, for tests ([`rows`]).
#[cfg(test)]
fn meta_rows(txn: &redb::ReadTransaction, out: &mut rows::Rows) -> Result<(), StoreError> {
    rows::table(txn, META, out)
}

/// Removes, within `txn`, every row of a JSON table whose value matches
/// `doomed`; returns the removed values. For purges: it reads the whole
/// table.
pub(crate) fn remove_where<T: DeserializeOwned>(
    txn: &WriteTransaction,
    def: TableDefinition<&str, &[u8]>,
    name: &'static str,
    doomed: impl Fn(&T) -> bool,
) -> Result<Vec<T>, StoreError> {
    let mut table = txn.open_table(def)?;
    let mut gone = Vec::new();
    let mut keys = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        let value: T = serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
            table: name,
            why: e.to_string(),
        })?;
        if doomed(&value) {
            keys.push(k.value().to_owned());
            gone.push(value);
        }
    }
    for k in keys {
        table.remove(k.as_str())?;
    }
    Ok(gone)
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod index_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_dir_is_private_and_the_database_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let store = Store::open(&data).expect("open");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(store.path()), 0o600);
    }

    #[test]
    fn a_new_store_records_its_schema_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
        drop(store);
        let again = Store::open(dir.path()).expect("reopen");
        assert_eq!(again.schema_version().expect("version"), SCHEMA_VERSION);
    }

    #[test]
    fn a_second_open_of_the_same_data_dir_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = Store::open(dir.path()).expect("open");
        let second = Store::open(dir.path());
        assert!(
            matches!(second, Err(StoreError::Locked { .. })),
            "{second:?}"
        );
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            let txn = store.db().begin_write().expect("txn");
            txn.open_table(META)
                .expect("meta")
                .insert("schema_version", SCHEMA_VERSION + 1)
                .expect("insert");
            txn.commit().expect("commit");
        }
        let err = Store::open(dir.path()).expect_err("too new");
        assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{err}");
    }
}
