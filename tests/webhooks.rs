//! Webhooks against local receivers: bodies signed with the tenant's
//! secret, retries after 500s, dead letter after the maximum attempts,
//! redelivery, pending deliveries that survive a restart; targets that are
//! not public refused when set (400 `forbidden_target`) and at connect time
//! (a name that rebinds to 127.0.0.1 after it was set gets no connection),
//! failures recorded as generic codes, one lane per tenant (a receiver that
//! never answers delays nobody else), and finished deliveries pruned after
//! the retention (on a manual clock).
//!
//! The receivers listen on 127.0.0.1, which webhooks refuse by default: the
//! tests that deliver to them run as an operator who set
//! `webhooks.allow_private = ["127.0.0.0/8"]` ([`local`]); the refusal
//! tests run on the shipped default (nothing allowed).

mod common;

use centinela::config::Config;
use centinela_actors::cidr::CidrSet;
use centinela_actors::clock::{ManualClock, SharedClock, Timestamp};
use centinela_actors::engine::scripted::ScriptedEngine;
use centinela_actors::engine::EngineEvent;
use centinela_actors::ids::SessionId;
use centinela_actors::messaging::webhooks::{Lookup, LookupFuture, SystemLookup};
use common::api::{api_config, start_api, start_api_with, Cred, ADMIN, ADMIN_PASSWORD};
use common::hook::receiver;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

const SECRET: &str = "a-webhook-secret-of-some-length";

/// A READY session of tenant `clinic` with a webhook to `url`.
async fn setup(s: &common::api::ApiServer, url: &str) -> (String, SessionId) {
    setup_tenant(s, "clinic", url).await
}

/// A READY session of `tenant` with a webhook to `url`.
async fn setup_tenant(s: &common::api::ApiServer, tenant: &str, url: &str) -> (String, SessionId) {
    let ready = s.ready_session(tenant).await;
    let r = set_webhook(s, &ready.token, tenant, url).await;
    assert_eq!(r.status, 200, "{}", r.text);
    (ready.token, ready.sid)
}

async fn set_webhook(
    s: &common::api::ApiServer,
    token: &str,
    tenant: &str,
    url: &str,
) -> common::api::Res {
    s.api
        .call(
            "PUT",
            &format!("/api/v1/tenants/{tenant}/webhook"),
            Cred::Token(token),
            Some(json!({"url": url, "secret": SECRET})),
        )
        .await
}

async fn deliveries(s: &common::api::ApiServer, token: &str, query: &str) -> Vec<Value> {
    let r = s
        .api
        .call(
            "GET",
            &format!("/api/v1/tenants/clinic/webhook/deliveries{query}"),
            Cred::Token(token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["deliveries"].as_array().expect("list").clone()
}

/// The delivery whose body carries the incoming message `text`.
fn with_text<'a>(list: &'a [Value], text: &str) -> Option<&'a Value> {
    list.iter().find(|d| {
        let body: Value =
            serde_json::from_str(d["body"].as_str().unwrap_or("{}")).unwrap_or_default();
        body["text"] == text
    })
}

fn incoming(s: &common::api::ApiServer, sid: &SessionId, n: u32) {
    let ev = EngineEvent::MessageIn {
        id: format!("in{n}"),
        from: "5491100000000".into(),
        jid: "5491100000000@c.us".into(),
        text: format!("hola {n}"),
    };
    assert!(s.engine.emit(sid, ev));
}

fn fast(config: &mut Config, max_attempts: u32) {
    config.webhooks.backoff_base = Duration::from_millis(30);
    config.webhooks.backoff_max = Duration::from_millis(100);
    config.webhooks.max_attempts = max_attempts;
}

/// The receivers are on 127.0.0.1, which webhooks refuse unless the
/// operator allows it: these tests are that operator.
fn local(config: &mut Config) {
    config.webhooks.allow_private = CidrSet::parse(["127.0.0.0/8"]).expect("a CIDR");
}

