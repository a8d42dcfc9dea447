//! Webhook targets (one per tenant: a URL and the secret that signs each
//! body) and the delivery queue: every delivery is a record written before
//! the first attempt and updated after each one, so a restart loses none.
//! A failed attempt is recorded as a generic [`DeliveryError`] code, never
//! the HTTP client's or the receiver's text; finished deliveries are pruned
//! after the retention the caller names.

use super::{remove_where, Store, StoreError};
use crate::clock::Timestamp;
use crate::ids::{SessionId, TenantId};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

const TARGETS: TableDefinition<&str, &[u8]> = TableDefinition::new("webhook_targets");
const DELIVERIES: TableDefinition<&str, &[u8]> = TableDefinition::new("webhook_deliveries");
/// (next_at in ms, id) → (): the pending deliveries, soonest first; the
/// delivery loop reads only these, however many finished ones are kept.
const DUE: TableDefinition<(i64, &str), ()> = TableDefinition::new("webhook_due");
/// (finished at in ms, id) → (): the delivered and dead deliveries, oldest
/// first; the prune reads only those past their retention.
const FINISHED: TableDefinition<(i64, &str), ()> = TableDefinition::new("webhook_finished");

/// Where `d` sits in the indexes: its key in [`DUE`] while pending, in
/// [`FINISHED`] once finished.
fn index_key(d: &Delivery) -> (TableDefinition<'static, (i64, &'static str), ()>, i64) {
    match d.finished_at() {
        None => (DUE, d.next_at.as_millis()),
        Some(at) => (FINISHED, at.as_millis()),
    }
}

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(TARGETS)?;
    txn.open_table(DELIVERIES)?;
    txn.open_table(DUE)?;
    txn.open_table(FINISHED)?;
    Ok(())
}

/// Fills [`DUE`] and [`FINISHED`] from the deliveries, for a file written
/// before they existed (run once, at open).
pub(super) fn build_indexes(txn: &WriteTransaction) -> Result<(), StoreError> {
    let deliveries = txn.open_table(DELIVERIES)?;
    for row in deliveries.iter()? {
        let (_, v) = row?;
        let d: Delivery = dec("webhook_deliveries", v.value())?;
        let (table, at) = index_key(&d);
        txn.open_table(table)?.insert((at, d.id.as_str()), ())?;
    }
    Ok(())
}

/// Removes `d`'s row from its index, within `txn`.
fn unindex(txn: &WriteTransaction, d: &Delivery) -> Result<(), StoreError> {
    let (table, at) = index_key(d);
    txn.open_table(table)?.remove((at, d.id.as_str()))?;
    Ok(())
}

