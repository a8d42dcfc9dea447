//! The bridge from the synchronous store traits (`SessionRepo`,
//! `AccountRepo`: redb commits block, so the traits do too) to the fleet's
//! async queries: each call runs its query on the current Tokio runtime
//! with `block_in_place`. It holds the calling worker for one round trip
//! (about a redb fsync), and with the database down for at most
//! [`crate::ACQUIRE_TIMEOUT`]. It needs the multi-threaded runtime `serve`
//! runs on; anywhere else it answers [`StoreError::Unavailable`] instead of
//! panicking. How a [`FleetError`] reads as a [`StoreError`] is decided
//! here too, once.

use crate::FleetError;
use centinela_actors::store::StoreError;
use std::future::Future;

/// Runs a query from synchronous code on the current multi-threaded
/// runtime; the outer error is the runtime's (none to run on), the inner
/// the query's, for a caller that tells some database errors apart.
pub(crate) fn run<T>(
    query: impl Future<Output = Result<T, FleetError>>,
) -> Result<Result<T, FleetError>, StoreError> {
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| StoreError::Unavailable("no Tokio runtime to query the fleet on".into()))?;
    if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return Err(StoreError::Unavailable(
            "the fleet's store needs the multi-threaded runtime".into(),
        ));
    }
    Ok(tokio::task::block_in_place(|| handle.block_on(query)))
}

/// [`run`], with every error as a [`StoreError`].
pub(crate) fn block_on<T>(
    query: impl Future<Output = Result<T, FleetError>>,
) -> Result<T, StoreError> {
    run(query)?.map_err(store_error)
}

/// A lost fence is [`StoreError::NotHeld`], an unreadable row
/// [`StoreError::Corrupt`], anything else the database being unavailable.
pub(crate) fn store_error(e: FleetError) -> StoreError {
    match e {
        FleetError::Fenced { tenant, .. } => StoreError::NotHeld(tenant.to_string()),
        FleetError::Corrupt { table, why } => StoreError::Corrupt { table, why },
        other => StoreError::Unavailable(other.to_string()),
    }
}
