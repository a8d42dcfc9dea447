//! Codes and their fingerprints. A code is six digits drawn from a
//! CSPRNG (the caller's, so tests can seed one). Only an HMAC-SHA256 of
//! it is stored, keyed by the server's OTP secret and bound to the OTP's
//! id: a million possible codes hash in a moment, so a plain or salted
//! hash would not hide them from someone holding the database; the key
//! does (NIST 800-63B §5.1.2.2, see `CLOUD-API.md` §B). Fingerprints are
//! compared in constant time.

use hmac::{Hmac, KeyInit, Mac};
use rand::{CryptoRng, Rng};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Digits in a code.
pub const DIGITS: usize = 6;

/// A code, as it goes into the one message that carries it. Its `Debug`
/// hides it, so a stray `?code` in a log line shows nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct Code(String);

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Code(******)")
    }
}

impl Code {
    /// Six uniformly drawn digits, leading zeros included.
    pub fn generate(rng: &mut (impl CryptoRng + ?Sized)) -> Code {
        Code(format!("{:06}", rng.random_range(0..1_000_000u32)))
    }

    /// The digits, for the message text only.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

/// The keyed fingerprint of `code` for OTP `otp`, as lowercase hex
/// (always 64 characters, so comparisons are of equal lengths).
pub fn digest(secret: &[u8], otp: &str, code: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(otp.as_bytes());
    mac.update(&[0]);
    mac.update(code.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `candidate` (what a user typed) is the code `stored` is the
/// fingerprint of. The time taken does not depend on how much matches.
pub fn matches(secret: &[u8], otp: &str, stored: &str, candidate: &str) -> bool {
    let given = digest(secret, otp, candidate);
    given.as_bytes().ct_eq(stored.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn codes_are_six_digits_with_leading_zeros_and_spread_over_the_range() {
        let mut rng = StdRng::seed_from_u64(7);
        let codes: Vec<Code> = (0..2_000).map(|_| Code::generate(&mut rng)).collect();
        assert!(codes
            .iter()
            .all(|c| c.reveal().len() == DIGITS && c.reveal().bytes().all(|b| b.is_ascii_digit())));
        let distinct: std::collections::HashSet<&str> = codes.iter().map(Code::reveal).collect();
        assert!(
            distinct.len() > 1_990,
            "hardly any repeats: {}",
            distinct.len()
        );
        assert!(
            codes.iter().any(|c| c.reveal().starts_with('0')),
            "leading zeros are kept"
        );
        assert_eq!(format!("{:?}", codes[0]), "Code(******)");
    }

    #[test]
    fn a_fingerprint_is_keyed_and_bound_to_its_otp() {
        let d = digest(b"k1", "otp_a", "123456");
        assert_eq!(d.len(), 64);
        assert!(!d.contains("123456"));
        assert_ne!(d, digest(b"k2", "otp_a", "123456"), "another key");
        assert_ne!(d, digest(b"k1", "otp_b", "123456"), "another OTP");
        assert!(matches(b"k1", "otp_a", &d, "123456"));
        assert!(!matches(b"k1", "otp_a", &d, "123457"));
        assert!(!matches(b"k1", "otp_a", &d, ""));
        assert!(!matches(b"k2", "otp_a", &d, "123456"));
    }
}
