//! The bad-input matrix, driven from `routes().docs` so that a new route is
//! covered as soon as it is registered: malformed and wrong-typed JSON
//! bodies, invalid and unknown path ids, missing or bad credentials, and
//! another tenant's resources. Every answer must be a 4xx in our error shape
//! `{"success":false,"error":{"code","message"}}`, never a 5xx. Requests go
//! through `tower::ServiceExt::oneshot`; nothing listens on a socket.
//!
//! The full-server tests (`tests/api.rs`) stay about behaviour.

mod common;

use centinela_actors::store::{Role, UserRecord};
use centinela_web::openapi::{Access, Doc};
use common::{App, Cred, Reply, MAX_BODY};
use serde_json::{json, Value};

/// Routes the matrix leaves alone, and why.
fn excluded(path: &str) -> bool {
    match path {
        // The WebSocket handshake: a request through `oneshot` has no
        // connection to take over, so past the credential every answer is
        // 400 `websocket_upgrade_required` (`hardening.rs` checks that). Its
        // authentication is tested over a real socket in `tests/api.rs`
        // (websocket_events_follow_the_tenant...).
        "/api/v1/ws" => true,
        // The dashboard's static files: public, no JSON, no ids; the asset
        // table has its own tests in `dashboard.rs`.
        "/" | "/assets/{file}" => true,
        _ => false,
    }
}

/// Body routes that accept unknown fields on purpose.
fn lenient(path: &str) -> bool {
    match path {
        // Seed 000's login takes `usuario` or `username`, and clients of the
        // seed send extra fields.
        "/auth/login" => true,
        // `AutoReplyRules` is the store's type, deserialized as is.
        "/api/v1/tenants/{id}/auto-replies" => true,
        _ => false,
    }
}

/// What a path parameter names, from the segment before it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Tenant,
    Session,
    User,
    ApiKey,
    Message,
    Campaign,
    Delivery,
    Otp,
    Peer,
}

impl Kind {
    /// The error code of a syntactically invalid id of this kind, for the
    /// ids that are validated (`TenantId`, `SessionId`, `UserId`). The
    /// others are opaque store keys: an invalid one is simply not found.
    fn invalid_code(self) -> Option<&'static str> {
        match self {
            Kind::Tenant => Some("invalid_tenant_id"),
            Kind::Session => Some("invalid_session_id"),
            Kind::User => Some("invalid_user_id"),
            _ => None,
        }
    }
}

/// The `{name}` placeholders of `path` and what each one names.
fn params(path: &str) -> Vec<Kind> {
    let segments: Vec<&str> = path.split('/').collect();
    segments
        .iter()
        .enumerate()
        .filter(|(_, s)| s.starts_with('{'))
        .map(|(i, s)| match segments[i - 1] {
            "tenants" => Kind::Tenant,
            "sessions" => Kind::Session,
            "users" => Kind::User,
            "api-keys" => Kind::ApiKey,
            "messages" => Kind::Message,
            "campaigns" => Kind::Campaign,
            "deliveries" => Kind::Delivery,
            "otp" => Kind::Otp,
            "chats" => Kind::Peer,
            other => panic!("{path}: the matrix does not know what {s} after /{other} names: add it to bad_input.rs params()"),
        })
        .collect()
}

