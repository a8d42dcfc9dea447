//! Many READY sessions under light traffic, for the capacity and soak
//! benches and the short soak test: an in-process `serve --demo` (real
//! webjs engine, a real Chromium per session, the bundled simulator as the
//! phones), one admin WebSocket that times every send from its acceptance
//! to `sent`, and a traffic task that gives each READY session one message
//! out (through the outbox) and one in (from its phone) per round. Pacing
//! and typing are zero: what is measured is the machine, not the human
//! rhythm. Also the readings the benches sample: memory, CPU, descriptors
//! and threads of this process and of every browser.

use super::api::{Api, Cred, Res};
use super::page::{demo_server, DemoServer, PASSWORD};
use centinela_engine_webjs::process;
use centinela_web::sim::ControlAccess;
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Sessions per tenant (and per ramp step in the capacity bench).
pub const PER_TENANT: usize = 10;

#[derive(Default)]
struct Seen {
    /// message id → when it was accepted.
    accepted: HashMap<String, Instant>,
    send_to_sent: Vec<Duration>,
    /// Ids reported `sent` before their POST's answer was read.
    early: HashSet<String>,
}

impl Seen {
    /// A message accepted at `at`: timed from then unless already sent.
    fn accepted(&mut self, id: &str, at: Instant) {
        if !self.early.remove(id) {
            self.accepted.insert(id.to_owned(), at);
        }
    }
}

#[derive(Clone)]
pub struct LoadSession {
    pub id: String,
    pub device: String,
    pub phone: String,
}

pub struct Load {
    pub demo: DemoServer,
    pub api: Api,
    pub admin: String,
    pub base: String,
    pub data: PathBuf,
    transitions: mpsc::UnboundedReceiver<Value>,
    seen: Arc<Mutex<Seen>>,
    /// Woken at every `sent` the WebSocket reports.
    sent: Arc<tokio::sync::Notify>,
    ready: Arc<Mutex<Vec<LoadSession>>>,
    traffic: tokio::task::JoinHandle<()>,
}

impl Load {
    /// Stops the traffic, then the server (gracefully).
    pub async fn stop(self) {
        self.traffic.abort();
        let _ = self.traffic.await;
        self.demo.server.shutdown().await.expect("shutdown");
    }