/// Writes `d` within `txn`, moving its index row from where the record it
/// replaces (if any) had it.
fn write_delivery(txn: &WriteTransaction, d: &Delivery) -> Result<(), StoreError> {
    let old = txn
        .open_table(DELIVERIES)?
        .insert(d.id.as_str(), enc(d)?.as_slice())?
        .map(|v| dec::<Delivery>("webhook_deliveries", v.value()))
        .transpose()?;
    if let Some(old) = old {
        unindex(txn, &old)?;
    }
    let (table, at) = index_key(d);
    txn.open_table(table)?.insert((at, d.id.as_str()), ())?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookTarget {
    pub tenant: TenantId,
    pub url: String,
    /// Signs bodies (HMAC-SHA256); shown once when set.
    pub secret: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    /// Gave up after the maximum attempts; a person may redeliver.
    Dead,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: String,
    pub tenant: TenantId,
    /// The exact bytes sent (and signed).
    pub body: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_at: Timestamp,
    /// Why the last attempt failed, as a generic code: `connection_refused`,
    /// `timeout`, `dns`, `forbidden_target`, `tls`, `connect_failed`,
    /// `request_failed`, `http_3xx` (redirects are not followed), `http_4xx`,
    /// `http_500`…`http_599`, `no_target`, `failed` (recorded by an older
    /// version).
    #[schema(value_type = Option<String>, example = "connection_refused")]
    pub last_error: Option<DeliveryError>,
    pub created_at: Timestamp,
    /// When the last attempt ended (absent in records of older versions
    /// and before the first attempt).
    #[serde(default)]
    pub last_attempt_at: Option<Timestamp>,
}

impl Delivery {
    /// Whether the delivery is finished (delivered or dead) and its last
    /// attempt (or, without one recorded, its creation) is before `cutoff`.
    /// Pending deliveries never are: pruning must not lose a queued event.
    pub fn finished_before(&self, cutoff: Timestamp) -> bool {
        self.finished_at().is_some_and(|at| at < cutoff)
    }

    /// When a delivered or dead delivery finished: its last attempt (or,
    /// without one recorded, its creation); `None` while it is pending.
    /// What the retention counts from.
    pub fn finished_at(&self) -> Option<Timestamp> {
        match self.status {
            DeliveryStatus::Pending => None,
            DeliveryStatus::Delivered | DeliveryStatus::Dead => {
                Some(self.last_attempt_at.unwrap_or(self.created_at))
            }
        }
    }
}

/// Why an attempt failed, as much as a tenant is told: the class of the
/// failure, never the HTTP client's message (which names addresses, ports
/// and the resolver's words: a port scanner's read-out) nor the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryError {
    /// The address answered with a TCP reset.
    ConnectionRefused,
    /// No answer within `webhooks.timeout`.
    Timeout,
    /// The host name did not resolve.
    Dns,
    /// The host is, or resolves only to, a non-public address not in
    /// `webhooks.allow_private`; nothing was connected to.
    ForbiddenTarget,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// Connecting failed otherwise (unreachable, reset).
    ConnectFailed,
    /// The request failed after connecting (closed early, bad response).
    RequestFailed,
    /// A redirect, which is not followed.
    Http3xx,
    Http4xx,
    /// A server error, with its status (500–599).
    Http5xx(u16),
    /// An answer outside 200–599.
    HttpOther,
    /// The tenant has no webhook (any more).
    NoTarget,
    /// The stored URL does not parse (set by an older version).
    InvalidUrl,
    /// Recorded by an older version as free text, which is not shown.
    Failed,
}

impl DeliveryError {
    /// The failure of an answer with this status, or None for a success.
    pub fn from_status(status: u16) -> Option<Self> {
        match status {
            200..=299 => None,
            300..=399 => Some(Self::Http3xx),
            400..=499 => Some(Self::Http4xx),
            500..=599 => Some(Self::Http5xx(status)),
            _ => Some(Self::HttpOther),
        }
    }

    /// The stable code stored and shown.
    pub fn code(self) -> String {
        let fixed = match self {
            Self::ConnectionRefused => "connection_refused",
            Self::Timeout => "timeout",
            Self::Dns => "dns",
            Self::ForbiddenTarget => "forbidden_target",
            Self::Tls => "tls",
            Self::ConnectFailed => "connect_failed",
            Self::RequestFailed => "request_failed",
            Self::Http3xx => "http_3xx",
            Self::Http4xx => "http_4xx",
            Self::Http5xx(status) => return format!("http_{status}"),
            Self::HttpOther => "http_other",
            Self::NoTarget => "no_target",
            Self::InvalidUrl => "invalid_url",
            Self::Failed => "failed",
        };
        fixed.to_owned()
    }

    /// The inverse of [`code`](Self::code); anything else (an older
    /// version's free text) is [`Failed`](Self::Failed), so it is never shown.
    pub fn from_code(code: &str) -> Self {
        let known = [
            Self::ConnectionRefused,
            Self::Timeout,
            Self::Dns,
            Self::ForbiddenTarget,
            Self::Tls,
            Self::ConnectFailed,
            Self::RequestFailed,
            Self::Http3xx,
            Self::Http4xx,
            Self::HttpOther,
            Self::NoTarget,
            Self::InvalidUrl,
        ];
        if let Some(k) = known.into_iter().find(|k| k.code() == code) {
            return k;
        }
        let server = code
            .strip_prefix("http_")
            .filter(|n| n.len() == 3)
            .and_then(|n| n.parse::<u16>().ok())
            .filter(|n| (500..=599).contains(n));
        server.map_or(Self::Failed, Self::Http5xx)
    }
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.code())
    }
}

