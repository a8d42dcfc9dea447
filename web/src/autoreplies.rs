//! `/api/v1/tenants/{id}/auto-replies`: a tenant's keyword → reply rules
//! (the first switched-on match wins, off unless enabled), and
//! `…/auto-replies/try`, which says which rule would answer a text (rules
//! switched off are skipped) — the saved rules or the ones being
//! edited — without sending anything. Tenant users manage their own; admins
//! any. Answering incoming messages is
//! `centinela_actors::messaging::autoreply`'s.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{AppJson, AppPath};
use crate::openapi::{Access, Doc, Routes};
use crate::webhooks::own_tenant;
use crate::AppState;
use axum::extract::State;
use axum::routing::{get, post};
use axum::Json;
use centinela_actors::messaging::autoreply::rule_for;
use centinela_actors::store::AutoReplyRules;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

/// The most rules a tenant may have, and the longest text "try it" takes.
const MAX_RULES: usize = 50;
const MAX_TRY_CHARS: usize = 4096;

pub fn routes() -> Routes {
    const OK: &[(u16, &str)] = &[
        (200, "ok"),
        (400, "bad input"),
        (401, "no credentials"),
        (403, "another tenant's"),
        (404, "not found"),
    ];
    Routes::new()
        .route(
            "/api/v1/tenants/{id}/auto-replies",
            get(get_rules).put(set_rules),
            vec![
                Doc::new("GET", "messages", "The tenant's auto-reply rules", Access::Authenticated, OK).reply::<AutoReplyRules>(),
                Doc::new("PUT", "messages", "Replace the auto-reply rules (off unless enabled)", Access::Authenticated, OK)
                    .body::<AutoReplyRules>(json!({"enabled": true, "rules": [{"keyword": "horario", "reply": "Abrimos de 9 a 18", "enabled": true}]}))
                    .reply::<AutoReplyRules>(),
            ],
        )
        .route(
            "/api/v1/tenants/{id}/auto-replies/try",
            post(try_text),
            vec![Doc::new(
                "POST",
                "messages",
                "Which rule would answer a text (the saved rules, or `rules` as edited); sends nothing",
                Access::Authenticated,
                OK,
            )
            .body::<TryText>(json!({"text": "¿Cuál es el horario?"}))
            .reply::<TryAnswer>()],
        )
}

/// The rules' own checks: at most 50, keywords 1-100 characters, replies
/// 1-1000.
fn check(rules: &AutoReplyRules) -> Result<(), ApiError> {
    if rules.rules.len() > MAX_RULES {
        return Err(ApiError::bad_request("too_many_rules", "at most 50 rules"));
    }
    for r in &rules.rules {
        let k = r.keyword.trim().chars().count();
        let reply = r.reply.trim().chars().count();
        if !(1..=100).contains(&k) || !(1..=1000).contains(&reply) {
            return Err(ApiError::bad_request(
                "invalid_rule",
                "keywords are 1-100 characters, replies 1-1000",
            ));
        }
    }
    Ok(())
}

async fn get_rules(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<Json<AutoReplyRules>, ApiError> {
    let tenant = own_tenant(&state, &caller, &id)?;
    Ok(Json(state.settings.auto_reply_rules(&tenant)?))
}

async fn set_rules(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppJson(rules): AppJson<AutoReplyRules>,
) -> Result<Json<AutoReplyRules>, ApiError> {
    let tenant = own_tenant(&state, &caller, &id)?;
    check(&rules)?;
    if !state.settings.set_auto_reply_rules(&tenant, &rules)? {
        return Err(ApiError::NotFound(format!("tenant {tenant} not found")));
    }
    tracing::info!(tenant = %tenant, by = %caller.name(), enabled = rules.enabled, rules = rules.rules.len(), "auto-replies set");
    Ok(Json(rules))
}

/// A text to try, against `rules` when given (the editor's unsaved rules),
/// else the saved ones.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TryText {
    text: String,
    rules: Option<AutoReplyRules>,
}

/// Which rule would answer, and whether it would go out now.
#[derive(Debug, Serialize, ToSchema)]
pub struct TryAnswer {
    /// The matching rule's position (0-based), or null when none matches.
    pub rule: Option<usize>,
    pub keyword: Option<String>,
    pub reply: Option<String>,
    /// Whether the rules are on: a match while they are off sends nothing.
    pub enabled: bool,
}

async fn try_text(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<TryText>,
) -> Result<Json<TryAnswer>, ApiError> {
    let tenant = own_tenant(&state, &caller, &id)?;
    if body.text.chars().count() > MAX_TRY_CHARS {
        return Err(ApiError::bad_request(
            "text_too_long",
            "text is at most 4096 characters",
        ));
    }
    let rules = match body.rules {
        Some(r) => {
            check(&r)?;
            r
        }
        None => state.settings.auto_reply_rules(&tenant)?,
    };
    let rule = rule_for(&rules, &body.text);
    let hit = rule.map(|i| &rules.rules[i]);
    Ok(Json(TryAnswer {
        rule,
        keyword: hit.map(|r| r.keyword.clone()),
        reply: hit.map(|r| r.reply.clone()),
        enabled: rules.enabled,
    }))
}
