//! Packing and unpacking a browser profile on a real file system: a fake
//! Chromium profile (the layout a WhatsApp Web pairing leaves) goes in, only
//! the pairing's storage comes out, and no buffer — cut, corrupt or built
//! to escape — changes the target before it has been validated whole.

use centinela_fleet::profile::format::{FORMAT, MAGIC};
use centinela_fleet::{pack, unpack, ProfileError};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

const LIMIT: u64 = 1 << 20;
const IDB: &str = "Default/IndexedDB/http_127.0.0.1_9000.indexeddb.leveldb";
const BLOB: &str = "Default/IndexedDB/http_127.0.0.1_9000.indexeddb.blob";
const LS: &str = "Default/Local Storage/leveldb";

/// The files a pack must carry, with their contents.
fn pairing_files() -> Vec<(String, Vec<u8>)> {
    vec![
        (
            format!("{IDB}/000003.log"),
            b"device-record\x00\x01\xff".to_vec(),
        ),
        (format!("{IDB}/CURRENT"), b"MANIFEST-000001\n".to_vec()),
        (format!("{IDB}/MANIFEST-000001"), vec![0x56; 300]),
        (format!("{IDB}/LOG"), b"leveldb log".to_vec()),
        (format!("{BLOB}/1/00/3"), (0..=255u8).collect()),
        (format!("{LS}/000003.log"), b"localStorage".to_vec()),
        (format!("{LS}/CURRENT"), b"MANIFEST-000001\n".to_vec()),
        (format!("{LS}/empty"), Vec::new()),
    ]
}

/// Files a profile has that a pack must leave behind.
fn excluded_files() -> Vec<String> {
    vec![
        format!("{IDB}/LOCK"),
        format!("{IDB}/000005.tmp"),
        format!("{LS}/LOCK"),
        "Default/IndexedDB/x.tmp".into(),
        "Default/Cache/Cache_Data/index".into(),
        "Default/GPUCache/data_0".into(),
        "Default/Cookies".into(),
        "Default/Preferences".into(),
        "Local State".into(),
        "SingletonCookie".into(),
    ]
}

fn write(base: &Path, rel: &str, data: &[u8]) {
    let at = base.join(rel);
    fs::create_dir_all(at.parent().expect("parent")).expect("mkdir");
    fs::write(at, data).expect("write");
}

/// A fake profile as Chromium leaves it, `SingletonLock` a dangling link.
fn fake_profile(dir: &Path) {
    for (rel, data) in pairing_files() {
        write(dir, &rel, &data);
    }
    for rel in excluded_files() {
        write(dir, &rel, b"not carried");
    }
    symlink("host-4242", dir.join("SingletonLock")).expect("symlink");
}

/// The regular files of [`tree`].
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut all = tree(dir);
    all.retain(|rel, _| !rel.ends_with('/') && !rel.ends_with(" ->"));
    all
}

/// Everything under `dir` by relative path: a regular file with its
/// contents, a directory as `rel/`, a symlink as `rel ->`.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(at) = dirs.pop() {
        for entry in fs::read_dir(&at).expect("read_dir") {
            let entry = entry.expect("entry");
            let rel = entry
                .path()
                .strip_prefix(dir)
                .expect("under dir")
                .to_string_lossy()
                .into_owned();
            let kind = entry.file_type().expect("type");
            if kind.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                dirs.push(entry.path());
            } else if kind.is_symlink() {
                out.insert(format!("{rel} ->"), Vec::new());
            } else {
                out.insert(rel, fs::read(entry.path()).expect("read"));
            }
        }
    }
    out
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

/// A snapshot built by hand from the documented layout, so a test can
/// say anything a buffer could: `(path, declared size, bytes)`.
fn handmade(records: &[(&[u8], u64, &[u8])], count: u32) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&FORMAT.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    for (path, size, data) in records {
        out.extend_from_slice(&(path.len() as u16).to_be_bytes());
        out.extend_from_slice(path);
        out.extend_from_slice(&size.to_be_bytes());
        out.extend_from_slice(data);
    }
    out
}

