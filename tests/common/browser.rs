//! Browser-test setup: a simulator server on `127.0.0.1:0`, a supervisor with
//! the real webjs engine (real Chromium) pointed at it, a temp data dir, and
//! a test-wide cap on concurrent browser tests (two cores are shared).

use super::WAIT;
use centinela::config::Config;
use centinela_actors::bus::{Bus, BusEvent, TransitionEvent};
use centinela_actors::clock::SystemClock;
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::session::actor::SessionEnv;
use centinela_actors::session::SessionView;
use centinela_actors::store::Store;
use centinela_actors::supervisor::{ConnectOutcome, NewSession, Supervisor, SupervisorArgs};
use centinela_web::sim::SimOptions;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, oneshot, Semaphore, SemaphorePermit};

/// At most two browser tests at once in this test binary.
static BROWSER_TESTS: Semaphore = Semaphore::const_new(2);

pub async fn browser_slot() -> SemaphorePermit<'static> {
    BROWSER_TESTS
        .acquire()
        .await
        .expect("semaphore never closes")
}

/// The simulator, served alone.
pub struct Sim {
    pub addr: SocketAddr,
    /// `http`, or `https` for a simulator started with TLS.
    scheme: &'static str,
    stop: Option<oneshot::Sender<()>>,
    http: reqwest::Client,
}

impl Sim {
    pub async fn start(qr_rotation: Duration) -> Sim {
        Sim::start_with(
            SimOptions {
                qr_rotation,
                ..SimOptions::default()
            },
            false,
        )
        .await
    }

    /// A simulator with `options`; over HTTPS with its page at `/` when `tls`.
    pub async fn start_with(options: SimOptions, tls: bool) -> Sim {
        centinela_actors::messaging::webhooks::install_tls_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(centinela::run_simulator(
            options,
            tls,
            listener,
            async move {
                let _ = rx.await;
            },
        ));
        // The TLS simulator's certificate is self-signed on purpose: it is
        // only ever checked by browsers told to ignore it.
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(tls)
            .build()
            .expect("http client");
        Sim {
            addr,
            scheme: if tls { "https" } else { "http" },
            stop: Some(tx),
            http,
        }
    }

    pub fn wa_url(&self) -> String {
        format!("http://{}/sim/wa/", self.addr)
    }

    pub async fn get(&self, path: &str) -> Value {
        let res = self
            .http
            .get(format!("{}://{}{}", self.scheme, self.addr, path))
            .send()
            .await
            .expect("sim request");
        assert!(res.status().is_success(), "GET {path}: {}", res.status());
        res.json().await.expect("json")
    }