    /// The server (room for `cap` live sessions, admission out of the way)
    /// and its traffic, one round per `every`.
    pub async fn start(dir: &Path, cap: usize, every: Duration) -> Load {
        let demo = demo_server(dir, ControlAccess::Open, |c| {
            let cap = cap as u32 + PER_TENANT as u32;
            c.antiban.max_sessions = cap;
            c.antiban.max_live_sessions = cap;
            c.antiban.max_sessions_per_tenant = PER_TENANT as u32;
            c.antiban.global_attempts_per_hour = 100_000;
            c.antiban.tenant_attempts_per_day = 100_000;
            c.antiban.connect_jitter_min = Duration::ZERO;
            c.antiban.connect_jitter_max = Duration::ZERO;
            c.antiban.queue_spacing = Duration::ZERO;
            c.messaging.send_delay_min = Duration::ZERO;
            c.messaging.send_delay_max = Duration::ZERO;
            c.messaging.typing_chars_per_second = 0;
            // The soak's burst goes as fast as the machine does.
            c.messaging.sends_per_minute = 6_000;
        })
        .await;
        let base = format!("http://{}", demo.addr);
        let api = Api::new(&base);
        let admin = api.login("admin", PASSWORD).await;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (tx, transitions) = mpsc::unbounded_channel::<Value>();
        let ws_url = format!("ws://{}/api/v1/ws?token={admin}", demo.addr);
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.expect("ws");
        let reader = seen.clone();
        let sent = Arc::new(tokio::sync::Notify::new());
        let signal = sent.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                let tokio_tungstenite::tungstenite::Message::Text(t) = msg else {
                    continue;
                };
                let v: Value = serde_json::from_str(&t).unwrap_or_default();
                match v["type"].as_str() {
                    Some("transition") => {
                        let _ = tx.send(v);
                    }
                    Some("message_status") if v["status"] == "sent" => {
                        let mut s = reader.lock().expect("lock");
                        let id = v["message_id"].as_str().unwrap_or_default().to_owned();
                        match s.accepted.remove(&id) {
                            Some(at) => s.send_to_sent.push(at.elapsed()),
                            None => {
                                s.early.insert(id);
                            }
                        }
                        signal.notify_waiters();
                    }
                    _ => {}
                }
            }
        });
        let ready: Arc<Mutex<Vec<LoadSession>>> = Arc::default();
        let traffic = tokio::spawn(traffic(
            ready.clone(),
            seen.clone(),
            Api::new(&base),
            admin.clone(),
            every,
        ));
        Load {
            data: dir.join("data"),
            demo,
            api,
            admin,
            base,
            transitions,
            seen,
            sent,
            ready,
            traffic,
        }
    }

    /// The next transition of `id` into `state`; its JSON.
    async fn reach(&mut self, id: &str, state: &str) -> Value {
        loop {
            let v = tokio::time::timeout(Duration::from_secs(180), self.transitions.recv())
                .await
                .unwrap_or_else(|_| panic!("{id} reaches {state} within 180 s"))
                .expect("ws");
            if v["session_id"] == id && v["to"]["state"] == state {
                return v;
            }
        }
    }

    /// Creates, connects and scans one more session; (connect→QR,
    /// scan→READY). It joins the traffic once READY.
    pub async fn add_session(&mut self) -> (Duration, Duration) {
        let n = self.ready.lock().expect("lock").len();
        let tenant = format!("t{}", n / PER_TENANT);
        if n.is_multiple_of(PER_TENANT) {
            let r = self
                .api
                .call(
                    "POST",
                    "/api/v1/tenants",
                    Cred::Token(&self.admin),
                    Some(json!({"id": tenant, "name": tenant})),
                )
                .await;
            assert_eq!(r.status, 201, "{}", r.text);
        }
        let id = self
            .api
            .create_session(&self.admin, Some(&tenant), &format!("desk {n}"))
            .await;
        let t = Instant::now();
        let r = self.api.session_action(&self.admin, &id, "connect").await;
        assert!(r.status < 300, "connect {id}: {} {}", r.status, r.text);
        let qr = self.reach(&id, "QR").await;
        let to_qr = t.elapsed();
        let code = qr["to"]["code"].as_str().expect("code").to_owned();
        let phone = format!("54911{n:08}");
        let t = Instant::now();
        let r = self
            .api
            .call(
                "POST",
                "/sim/scan",
                Cred::None,
                Some(json!({"qr": code, "phone": phone})),
            )
            .await;
        assert_eq!(r.status, 200, "scan: {}", r.text);
        self.reach(&id, "READY").await;
        let to_ready = t.elapsed();
        let devices = self.api.call("GET", "/sim/devices", Cred::None, None).await;
        let device = devices
            .body
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["phone"] == phone.as_str())
            .and_then(|d| d["id"].as_str())
            .expect("the phone's device")
            .to_owned();
        self.ready
            .lock()
            .expect("lock")
            .push(LoadSession { id, device, phone });
        (to_qr, to_ready)
    }

    pub fn sessions(&self) -> Vec<LoadSession> {
        self.ready.lock().expect("lock").clone()
    }

    pub fn ids(&self) -> Vec<String> {
        self.sessions().into_iter().map(|s| s.id).collect()
    }

    /// Each READY session exchanges `pairs` messages with its phone (one out
    /// through the outbox, one in from the phone) as fast as they go;
    /// returns once every one sent is `sent`. The page's heaps reach their
    /// working size over the first few hundred messages (see the soak): a
    /// soak judged after a burst like this sees a leak, not that growth.
    pub async fn burst(&self, pairs: usize) {
        let mut tasks = Vec::new();
        for s in self.sessions() {
            let (api, admin, seen) = (Api::new(&self.base), self.admin.clone(), self.seen.clone());
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..pairs {
                    let (out, incoming) = exchange(
                        &api,
                        &admin,
                        &seen,
                        &s,
                        format!("Recordatorio {i}: su turno es mañana a las 10."),
                        format!("gracias, confirmo ({i})"),
                    )
                    .await;
                    let id = out.body["id"]
                        .as_str()
                        .unwrap_or_else(|| panic!("accepted: {}", out.text));
                    ids.push(id.to_owned());
                    assert!(incoming.status < 300, "incoming: {}", incoming.text);
                }
                ids
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.extend(t.await.expect("burst task"));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        loop {
            let woken = self.sent.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let pending = {
                let s = self.seen.lock().expect("lock");
                ids.iter().filter(|id| s.accepted.contains_key(*id)).count()
            };
            if pending == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                panic!("{pending} burst messages never reported sent within 600 s");
            }
        }
    }

    /// The send→sent times measured since the last call.
    pub fn take_send_to_sent(&self) -> Vec<Duration> {
        std::mem::take(&mut self.seen.lock().expect("lock").send_to_sent)
    }

    /// Each session's state now, by id.
    pub async fn states(&self) -> HashMap<String, String> {
        let mut out = HashMap::new();
        for id in self.ids() {
            let v = self.api.session(&self.admin, &id).await;
            out.insert(id, v["state"].as_str().unwrap_or("?").to_owned());
        }
        out
    }

    /// How many incoming messages the inbox keeps, over all sessions.
    pub async fn inbox_total(&self) -> usize {
        let mut total = 0;
        for id in self.ids() {
            let r = self
                .api
                .call(
                    "GET",
                    &format!("/api/v1/sessions/{id}/inbox?limit=1000"),
                    Cred::Token(&self.admin),
                    None,
                )
                .await;
            total += r.body["messages"].as_array().map_or(0, Vec::len);
        }
        total
    }

    /// The PSS of each session's browser tree, bytes, by id.
    pub fn pss_by_session(&self) -> HashMap<String, u64> {
        let profiles = self.data.join("profiles");
        self.ids()
            .into_iter()
            .map(|id| {
                let pids = browser_pids(&profiles.join(&id));
                (id, process::pss_bytes(&pids))
            })
            .collect()
    }

    /// Every pid of every session's browser.
    pub fn browser_pids(&self) -> Vec<u32> {
        let profiles = self.data.join("profiles");
        let mut all = HashSet::new();
        for id in self.ids() {
            all.extend(browser_pids(&profiles.join(&id)));
        }
        all.into_iter().collect()
    }

    /// The redb file's size, bytes.
    pub fn store_bytes(&self) -> u64 {
        std::fs::metadata(self.data.join("centinela.redb")).map_or(0, |m| m.len())
    }
}

