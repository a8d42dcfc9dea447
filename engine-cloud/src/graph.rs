//! The Graph API calls the cloud engine makes, and how Meta's answers map
//! to [`EngineError`]s. Meta says to branch on `error.code`, never on the
//! message text (developers.facebook.com, "Error codes"); the error shape
//! is `{"error":{"message","type","code","error_data","fbtrace_id"}}`.

use centinela_actors::engine::cloud::Template;
use centinela_actors::engine::EngineError;
use serde::Deserialize;
use serde_json::{json, Value};

/// The Cloud API's "re-engagement" error: outside the 24 h window.
pub const OUTSIDE_WINDOW: u32 = 131_047;
/// Invalid or expired access token (HTTP 401).
pub const TOKEN_INVALID: u32 = 190;

/// Where one number's calls go: `{base}/{version}/{phone_number_id}`.
#[derive(Clone)]
pub struct Graph {
    pub http: reqwest::Client,
    pub base: String,
    pub version: String,
    pub phone_number_id: String,
    pub token: String,
}

/// What Meta refused, or that the call itself failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphError {
    /// Meta answered with an error code.
    Code(u32),
    /// No usable answer (network, timeout, not Meta's JSON).
    Transport(String),
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: u32,
}

#[derive(Deserialize)]
struct NumberBody {
    display_phone_number: String,
}

#[derive(Deserialize)]
struct SendBody {
    messages: Vec<SentMessage>,
}

#[derive(Deserialize)]
struct SentMessage {
    id: String,
}

impl Graph {
    fn url(&self, tail: &str) -> String {
        format!(
            "{}/{}/{}{}",
            self.base.trim_end_matches('/'),
            self.version,
            self.phone_number_id,
            tail
        )
    }

    /// The token and number check: `GET /{version}/{phone_number_id}`,
    /// answered with the number's digits.
    pub async fn number(&self) -> Result<String, GraphError> {
        let url = self.url("?fields=display_phone_number");
        let res = self.http.get(url).bearer_auth(&self.token).send().await;
        let body: NumberBody = answer(res).await?;
        Ok(body
            .display_phone_number
            .chars()
            .filter(char::is_ascii_digit)
            .collect())
    }

    /// `POST /{version}/{phone_number_id}/messages`; the `wamid`.
    pub async fn send(&self, body: Value) -> Result<String, GraphError> {
        let res = self
            .http
            .post(self.url("/messages"))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await;
        let sent: SendBody = answer(res).await?;
        sent.messages
            .into_iter()
            .next()
            .map(|m| m.id)
            .ok_or_else(|| GraphError::Transport("no message id in the answer".into()))
    }
}

/// A text message body (Meta's "Text messages" reference).
pub fn text_body(to: &str, text: &str) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"preview_url": false, "body": text},
    })
}

/// A template message body (Meta's "Send message templates").
pub fn template_body(to: &str, template: &Template) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": template,
    })
}

async fn answer<T: serde::de::DeserializeOwned>(
    res: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, GraphError> {
    let res = res.map_err(|e| GraphError::Transport(e.to_string()))?;
    let status = res.status();
    let bytes = res
        .bytes()
        .await
        .map_err(|e| GraphError::Transport(e.to_string()))?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| GraphError::Transport(e.to_string()));
    }
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(e) => Err(GraphError::Code(e.error.code)),
        Err(_) if status == reqwest::StatusCode::UNAUTHORIZED => {
            Err(GraphError::Code(TOKEN_INVALID))
        }
        Err(_) => Err(GraphError::Transport(format!("HTTP {status}"))),
    }
}

/// The engine error for a Meta code that is not a rate limit (those are
/// the limiter's, with its backoff).
pub fn engine_error(code: u32) -> EngineError {
    match code {
        TOKEN_INVALID => EngineError::TokenInvalid,
        OUTSIDE_WINDOW => EngineError::NeedsTemplate,
        other => EngineError::Refused(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_what_the_sender_does_with_them() {
        assert_eq!(engine_error(190), EngineError::TokenInvalid);
        assert_eq!(engine_error(131_047), EngineError::NeedsTemplate);
        assert_eq!(engine_error(131_026), EngineError::Refused(131_026));
        assert_eq!(engine_error(131_049), EngineError::Refused(131_049));
    }

    #[test]
    fn a_template_body_carries_name_language_and_components() {
        let t: Template = serde_json::from_value(json!({
            "name": "order_ready", "language": {"code": "es_AR"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "42"}]}]
        }))
        .expect("template");
        let body = template_body("5491122334455", &t);
        assert_eq!(body["type"], "template");
        assert_eq!(body["template"]["name"], "order_ready");
        assert_eq!(body["template"]["language"]["code"], "es_AR");
        assert_eq!(body["template"]["components"][0]["type"], "body");
    }
}