impl Serialize for DeliveryError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.code())
    }
}

impl<'de> Deserialize<'de> for DeliveryError {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::from_code(&String::deserialize(d)?))
    }
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Db(e.to_string()))
}

fn dec<T: serde::de::DeserializeOwned>(table: &'static str, b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt {
        table,
        why: e.to_string(),
    })
}

pub trait WebhookRepo: Send + Sync + 'static {
    /// Sets the tenant's target; false, writing nothing, when the tenant
    /// is not on record (deleted meanwhile).
    fn set_target(&self, t: &WebhookTarget) -> Result<bool, StoreError>;
    fn target(&self, tenant: &TenantId) -> Result<Option<WebhookTarget>, StoreError>;
    fn delete_target(&self, tenant: &TenantId) -> Result<bool, StoreError>;
    fn put_delivery(&self, d: &Delivery) -> Result<(), StoreError>;
    /// Queues a new delivery of an event on `session`, in one transaction
    /// with the checks: only while the tenant has a target and the session
    /// is on record as the tenant's. False, writing nothing, otherwise — so
    /// an event of a deleted session or purged tenant, handled late, is
    /// never queued, not even for a tenant re-created under the same id.
    fn queue_delivery(&self, d: &Delivery, session: &SessionId) -> Result<bool, StoreError>;
    /// A delivery and its tenant's target, read together (one snapshot):
    /// `None` when the delivery is gone (its tenant purged since it was
    /// listed), so it is never sent to a target set after the purge.
    fn delivery_and_target(
        &self,
        id: &str,
    ) -> Result<Option<(Delivery, Option<WebhookTarget>)>, StoreError>;
    /// Replaces a delivery that is still stored; false, writing nothing,
    /// when it is gone (its tenant was deleted while an attempt ran).
    fn update_delivery(&self, d: &Delivery) -> Result<bool, StoreError>;
    fn delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError>;
    /// A tenant's deliveries (all, or of one status), newest first.
    fn deliveries(
        &self,
        tenant: &TenantId,
        status: Option<DeliveryStatus>,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Every pending delivery, soonest first.
    fn pending(&self) -> Result<Vec<Delivery>, StoreError>;
    /// Deletes the deliveries [finished before](Delivery::finished_before)
    /// `cutoff`, in one transaction; returns how many.
    fn prune_deliveries(&self, cutoff: Timestamp) -> Result<usize, StoreError>;
}

impl WebhookRepo for Store {
    fn set_target(&self, t: &WebhookTarget) -> Result<bool, StoreError> {
        let txn = self.db().begin_write()?;
        if !super::accounts::tenant_exists(&txn, &t.tenant)? {
            return Ok(false);
        }
        txn.open_table(TARGETS)?
            .insert(t.tenant.as_str(), enc(t)?.as_slice())?;
        txn.commit()?;
        Ok(true)
    }

