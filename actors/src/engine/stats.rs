//! Process-wide counters an engine keeps for `/metrics` and
//! `/health/details` (what its pages dropped or skipped, the WhatsApp Web
//! versions seen), engine-neutral so the web layer reads them without
//! depending on any engine.

use std::sync::atomic::{AtomicU64, Ordering};

/// What the page agents of this process have dropped or skipped, for
/// `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PageCounters {
    pub dropped_reports: u64,
    pub skipped_group: u64,
    pub skipped_status: u64,
    pub skipped_history: u64,
    pub skipped_other: u64,
}

static DROPPED: AtomicU64 = AtomicU64::new(0);
static SKIPPED_GROUP: AtomicU64 = AtomicU64::new(0);
static SKIPPED_STATUS: AtomicU64 = AtomicU64::new(0);
static SKIPPED_HISTORY: AtomicU64 = AtomicU64::new(0);
static SKIPPED_OTHER: AtomicU64 = AtomicU64::new(0);

/// The counters so far (process-wide; monotonic).
pub fn counters() -> PageCounters {
    PageCounters {
        dropped_reports: DROPPED.load(Ordering::Relaxed),
        skipped_group: SKIPPED_GROUP.load(Ordering::Relaxed),
        skipped_status: SKIPPED_STATUS.load(Ordering::Relaxed),
        skipped_history: SKIPPED_HISTORY.load(Ordering::Relaxed),
        skipped_other: SKIPPED_OTHER.load(Ordering::Relaxed),
    }
}

/// The WhatsApp Web versions (`Debug.VERSION`) pages of this process ran,
/// for `/health/details`; at most [`MAX_VERSIONS`] kept.
static VERSIONS: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());
const MAX_VERSIONS: usize = 32;

pub fn note_version(version: &str) {
    let mut seen = VERSIONS.lock().unwrap_or_else(|p| p.into_inner());
    if seen.len() < MAX_VERSIONS || seen.contains(version) {
        seen.insert(version.to_owned());
    }
}

/// Every WhatsApp Web version seen so far, sorted.
pub fn versions() -> Vec<String> {
    let seen = VERSIONS.lock().unwrap_or_else(|p| p.into_inner());
    seen.iter().cloned().collect()
}

pub fn count_dropped() {
    DROPPED.fetch_add(1, Ordering::Relaxed);
}

pub fn count_skipped(kind: &str) {
    let counter = match kind {
        "group" => &SKIPPED_GROUP,
        "status" => &SKIPPED_STATUS,
        "history" => &SKIPPED_HISTORY,
        _ => &SKIPPED_OTHER,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}