fn good_record() -> (&'static [u8], u64, &'static [u8]) {
    (b"Default/IndexedDB/a.leveldb/CURRENT", 3, b"abc")
}

#[test]
fn a_round_trip_carries_the_pairing_storage_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("source");
    fake_profile(&source);
    let packed = pack(&source, LIMIT).expect("pack");
    assert_eq!(packed.files, pairing_files().len());

    let restored = dir.path().join("profiles").join("s1");
    let written = unpack(&packed.bytes, &restored, LIMIT).expect("unpack");
    assert_eq!(written, pairing_files().len());
    let expected: BTreeMap<String, Vec<u8>> = pairing_files().into_iter().collect();
    assert_eq!(files(&restored), expected, "exactly the pairing's files");
    assert!(
        !tree(&restored).keys().any(|k| k.ends_with(" ->")),
        "no links, SingletonLock included"
    );
    assert_eq!(mode(&restored), 0o700);
    assert_eq!(mode(&restored.join(IDB)), 0o700);
    assert_eq!(mode(&restored.join(format!("{IDB}/CURRENT"))), 0o600);
    let leftovers: Vec<_> = fs::read_dir(dir.path().join("profiles"))
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers, ["s1"], "no staging directory is left");
}

#[test]
fn a_restore_over_a_profile_replaces_its_pairing_keeps_the_rest_and_clears_singletons() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("source");
    fake_profile(&source);
    let packed = pack(&source, LIMIT).expect("pack");

    let target = dir.path().join("target");
    write(&target, &format!("{IDB}/000009.log"), b"an older pairing");
    write(&target, &format!("{LS}/000007.ldb"), b"older localStorage");
    write(&target, "Default/Preferences", b"kept");
    write(&target, "SingletonCookie", b"1234");
    symlink("other-host-1", target.join("SingletonLock")).expect("symlink");
    symlink("/tmp/gone", target.join("SingletonSocket")).expect("symlink");
    unpack(&packed.bytes, &target, LIMIT).expect("unpack");

    let mut expected: BTreeMap<String, Vec<u8>> = pairing_files().into_iter().collect();
    expected.insert("Default/Preferences".into(), b"kept".to_vec());
    assert_eq!(files(&target), expected, "old pairing gone, the rest kept");
    assert!(
        !tree(&target).keys().any(|k| k.starts_with("Singleton")),
        "singletons cleared"
    );
}

#[test]
fn the_same_tree_packs_to_the_same_bytes_and_a_changed_byte_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    fake_profile(&a);
    // The same files, made in the opposite order.
    for (rel, data) in pairing_files().into_iter().rev() {
        write(&b, &rel, &data);
    }
    let (pa, pb) = (pack(&a, LIMIT).expect("a"), pack(&b, LIMIT).expect("b"));
    assert_eq!(pa.sha256, pb.sha256);
    assert_eq!(pa.bytes, pb.bytes);
    write(&b, &format!("{IDB}/CURRENT"), b"MANIFEST-000002\n");
    assert_ne!(pack(&b, LIMIT).expect("b").sha256, pa.sha256);
}

#[test]
fn a_profile_without_pairing_storage_packs_to_no_files_and_a_missing_one_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "Default/Cookies", b"x");
    assert_eq!(pack(dir.path(), LIMIT).expect("pack").files, 0);
    assert!(matches!(
        pack(&dir.path().join("absent"), LIMIT),
        Err(ProfileError::Io { .. })
    ));
}

#[test]
fn a_snapshot_over_the_limit_is_refused_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("source");
    fake_profile(&source);
    let len = pack(&source, LIMIT).expect("pack").bytes.len() as u64;
    assert_eq!(
        pack(&source, len).expect("exactly the limit").bytes.len() as u64,
        len
    );
    assert!(matches!(
        pack(&source, len - 1),
        Err(ProfileError::TooLarge { limit }) if limit == len - 1
    ));
    assert!(matches!(
        pack(&source, 10),
        Err(ProfileError::TooLarge { .. })
    ));

    let packed = pack(&source, LIMIT).expect("pack");
    let target = dir.path().join("target");
    assert!(matches!(
        unpack(&packed.bytes, &target, len - 1),
        Err(ProfileError::TooLarge { .. })
    ));
    assert!(!target.exists(), "nothing written");
}

