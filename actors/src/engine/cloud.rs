//! What the rest of the service knows about a Cloud API session: its
//! account ([`CloudAccount`], secrets sealed), the template a message may
//! carry ([`Template`]), and the seam through which Meta's webhooks reach
//! the cloud engine ([`CloudHooks`]). The engine itself (Graph API calls,
//! the payload parsing, the signature check) is the `engine-cloud` crate;
//! the HTTP routes are the web crate's.

use crate::secret::{Sealed, Secret, SecretBox, SecretError};
use serde::{Deserialize, Serialize};

/// A Cloud API session's account as stored: ids in the clear, the three
/// secrets sealed together ([`SecretBox`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudAccount {
    pub phone_number_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waba_id: Option<String>,
    /// The Graph API version for this session; the server's
    /// `engine.cloud_api_version` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    pub secrets: Sealed,
}

/// The secrets of a Cloud API session, open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudSecrets {
    pub access_token: Secret,
    pub app_secret: Secret,
    pub verify_token: Secret,
}

impl CloudSecrets {
    pub fn seal(&self, sb: &SecretBox) -> Sealed {
        let json = serde_json::to_vec(self).expect("three strings serialize");
        sb.seal(&json)
    }

    pub fn open(sealed: &Sealed, sb: &SecretBox) -> Result<Self, SecretError> {
        let json = sb.open(sealed)?;
        serde_json::from_slice(&json).map_err(|_| SecretError::Open)
    }
}

/// An approved message template, as the Cloud API takes it
/// (`"type":"template","template":{...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub name: String,
    pub language: TemplateLanguage,
    /// Header, body and button parameters, passed to Meta as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub components: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateLanguage {
    /// `en_US`, `es_AR`, ...
    pub code: String,
}

/// What became of one webhook POST from Meta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookOutcome {
    /// Signed by the number's app, and handed to its session
    /// (`events` of them; duplicates dropped).
    Accepted { events: usize, duplicates: usize },
    /// Names no number a running cloud session has: answered 200 all the
    /// same (Meta would retry an error for days), and counted.
    UnknownNumber,
    /// Missing, malformed or wrong `X-Hub-Signature-256`: nothing changed.
    BadSignature,
    /// Not JSON of Meta's envelope: nothing changed.
    Malformed,
    /// The number is a stopped session's: nothing changed, and Meta is
    /// asked to retry (it does, for days) so nothing is lost.
    Stopped,
    /// Could not be kept now (the store failed, the session's queue is
    /// full): Meta is asked to retry; what was kept is known on the retry.
    NotNow,
}

/// Meta's webhooks, as the cloud engine receives them. Implemented by the
/// cloud engine; the web crate calls it from `/webhooks/meta`.
pub trait CloudHooks: Send + Sync + 'static {
    /// Whether `token` is the verify token of a running cloud session
    /// (the `hub.verify_token` of the subscription handshake).
    fn verify_token_matches(&self, token: &str) -> bool;
    /// A POST's raw body and its `X-Hub-Signature-256` header.
    fn deliver(&self, signature: Option<&str>, body: &[u8]) -> HookOutcome;
    /// POSTs that named no known number, since the start.
    fn unknown_numbers(&self) -> u64;
}
