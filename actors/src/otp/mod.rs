//! Verification codes (issue 16, seed 004): six digits sent through one of
//! the tenant's sessions, valid for `otp.ttl`, three tries, a new code no
//! sooner than `otp.resend_after`, at most `otp.per_phone_per_day` codes
//! to a phone and `otp.per_address_per_hour` from a client address.
//!
//! Split as the rest of the domain is: [`code`] makes codes and their
//! HMACs, [`phone`] turns what a client typed into E.164, [`delivery`]
//! says what a session of each engine sends, [`rules`] is the pure
//! decision of a verification, a resend and a limit, and [`service`] runs
//! them against the store and the outbox. The code itself is known only
//! to the message that carries it (marked secret in the outbox, wiped once
//! sent) and to the phone: never the store's OTP records, the API, the
//! bus, webhooks or logs.

pub mod code;
pub mod delivery;
pub mod phone;
pub mod rules;
pub mod service;

pub use service::{NewOtp, Otp, OtpError, OtpStore};