/// Webhook hosts answered from a table the test changes (other names go to
/// the system's resolver); every query is reported, so a test can wait for
/// an attempt to start.
struct Dns {
    table: Mutex<HashMap<String, IpAddr>>,
    queries: mpsc::UnboundedSender<String>,
}

impl Dns {
    fn new() -> (Arc<Dns>, mpsc::UnboundedReceiver<String>) {
        let (queries, rx) = mpsc::unbounded_channel();
        let dns = Dns {
            table: Mutex::new(HashMap::new()),
            queries,
        };
        (Arc::new(dns), rx)
    }

    fn set(&self, host: &str, ip: &str) {
        let ip = ip.parse().expect("an address");
        self.table
            .lock()
            .expect("dns table")
            .insert(host.to_owned(), ip);
    }
}

impl Lookup for Dns {
    fn lookup(&self, host: &str) -> LookupFuture {
        let _ = self.queries.send(host.to_owned());
        match self.table.lock().expect("dns table").get(host).copied() {
            Some(ip) => Box::pin(async move { Ok(vec![ip]) }),
            None => SystemLookup.lookup(host),
        }
    }
}

/// Waits for a lookup of `host`.
async fn query(rx: &mut mpsc::UnboundedReceiver<String>, host: &str) {
    loop {
        let q = tokio::time::timeout(common::WAIT, rx.recv())
            .await
            .expect("a lookup within the wait")
            .expect("open");
        if q == host {
            return;
        }
    }
}

/// A listener nothing may reach: a plain socket, so "nothing connected" is
/// an `accept` that would block.
fn untouched() -> (std::net::TcpListener, SocketAddr) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.set_nonblocking(true).expect("non-blocking");
    let addr = l.local_addr().expect("addr");
    (l, addr)
}

fn assert_untouched(l: &std::net::TcpListener) {
    match l.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("something connected to the refused address: {other:?}"),
    }
}