    /// POSTs and returns the status and body.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let res = self
            .http
            .post(format!("{}://{}{}", self.scheme, self.addr, path))
            .json(&body)
            .send()
            .await
            .expect("sim request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// The device currently showing `qr`.
    pub async fn device_showing(&self, qr: &str) -> Option<String> {
        let devices = self.get("/sim/devices").await;
        devices
            .as_array()?
            .iter()
            .find(|d| d["qr"] == qr)
            .map(|d| d["id"].as_str().unwrap_or_default().to_owned())
    }

    /// The device paired with `phone`.
    pub async fn device_of(&self, phone: &str) -> Option<String> {
        let devices = self.get("/sim/devices").await;
        devices
            .as_array()?
            .iter()
            .find(|d| d["phone"] == phone)
            .map(|d| d["id"].as_str().unwrap_or_default().to_owned())
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub fn engine_config(data_dir: &Path, wa_url: &str) -> Config {
    let mut c = Config::defaults();
    c.storage.data_dir = data_dir.to_path_buf();
    c.engine.wa_url = wa_url.to_owned();
    c.engine.page_timeout = Duration::from_secs(60);
    c.engine.launch_timeout = Duration::from_secs(60);
    c.antiban.connect_delay = Duration::ZERO;
    c.antiban.connect_jitter_min = Duration::ZERO;
    c.antiban.connect_jitter_max = Duration::ZERO;
    c.antiban.queue_spacing = Duration::ZERO;
    c.antiban.global_attempts_per_hour = 100;
    c.antiban.tenant_attempts_per_day = 100;
    c
}

/// A supervisor with the real webjs engine.
pub struct Centinela {
    pub sup: Supervisor,
    pub bus: Bus,
}

impl Centinela {
    pub async fn start(config: Config) -> Centinela {
        let store = Store::open(&config.storage.data_dir).expect("store");
        let bus = Bus::default();
        let env = SessionEnv::from_config(
            &config,
            Arc::new(SystemClock),
            bus.clone(),
            Some(Arc::new(store.clone())),
        );
        let engines = centinela::engines_for(&config);
        let args = SupervisorArgs {
            rng_seed: Some(3),
            ..SupervisorArgs::on_store(config, store, engines, env)
        };
        let (sup, _) = Supervisor::spawn(args).await.expect("supervisor");
        Centinela { sup, bus }
    }

    pub async fn stop(self) {
        self.sup.stop(WAIT).await.expect("supervisor stops");
    }

    pub async fn create(&self, tenant: &str) -> SessionId {
        self.create_with(tenant, None).await
    }

    /// A session that goes out through `proxy`.
    pub async fn create_with(&self, tenant: &str, proxy: Option<String>) -> SessionId {
        let new = NewSession {
            tenant: TenantId::new(tenant).expect("id"),
            name: format!("{tenant} desk"),
            engine: centinela_actors::engine::EngineKind::Webjs,
            user_agent: None,
            proxy,
            cloud: None,
        };
        self.sup.create(new).await.expect("create").id
    }

    pub async fn connect(&self, id: &SessionId) -> ConnectOutcome {
        self.sup.connect(id.clone()).await.expect("connect")
    }

    pub async fn get(&self, id: &SessionId) -> SessionView {
        self.sup.get(id.clone()).await.expect("get")
    }
}

/// Creates a session of `tenant`, connects it, scans its QR with `phone`
/// through the simulator and waits for READY.
pub async fn ready_session(
    c: &Centinela,
    sim: &Sim,
    rx: &mut broadcast::Receiver<BusEvent>,
    tenant: &str,
    phone: &str,
) -> SessionId {
    let id = c.create(tenant).await;
    pair(c, sim, rx, &id, phone).await;
    id
}

/// Connects `id`, scans its QR as `phone` and waits for READY.
pub async fn pair(
    c: &Centinela,
    sim: &Sim,
    rx: &mut broadcast::Receiver<BusEvent>,
    id: &SessionId,
    phone: &str,
) {
    let id = id.clone();
    c.connect(&id).await;
    let seen = wait_for(rx, &id, "QR").await;
    let Some(centinela_actors::session::SessionState::Qr { code, .. }) =
        seen.last().map(|t| t.to.clone())
    else {
        panic!("QR expected: {seen:#?}");
    };
    let (status, body) = sim
        .post("/sim/scan", serde_json::json!({"qr": code, "phone": phone}))
        .await;
    assert_eq!(status, 200, "{body}");
    wait_for(rx, &id, "READY").await;
}

/// Waits for `id` to enter `state`; returns the transitions seen meanwhile.
pub async fn wait_for(
    rx: &mut broadcast::Receiver<BusEvent>,
    id: &SessionId,
    state: &str,
) -> Vec<TransitionEvent> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ev = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(ev)) => ev,
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(e)) => panic!("bus closed: {e}"),
            Err(_) => panic!("{id} did not reach {state} within {WAIT:?}; saw {seen:#?}"),
        };
        let BusEvent::Transition(t) = ev else {
            continue;
        };
        let done = t.session == *id && t.to.name() == state;
        seen.push(t);
        if done {
            return seen;
        }
    }
}

/// Live Chromium processes of browsers under `dir`: every process whose
/// command line mentions `dir`, with all its live descendants (a headless
/// shell's children do not repeat the profile path).
pub fn chromium_processes_under(dir: &Path) -> Vec<u32> {
    use centinela_engine_webjs::process;
    // Only browsers: the service itself names the data dir too, and its
    // own children (a `chromium --version`) are not browsers on a profile.
    let mut pids = process::using_profile(dir);
    pids.retain(|p| process::is_chromium(*p));
    for root in pids.clone() {
        pids.extend(process::descendants(root));
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Which of `pids` still run.
pub fn still_running(pids: &[u32]) -> Vec<u32> {
    use centinela_engine_webjs::process;
    pids.iter()
        .copied()
        .filter(|p| process::is_alive(*p) && process::is_chromium(*p))
        .collect()
}

/// The main process of the browser using `profile`: the one this test
/// process launched.
pub fn browser_main_pid(profile: &Path) -> Option<u32> {
    use centinela_engine_webjs::process;
    let me = std::process::id();
    process::using_profile(profile).into_iter().find(|pid| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].split_whitespace().nth(1)?.parse::<u32>().ok());
        ppid == Some(me)
    })
}

/// The TCP ports any of `pids` listens on (from /proc: the processes'
/// socket inodes matched against the LISTEN rows of /proc/net/tcp{,6}).
pub fn tcp_listen_ports(pids: &[u32]) -> Vec<u16> {
    let mut inodes = std::collections::HashSet::new();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let t = target.to_string_lossy();
                if let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                    inodes.insert(inode.to_owned());
                }
            }
        }
    }
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for row in text.lines().skip(1) {
            let cols: Vec<&str> = row.split_whitespace().collect();
            // local_address is col 1 (ip:port hex), st col 3 (0A = LISTEN), inode col 9.
            if cols.len() > 9 && cols[3] == "0A" && inodes.contains(cols[9]) {
                if let Some(port) = cols[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                {
                    ports.push(port);
                }
            }
        }
    }
    ports
}
