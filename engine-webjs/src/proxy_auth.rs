//! Proxy credentials, answered only to the proxy. chromiumoxide's own
//! `Page::authenticate` hands the credentials to *any* challenge, a web
//! server's 401 included, so a page could phish the tenant's proxy login.
//! Here the browser-wide Fetch domain pauses requests (so their challenges
//! reach us), every paused request is continued untouched, and an
//! `authRequired` gets the credentials only when its source is `Proxy`, once
//! per request; a server's challenge is cancelled.

use chromiumoxide::cdp::browser_protocol::fetch::{
    AuthChallengeResponse, AuthChallengeResponseResponse, AuthChallengeSource,
    ContinueRequestParams, ContinueWithAuthParams, EnableParams, EventAuthRequired,
    EventRequestPaused, RequestPattern, RequestStage,
};
use chromiumoxide::Browser;
use futures::StreamExt;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// How long one Fetch command may take before it is given up.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Request ids remembered for "once per request"; cleared past this.
const MAX_TRIED: usize = 10_000;

/// What to answer a challenge: credentials only for the proxy, and only the
/// first time for a request (a second challenge means they were wrong).
pub fn answer(source: Option<&AuthChallengeSource>, first: bool) -> AuthChallengeResponseResponse {
    match source {
        Some(AuthChallengeSource::Proxy) if first => {
            AuthChallengeResponseResponse::ProvideCredentials
        }
        _ => AuthChallengeResponseResponse::CancelAuth,
    }
}

/// Enables browser-wide interception with auth handling; returns the task
/// that answers it. Call before any page is opened.
pub async fn install(
    browser: Arc<Mutex<Option<Browser>>>,
    credentials: (String, String),
) -> Result<tokio::task::JoinHandle<()>, String> {
    let (paused, challenges) = {
        let guard = browser.lock().await;
        let b = guard.as_ref().ok_or("the browser is gone")?;
        let paused = b
            .event_listener::<EventRequestPaused>()
            .await
            .map_err(|e| e.to_string())?;
        let challenges = b
            .event_listener::<EventAuthRequired>()
            .await
            .map_err(|e| e.to_string())?;
        let pattern = RequestPattern {
            url_pattern: Some("*".into()),
            resource_type: None,
            request_stage: Some(RequestStage::Request),
        };
        let enable = EnableParams {
            patterns: Some(vec![pattern]),
            handle_auth_requests: Some(true),
        };
        b.execute(enable).await.map_err(|e| e.to_string())?;
        (paused, challenges)
    };
    Ok(tokio::spawn(run(browser, paused, challenges, credentials)))
}

async fn run(
    browser: Arc<Mutex<Option<Browser>>>,
    mut paused: chromiumoxide::listeners::EventStream<EventRequestPaused>,
    mut challenges: chromiumoxide::listeners::EventStream<EventAuthRequired>,
    (username, password): (String, String),
) {
    let mut tried: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            Some(ev) = paused.next() => {
                let cmd = ContinueRequestParams::new(ev.request_id.clone());
                if !send(&browser, cmd).await {
                    return;
                }
            }
            Some(ev) = challenges.next() => {
                if tried.len() > MAX_TRIED {
                    tried.clear();
                }
                let first = tried.insert(ev.request_id.inner().clone());
                let source = ev.auth_challenge.source.as_ref();
                let decision = answer(source, first);
                let mut response = AuthChallengeResponse::new(decision.clone());
                if decision == AuthChallengeResponseResponse::ProvideCredentials {
                    response.username = Some(username.clone());
                    response.password = Some(password.clone());
                } else if source != Some(&AuthChallengeSource::Proxy) {
                    tracing::warn!(origin = %ev.auth_challenge.origin, "a web server asked for credentials: refused (proxy credentials go only to the proxy)");
                } else {
                    tracing::warn!(origin = %ev.auth_challenge.origin, "the proxy refused its credentials");
                }
                let cmd = ContinueWithAuthParams::new(ev.request_id.clone(), response);
                if !send(&browser, cmd).await {
                    return;
                }
            }
            else => return,
        }
    }
}

/// Sends one command; false once the browser is gone.
async fn send<C>(browser: &Arc<Mutex<Option<Browser>>>, cmd: C) -> bool
where
    C: chromiumoxide::types::Command,
{
    let guard = browser.lock().await;
    let Some(b) = guard.as_ref() else {
        return false;
    };
    // A request the page already abandoned answers an error: not fatal.
    let _ = tokio::time::timeout(COMMAND_TIMEOUT, b.execute(cmd)).await;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_to_the_proxy_once_and_never_to_a_server() {
        use AuthChallengeResponseResponse::{CancelAuth, ProvideCredentials};
        let (proxy, server) = (AuthChallengeSource::Proxy, AuthChallengeSource::Server);
        assert_eq!(answer(Some(&proxy), true), ProvideCredentials);
        assert_eq!(
            answer(Some(&proxy), false),
            CancelAuth,
            "wrong credentials are not retried"
        );
        assert_eq!(answer(Some(&server), true), CancelAuth);
        assert_eq!(
            answer(None, true),
            CancelAuth,
            "an unnamed source is a server"
        );
    }
}