#[tokio::test]
async fn deliveries_are_signed_and_retried_after_500s() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    local(&mut config);
    fast(&mut config, 5);
    let s = start_api(config, ScriptedEngine::new(), None).await;
    let mut rx = receiver().await;
    let (token, sid) = setup(&s, &rx.url).await;
    rx.respond.store(500, Ordering::SeqCst);
    incoming(&s, &sid, 1);
    let (_, first) = rx.next(SECRET).await;
    assert_eq!(
        (first["event"].clone(), first["text"].clone()),
        (json!("message.in"), json!("hola 1"))
    );
    let (_, second) = rx.next(SECRET).await;
    assert_eq!(
        second["delivery_id"], first["delivery_id"],
        "a retry of the same delivery"
    );
    rx.respond.store(200, Ordering::SeqCst);
    let (_, third) = rx.next(SECRET).await;
    assert_eq!(third["delivery_id"], first["delivery_id"]);
    // A second delivery reaching the receiver means the first was recorded
    // (one worker, in order).
    incoming(&s, &sid, 2);
    let (_, next) = rx.next(SECRET).await;
    assert_eq!(next["text"], "hola 2");
    let list = s
        .api
        .call(
            "GET",
            "/api/v1/tenants/clinic/webhook/deliveries?status=delivered",
            Cred::Token(&token),
            None,
        )
        .await;
    let first_id = first["delivery_id"].as_str().expect("id");
    let rec = list.body["deliveries"]
        .as_array()
        .expect("list")
        .iter()
        .find(|d| d["id"] == first_id)
        .expect("delivered")
        .clone();
    assert_eq!(rec["attempts"], 3);
    let target = s
        .api
        .call(
            "GET",
            "/api/v1/tenants/clinic/webhook",
            Cred::Token(&token),
            None,
        )
        .await;
    assert!(
        !target.text.contains(SECRET),
        "the secret is not shown again"
    );
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn dead_letters_after_the_maximum_and_redelivers_on_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    local(&mut config);
    fast(&mut config, 3);
    let s = start_api(config, ScriptedEngine::new(), None).await;
    let mut rx = receiver().await;
    let (token, sid) = setup(&s, &rx.url).await;
    rx.respond.store(500, Ordering::SeqCst);
    incoming(&s, &sid, 1);
    let mut id = String::new();
    for _ in 0..3 {
        let (_, body) = rx.next(SECRET).await;
        id = body["delivery_id"].as_str().expect("id").to_owned();
    }
    // The barrier: the next delivery's first attempt comes after the dead one was recorded.
    incoming(&s, &sid, 2);
    rx.next(SECRET).await;
    let dead = s
        .api
        .call(
            "GET",
            "/api/v1/tenants/clinic/webhook/deliveries?status=dead",
            Cred::Token(&token),
            None,
        )
        .await;
    let record = dead.body["deliveries"]
        .as_array()
        .expect("list")
        .iter()
        .find(|d| d["id"] == id.as_str())
        .unwrap_or_else(|| panic!("dead: {}", dead.text))
        .clone();
    assert_eq!(record["attempts"], 3);
    assert_eq!(
        record["last_error"], "http_500",
        "a generic code, not the client's text"
    );
    assert!(record["last_attempt_at"].is_string(), "{record}");
    rx.respond.store(200, Ordering::SeqCst);
    let r = s
        .api
        .call(
            "POST",
            &format!("/api/v1/tenants/clinic/webhook/deliveries/{id}/redeliver"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    loop {
        let (_, body) = rx.next(SECRET).await;
        if body["delivery_id"] == id.as_str() {
            break;
        }
    }
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn pending_deliveries_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    local(&mut config);
    fast(&mut config, 20);
    config.webhooks.backoff_base = Duration::from_millis(300);
    config.webhooks.backoff_max = Duration::from_millis(300);
    let engine = ScriptedEngine::new();
    let s = start_api(config.clone(), engine.clone(), None).await;
    let mut rx = receiver().await;
    let (_, sid) = setup(&s, &rx.url).await;
    rx.respond.store(500, Ordering::SeqCst);
    incoming(&s, &sid, 1);
    let (_, body) = rx.next(SECRET).await;
    s.server.shutdown().await.expect("shutdown");

    rx.respond.store(200, Ordering::SeqCst);
    let s = start_api(config, engine, None).await;
    let (_, again) = rx.next(SECRET).await;
    assert_eq!(
        again["delivery_id"], body["delivery_id"],
        "the same delivery, after the restart"
    );
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn loopback_private_and_metadata_targets_are_refused_when_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The shipped default: no range allowed.
    let config = api_config(dir.path());
    let (dns, _queries) = Dns::new();
    dns.set("rebound.test", "127.0.0.1");
    dns.set("public.test", "93.184.215.14");
    let lookup: Arc<dyn Lookup> = dns.clone();
    let s = start_api_with(config, ScriptedEngine::new(), |services| {
        services.webhook_dns = lookup;
    })
    .await;
    let (l, addr) = untouched();
    let port = addr.port();
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let (token, _) = s.api.tenant_with_user(&admin, "clinic").await;
    let refused = [
        format!("http://127.0.0.1:{port}/hook"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/hook".to_owned(),
        format!("http://localhost:{port}/hook"),
        format!("http://rebound.test:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://2130706433:{port}/hook"),
        "https://100.64.0.1/hook".to_owned(),
        "https://192.168.1.1/hook".to_owned(),
        "https://[fd00::1]/hook".to_owned(),
    ];
    for url in &refused {
        let r = set_webhook(&s, &token, "clinic", url).await;
        assert_eq!(r.status, 400, "{url}: {}", r.text);
        assert_eq!(r.body["success"], false, "our error body: {}", r.text);
        assert_eq!(
            r.body["error"]["code"], "forbidden_target",
            "{url}: {}",
            r.text
        );
    }
    let r = s
        .api
        .call(
            "GET",
            "/api/v1/tenants/clinic/webhook",
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 404, "nothing was stored: {}", r.text);
    assert_untouched(&l);
    // The control: a name with a public address is accepted.
    let r = set_webhook(&s, &token, "clinic", "https://public.test/hook").await;
    assert_eq!(r.status, 200, "{}", r.text);
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_name_that_turns_private_after_it_was_set_is_never_connected_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    fast(&mut config, 1);
    let (dns, mut queries) = Dns::new();
    dns.set("hooks.test", "93.184.215.14");
    let lookup: Arc<dyn Lookup> = dns.clone();
    let s = start_api_with(config, ScriptedEngine::new(), |services| {
        services.webhook_dns = lookup;
    })
    .await;
    let (l, addr) = untouched();
    // Set while the name has a public address...
    let (token, sid) = setup(&s, &format!("http://hooks.test:{}/hook", addr.port())).await;
    // ...then its DNS answer turns to loopback (rebinding).
    dns.set("hooks.test", "127.0.0.1");
    while queries.try_recv().is_ok() {}
    incoming(&s, &sid, 1);
    query(&mut queries, "hooks.test").await;
    // The barrier: the lane takes the next delivery once this one is recorded.
    incoming(&s, &sid, 2);
    query(&mut queries, "hooks.test").await;
    let dead = deliveries(&s, &token, "?status=dead").await;
    let first = with_text(&dead, "hola 1").expect("the first delivery is dead");
    assert_eq!(first["last_error"], "forbidden_target", "{first}");
    assert_eq!(first["attempts"], 1);
    assert_untouched(&l);
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_closed_port_is_recorded_as_connection_refused_and_nothing_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    local(&mut config);
    fast(&mut config, 1);
    let (dns, mut queries) = Dns::new();
    dns.set("closed.test", "127.0.0.1");
    let lookup: Arc<dyn Lookup> = dns.clone();
    let s = start_api_with(config, ScriptedEngine::new(), |services| {
        services.webhook_dns = lookup;
    })
    .await;
    let closed = {
        let (l, addr) = untouched();
        drop(l);
        addr.port()
    };
    let (token, sid) = setup(&s, &format!("http://closed.test:{closed}/hook")).await;
    while queries.try_recv().is_ok() {}
    incoming(&s, &sid, 1);
    query(&mut queries, "closed.test").await;
    incoming(&s, &sid, 2);
    query(&mut queries, "closed.test").await;
    let dead = deliveries(&s, &token, "?status=dead").await;
    let first = with_text(&dead, "hola 1").expect("the first delivery is dead");
    assert_eq!(first["last_error"], "connection_refused", "{first}");
    let shown = serde_json::to_string(&dead).expect("json");
    for leak in [
        "tcp",
        "error sending",
        "127.0.0.1",
        "refused (os",
        &closed.to_string(),
    ] {
        assert!(!shown.contains(leak), "{leak:?} shown: {shown}");
    }
    s.server.shutdown().await.expect("shutdown");
}

/// What the silent receiver saw.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Accepted,
    /// The client hung up (it gave up waiting).
    Closed,
}

/// A receiver that accepts, reads and never answers; abort its task to
/// drop every connection it holds.
async fn silent_receiver(
    seen: mpsc::UnboundedSender<Seen>,
) -> (String, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", l.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let mut held = tokio::task::JoinSet::new();
        while let Ok((mut sock, _)) = l.accept().await {
            let _ = seen.send(Seen::Accepted);
            let seen = seen.clone();
            held.spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                let _ = seen.send(Seen::Closed);
            });
        }
    });
    (url, task)
}

