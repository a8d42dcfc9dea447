//! A session's browser profile as one buffer, so the pairing can follow
//! its tenant to another node: [`pack`] reads the parts of a Chromium
//! profile that hold the WhatsApp Web pairing into a small record format
//! ([`format`]), and [`unpack`] puts them back under a profile directory
//! before a browser is launched on it.
//!
//! Only `Default/IndexedDB/**` and `Default/Local Storage/leveldb/**` are
//! carried (fleet/PLAN.md §5.2): caches, cookies, `Local State`, leveldb
//! `LOCK`s and `*.tmp` files are not. Only regular files are read;
//! symlinks are skipped, never followed, so a link in a profile cannot pull
//! another file of the node into a snapshot.
//!
//! An unpack trusts nothing in the buffer: everything is validated before
//! the first file is written, the files go to a fresh directory beside the
//! target, and only then do renames swap them in. A bad buffer leaves the
//! target as it was.
//!
//! Not here: when to snapshot (a live copy can tear leveldb's log; the
//! caller picks a quiet moment or a stopped browser), sealing (the caller
//! seals [`Packed::bytes`] with `SecretBox::seal_bytes`), storing
//! ([`crate::snapshot`]). Both functions block on the file system: call
//! them from `spawn_blocking`.

pub mod format;

use format::{carried, refuse_path, RECORD_HEAD_LEN, ROOTS};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a profile could not be packed or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The snapshot would be, or is, larger than the caller's `limit`.
    #[error("the profile snapshot is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("not a profile snapshot (wrong magic)")]
    NotASnapshot,
    #[error("profile snapshot format {0} is not known to this build")]
    Version(u16),
    /// Cut short, or bytes after the last file.
    #[error("the profile snapshot is corrupt: {0}")]
    Corrupt(&'static str),
    /// A path that may not be written under a profile (shown shortened).
    #[error("the profile snapshot holds a path that is not restored ({why}): {path:?}")]
    Path { path: String, why: &'static str },
    /// The profile, or something in the way of a restore, is not a
    /// directory (a symlink counts as not one).
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("profile {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ProfileError {
    /// A refused path, cut to 100 characters for the log line.
    pub(crate) fn path(path: &str, why: &'static str) -> Self {
        Self::Path {
            path: path.chars().take(100).collect(),
            why,
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ProfileError + '_ {
    move |source| ProfileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A packed profile: the snapshot's bytes (before sealing), how many files
/// it holds, and the SHA-256 of the bytes (the same tree always packs to
/// the same bytes, so a restore can be checked and an unchanged profile
/// need not be stored again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    pub bytes: Vec<u8>,
    pub files: usize,
    pub sha256: [u8; 32],
}

/// Packs the pairing's files under `profile_dir`, in path order.
/// [`ProfileError::TooLarge`] as soon as the snapshot would pass `limit`
/// bytes (no more than `limit` is ever held in memory). A profile without
/// those directories packs to zero files — the caller should not store
/// such a snapshot over a good one. A file that vanishes while being
/// packed (a leveldb compaction) is left out; a name that is not UTF-8 is
/// skipped with a warning.
pub fn pack(profile_dir: &Path, limit: u64) -> Result<Packed, ProfileError> {
    if !fs::metadata(profile_dir)
        .map_err(io_at(profile_dir))?
        .is_dir()
    {
        return Err(ProfileError::NotADirectory(profile_dir.to_path_buf()));
    }
    let mut files = Vec::new();
    for root in ROOTS {
        if real_dir_chain(profile_dir, root)? {
            list(profile_dir, root, &mut files)?;
        }
    }
    files.sort();
    let mut bytes = format::header();
    let mut count: u32 = 0;
    for rel in &files {
        if append(&mut bytes, profile_dir, rel, limit)? {
            count += 1;
        }
    }
    format::set_count(&mut bytes, count);
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(&Sha256::digest(&bytes));
    Ok(Packed {
        bytes,
        files: count as usize,
        sha256,
    })
}

/// Whether every component of `rel` under `base` is a real directory (not
/// a symlink); `false` when one is missing or is something else.
fn real_dir_chain(base: &Path, rel: &str) -> Result<bool, ProfileError> {
    let mut at = base.to_path_buf();
    for part in rel.split('/') {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(_) => {
                tracing::warn!(path = %at.display(), "profile directory is not a real directory: not packed");
                return Ok(false);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_at(&at)(e)),
        }
    }
    Ok(true)
}

/// The carried regular files under `base/root`, as relative paths. The
/// entries' own types are used (`DirEntry::file_type` does not follow
/// links), so a symlink is neither read nor descended into.
fn list(base: &Path, root: &str, out: &mut Vec<String>) -> Result<(), ProfileError> {
    let mut dirs = vec![root.to_owned()];
    while let Some(rel_dir) = dirs.pop() {
        let abs = base.join(&rel_dir);
        for entry in fs::read_dir(&abs).map_err(io_at(&abs))? {
            let entry = entry.map_err(io_at(&abs))?;
            let Ok(name) = entry.file_name().into_string() else {
                tracing::warn!(dir = %abs.display(), "a profile file name is not UTF-8: not packed");
                continue;
            };
            let rel = format!("{rel_dir}/{name}");
            let kind = entry.file_type().map_err(io_at(&entry.path()))?;
            if kind.is_dir() {
                dirs.push(rel);
            } else if kind.is_file() && carried(&rel) && refuse_path(&rel).is_none() {
                out.push(rel);
            }
        }
    }
    Ok(())
}

/// Appends `rel`'s record; `false` if the file vanished meanwhile.
fn append(out: &mut Vec<u8>, base: &Path, rel: &str, limit: u64) -> Result<bool, ProfileError> {
    let abs = base.join(rel);
    let file = match fs::File::open(&abs) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_at(&abs)(e)),
    };
    let used = (out.len() + RECORD_HEAD_LEN + rel.len()) as u64;
    let Some(budget) = limit.checked_sub(used) else {
        return Err(ProfileError::TooLarge { limit });
    };
    let start = out.len();
    let len = u16::try_from(rel.len()).expect("refuse_path bounds a path to 1024 bytes");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(rel.as_bytes());
    let size_at = out.len();
    out.extend_from_slice(&[0; 8]);
    let data_at = out.len();
    file.take(budget.saturating_add(1))
        .read_to_end(out)
        .map_err(io_at(&abs))?;
    let size = (out.len() - data_at) as u64;
    if size > budget {
        out.truncate(start);
        return Err(ProfileError::TooLarge { limit });
    }
    out[size_at..data_at].copy_from_slice(&size.to_be_bytes());
    Ok(true)
}

/// Restores a snapshot under `profile_dir` and answers how many files it
/// wrote. The buffer is validated whole first (at most `limit` bytes; see
/// [`format::decode`]), and so is the target (`profile_dir` and the
/// directories on the way to the roots must be real directories if they
/// exist). The files are written to a new directory beside `profile_dir`
/// (dirs 0700, files 0600); then, if `profile_dir` does not exist, that
/// directory is renamed to it, else each of its two roots is swapped in by
/// rename and the old contents are deleted — the rest of the profile stays.
/// Chromium's `Singleton*` files are removed. Any error before the swap
/// leaves `profile_dir` untouched; the files are not fsynced (a node that
/// crashes mid-restore restores again).
pub fn unpack(bytes: &[u8], profile_dir: &Path, limit: u64) -> Result<usize, ProfileError> {
    if bytes.len() as u64 > limit {
        return Err(ProfileError::TooLarge { limit });
    }
    let entries = format::decode(bytes)?;
    let exists = check_target(profile_dir)?;
    let parent = profile_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    centinela_actors::store::private_dir(parent).map_err(io_at(parent))?;
    let staging = Staging::new(parent, profile_dir)?;
    for root in ROOTS {
        private_dirs(&staging.path, root)?;
    }
    for entry in &entries {
        write_file(&staging.path, entry)?;
    }
    if exists {
        swap_roots(&staging.path, profile_dir)?;
    } else {
        fs::rename(&staging.path, profile_dir).map_err(io_at(profile_dir))?;
    }
    clear_singletons(profile_dir)?;
    fs::set_permissions(profile_dir, fs::Permissions::from_mode(0o700))
        .map_err(io_at(profile_dir))?;
    Ok(entries.len())
}

/// Whether the target exists; an error if it, `Default` or
/// `Default/Local Storage` is there but not a real directory.
fn check_target(profile_dir: &Path) -> Result<bool, ProfileError> {
    for rel in ["", "Default", "Default/Local Storage"] {
        // Not `join("")`: its trailing slash would follow a symlink.
        let at = if rel.is_empty() {
            profile_dir.to_path_buf()
        } else {
            profile_dir.join(rel)
        };
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(_) => return Err(ProfileError::NotADirectory(at)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(!rel.is_empty()),
            Err(e) => return Err(io_at(&at)(e)),
        }
    }
    Ok(true)
}

/// Moves each root of `staging` into `profile_dir`, the old one into
/// `staging` (deleted with it).
fn swap_roots(staging: &Path, profile_dir: &Path) -> Result<(), ProfileError> {
    let old = staging.join(".replaced");
    private_dirs(&old, "")?;
    for (i, root) in ROOTS.iter().enumerate() {
        let target = profile_dir.join(root);
        if let Some(parent) = target.parent() {
            centinela_actors::store::private_dir(parent).map_err(io_at(parent))?;
        }
        match fs::symlink_metadata(&target) {
            Ok(_) => fs::rename(&target, old.join(i.to_string())).map_err(io_at(&target))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(&target)(e)),
        }
        fs::rename(staging.join(root), &target).map_err(io_at(&target))?;
    }
    Ok(())
}

