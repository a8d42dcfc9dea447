//! Phone numbers as a client types them, checked and written in E.164 by
//! libphonenumber's rules (the `phonenumber` crate): a number must carry
//! its country code (`+`, no default region is guessed) and be a valid
//! number of that country. The outbox and the engines spell numbers as
//! digits alone; [`E164::digits`] is that spelling.

use std::fmt;

/// A valid number, `+` and digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E164(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("a phone number starts with + and its country code")]
    NoCountryCode,
    #[error("not a phone number: {0}")]
    Unparsable(String),
    #[error("not a valid number for its country")]
    Invalid,
}

impl E164 {
    /// `raw` as E.164; spaces, dashes, dots and parentheses are allowed
    /// between the digits.
    pub fn parse(raw: &str) -> Result<E164, PhoneError> {
        let raw = raw.trim();
        if raw.len() > 32 {
            return Err(PhoneError::Unparsable("too long".into()));
        }
        if !raw.starts_with('+') {
            return Err(PhoneError::NoCountryCode);
        }
        let number =
            phonenumber::parse(None, raw).map_err(|e| PhoneError::Unparsable(e.to_string()))?;
        if !phonenumber::is_valid(&number) {
            return Err(PhoneError::Invalid);
        }
        Ok(E164(
            number.format().mode(phonenumber::Mode::E164).to_string(),
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number without its `+`, as the outbox and the engines spell it.
    pub fn digits(&self) -> &str {
        self.0.trim_start_matches('+')
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_numbers_are_written_in_e164_whatever_the_punctuation() {
        for raw in [
            "+5491122334455",
            "+54 9 11 2233-4455",
            " +54 (9) 11 2233 4455 ",
        ] {
            let n = E164::parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
            assert_eq!(n.as_str(), "+5491122334455", "{raw:?}");
            assert_eq!(n.digits(), "5491122334455");
        }
        assert_eq!(
            E164::parse("+1 415 555 2671").map(|n| n.to_string()),
            Ok("+14155552671".into())
        );
    }

    #[test]
    fn numbers_without_a_country_code_or_invalid_for_theirs_are_refused() {
        assert_eq!(E164::parse("5491122334455"), Err(PhoneError::NoCountryCode));
        assert_eq!(E164::parse("1122334455"), Err(PhoneError::NoCountryCode));
        assert_eq!(E164::parse("+54 12"), Err(PhoneError::Invalid));
        assert_eq!(E164::parse("+54 9 11 2233"), Err(PhoneError::Invalid));
        assert!(E164::parse("+1 000 000 0000").is_err());
        assert!(matches!(
            E164::parse("+hello"),
            Err(PhoneError::Unparsable(_))
        ));
        assert!(E164::parse(&format!("+{}", "1".repeat(40))).is_err());
        assert!(E164::parse("").is_err());
    }
}
