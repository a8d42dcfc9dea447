//! The pure decisions of the OTP service, functions of (record, input,
//! now): what a verification does to a code, whether a code may be sent
//! again, and when a rolling-window limit has room. The service runs them
//! inside the store's transactions; they are tested exhaustively here.

use crate::clock::Timestamp;
use crate::store::{OtpRecord, OtpStatus};
use std::time::Duration;

/// What one verification attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Verified,
    /// Wrong, with tries left.
    Wrong {
        attempts_left: u32,
    },
    /// The last try was wrong (this one, or one before): voided.
    TooManyAttempts,
    Expired,
    AlreadyUsed,
    /// A newer code for the phone replaced it.
    Superseded,
    /// Its message never reached the phone.
    Undelivered,
}

impl Verdict {
    /// The `reason` of the `otp.failed` event it is, if it is one a
    /// verification attempt causes.
    pub fn failure(self) -> Option<&'static str> {
        match self {
            Verdict::Wrong { .. } => Some("invalid_code"),
            Verdict::TooManyAttempts => Some("too_many_attempts"),
            Verdict::Expired => Some("expired"),
            Verdict::Verified
            | Verdict::AlreadyUsed
            | Verdict::Superseded
            | Verdict::Undelivered => None,
        }
    }
}

/// Applies one attempt to `r` at `now`; `matches` is whether the code
/// given was right. Returns the verdict and whether `r` changed. A used,
/// voided or expired code is not even counted: nothing can come of it.
pub fn verify(r: &mut OtpRecord, matches: bool, now: Timestamp) -> (Verdict, bool) {
    match r.status {
        OtpStatus::Verified => return (Verdict::AlreadyUsed, false),
        OtpStatus::Exhausted => return (Verdict::TooManyAttempts, false),
        OtpStatus::Superseded => return (Verdict::Superseded, false),
        OtpStatus::Undelivered => return (Verdict::Undelivered, false),
        OtpStatus::Pending => {}
    }
    if now >= r.expires_at {
        return (Verdict::Expired, false);
    }
    r.updated_at = now;
    if matches {
        r.status = OtpStatus::Verified;
        return (Verdict::Verified, true);
    }
    r.attempts_left = r.attempts_left.saturating_sub(1);
    if r.attempts_left == 0 {
        r.status = OtpStatus::Exhausted;
        return (Verdict::TooManyAttempts, true);
    }
    (
        Verdict::Wrong {
            attempts_left: r.attempts_left,
        },
        true,
    )
}

/// Why a code may not be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResendRefusal {
    AlreadyUsed,
    /// Voided (too many tries, replaced, undeliverable): ask for a new OTP.
    Voided(OtpStatus),
    /// Not before this.
    TooSoon(Timestamp),
}

/// Whether `r` may get a new code at `now`. An expired code may: that is
/// what a resend is for.
pub fn resend(r: &OtpRecord, now: Timestamp) -> Result<(), ResendRefusal> {
    match r.status {
        OtpStatus::Verified => Err(ResendRefusal::AlreadyUsed),
        OtpStatus::Exhausted | OtpStatus::Superseded | OtpStatus::Undelivered => {
            Err(ResendRefusal::Voided(r.status))
        }
        OtpStatus::Pending if now < r.resend_at => Err(ResendRefusal::TooSoon(r.resend_at)),
        OtpStatus::Pending => Ok(()),
    }
}

/// `r` with a fresh code (`digest`) issued at `now`: full tries, a new
/// expiry and resend time.
pub fn reissue(
    r: &mut OtpRecord,
    digest: String,
    now: Timestamp,
    ttl: Duration,
    resend_after: Duration,
    attempts: u32,
) {
    r.digest = digest;
    r.attempts_left = attempts;
    r.issued_at = now;
    r.expires_at = now.plus(ttl);
    r.resend_at = now.plus(resend_after);
    r.sends += 1;
    r.updated_at = now;
}