/// One message out and one in for every READY session, spread over each
/// round of `every`.
async fn traffic(
    ready: Arc<Mutex<Vec<LoadSession>>>,
    seen: Arc<Mutex<Seen>>,
    api: Api,
    admin: String,
    every: Duration,
) {
    loop {
        let round = ready.lock().expect("lock").clone();
        if round.is_empty() {
            tokio::time::sleep(every).await;
            continue;
        }
        let gap = every / round.len() as u32;
        for s in round {
            exchange(
                &api,
                &admin,
                &seen,
                &s,
                "Hola, ¿confirma su turno?".into(),
                format!("sí, confirmo ({})", s.phone),
            )
            .await;
            tokio::time::sleep(gap).await;
        }
    }
}

/// One message from `s` to its contact through the outbox (timed in
/// `seen` from its acceptance) and one from the contact to `s`'s phone;
/// both answers.
async fn exchange(
    api: &Api,
    admin: &str,
    seen: &Mutex<Seen>,
    s: &LoadSession,
    out: String,
    incoming: String,
) -> (Res, Res) {
    let t = Instant::now();
    let sent = api
        .call(
            "POST",
            &format!("/api/v1/sessions/{}/messages", s.id),
            Cred::Token(admin),
            Some(json!({"to": "5491100009999", "text": out})),
        )
        .await;
    if let Some(id) = sent.body["id"].as_str() {
        seen.lock().expect("lock").accepted(id, t);
    }
    let received = api
        .call(
            "POST",
            &format!("/sim/devices/{}/incoming", s.device),
            Cred::None,
            Some(json!({"from": "5491100009999", "text": incoming})),
        )
        .await;
    (sent, received)
}

/// The processes of the browser using `profile` and all their children.
fn browser_pids(profile: &Path) -> Vec<u32> {
    let mut pids = HashSet::new();
    for pid in process::using_profile(profile) {
        pids.insert(pid);
        pids.extend(process::descendants(pid));
    }
    pids.into_iter().collect()
}