/// `base/rel` and every directory on the way, mode 0700.
fn private_dirs(base: &Path, rel: &str) -> Result<(), ProfileError> {
    let at = base.join(rel);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&at)
        .map_err(io_at(&at))
}

fn write_file(staging: &Path, entry: &format::Entry<'_>) -> Result<(), ProfileError> {
    let at = staging.join(entry.path);
    if let Some((dir, _)) = entry.path.rsplit_once('/') {
        private_dirs(staging, dir)?;
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&at)
        .map_err(io_at(&at))?;
    file.write_all(entry.data).map_err(io_at(&at))
}

/// A browser's `SingletonLock`/`Socket`/`Cookie` name the host and process
/// that held the profile; left over, they stop the next launch.
fn clear_singletons(profile_dir: &Path) -> Result<(), ProfileError> {
    for entry in fs::read_dir(profile_dir).map_err(io_at(profile_dir))? {
        let entry = entry.map_err(io_at(profile_dir))?;
        if entry.file_name().to_string_lossy().starts_with("Singleton") {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// A fresh directory beside the target (same file system, so the renames
/// are atomic), removed with whatever is left in it when dropped.
struct Staging {
    path: PathBuf,
}

impl Staging {
    fn new(parent: &Path, target: &Path) -> Result<Self, ProfileError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = parent.join(format!(".{name}.restore-{}-{n}", std::process::id()));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Self { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_at(&path)(e)),
            }
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // After a successful whole-target rename nothing is left here.
        let _ = fs::remove_dir_all(&self.path);
    }
}