async fn next_seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(common::WAIT, rx.recv())
        .await
        .expect("the silent receiver saw something")
        .expect("open")
}

#[tokio::test]
async fn a_receiver_that_never_answers_delays_only_its_own_tenant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    local(&mut config);
    fast(&mut config, 5);
    config.webhooks.timeout = Duration::from_secs(15);
    let s = start_api(config, ScriptedEngine::new(), None).await;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let (silent_url, silent) = silent_receiver(seen_tx).await;
    let mut rx = receiver().await;
    let (clinic_token, clinic) = setup_tenant(&s, "clinic", &silent_url).await;
    let (_, dental) = setup_tenant(&s, "dental", &rx.url).await;
    incoming(&s, &clinic, 1);
    assert_eq!(next_seen(&mut seen).await, Seen::Accepted);
    // Clinic's attempt is in flight, unanswered, for the next 15 s.
    for n in 1..=3 {
        incoming(&s, &dental, n);
    }
    let mut texts = Vec::new();
    for _ in 0..3 {
        let (_, body) = rx.next(SECRET).await;
        assert_eq!(body["tenant_id"], "dental");
        texts.push(body["text"].as_str().expect("text").to_owned());
    }
    assert_eq!(texts, ["hola 1", "hola 2", "hola 3"], "in order");
    assert_eq!(
        seen.try_recv().ok(),
        None,
        "dental's deliveries arrived while clinic's first attempt was still waiting"
    );
    // Clinic's attempt gives up at the timeout, is recorded so, and retried.
    assert_eq!(next_seen(&mut seen).await, Seen::Closed);
    assert_eq!(next_seen(&mut seen).await, Seen::Accepted);
    let list = deliveries(&s, &clinic_token, "").await;
    let first = with_text(&list, "hola 1").expect("clinic's delivery");
    assert_eq!(
        (first["attempts"].clone(), first["last_error"].clone()),
        (json!(1), json!("timeout")),
        "{first}"
    );
    silent.abort();
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn finished_deliveries_are_pruned_after_the_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    local(&mut config);
    fast(&mut config, 1);
    assert_eq!(config.webhooks.retention, Duration::from_secs(7 * 86_400));
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_800_000_000_000)));
    let shared: SharedClock = clock.clone();
    let s = start_api(config, ScriptedEngine::new(), Some(shared)).await;
    let mut rx = receiver().await;
    let (_, sid) = setup(&s, &rx.url).await;
    let mut ids = Vec::new();
    let deliver = |n: u32| incoming(&s, &sid, n);
    deliver(1);
    ids.push(rx.next(SECRET).await.1["delivery_id"].clone());
    rx.respond.store(500, Ordering::SeqCst);
    deliver(2);
    ids.push(rx.next(SECRET).await.1["delivery_id"].clone());
    rx.respond.store(200, Ordering::SeqCst);
    // The barrier: the third is sent once the first two are recorded, at
    // the start. (It is recorded itself just before or just after the
    // clock moves, so it is left out of the verdict.)
    deliver(3);
    ids.push(rx.next(SECRET).await.1["delivery_id"].clone());
    clock.advance(Duration::from_secs(6 * 86_400));
    deliver(4);
    ids.push(rx.next(SECRET).await.1["delivery_id"].clone());
    // Past seven days from the first two, not from the fourth: the next
    // pass of the loop prunes before it sends the fifth.
    clock.advance(Duration::from_secs(86_400 + 60));
    deliver(5);
    ids.push(rx.next(SECRET).await.1["delivery_id"].clone());
    // The first token expired on the manual clock.
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let left: Vec<Value> = deliveries(&s, &admin, "")
        .await
        .iter()
        .map(|d| d["id"].clone())
        .filter(|id| *id != ids[2])
        .collect();
    assert_eq!(
        left,
        [ids[4].clone(), ids[3].clone()],
        "the delivered and the dead one are pruned, the recent two kept (newest first)"
    );
    s.server.shutdown().await.expect("shutdown");
}
