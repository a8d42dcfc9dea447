//! Secrets at rest: a [`SecretBox`] seals what must never be stored in the
//! clear (a Cloud API session's access token, app secret and verify token)
//! with AES-256-GCM under the server's secret key, and opens it again for
//! the one place that needs it (the cloud engine). [`Secret`] is a string
//! whose `Debug` never shows it, so a secret cannot reach a log line by a
//! `?` field.
//!
//! Large binary values (a browser profile snapshot) are sealed as bytes
//! instead ([`SecretBox::seal_bytes`]): hex would double them, and the
//! associated data binds each one to what it is about, so a sealed value
//! cannot be moved to another row and still open.
//!
//! The key comes from `storage.secret_key` (64 hex digits, or
//! `CENTINELA__STORAGE__SECRET_KEY`), else from a file beside the data
//! directory, made once with mode 0600 ([`key_file`]). Losing the key loses
//! the sealed secrets (the sessions must be given their tokens again); it
//! is not stored in the database on purpose, so a copy of the database
//! alone opens nothing.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Why a secret could not be sealed, opened or keyed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("storage.secret_key must be 64 hex digits (32 bytes)")]
    BadKey,
    #[error("cannot read or write the secret key file {path}: {why}")]
    KeyFile { path: PathBuf, why: String },
    #[error("a sealed secret does not open with this key (wrong or rotated key, or corrupt)")]
    Open,
}

/// A string that is never shown: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one call that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Sealed bytes as stored: `v1:` then hex of nonce (12 bytes) and
/// ciphertext with its tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(String);

/// AES-256-GCM under the server's key; a fresh random nonce per seal.
/// During a key rotation it also opens what the previous key sealed
/// ([`SecretBox::with_previous`]), so those can be sealed again.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
    previous: Option<Aes256Gcm>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox")
    }
}