    fn target(&self, tenant: &TenantId) -> Result<Option<WebhookTarget>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(TARGETS)?;
        let v = table.get(tenant.as_str())?;
        v.map(|v| dec("webhook_targets", v.value())).transpose()
    }

    fn delete_target(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        let txn = self.db().begin_write()?;
        let existed = txn.open_table(TARGETS)?.remove(tenant.as_str())?.is_some();
        txn.commit()?;
        Ok(existed)
    }

    fn put_delivery(&self, d: &Delivery) -> Result<(), StoreError> {
        let txn = self.db().begin_write()?;
        write_delivery(&txn, d)?;
        txn.commit()?;
        Ok(())
    }

    fn queue_delivery(&self, d: &Delivery, session: &SessionId) -> Result<bool, StoreError> {
        let txn = self.db().begin_write()?;
        let owner = super::sessions::owners(&txn, [session])?.remove(session);
        if owner.as_ref() != Some(&d.tenant)
            || txn.open_table(TARGETS)?.get(d.tenant.as_str())?.is_none()
        {
            return Ok(false);
        }
        write_delivery(&txn, d)?;
        txn.commit()?;
        Ok(true)
    }

    fn delivery_and_target(
        &self,
        id: &str,
    ) -> Result<Option<(Delivery, Option<WebhookTarget>)>, StoreError> {
        let txn = self.db().begin_read()?;
        let Some(v) = txn.open_table(DELIVERIES)?.get(id)? else {
            return Ok(None);
        };
        let d: Delivery = dec("webhook_deliveries", v.value())?;
        let target = txn.open_table(TARGETS)?.get(d.tenant.as_str())?;
        let target = target
            .map(|v| dec("webhook_targets", v.value()))
            .transpose()?;
        Ok(Some((d, target)))
    }

    fn update_delivery(&self, d: &Delivery) -> Result<bool, StoreError> {
        let txn = self.db().begin_write()?;
        let stored = txn.open_table(DELIVERIES)?.get(d.id.as_str())?.is_some();
        if stored {
            write_delivery(&txn, d)?;
        }
        txn.commit()?;
        Ok(stored)
    }

    fn delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(DELIVERIES)?;
        let v = table.get(id)?;
        v.map(|v| dec("webhook_deliveries", v.value())).transpose()
    }

    fn deliveries(
        &self,
        tenant: &TenantId,
        status: Option<DeliveryStatus>,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut all: Vec<Delivery> = self
            .all_deliveries()?
            .into_iter()
            .filter(|d| d.tenant == *tenant && status.is_none_or(|s| d.status == s))
            .collect();
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(all)
    }

    fn pending(&self) -> Result<Vec<Delivery>, StoreError> {
        let txn = self.db().begin_read()?;
        let due = txn.open_table(DUE)?;
        let table = txn.open_table(DELIVERIES)?;
        let mut out = Vec::new();
        for row in due.iter()? {
            let (k, _) = row?;
            let d = table
                .get(k.value().1)?
                .map(|v| dec::<Delivery>("webhook_deliveries", v.value()))
                .transpose()?;
            out.extend(d.filter(|d| d.status == DeliveryStatus::Pending));
        }
        Ok(out)
    }

    fn prune_deliveries(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        let txn = self.db().begin_write()?;
        let expired: Vec<(i64, String)> = txn
            .open_table(FINISHED)?
            .range::<(i64, &str)>(..(cutoff.as_millis(), ""))?
            .map(|row| row.map(|(k, _)| (k.value().0, k.value().1.to_owned())))
            .collect::<Result<_, _>>()?;
        {
            let mut table = txn.open_table(DELIVERIES)?;
            let mut finished = txn.open_table(FINISHED)?;
            for (at, id) in &expired {
                table.remove(id.as_str())?;
                finished.remove((*at, id.as_str()))?;
            }
        }
        txn.commit()?;
        Ok(expired.len())
    }
}

/// Removes, within `txn`, the tenant's webhook target, deliveries and
/// auto-reply rules; answers (target existed, deliveries, rules existed).
pub(super) fn purge(
    txn: &WriteTransaction,
    tenant: &TenantId,
) -> Result<(bool, usize, bool), StoreError> {
    let target = txn.open_table(TARGETS)?.remove(tenant.as_str())?.is_some();
    let deliveries = remove_where(txn, DELIVERIES, "webhook_deliveries", |d: &Delivery| {
        d.tenant == *tenant
    })?;
    for d in &deliveries {
        unindex(txn, d)?;
    }
    let rules = txn
        .open_table(AUTO_REPLIES)?
        .remove(tenant.as_str())?
        .is_some();
    Ok((target, deliveries.len(), rules))
}

impl Store {
    fn all_deliveries(&self) -> Result<Vec<Delivery>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(DELIVERIES)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, v) = row?;
            out.push(dec("webhook_deliveries", v.value())?);
        }
        Ok(out)
    }
}

const AUTO_REPLIES: TableDefinition<&str, &[u8]> = TableDefinition::new("auto_replies");

pub(super) fn create_auto_replies(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(AUTO_REPLIES)?;
    Ok(())
}