/// Seconds from `now` until `at`, rounded up, at least 1: a `Retry-After`.
pub fn retry_after_secs(at: Timestamp, now: Timestamp) -> u64 {
    at.since(now).as_millis().div_ceil(1000).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{SessionId, TenantId};
    use crate::store::OtpPurpose;

    const MIN: Duration = Duration::from_secs(60);
    const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    fn pending() -> OtpRecord {
        OtpRecord {
            id: "otp_1".into(),
            tenant: TenantId::new("t").expect("id"),
            session: SessionId::new("s").expect("id"),
            phone: "+5491122334455".into(),
            purpose: OtpPurpose::Registration,
            digest: "d".into(),
            status: OtpStatus::Pending,
            attempts_left: 3,
            created_at: T0,
            issued_at: T0,
            expires_at: T0.plus(MIN * 10),
            resend_at: T0.plus(MIN),
            sends: 1,
            message_id: None,
            updated_at: T0,
        }
    }

    #[test]
    fn the_right_code_verifies_once() {
        let mut r = pending();
        assert_eq!(
            verify(&mut r, true, T0.plus(MIN)),
            (Verdict::Verified, true)
        );
        assert_eq!(r.status, OtpStatus::Verified);
        assert_eq!(
            verify(&mut r, true, T0.plus(MIN)),
            (Verdict::AlreadyUsed, false),
            "single use"
        );
    }

    #[test]
    fn three_wrong_codes_void_it_and_then_even_the_right_one_is_refused() {
        let mut r = pending();
        let now = T0.plus(MIN);
        assert_eq!(
            verify(&mut r, false, now),
            (Verdict::Wrong { attempts_left: 2 }, true)
        );
        assert_eq!(
            verify(&mut r, false, now),
            (Verdict::Wrong { attempts_left: 1 }, true)
        );
        assert_eq!(verify(&mut r, false, now), (Verdict::TooManyAttempts, true));
        assert_eq!(r.status, OtpStatus::Exhausted);
        assert_eq!(
            verify(&mut r, true, now),
            (Verdict::TooManyAttempts, false),
            "voided"
        );
        assert_eq!(r.attempts_left, 0);
    }

    #[test]
    fn a_code_expires_at_its_ttl_and_an_expired_try_is_not_counted() {
        let mut r = pending();
        let just_before = T0.plus(MIN * 10).minus(Duration::from_millis(1));
        assert_eq!(
            verify(&mut r.clone(), true, just_before),
            (Verdict::Verified, true)
        );
        assert_eq!(
            verify(&mut r, true, T0.plus(MIN * 10)),
            (Verdict::Expired, false)
        );
        assert_eq!(verify(&mut r, false, T0.plus(MIN * 11)).0, Verdict::Expired);
        assert_eq!(r.attempts_left, 3);
    }

    #[test]
    fn voided_codes_say_why() {
        for (status, want) in [
            (OtpStatus::Superseded, Verdict::Superseded),
            (OtpStatus::Undelivered, Verdict::Undelivered),
        ] {
            let mut r = OtpRecord {
                status,
                ..pending()
            };
            assert_eq!(verify(&mut r, true, T0), (want, false));
        }
        assert_eq!(
            Verdict::Wrong { attempts_left: 1 }.failure(),
            Some("invalid_code")
        );
        assert_eq!(Verdict::Verified.failure(), None);
    }

    #[test]
    fn a_resend_waits_its_minute_and_only_a_pending_code_gets_one() {
        let r = pending();
        assert_eq!(
            resend(&r, T0.plus(Duration::from_secs(59))),
            Err(ResendRefusal::TooSoon(T0.plus(MIN)))
        );
        assert_eq!(resend(&r, T0.plus(MIN)), Ok(()));
        assert_eq!(resend(&r, T0.plus(MIN * 30)), Ok(()), "expired: resend it");
        for (status, want) in [
            (OtpStatus::Verified, ResendRefusal::AlreadyUsed),
            (
                OtpStatus::Exhausted,
                ResendRefusal::Voided(OtpStatus::Exhausted),
            ),
            (
                OtpStatus::Superseded,
                ResendRefusal::Voided(OtpStatus::Superseded),
            ),
            (
                OtpStatus::Undelivered,
                ResendRefusal::Voided(OtpStatus::Undelivered),
            ),
        ] {
            let r = OtpRecord {
                status,
                ..pending()
            };
            assert_eq!(resend(&r, T0.plus(MIN * 2)), Err(want));
        }
    }

    #[test]
    fn a_reissued_code_has_full_tries_and_new_times() {
        let mut r = pending();
        r.attempts_left = 1;
        let now = T0.plus(MIN * 2);
        reissue(&mut r, "d2".into(), now, MIN * 10, MIN, 3);
        assert_eq!(
            (
                r.digest.as_str(),
                r.attempts_left,
                r.expires_at,
                r.resend_at,
                r.sends
            ),
            ("d2", 3, now.plus(MIN * 10), now.plus(MIN), 2)
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(T0.plus(Duration::from_millis(1)), T0), 1);
        assert_eq!(
            retry_after_secs(T0.plus(Duration::from_millis(59_001)), T0),
            60
        );
        assert_eq!(retry_after_secs(T0, T0), 1);
    }
}
