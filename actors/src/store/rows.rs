//! Test-only: every row of every table as text, table by table, so a test
//! can say exactly what a change left behind (the tenant purge's test reads
//! the whole store before and after). Each table module lists its own
//! tables in a `rows` function; [`Store::rows`] also answers which tables
//! the file has that no module listed, so a new table cannot slip past.

use super::{Store, StoreError};
use redb::{ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use std::collections::BTreeMap;

/// Table name → its rows, each as `key => value`.
pub(crate) type Rows = BTreeMap<String, Vec<String>>;

/// A key or value as text: strings as they are, JSON bytes as UTF-8.
pub(crate) trait Text {
    fn text(&self) -> String;
}

impl Text for &str {
    fn text(&self) -> String {
        (*self).to_owned()
    }
}

impl Text for &[u8] {
    fn text(&self) -> String {
        String::from_utf8_lossy(self).into_owned()
    }
}

impl Text for u64 {
    fn text(&self) -> String {
        self.to_string()
    }
}

impl Text for i64 {
    fn text(&self) -> String {
        self.to_string()
    }
}

impl Text for () {
    fn text(&self) -> String {
        String::new()
    }
}

impl<A: Text, B: Text, C: Text> Text for (A, B, C) {
    fn text(&self) -> String {
        format!("({}, {}, {})", self.0.text(), self.1.text(), self.2.text())
    }
}

impl<A: Text, B: Text> Text for (A, B) {
    fn text(&self) -> String {
        format!("({}, {})", self.0.text(), self.1.text())
    }
}

/// Adds every row of `def` to `out` (an empty table is listed, empty).
pub(crate) fn table<K, V>(
    txn: &ReadTransaction,
    def: TableDefinition<K, V>,
    out: &mut Rows,
) -> Result<(), StoreError>
where
    K: redb::Key + 'static,
    V: redb::Value + 'static,
    for<'a> K::SelfType<'a>: Text,
    for<'a> V::SelfType<'a>: Text,
{
    let rows = out.entry(def.name().to_owned()).or_default();
    for row in txn.open_table(def)?.iter()? {
        let (k, v) = row?;
        rows.push(format!("{} => {}", k.value().text(), v.value().text()));
    }
    Ok(())
}

impl Store {
    /// Every row of the store, and the names of tables in the file that no
    /// module's `rows` listed (empty while every table is accounted for).
    pub(crate) fn rows(&self) -> Result<(Rows, Vec<String>), StoreError> {
        let txn = self.db().begin_read()?;
        let mut out = Rows::new();
        super::meta_rows(&txn, &mut out)?;
        super::accounts::rows(&txn, &mut out)?;
        super::sessions::rows(&txn, &mut out)?;
        super::ledger::rows(&txn, &mut out)?;
        super::audit::rows(&txn, &mut out)?;
        super::messages::rows(&txn, &mut out)?;
        super::inbox::rows(&txn, &mut out)?;
        super::webhooks::rows(&txn, &mut out)?;
        super::campaigns::rows(&txn, &mut out)?;
        super::contacts::rows(&txn, &mut out)?;
        super::activity::rows(&txn, &mut out)?;
        super::otps::rows(&txn, &mut out)?;
        let unlisted = txn
            .list_tables()?
            .map(|t| t.name().to_owned())
            .filter(|name| !out.contains_key(name))
            .collect();
        Ok((out, unlisted))
    }
}