/// Every row of this module's tables, for tests ([`super::rows`]).
#[cfg(test)]
pub(super) fn rows(
    txn: &redb::ReadTransaction,
    out: &mut super::rows::Rows,
) -> Result<(), StoreError> {
    super::rows::table(txn, TARGETS, out)?;
    super::rows::table(txn, DELIVERIES, out)?;
    super::rows::table(txn, DUE, out)?;
    super::rows::table(txn, FINISHED, out)?;
    super::rows::table(txn, AUTO_REPLIES, out)?;
    Ok(())
}

/// One auto-reply rule: an incoming text containing `keyword` gets `reply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AutoReplyRule {
    pub keyword: String,
    pub reply: String,
    /// A rule switched off never answers; rules stored before the switch read as on.
    #[serde(default = "crate::messaging::autoreply::on_unless_stored_off")]
    pub enabled: bool,
}

/// A tenant's auto-reply rules; off unless enabled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AutoReplyRules {
    pub enabled: bool,
    pub rules: Vec<AutoReplyRule>,
}

pub trait AutoReplyRepo: Send + Sync + 'static {
    fn auto_replies(&self, tenant: &TenantId) -> Result<AutoReplyRules, StoreError>;
    /// Sets the tenant's rules; false, writing nothing, when the tenant is
    /// not on record (deleted meanwhile).
    fn set_auto_replies(
        &self,
        tenant: &TenantId,
        rules: &AutoReplyRules,
    ) -> Result<bool, StoreError>;
}

impl AutoReplyRepo for Store {
    fn auto_replies(&self, tenant: &TenantId) -> Result<AutoReplyRules, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(AUTO_REPLIES)?;
        let v = table.get(tenant.as_str())?;
        Ok(v.map(|v| dec("auto_replies", v.value()))
            .transpose()?
            .unwrap_or_default())
    }

    fn set_auto_replies(
        &self,
        tenant: &TenantId,
        rules: &AutoReplyRules,
    ) -> Result<bool, StoreError> {
        let txn = self.db().begin_write()?;
        if !super::accounts::tenant_exists(&txn, tenant)? {
            return Ok(false);
        }
        txn.open_table(AUTO_REPLIES)?
            .insert(tenant.as_str(), enc(rules)?.as_slice())?;
        txn.commit()?;
        Ok(true)
    }
}

/// A tenant's settings as the HTTP handlers read and write them: its
/// webhook target and its auto-reply rules. On a single node they are the
/// store's own ([`WebhookRepo`], [`AutoReplyRepo`]); in fleet mode the
/// fleet's database is their truth, mirrored into the store of the node
/// that hosts the tenant, where deliveries and replies read them.
pub trait TenantSettingsRepo: Send + Sync + 'static {
    fn webhook_target(&self, tenant: &TenantId) -> Result<Option<WebhookTarget>, StoreError>;
    /// False, writing nothing, when the tenant is not on record.
    fn set_webhook_target(&self, t: &WebhookTarget) -> Result<bool, StoreError>;
    /// False when the tenant had none.
    fn delete_webhook_target(&self, tenant: &TenantId) -> Result<bool, StoreError>;
    fn auto_reply_rules(&self, tenant: &TenantId) -> Result<AutoReplyRules, StoreError>;
    /// False, writing nothing, when the tenant is not on record.
    fn set_auto_reply_rules(
        &self,
        tenant: &TenantId,
        rules: &AutoReplyRules,
    ) -> Result<bool, StoreError>;
}

impl TenantSettingsRepo for Store {
    fn webhook_target(&self, tenant: &TenantId) -> Result<Option<WebhookTarget>, StoreError> {
        self.target(tenant)
    }

    fn set_webhook_target(&self, t: &WebhookTarget) -> Result<bool, StoreError> {
        self.set_target(t)
    }

    fn delete_webhook_target(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        self.delete_target(tenant)
    }

    fn auto_reply_rules(&self, tenant: &TenantId) -> Result<AutoReplyRules, StoreError> {
        self.auto_replies(tenant)
    }

    fn set_auto_reply_rules(
        &self,
        tenant: &TenantId,
        rules: &AutoReplyRules,
    ) -> Result<bool, StoreError> {
        self.set_auto_replies(tenant, rules)
    }
}