/// A `/proc/<pid>/status` field's first number.
fn status_field(pid: &str, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// This process's resident set, bytes.
pub fn own_rss() -> u64 {
    status_field("self", "VmRSS:") * 1024
}

/// Threads of this process plus those of `pids`.
pub fn threads(pids: &[u32]) -> u64 {
    status_field("self", "Threads:")
        + pids
            .iter()
            .map(|p| status_field(&p.to_string(), "Threads:"))
            .sum::<u64>()
}

/// Open file descriptors of this process plus those of `pids`.
pub fn descriptors(pids: &[u32]) -> u64 {
    let count =
        |pid: &str| std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    count("self") + pids.iter().map(|p| count(&p.to_string())).sum::<u64>()
}

/// `(MemTotal, MemAvailable)`, bytes.
pub fn meminfo() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

/// `(busy, total)` jiffies of the whole machine.
pub fn cpu_jiffies() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The `p` quantile (0–1) of `v`; zero when empty.
pub fn quantile(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// wrk's latency text (`850.00us`, `1.23ms`, `1.20s`) in ms.
pub fn wrk_ms(latency: &str) -> f64 {
    let (num, scale) = if let Some(n) = latency.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = latency.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = latency.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (latency, 1.0)
    };
    num.parse::<f64>().unwrap_or(f64::INFINITY) * scale
}

/// One reading of the soak.
#[derive(Debug, Clone)]
pub struct SoakSample {
    pub at: Duration,
    /// Mean PSS of a session's browser tree, MiB.
    pub pss_mib: f64,
    pub descriptors: u64,
    pub threads: u64,
    pub store_mib: f64,
    pub inbox: usize,
}

/// What a soak saw, and whether it passed.
#[derive(Debug)]
pub struct SoakReport {
    pub samples: Vec<SoakSample>,
    /// Sessions not READY at the end, with their state.
    pub stuck: Vec<(String, String)>,
    pub sends: usize,
    pub audit_entries: usize,
    /// PSS growth from the first sample after the warm-up to the last.
    pub pss_growth: f64,
    /// Why it failed; empty when it passed.
    pub failures: Vec<String>,
}

/// How much a count may move and still be flat: 10 %, and a few for the
/// thread pools that come and go.
fn flat(first: u64, last: u64) -> bool {
    last <= first + first / 10 + 8
}

/// `sessions` READY sessions under traffic (a round every `traffic`),
/// sampled every `every` for `length`; judged from the first sample at or
/// after `warmup`: PSS may grow at most 10 %, descriptors and threads stay
/// flat, and every session is READY at the end.
pub async fn soak(
    dir: &Path,
    sessions: usize,
    length: Duration,
    every: Duration,
    warmup: Duration,
    traffic: Duration,
    warm_pairs: usize,
) -> SoakReport {
    let mut load = Load::start(dir, sessions, traffic).await;
    for _ in 0..sessions {
        load.add_session().await;
    }
    load.burst(warm_pairs).await;
    load.take_send_to_sent();
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut sends = 0;
    let mut next = Duration::ZERO;
    loop {
        let now = start.elapsed();
        if now < next {
            tokio::time::sleep(next - now).await;
        }
        let pids = load.browser_pids();
        let pss = load.pss_by_session();
        let sample = SoakSample {
            at: start.elapsed(),
            pss_mib: pss.values().sum::<u64>() as f64 / pss.len().max(1) as f64 / 1048576.0,
            descriptors: descriptors(&pids),
            threads: threads(&pids),
            store_mib: load.store_bytes() as f64 / 1048576.0,
            inbox: load.inbox_total().await,
        };
        sends += load.take_send_to_sent().len();
        println!(
            "soak {:>6.1} min: PSS/session {:.1} MiB, descriptors {}, threads {}, store {:.2} MiB, inbox {}, sends so far {sends}",
            sample.at.as_secs_f64() / 60.0,
            sample.pss_mib,
            sample.descriptors,
            sample.threads,
            sample.store_mib,
            sample.inbox
        );
        samples.push(sample);
        if start.elapsed() >= length {
            break;
        }
        next += every;
    }
    let stuck: Vec<(String, String)> = load
        .states()
        .await
        .into_iter()
        .filter(|(_, s)| s != "READY")
        .collect();
    let data = load.data.clone();
    load.stop().await;
    let store = centinela_actors::store::Store::open(&data).expect("reopen the store");
    let audit_entries = centinela_actors::store::AuditRepo::audit_since(&store, 0, usize::MAX)
        .expect("audit")
        .len();
    let base = samples
        .iter()
        .find(|s| s.at >= warmup)
        .unwrap_or(&samples[0])
        .clone();
    let last = samples.last().expect("a sample").clone();
    let pss_growth = last.pss_mib / base.pss_mib - 1.0;
    let mut failures = Vec::new();
    if pss_growth > 0.10 {
        failures.push(format!(
            "PSS/session grew {:.1} % after the warm-up ({:.1} → {:.1} MiB)",
            pss_growth * 100.0,
            base.pss_mib,
            last.pss_mib
        ));
    }
    if !flat(base.descriptors, last.descriptors) {
        failures.push(format!(
            "descriptors grew {} → {}",
            base.descriptors, last.descriptors
        ));
    }
    if !flat(base.threads, last.threads) {
        failures.push(format!("threads grew {} → {}", base.threads, last.threads));
    }
    if !stuck.is_empty() {
        failures.push(format!("sessions not READY at the end: {stuck:?}"));
    }
    if sends == 0 {
        failures.push("no message was sent".into());
    }
    SoakReport {
        samples,
        stuck,
        sends,
        audit_entries,
        pss_growth,
        failures,
    }
}
