//! The snapshot's byte layout and the rule for which paths it may hold.
//! Nothing here touches the file system: [`decode`] validates a whole
//! buffer (header, every record, every path) before the caller writes a
//! single file, and [`carried`] is the one include rule that both packing
//! and unpacking apply, so what a pack holds always unpacks.
//!
//! Layout, all integers big-endian:
//!
//! ```text
//! MAGIC (8 bytes "CNTLPROF") | FORMAT (u16) | file count (u32)
//! then per file, paths strictly ascending (bytewise):
//!   path length (u16) | path (UTF-8, `/`-separated, relative) | size (u64) | bytes
//! ```
//!
//! The count makes a buffer cut at a record boundary corrupt rather than a
//! smaller profile; the ascending order makes one tree one buffer (and one
//! SHA-256) and rules out a path given twice.

use super::ProfileError;

/// The first bytes of every snapshot.
pub const MAGIC: [u8; 8] = *b"CNTLPROF";
/// The layout version this build writes and reads.
pub const FORMAT: u16 = 1;
/// Magic, version and count.
pub const HEADER_LEN: usize = MAGIC.len() + 2 + 4;
/// A record's fixed part: the path's length and the file's size.
pub const RECORD_HEAD_LEN: usize = 2 + 8;

/// The profile directories that hold the pairing (whatsapp-web.js'
/// `RemoteAuth` keeps the same two): IndexedDB (leveldb and blob files)
/// and localStorage's leveldb. Everything else in a profile is cache,
/// locks or state Chromium rebuilds.
pub const ROOTS: [&str; 2] = ["Default/IndexedDB", "Default/Local Storage/leveldb"];

/// Longest path a snapshot may hold, and longest component (`NAME_MAX`).
const MAX_PATH: usize = 1024;
const MAX_NAME: usize = 255;

/// Whether a relative path is part of the pairing: under one of [`ROOTS`],
/// and not a leveldb `LOCK` (held by a running browser, made again at
/// open) nor a `*.tmp` (a write in progress).
pub fn carried(path: &str) -> bool {
    let under_root = ROOTS.iter().any(|root| {
        path.strip_prefix(root)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|rest| !rest.is_empty())
    });
    let name = path.rsplit('/').next().unwrap_or(path);
    under_root && name != "LOCK" && !name.ends_with(".tmp")
}

/// Why `path` may not be written under a profile, or `None` if it may:
/// relative, no empty, `.` or `..` component, no NUL or backslash, of a
/// sane length, and [`carried`].
pub fn refuse_path(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("empty");
    }
    if path.len() > MAX_PATH {
        return Some("too long");
    }
    if path.starts_with('/') {
        return Some("absolute");
    }
    if path.contains('\0') {
        return Some("contains NUL");
    }
    if path.contains('\\') {
        return Some("contains a backslash");
    }
    for part in path.split('/') {
        match part {
            "" => return Some("empty component"),
            "." | ".." => return Some("dot component"),
            _ if part.len() > MAX_NAME => return Some("component too long"),
            _ => {}
        }
    }
    if !carried(path) {
        return Some("outside the pairing's storage");
    }
    None
}

/// The header, with a count patched in by [`set_count`] once known.
pub fn header() -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out
}

pub fn set_count(buf: &mut [u8], count: u32) {
    buf[MAGIC.len() + 2..HEADER_LEN].copy_from_slice(&count.to_be_bytes());
}

/// One file of a decoded snapshot, borrowed from the buffer.
#[derive(Debug)]
pub struct Entry<'a> {
    pub path: &'a str,
    pub data: &'a [u8],
}

/// Every entry of `bytes`, or why the buffer is not a snapshot this build
/// may restore. Never panics on any input.
pub fn decode(bytes: &[u8]) -> Result<Vec<Entry<'_>>, ProfileError> {
    let mut r = Reader { rest: bytes };
    if r.take(MAGIC.len()).ok() != Some(&MAGIC[..]) {
        return Err(ProfileError::NotASnapshot);
    }
    let version = r.u16()?;
    if version != FORMAT {
        return Err(ProfileError::Version(version));
    }
    let count = r.u32()?;
    let mut entries: Vec<Entry<'_>> = Vec::new();
    for _ in 0..count {
        let len = usize::from(r.u16()?);
        let raw = r.take(len)?;
        let path = std::str::from_utf8(raw)
            .map_err(|_| ProfileError::path(&String::from_utf8_lossy(raw), "not UTF-8"))?;
        if let Some(why) = refuse_path(path) {
            return Err(ProfileError::path(path, why));
        }
        if entries.last().is_some_and(|prev| prev.path >= path) {
            return Err(ProfileError::path(path, "out of order or repeated"));
        }
        let size = usize::try_from(r.u64()?).map_err(|_| ProfileError::Corrupt("truncated"))?;
        let data = r.take(size)?;
        entries.push(Entry { path, data });
    }
    if !r.rest.is_empty() {
        return Err(ProfileError::Corrupt("bytes after the last file"));
    }
    Ok(entries)
}

/// A cursor that fails, never panics, past the end.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProfileError> {
        if n > self.rest.len() {
            return Err(ProfileError::Corrupt("truncated"));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProfileError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, ProfileError> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, ProfileError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, ProfileError> {
        self.array().map(u64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pairing_storage_is_carried() {
        for yes in [
            "Default/IndexedDB/http_127.0.0.1_8080.indexeddb.leveldb/000003.log",
            "Default/IndexedDB/http_127.0.0.1_8080.indexeddb.blob/1/00/3",
            "Default/Local Storage/leveldb/CURRENT",
        ] {
            assert!(carried(yes), "{yes}");
            assert_eq!(refuse_path(yes), None, "{yes}");
        }
        for no in [
            "Default/IndexedDB",
            "Default/IndexedDB/",
            "Default/IndexedDBx/a",
            "Default/IndexedDB/x.indexeddb.leveldb/LOCK",
            "Default/Local Storage/leveldb/LOCK",
            "Default/IndexedDB/x.indexeddb.leveldb/000004.tmp",
            "Default/Local Storage/other",
            "Default/Cookies",
            "Default/Cache/Cache_Data/index",
            "SingletonLock",
            "Local State",
        ] {
            assert!(!carried(no), "{no}");
            assert!(refuse_path(no).is_some(), "{no}");
        }
    }

    #[test]
    fn paths_that_could_escape_the_profile_are_refused() {
        for (path, why) in [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("Default/IndexedDB/../../x", "dot component"),
            ("Default/IndexedDB/./x", "dot component"),
            ("Default/IndexedDB//x", "empty component"),
            ("Default/IndexedDB/x\0y", "contains NUL"),
            ("Default/IndexedDB/..\\x", "contains a backslash"),
        ] {
            assert_eq!(refuse_path(path), Some(why), "{path:?}");
        }
        let long = format!("Default/IndexedDB/{}", "a".repeat(256));
        assert_eq!(refuse_path(&long), Some("component too long"));
    }

    #[test]
    fn a_header_alone_decodes_to_no_files() {
        assert!(decode(&header()).expect("empty snapshot").is_empty());
    }
}