/// `path` with its placeholders replaced, in order, by `values`.
fn fill(path: &str, values: &[String]) -> String {
    let mut values = values.iter();
    path.split('/')
        .map(|s| {
            if s.starts_with('{') {
                values.next().expect("one value per placeholder").clone()
            } else {
                s.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// One tenant's resources, one per kind.
#[derive(Debug, Clone)]
struct Resources {
    tenant: String,
    session: String,
    user: String,
    api_key: String,
    message: String,
    campaign: String,
    delivery: String,
    otp: String,
    /// A number the session wrote to (its chat).
    peer: String,
}

impl Resources {
    fn get(&self, kind: Kind) -> String {
        match kind {
            Kind::Tenant => &self.tenant,
            Kind::Session => &self.session,
            Kind::User => &self.user,
            Kind::ApiKey => &self.api_key,
            Kind::Message => &self.message,
            Kind::Campaign => &self.campaign,
            Kind::Delivery => &self.delivery,
            Kind::Otp => &self.otp,
            Kind::Peer => &self.peer,
        }
        .clone()
    }

    fn for_path(&self, path: &str) -> Vec<String> {
        params(path).into_iter().map(|k| self.get(k)).collect()
    }

    /// The ids and names that must never show in another tenant's answer.
    fn secrets(&self) -> Vec<String> {
        vec![
            self.tenant.clone(),
            self.session.clone(),
            self.user.clone(),
            self.api_key.clone(),
            self.message.clone(),
            self.campaign.clone(),
            self.otp.clone(),
        ]
    }
}

/// An app with an admin, tenant `alpha` (an API key and a user) and tenant
/// `bravo`, each with a session, a message and a campaign made through the
/// API by the admin.
struct World {
    app: App,
    admin: UserRecord,
    alpha: Resources,
    alpha_key: Cred,
    alpha_user: UserRecord,
    bravo: Resources,
    /// Bravo's names, which must not leak either.
    bravo_names: Vec<String>,
}

impl World {
    async fn new() -> World {
        let app = App::start().await;
        let admin = app.user("root", Role::Admin, None);
        let admin_token = app.token(&admin);
        let mut made = Vec::new();
        for (tenant, name) in [("alpha", "Alpha Clinic"), ("bravo", "Bravo Secret Clinic")] {
            let t = app.tenant(tenant, name);
            let user = app.user(&format!("{tenant}-user"), Role::Tenant, Some(&t));
            let (key_id, key) = app.api_key(&t, &format!("{tenant}-key"));
            let session = created(
                app.json(
                    "POST",
                    "/api/v1/sessions",
                    &admin_token,
                    &json!({"tenant_id": tenant, "name": format!("{tenant}-secret-desk")}),
                )
                .await,
                "a session",
            );
            let message = created(
                app.json(
                    "POST",
                    &format!("/api/v1/sessions/{session}/messages"),
                    &admin_token,
                    &json!({"to": "5491122334455", "text": format!("{tenant} secret text")}),
                )
                .await,
                "a message",
            );
            let campaign = created(
                app.json(
                    "POST",
                    &format!("/api/v1/sessions/{session}/campaigns"),
                    &admin_token,
                    &json!({"name": format!("{tenant}-secret-campaign"), "template": "hola {name}",
                            "recipients": [{"to": "5491122334455", "vars": {"name": "Ana"}}]}),
                )
                .await,
                "a campaign",
            );
            let otp = otp_of(&app, tenant, &session);
            let resources = Resources {
                tenant: tenant.into(),
                session,
                user: user.id.to_string(),
                api_key: key_id,
                message,
                campaign,
                // No delivery exists without a webhook call; an unknown id
                // of the right form stands in.
                delivery: format!("d_{tenant}_none"),
                // No session is READY here (no engine): the OTP is put in
                // the store as the service would.
                otp,
                peer: "5491122334455".into(),
            };
            made.push((resources, key, user));
        }
        let (bravo, _, _) = made.pop().expect("bravo");
        let (alpha, alpha_key, alpha_user) = made.pop().expect("alpha");
        World {
            app,
            admin,
            alpha,
            alpha_key,
            alpha_user,
            bravo,
            bravo_names: vec![
                "Bravo Secret Clinic".into(),
                "bravo-secret-desk".into(),
                "bravo secret text".into(),
                "bravo-secret-campaign".into(),
                "bravo-user".into(),
                "bravo-key".into(),
            ],
        }
    }

    /// A fresh admin token (a logout in the matrix revokes only its own).
    fn admin(&self) -> Cred {
        self.app.token(&self.admin)
    }

    /// The credential the matrix uses for a route that needs one.
    fn cred_for(&self, doc: &Doc) -> Cred {
        match doc.access {
            Access::Public => Cred::None,
            _ => self.admin(),
        }
    }

    /// Sends `doc`'s example body (if any) to `uri`.
    async fn send(&self, doc: &Doc, uri: &str, cred: &Cred) -> Reply {
        match doc.example() {
            Some(example) => self.app.json(doc.method, uri, cred, example).await,
            None => self.app.call(doc.method, uri, cred, None).await,
        }
    }
}

/// A pending verification code of `tenant`'s `session`, straight into the store.
fn otp_of(app: &App, tenant: &str, session: &str) -> String {
    use centinela_actors::clock::Timestamp;
    use centinela_actors::ids::{SessionId, TenantId};
    use centinela_actors::store::{OtpPurpose, OtpRecord, OtpRepo, OtpStatus};
    let now = Timestamp::from_millis(4_000_000_000_000);
    let r = OtpRecord {
        id: format!("otp_{tenant}_secret"),
        tenant: TenantId::new(tenant).expect("id"),
        session: SessionId::new(session).expect("id"),
        phone: "+5491122334455".into(),
        purpose: OtpPurpose::Login,
        digest: "00".repeat(32),
        status: OtpStatus::Pending,
        attempts_left: 3,
        created_at: now,
        issued_at: now,
        expires_at: now,
        resend_at: now,
        sends: 1,
        message_id: None,
        updated_at: now,
    };
    app.store
        .issue_otp(&r, &[], now, &mut |_| true)
        .expect("an OTP");
    r.id
}

/// The `id` of a 201/202 answer.
fn created(reply: Reply, what: &str) -> String {
    assert!(
        reply.status.is_success(),
        "setting up {what}: {} {}",
        reply.status,
        reply.text
    );
    reply
        .json()
        .and_then(|v| v["id"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("setting up {what}: no id in {}", reply.text))
}

/// The documented routes the matrix covers.
fn docs() -> Vec<(&'static str, Doc)> {
    centinela_web::routes()
        .docs
        .into_iter()
        .filter(|(path, _)| !excluded(path))
        .collect()
}

/// Collects failed checks, so one run names all of them.
#[derive(Default)]
struct Checks {
    failures: Vec<String>,
    count: usize,
}

impl Checks {
    /// `reply` has one of `statuses`; if it is an error, it is in our shape
    /// and, when `codes` is not empty, its code is one of them.
    fn expect(&mut self, case: String, reply: &Reply, statuses: &[u16], codes: &[&str]) {
        self.count += 1;
        let status = reply.status.as_u16();
        if !statuses.contains(&status) {
            self.failures.push(format!(
                "{case}: status {status}, expected {statuses:?}: {}",
                reply.text
            ));
            return;
        }
        if status >= 400 {
            match reply.error_code() {
                Err(why) => self
                    .failures
                    .push(format!("{case}: {status} not in our error shape: {why}")),
                Ok(code) if !codes.is_empty() && !codes.contains(&code.as_str()) => self
                    .failures
                    .push(format!("{case}: code {code:?}, expected one of {codes:?}")),
                Ok(_) => {}
            }
        }
    }

    /// Any 4xx in our shape, or a success: never a 5xx.
    fn no_server_error(&mut self, case: String, reply: &Reply) {
        let any: Vec<u16> = (200..500).collect();
        self.expect(case, reply, &any, &[]);
    }

    /// Fails the test with every failed check, naming method, path and case.
    fn finish(self, min_checks: usize) {
        assert!(
            self.failures.is_empty(),
            "{} of {} checks failed:\n  {}",
            self.failures.len(),
            self.count,
            self.failures.join("\n  ")
        );
        assert!(
            self.count >= min_checks,
            "only {} checks ran (expected at least {min_checks}): did routes() lose its docs?",
            self.count
        );
    }
}

/// `value` with a wrong JSON type.
fn wrong_type(value: &Value) -> Option<Value> {
    match value {
        Value::String(_) => Some(json!(5)),
        Value::Number(_) => Some(json!("5")),
        Value::Bool(_) => Some(json!("yes")),
        Value::Array(_) => Some(json!("not a list")),
        Value::Object(_) => Some(json!(5)),
        Value::Null => None,
    }
}

#[tokio::test]
async fn json_bodies_are_checked_before_anything_happens() {
    let w = World::new().await;
    let mut checks = Checks::default();
    let too_large = serde_json::to_vec(&json!({"name": "x".repeat(MAX_BODY * 2)})).expect("json");
    for (path, doc) in docs() {
        let Some(example) = doc.example() else {
            continue;
        };
        let method = doc.method;
        // Alpha's real resources: only the body is wrong.
        let uri = fill(path, &w.alpha.for_path(path));
        let cred = w.cred_for(&doc);
        let raw: [(&str, &[u8], &str); 6] = [
            ("malformed JSON", b"{", "malformed_json"),
            ("an empty body", b"", "malformed_json"),
            ("an array", b"[]", "invalid_field"),
            ("a number", b"42", "invalid_field"),
            ("a string", b"\"text\"", "invalid_field"),
            ("null", b"null", "invalid_field"),
        ];
        for (case, body, code) in raw {
            let r = w.app.call(method, &uri, &cred, Some((body, true))).await;
            checks.expect(format!("{method} {path}: {case}"), &r, &[400], &[code]);
        }
        let valid = serde_json::to_vec(example).expect("json");
        let r = w.app.call(method, &uri, &cred, Some((&valid, false))).await;
        checks.expect(
            format!("{method} {path}: no content type"),
            &r,
            &[400],
            &["unsupported_media_type"],
        );
        let r = w
            .app
            .call(method, &uri, &cred, Some((&too_large, true)))
            .await;
        checks.expect(
            format!("{method} {path}: a body over the limit"),
            &r,
            &[413],
            &["payload_too_large"],
        );
        let fields = example.as_object().expect("examples are objects");
        for (field, value) in fields {
            let Some(wrong) = wrong_type(value) else {
                continue;
            };
            let mut body = example.clone();
            body[field] = wrong.clone();
            let r = w.app.json(method, &uri, &cred, &body).await;
            checks.expect(
                format!("{method} {path}: \"{field}\": {wrong}"),
                &r,
                &[400],
                &["invalid_field"],
            );
        }
        let mut body = example.clone();
        body["surely_not_a_field"] = json!(true);
        let r = w.app.json(method, &uri, &cred, &body).await;
        let case = format!("{method} {path}: an unknown field");
        if lenient(path) {
            checks.no_server_error(case, &r);
        } else {
            checks.expect(case, &r, &[400], &["invalid_field"]);
        }
    }
    checks.finish(100);
}

/// A route that documents no body must not read one: a malformed body gets
/// the same answer as none. (One that does read a body must document it, so
/// that it is in the matrix above.)
#[tokio::test]
async fn routes_without_a_documented_body_ignore_the_body() {
    let w = World::new().await;
    let mut checks = Checks::default();
    for (path, doc) in docs() {
        let method = doc.method;
        if doc.body.is_some() || !matches!(method, "POST" | "PUT" | "PATCH") {
            continue;
        }
        // `/auth/verify` reads an optional `{"token"}` body when no bearer
        // header is sent; its bad bodies are checked below.
        if path == "/auth/verify" {
            continue;
        }
        // Unknown ids: both answers are the same 404, with nothing changed.
        let unknown: Vec<String> = params(path)
            .iter()
            .map(|_| "zz-unknown".to_owned())
            .collect();
        let uri = fill(path, &unknown);
        let none = w.app.call(method, &uri, &w.cred_for(&doc), None).await;
        let bad = w
            .app
            .call(method, &uri, &w.cred_for(&doc), Some((b"{", true)))
            .await;
        let case = format!("{method} {path}: malformed body vs none");
        checks.no_server_error(case.clone(), &bad);
        checks.count += 1;
        if (bad.status, bad.error_code().ok()) != (none.status, none.error_code().ok()) {
            checks.failures.push(format!(
                "{case}: {} {} with a malformed body, {} {} without: does it read an undocumented body?",
                bad.status, bad.text, none.status, none.text
            ));
        }
    }
    for (case, body, code) in [
        ("malformed JSON", &b"{"[..], "malformed_json"),
        ("an array", b"[1]", ""),
        ("a wrong-typed token", br#"{"token": 5}"#, ""),
    ] {
        let r = w
            .app
            .call("POST", "/auth/verify", &Cred::None, Some((body, true)))
            .await;
        let codes: &[&str] = if code.is_empty() { &[] } else { &[code] };
        checks.expect(format!("POST /auth/verify: {case}"), &r, &[400], codes);
    }
    checks.finish(15);
}

#[tokio::test]
async fn path_ids_are_validated_and_unknown_ones_are_not_found() {
    let w = World::new().await;
    let mut checks = Checks::default();
    let long = "a".repeat(300);
    for (path, doc) in docs() {
        let kinds = params(path);
        let method = doc.method;
        for (i, kind) in kinds.iter().enumerate() {
            let mut values = w.alpha.for_path(path);
            // The id validated by the handler, when this one is validated;
            // an opaque key that matches nothing is a 404 either way.
            let (statuses, codes): (&[u16], Vec<&str>) = match kind.invalid_code() {
                Some(code) => (&[400], vec![code]),
                None => (&[400, 404], vec![]),
            };
            for (case, bad) in [
                ("a path traversal", "..%2F"),
                ("a 300-character id", long.as_str()),
                ("a space", "a%20b"),
                ("a NUL", "a%00b"),
            ] {
                values[i] = bad.to_owned();
                let r = w.send(&doc, &fill(path, &values), &w.admin()).await;
                checks.expect(
                    format!("{method} {path}: {{{kind:?}}} as {case}"),
                    &r,
                    statuses,
                    &codes,
                );
            }
            // Not even a string: refused before the handler, for every kind.
            values[i] = "%FF".to_owned();
            let r = w.send(&doc, &fill(path, &values), &w.admin()).await;
            checks.expect(
                format!("{method} {path}: {{{kind:?}}} as non-UTF-8"),
                &r,
                &[400],
                &["invalid_path"],
            );
            values[i] = "zz-unknown".to_owned();
            let r = w.send(&doc, &fill(path, &values), &w.admin()).await;
            checks.expect(
                format!("{method} {path}: an unknown {kind:?}"),
                &r,
                &[404],
                &["not_found"],
            );
        }
    }
    checks.finish(200);
}

#[tokio::test]
async fn authenticated_routes_refuse_missing_and_bad_credentials() {
    let w = World::new().await;
    let mut checks = Checks::default();
    let bad = [
        ("no credentials", Cred::None),
        ("a garbage bearer token", Cred::Bearer("not.a.jwt".into())),
        ("an unknown API key", Cred::ApiKey("cnt_not_a_key".into())),
        (
            "a Basic authorization",
            Cred::Authorization("Basic cm9vdDpyb290".into()),
        ),
    ];
    for (path, doc) in docs() {
        if doc.access == Access::Public {
            continue;
        }
        let uri = fill(path, &w.alpha.for_path(path));
        for (case, cred) in &bad {
            let r = w.send(&doc, &uri, cred).await;
            checks.expect(
                format!("{} {path}: {case}", doc.method),
                &r,
                &[401],
                &["unauthorized"],
            );
        }
    }
    checks.finish(140);
}

#[tokio::test]
async fn another_tenants_resources_are_forbidden_and_say_nothing() {
    let w = World::new().await;
    let mut checks = Checks::default();
    let alpha_user = w.app.token(&w.alpha_user);
    let callers = [
        ("alpha's API key", &w.alpha_key),
        ("alpha's user", &alpha_user),
    ];
    let mut secrets = w.bravo.secrets();
    secrets.extend(w.bravo_names.iter().cloned());
    for (path, doc) in docs() {
        let method = doc.method;
        if !params(path).is_empty() {
            let uri = fill(path, &w.bravo.for_path(path));
            for (who, cred) in &callers {
                let r = w.send(&doc, &uri, cred).await;
                let case = format!("{method} {path}: bravo's, as {who}");
                checks.expect(case.clone(), &r, &[403], &["forbidden"]);
                if let Some(s) = secrets.iter().find(|s| r.text.contains(s.as_str())) {
                    checks.failures.push(format!(
                        "{case}: the answer names bravo's {s:?}: {}",
                        r.text
                    ));
                }
            }
            // The control: the 403 above is about the tenant. Reads of
            // alpha's own by alpha's user and of bravo's by the admin are
            // not refused.
            if method == "GET" && doc.access == Access::Authenticated {
                let own = fill(path, &w.alpha.for_path(path));
                let r = w.send(&doc, &own, &alpha_user).await;
                let case = format!("{method} {path}: alpha's own, as alpha's user");
                checks.no_server_error(case.clone(), &r);
                if r.status == 403 {
                    checks.failures.push(format!("{case}: 403"));
                }
                let r = w.send(&doc, &uri, &w.admin()).await;
                let case = format!("{method} {path}: bravo's, as the admin");
                checks.no_server_error(case.clone(), &r);
                if r.status == 403 {
                    checks.failures.push(format!("{case}: 403"));
                }
            }
        }
        if doc.access == Access::Admin {
            let uri = fill(path, &w.alpha.for_path(path));
            for (who, cred) in &callers {
                let r = w.send(&doc, &uri, cred).await;
                checks.expect(
                    format!("{method} {path}: admins only, as {who}"),
                    &r,
                    &[403],
                    &["forbidden"],
                );
            }
        }
    }
    for (who, cred) in &callers {
        let r = w
            .app
            .call(
                "GET",
                "/api/rate-limit-status?organization_id=bravo",
                cred,
                None,
            )
            .await;
        checks.expect(
            format!("GET /api/rate-limit-status?organization_id=bravo: as {who}"),
            &r,
            &[403],
            &["forbidden"],
        );
    }
    checks.finish(90);
}

#[tokio::test]
async fn query_parameters_of_the_wrong_type_are_our_400() {
    let w = World::new().await;
    let mut checks = Checks::default();
    let (tenant, session) = (&w.alpha.tenant, &w.alpha.session);
    let bad = [
        format!("/api/v1/sessions/{session}/messages?limit=abc"),
        format!("/api/v1/sessions/{session}/messages?limit=-1"),
        format!("/api/v1/sessions/{session}/inbox?limit=abc"),
        format!("/api/v1/sessions/{session}/inbox?before=abc"),
        "/api/v1/logs?since=abc".to_owned(),
        "/api/v1/logs?limit=1e3".to_owned(),
        format!("/api/v1/tenants/{tenant}/webhook/deliveries?status=bogus"),
    ];
    for uri in &bad {
        let r = w.app.call("GET", uri, &w.admin(), None).await;
        checks.expect(format!("GET {uri}"), &r, &[400], &["invalid_query"]);
    }
    // The control: the same routes with good values are not refused.
    for uri in [
        format!("/api/v1/sessions/{session}/messages?limit=5"),
        format!("/api/v1/sessions/{session}/inbox?limit=5"),
        "/api/v1/logs?since=0&limit=5".to_owned(),
        format!("/api/v1/tenants/{tenant}/webhook/deliveries?status=dead"),
    ] {
        let r = w.app.call("GET", &uri, &w.admin(), None).await;
        checks.expect(format!("GET {uri}"), &r, &[200], &[]);
    }
    checks.finish(11);
}

#[tokio::test]
async fn a_known_path_with_a_method_it_lacks_is_our_405() {
    let w = World::new().await;
    let mut checks = Checks::default();
    let mut by_path: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (path, doc) in docs() {
        by_path
            .entry(path)
            .or_default()
            .push(doc.method.to_string());
    }
    for (path, methods) in &by_path {
        let Some(method) = ["PATCH", "PUT", "DELETE", "POST", "GET"]
            .into_iter()
            .find(|m| !methods.iter().any(|have| have == m))
        else {
            continue;
        };
        let uri = fill(path, &w.alpha.for_path(path));
        let r = w.app.call(method, &uri, &w.admin(), None).await;
        checks.expect(
            format!("{method} {path} (it has {methods:?})"),
            &r,
            &[405],
            &["method_not_allowed"],
        );
    }
    checks.finish(20);
}
