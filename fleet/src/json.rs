//! Records and enum names as the fleet's tables keep them: a record is its
//! JSON (as the single-node store keeps it), a unit enum (a status) its
//! serde name; what cannot be read back is [`FleetError::Corrupt`] of the
//! table it came from.

use crate::FleetError;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// `value` as JSON text.
pub(crate) fn encode<T: Serialize>(value: &T, table: &'static str) -> Result<String, FleetError> {
    serde_json::to_string(value).map_err(|e| corrupt(table, &e.to_string()))
}

/// A record from its JSON text.
pub(crate) fn decode<T: DeserializeOwned>(
    json: &str,
    table: &'static str,
) -> Result<T, FleetError> {
    serde_json::from_str(json).map_err(|e| corrupt(table, &e.to_string()))
}

/// A unit enum's serde name (`MessageStatus::Queued` → `queued`).
pub(crate) fn name<T: Serialize>(value: T, table: &'static str) -> Result<String, FleetError> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        other => Err(corrupt(table, &format!("not a name: {other:?}"))),
    }
}

/// A unit enum from its serde name.
pub(crate) fn named<T: DeserializeOwned>(name: &str, table: &'static str) -> Result<T, FleetError> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|e| corrupt(table, &e.to_string()))
}

pub(crate) fn corrupt(table: &'static str, why: &str) -> FleetError {
    FleetError::Corrupt {
        table,
        why: why.to_owned(),
    }
}