/// What a purge, or a write racing one, leaves of a tenant's webhooks.
#[cfg(test)]
mod purge_tests {
    use super::*;
    use crate::store::{AccountRepo, SessionRecord, SessionRepo, TenantRecord};

    fn clinic() -> TenantId {
        TenantId::new("clinic").expect("id")
    }

    fn target(secret: &str) -> WebhookTarget {
        WebhookTarget {
            tenant: clinic(),
            url: "https://crm.example/hook".into(),
            secret: secret.into(),
        }
    }

    fn delivery(id: &str) -> Delivery {
        Delivery {
            id: id.into(),
            tenant: clinic(),
            body: "{}".into(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_at: Timestamp::from_millis(1),
            last_error: None,
            created_at: Timestamp::from_millis(1),
            last_attempt_at: None,
        }
    }

    fn create_clinic(store: &Store) {
        store
            .create_tenant(&TenantRecord {
                id: clinic(),
                name: "clinic".into(),
                created_at: Timestamp::from_millis(1),
            })
            .expect("tenant");
    }

    #[test]
    fn a_target_or_rules_of_a_tenant_not_on_record_are_not_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let rules = AutoReplyRules {
            enabled: true,
            rules: vec![],
        };
        assert!(!store.set_target(&target("old")).expect("set"));
        assert!(!store.set_auto_replies(&clinic(), &rules).expect("set"));
        assert_eq!(store.target(&clinic()).expect("read"), None);
        assert!(!store.auto_replies(&clinic()).expect("read").enabled);
        create_clinic(&store);
        assert!(store.set_target(&target("new")).expect("set"));
        assert!(store.set_auto_replies(&clinic(), &rules).expect("set"));
    }

    #[test]
    fn a_delivery_is_queued_only_with_a_target_and_its_session_on_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        create_clinic(&store);
        let s1 = SessionId::new("s1").expect("id");
        let gone = SessionId::new("s_gone").expect("id");
        store
            .put_session(&SessionRecord::of(&clinic(), &s1))
            .expect("session");
        assert!(
            !store.queue_delivery(&delivery("d0"), &s1).expect("queue"),
            "no target"
        );
        assert!(store.set_target(&target("secret")).expect("set"));
        assert!(
            !store.queue_delivery(&delivery("d1"), &gone).expect("queue"),
            "no session"
        );
        let other = TenantId::new("other").expect("id");
        let theirs = SessionId::new("s_theirs").expect("id");
        store
            .put_session(&SessionRecord::of(&other, &theirs))
            .expect("session");
        assert!(
            !store
                .queue_delivery(&delivery("d2"), &theirs)
                .expect("queue"),
            "another tenant's session"
        );
        assert!(store.queue_delivery(&delivery("d3"), &s1).expect("queue"));
        let ids: Vec<String> = store
            .pending()
            .expect("read")
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(ids, ["d3"]);
    }

    #[test]
    fn a_delivery_is_read_with_the_target_in_force_and_not_at_all_once_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        create_clinic(&store);
        let s1 = SessionId::new("s1").expect("id");
        store
            .put_session(&SessionRecord::of(&clinic(), &s1))
            .expect("session");
        assert!(store.set_target(&target("old")).expect("set"));
        assert!(store.queue_delivery(&delivery("d1"), &s1).expect("queue"));
        let (d, t) = store
            .delivery_and_target("d1")
            .expect("read")
            .expect("there");
        assert_eq!(
            (d.id.as_str(), t.map(|t| t.secret)),
            ("d1", Some("old".into()))
        );

        store.purge_tenant(&clinic()).expect("purge");
        create_clinic(&store);
        assert!(store.set_target(&target("new")).expect("set"));
        assert_eq!(store.delivery_and_target("d1").expect("read"), None);
        assert!(
            !store.update_delivery(&d).expect("update"),
            "not written back"
        );
        assert_eq!(store.delivery("d1").expect("read"), None);
    }
}

#[cfg(test)]
#[path = "webhooks_tests.rs"]
mod tests;