impl SecretBox {
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)),
            previous: None,
        }
    }

    /// The same box, also opening what `previous` (64 hex digits,
    /// `storage.previous_secret_key`) sealed.
    pub fn with_previous(mut self, previous: Option<&str>) -> Result<Self, SecretError> {
        if let Some(hex) = previous {
            let key = parse_key(hex)?;
            self.previous = Some(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)));
        }
        Ok(self)
    }

    /// A box under a random key that lives as long as the process: for
    /// tests of the HTTP layer, where nothing outlives a run.
    pub fn ephemeral() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self::new(key)
    }

    /// The server's box: `configured` (hex) when given, else the key file
    /// beside `data_dir`, made on the first start.
    pub fn load(configured: Option<&str>, data_dir: &Path) -> Result<Self, SecretError> {
        match configured {
            Some(hex) => Ok(Self::new(parse_key(hex)?)),
            None => Ok(Self::new(load_or_make(&key_file(data_dir))?)),
        }
    }

    pub fn seal(&self, plain: &[u8]) -> Sealed {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain)
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        Sealed(format!("v1:{}{}", hex(&nonce), hex(&ct)))
    }

    /// Opens `sealed` with the current key, or else the previous one.
    pub fn open(&self, sealed: &Sealed) -> Result<Vec<u8>, SecretError> {
        open_with(&self.cipher, sealed).or_else(|e| match &self.previous {
            Some(previous) => open_with(previous, sealed),
            None => Err(e),
        })
    }

    /// Seals binary `plain`, bound to `aad` (associated data: not stored,
    /// not secret, but the same bytes must be given to
    /// [`SecretBox::open_bytes`], so a value sealed for one thing does not
    /// open as another). The result is [`SEALED_BYTES_V1`], a fresh random
    /// 12-byte nonce, then the ciphertext with its 16-byte tag: 29 bytes
    /// more than `plain`.
    pub fn seal_bytes(&self, plain: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad })
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(1 + nonce.len() + ct.len());
        out.push(SEALED_BYTES_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens what [`SecretBox::seal_bytes`] sealed with the same `aad`,
    /// under the current key or else the previous one. [`SecretError::Open`]
    /// for a wrong key, other associated data, a changed byte, an unknown
    /// version or input too short to hold a nonce and a tag.
    pub fn open_bytes(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, SecretError> {
        open_bytes_with(&self.cipher, sealed, aad).or_else(|e| match &self.previous {
            Some(previous) => open_bytes_with(previous, sealed, aad),
            None => Err(e),
        })
    }

    /// `sealed` under the current key, if only the previous key opens it
    /// (a rotation in progress); `None` if there is nothing to do.
    pub fn reseal(&self, sealed: &Sealed) -> Result<Option<Sealed>, SecretError> {
        if open_with(&self.cipher, sealed).is_ok() {
            return Ok(None);
        }
        Ok(Some(self.seal(&self.open(sealed)?)))
    }
}

fn open_with(cipher: &Aes256Gcm, sealed: &Sealed) -> Result<Vec<u8>, SecretError> {
    let raw = sealed
        .0
        .strip_prefix("v1:")
        .and_then(unhex)
        .ok_or(SecretError::Open)?;
    if raw.len() < 12 + 16 {
        return Err(SecretError::Open);
    }
    let (nonce, ct) = raw.split_at(12);
    cipher
        .decrypt(Nonce::from_slice(nonce), ct)
        .map_err(|_| SecretError::Open)
}

/// The first byte of [`SecretBox::seal_bytes`]' output: the layout
/// (nonce, then AES-256-GCM ciphertext and tag).
pub const SEALED_BYTES_V1: u8 = 1;

fn open_bytes_with(cipher: &Aes256Gcm, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, SecretError> {
    let Some((&SEALED_BYTES_V1, rest)) = sealed.split_first() else {
        return Err(SecretError::Open);
    };
    if rest.len() < 12 + 16 {
        return Err(SecretError::Open);
    }
    let (nonce, ct) = rest.split_at(12);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .map_err(|_| SecretError::Open)
}

/// Where the generated key lives: `<data_dir>.secret-key`, beside the data
/// directory (not in it, so a copy of the data directory alone opens
/// nothing).
pub fn key_file(data_dir: &Path) -> PathBuf {
    let mut name = data_dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "centinela".into());
    name.push(".secret-key");
    data_dir.with_file_name(name)
}

fn parse_key(text: &str) -> Result<[u8; 32], SecretError> {
    let bytes = unhex(text.trim()).ok_or(SecretError::BadKey)?;
    bytes.try_into().map_err(|_| SecretError::BadKey)
}

fn load_or_make(path: &Path) -> Result<[u8; 32], SecretError> {
    let fail = |e: std::io::Error| SecretError::KeyFile {
        path: path.to_path_buf(),
        why: e.to_string(),
    };
    match std::fs::read_to_string(path) {
        Ok(text) => return parse_key(&text),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(e)),
        Err(_) => {}
    }
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    write_private(path, &hex(&key)).map_err(fail)?;
    tracing::warn!(path = %path.display(), "made a new secret key for sealed session secrets: back it up (see the README)");
    Ok(key)
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// `bytes` as lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hexadecimal text as bytes; `None` unless it is pairs of hex digits.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_with_its_key_only() {
        let a = SecretBox::new([7; 32]);
        let sealed = a.seal(b"EAAG-token");
        assert!(!sealed.0.contains("EAAG"));
        assert_eq!(a.open(&sealed).expect("opens"), b"EAAG-token");
        let b = SecretBox::new([8; 32]);
        assert!(matches!(b.open(&sealed), Err(SecretError::Open)));
    }

    #[test]
    fn two_seals_of_one_secret_differ() {
        let a = SecretBox::new([7; 32]);
        assert_ne!(a.seal(b"x"), a.seal(b"x"));
    }

    #[test]
    fn a_tampered_seal_does_not_open() {
        let a = SecretBox::new([7; 32]);
        let Sealed(mut text) = a.seal(b"secret");
        let last = text.pop().expect("not empty");
        text.push(if last == '0' { '1' } else { '0' });
        assert!(a.open(&Sealed(text)).is_err());
    }

    #[test]
    fn the_key_file_is_made_once_with_mode_0600_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let first = SecretBox::load(None, &data).expect("made");
        let sealed = first.seal(b"kept");
        let path = key_file(&data);
        assert_eq!(path, dir.path().join("data.secret-key"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = SecretBox::load(None, &data).expect("read back");
        assert_eq!(again.open(&sealed).expect("same key"), b"kept");
    }

    #[test]
    fn a_configured_key_must_be_64_hex_digits() {
        assert!(matches!(
            SecretBox::load(Some("abcd"), Path::new("x")),
            Err(SecretError::BadKey)
        ));
        let hex64 = "11".repeat(32);
        assert!(SecretBox::load(Some(&hex64), Path::new("x")).is_ok());
    }

    #[test]
    fn a_rotation_opens_the_old_seals_and_seals_them_again_under_the_new_key() {
        let old = SecretBox::new([1; 32]);
        let sealed = old.seal(b"token");
        let new = SecretBox::new([2; 32])
            .with_previous(Some(&"01".repeat(32)))
            .expect("key");
        assert_eq!(new.open(&sealed).expect("previous opens"), b"token");
        let again = new.reseal(&sealed).expect("opens").expect("resealed");
        assert_eq!(new.reseal(&again).expect("opens"), None, "already current");
        let only_new = SecretBox::new([2; 32]);
        assert_eq!(only_new.open(&again).expect("current"), b"token");
        assert!(only_new.open(&sealed).is_err());
    }

    #[test]
    fn sealed_bytes_open_with_their_key_and_associated_data() {
        let a = SecretBox::new([7; 32]);
        let plain: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let sealed = a.seal_bytes(&plain, b"profile\0t1\0s1");
        assert_eq!(sealed.len(), plain.len() + 1 + 12 + 16, "binary, not hex");
        assert_eq!(sealed[0], SEALED_BYTES_V1);
        assert!(
            !sealed.windows(16).any(|w| w == &plain[..16]),
            "not in the clear"
        );
        assert_eq!(
            a.open_bytes(&sealed, b"profile\0t1\0s1").expect("opens"),
            plain
        );
        assert_ne!(
            a.seal_bytes(&plain, b"x"),
            a.seal_bytes(&plain, b"x"),
            "fresh nonce"
        );
    }

    #[test]
    fn sealed_bytes_do_not_open_with_other_associated_data_or_key() {
        let a = SecretBox::new([7; 32]);
        let sealed = a.seal_bytes(b"pairing", b"profile\0t1\0s1");
        assert!(matches!(
            a.open_bytes(&sealed, b"profile\0t1\0s2"),
            Err(SecretError::Open)
        ));
        assert!(a.open_bytes(&sealed, b"").is_err());
        let b = SecretBox::new([8; 32]);
        assert!(b.open_bytes(&sealed, b"profile\0t1\0s1").is_err());
    }

    #[test]
    fn sealed_bytes_with_any_byte_flipped_do_not_open() {
        let a = SecretBox::new([7; 32]);
        let sealed = a.seal_bytes(b"pairing", b"aad");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(a.open_bytes(&bad, b"aad").is_err(), "byte {i} flipped");
        }
    }

    #[test]
    fn sealed_bytes_of_a_previous_key_open_during_a_rotation() {
        let old = SecretBox::new([1; 32]);
        let sealed = old.seal_bytes(b"pairing", b"aad");
        let new = SecretBox::new([2; 32])
            .with_previous(Some(&"01".repeat(32)))
            .expect("key");
        assert_eq!(
            new.open_bytes(&sealed, b"aad").expect("previous"),
            b"pairing"
        );
        let resealed = new.seal_bytes(b"pairing", b"aad");
        assert!(
            old.open_bytes(&resealed, b"aad").is_err(),
            "sealed under the new key"
        );
        assert!(
            new.open_bytes(&sealed, b"other").is_err(),
            "aad still checked"
        );
    }

    #[test]
    fn truncated_sealed_bytes_fail_cleanly() {
        let a = SecretBox::new([7; 32]);
        let sealed = a.seal_bytes(b"", b"aad");
        assert_eq!(
            sealed.len(),
            1 + 12 + 16,
            "an empty value still has its tag"
        );
        assert_eq!(a.open_bytes(&sealed, b"aad").expect("empty opens"), b"");
        for len in 0..sealed.len() {
            assert!(
                matches!(a.open_bytes(&sealed[..len], b"aad"), Err(SecretError::Open)),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn a_secret_never_shows_in_debug() {
        assert_eq!(format!("{:?}", Secret::new("EAAG")), "***");
    }
}