#[test]
fn a_symlink_inside_indexeddb_is_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = dir.path().join("outside");
    write(&outside, "secret.key", b"node secret");
    write(&outside, "dir/000001.ldb", b"node secret");
    let source = dir.path().join("source");
    fake_profile(&source);
    symlink(
        outside.join("secret.key"),
        source.join(format!("{IDB}/000004.ldb")),
    )
    .expect("link");
    symlink(
        outside.join("dir"),
        source.join("Default/IndexedDB/linked.leveldb"),
    )
    .expect("link");

    let packed = pack(&source, LIMIT).expect("pack");
    assert_eq!(packed.files, pairing_files().len(), "links left out");
    assert!(
        !packed.bytes.windows(11).any(|w| w == b"node secret"),
        "no linked content in the snapshot"
    );
}

/// Unpacks `bytes` over an existing profile and expects an error, with the
/// profile and its parent exactly as they were.
fn refused(bytes: &[u8]) -> ProfileError {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("profiles").join("s1");
    write(
        &target,
        &format!("{IDB}/000009.log"),
        b"the current pairing",
    );
    write(&target, "SingletonCookie", b"1234");
    let before = tree(dir.path());
    let err = unpack(bytes, &target, LIMIT).expect_err("refused");
    assert_eq!(tree(dir.path()), before, "untouched after {err}");
    err
}

#[test]
fn paths_that_escape_or_leave_the_pairing_storage_are_refused_before_any_write() {
    for (path, why) in [
        (&b"../x"[..], "dot component"),
        (b"Default/IndexedDB/../../../x", "dot component"),
        (b"/etc/x", "absolute"),
        (b"Default/Cookies", "outside the pairing's storage"),
        (
            b"Default/IndexedDB/a.leveldb/LOCK",
            "outside the pairing's storage",
        ),
        (b"Default/IndexedDB//x", "empty component"),
        (b"Default/IndexedDB/x\0", "contains NUL"),
        (b"Default/IndexedDB/\xff", "not UTF-8"),
    ] {
        // A good file first: it must not be written either.
        let bytes = handmade(&[good_record(), (path, 1, b"x")], 2);
        let err = refused(&bytes);
        assert!(
            matches!(&err, ProfileError::Path { why: w, .. } if *w == why),
            "{path:?}: {err}"
        );
    }
}

#[test]
fn cut_or_corrupt_buffers_are_refused_without_touching_the_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    fake_profile(dir.path());
    let packed = pack(dir.path(), LIMIT).expect("pack").bytes;
    for len in 0..packed.len() {
        refused(&packed[..len]);
    }
    let mut magic = packed.clone();
    magic[0] ^= 0x20;
    assert!(matches!(refused(&magic), ProfileError::NotASnapshot));
    let mut version = packed.clone();
    version[MAGIC.len() + 1] = 2;
    assert!(matches!(refused(&version), ProfileError::Version(2)));
    let mut trailing = packed.clone();
    trailing.push(0);
    assert!(matches!(refused(&trailing), ProfileError::Corrupt(_)));

    let (path, _, data) = good_record();
    let oversize = handmade(&[(path, 1 << 40, data)], 1);
    assert!(matches!(
        refused(&oversize),
        ProfileError::Corrupt("truncated")
    ));
    let missing_file = handmade(&[good_record()], 2);
    assert!(matches!(
        refused(&missing_file),
        ProfileError::Corrupt("truncated")
    ));
    let twice = handmade(&[good_record(), good_record()], 2);
    assert!(matches!(refused(&twice), ProfileError::Path { .. }));
}

#[test]
fn a_target_that_is_a_symlink_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("source");
    fake_profile(&source);
    let packed = pack(&source, LIMIT).expect("pack");
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).expect("mkdir");
    let target = dir.path().join("target");
    symlink(&elsewhere, &target).expect("link");
    assert!(matches!(
        unpack(&packed.bytes, &target, LIMIT),
        Err(ProfileError::NotADirectory(_))
    ));
    assert!(tree(&elsewhere).is_empty());
}
