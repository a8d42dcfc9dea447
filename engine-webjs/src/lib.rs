//! The webjs engine: WhatsApp Web in its own headless Chromium per session,
//! driven over the DevTools protocol by chromiumoxide — the job
//! whatsapp-web.js does with Puppeteer.
//!
//! The Chromium profile (`--user-data-dir`, the session's `state_dir`) *is*
//! the pairing: keep it and the session comes back without a QR; `forget`
//! deletes it. The page agent (`inject.js`) is installed for every document,
//! waits for `window.Debug.VERSION`, reads WhatsApp Web's own modules through
//! `window.require`, and reports through one CDP binding. A dead browser —
//! process gone or DevTools connection lost — is reported as
//! `disconnected(browser_crashed)`. Stopping closes the browser and kills
//! every process it started; dropping the handle (or a start cancelled
//! mid-launch) does the same without holding up the async runtime while the
//! processes die ([`process::sweep_from_drop`]).
//!
//! A start is a few steps, each its own function: ready the profile
//! (`prepare_profile`, which arms the guard that kills what a failed start
//! leaves), pick the user agent, launch Chromium on a DevTools pipe, watch
//! it for crashes (`WebjsControl::watch`), then attach the session to it:
//! proxy credentials, then WhatsApp Web with the page agent.
//!
//! No browser outlives this process as the tenant's device. Killed, the
//! process takes its browsers along: their DevTools pipe closes, and each
//! is launched with a parent-death signal besides ([`pipe`]). Frozen
//! (SIGSTOP, a hung host), it cannot kill anything, and its browsers would
//! go on holding the WhatsApp socket — in fleet mode beside the browser of
//! the node that took the tenant over.
//! So with `engine.deadman` set, the page has a dead-man switch: the agent
//! arms a timer in every WhatsApp Web document, [`heartbeat`] pings it over
//! DevTools every second, and a document that hears nothing for `deadman`
//! navigates to `about:blank` (the socket closes; the pairing stays in the
//! profile's IndexedDB). It lives in the page, not in the simulator, so it
//! works the same on web.whatsapp.com. When the process wakes up, the next
//! ping finds the page gone and reports `disconnected(engine_error)`, after
//! which a paired session is restored.

pub mod doctor;
pub mod page_events;
pub mod pipe;
pub mod process;
pub mod proxy_auth;
pub mod user_agent;

use async_trait::async_trait;
use centinela_actors::engine::{
    ChatState, Driver, DriverControl, DriverSpec, Engine, EngineError, EngineEvent,
};
use centinela_actors::session::DisconnectReason;
use chromiumoxide::cdp::browser_protocol::page::AddScriptToEvaluateOnNewDocumentParams;
use chromiumoxide::cdp::js_protocol::runtime::{
    AddBindingParams, EvaluateParams, EventBindingCalled,
};
use chromiumoxide::handler::HandlerConfig;
use chromiumoxide::{Browser, Page};
use futures::StreamExt;
use page_events::{PageEvent, PageTracker};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, Mutex, OnceCell};
use tokio::task::JoinHandle;

const AGENT: &str = include_str!("inject.js");
/// The isolated-world half of the agent: holds the binding.
const RELAY: &str = include_str!("relay.js");
/// Centinela's isolated world (the binding exists only there).
const WORLD: &str = "centinela";
/// The send sequence of the page contract, evaluated with `[digits, text]`.
const SEND: &str = include_str!("send.js");
/// A chat state through `WAWebChatStateBridge`, evaluated with `[digits, state]`.
const CHAT_STATE: &str = include_str!("chat_state.js");
/// A chat marked read (`WAWebUpdateUnreadChatAction.sendSeen`), evaluated with `[jid]`.
const SEEN: &str = include_str!("seen.js");
/// How long our logout waits for the page to confirm it (its `logout`
/// event or the `?post_logout=1` document).
const LOGOUT_CONFIRM: Duration = Duration::from_secs(10);
const BINDING: &str = "__centinela";
/// How often [`heartbeat`] pings the page.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Where the dead-man switch sends the page (inject.js).
const DEADMAN_URL: &str = "about:blank#centinela-deadman";

/// Lean flags for many browsers per server. chromiumoxide adds the dashes and
/// itself passes user-data-dir, window-size, headless, no-sandbox,
/// disable-extensions and the debugging port.
pub const LEAN_ARGS: &[&str] = &[
    "disable-background-networking",
    "disable-component-update",
    "disable-sync",
    "no-first-run",
    "no-default-browser-check",
    "disable-default-apps",
    "disable-dev-shm-usage",
    "disable-gpu",
    "disable-software-rasterizer",
    "disable-breakpad",
    "disable-client-side-phishing-detection",
    "disable-domain-reliability",
    "disable-hang-monitor",
    "disable-popup-blocking",
    "disable-prompt-on-repost",
    "disable-renderer-backgrounding",
    "disable-background-timer-throttling",
    "disable-backgrounding-occluded-windows",
    "disable-ipc-flooding-protection",
    "disable-blink-features=AutomationControlled",
    "disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,CalculateNativeWinOcclusion,InterestFeedContentSuggestions,CertificateTransparencyComponentUpdater,AutofillServerCommunication,PrivacySandboxSettings4,site-per-process",
    "disable-site-isolation-trials",
    "renderer-process-limit=1",
    "metrics-recording-only",
    "password-store=basic",
    "use-mock-keychain",
    "mute-audio",
    "hide-scrollbars",
    "js-flags=--max-old-space-size=256",
];

/// The engine's settings (from `[engine]`).
#[derive(Debug, Clone)]
pub struct WebjsConfig {
    /// The browser binary (Debian's chromium, or its chromium-headless-shell).
    pub chromium_path: PathBuf,
    pub wa_url: String,
    pub launch_timeout: Duration,
    pub page_timeout: Duration,
    /// Flags on top of (or, with `lean = false`, instead of) [`LEAN_ARGS`].
    pub extra_args: Vec<String>,
    pub lean: bool,
    /// The page's dead-man switch (`engine.deadman`): how long a page
    /// goes without our ping before it leaves WhatsApp Web. Zero: off.
    pub deadman: Duration,
}

pub struct WebjsEngine {
    cfg: WebjsConfig,
    chrome_major: OnceCell<u32>,
}

impl WebjsEngine {
    pub fn new(mut cfg: WebjsConfig) -> Self {
        // Launch the browser itself, not a launcher script that forks it, so
        // the pid we own is the browser's.
        cfg.chromium_path = process::unwrap_launcher(&cfg.chromium_path);
        Self {
            cfg,
            chrome_major: OnceCell::new(),
        }
    }

    /// The installed Chromium's major version, asked once.
    async fn chrome_major(&self) -> u32 {
        *self
            .chrome_major
            .get_or_init(|| async {
                let out = tokio::time::timeout(
                    Duration::from_secs(20),
                    tokio::process::Command::new(&self.cfg.chromium_path)
                        .arg("--version")
                        // A cancelled start must not leave it running.
                        .kill_on_drop(true)
                        .output(),
                )
                .await;
                match out {
                    Ok(Ok(o)) => {
                        user_agent::parse_major(&String::from_utf8_lossy(&o.stdout)).unwrap_or(156)
                    }
                    _ => 156,
                }
            })
            .await
    }

    /// Starts Chromium with its DevTools on a pipe and connects to it.
    async fn launch(
        &self,
        spec: &DriverSpec,
        ua: &str,
        proxy: Option<&str>,
    ) -> Result<Launched, EngineError> {
        let args = self.browser_args(spec, ua, proxy);
        let piped = pipe::launch(&self.cfg.chromium_path, &args, self.cfg.launch_timeout)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::TimedOut => EngineError::Timeout("starting Chromium"),
                _ => EngineError::Launch(format!("{}: {e}", self.cfg.chromium_path.display())),
            })?;
        tracing::debug!(session = %spec.session, product = %piped.product, "browser answering on its DevTools pipe");
        let handler_config = HandlerConfig {
            // Certificate errors fail the load (chromiumoxide's default
            // accepts every certificate: anyone on the path could then serve
            // a fake web.whatsapp.com into the session).
            ignore_https_errors: false,
            viewport: None,
            request_timeout: self.cfg.page_timeout,
            ..HandlerConfig::default()
        };
        let connected = tokio::time::timeout(
            self.cfg.launch_timeout,
            Browser::connect_with_config(piped.ws_url.clone(), handler_config),
        )
        .await;
        match connected {
            Err(_) => Err(EngineError::Timeout(
                "connecting to Chromium's DevTools pipe",
            )),
            Ok(Err(e)) => Err(EngineError::Launch(e.to_string())),
            Ok(Ok((browser, handler))) => Ok(Launched {
                browser,
                handler,
                child: piped.child,
                bridge: piped.bridge,
            }),
        }
    }

    /// Chromium's command line: DevTools on a pipe (no port), headless, the
    /// session's profile, lean flags unless turned off, the operator's
    /// extra flags (never a debugging port), and the proxy.
    fn browser_args(&self, spec: &DriverSpec, ua: &str, proxy: Option<&str>) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--remote-debugging-pipe".into(),
            "--headless=new".into(),
            "--no-sandbox".into(),
            "--disable-setuid-sandbox".into(),
            "--disable-extensions".into(),
            "--window-size=1000,800".into(),
            format!("--user-data-dir={}", spec.state_dir.display()),
            format!("--user-agent={ua}"),
        ];
        let base: &[&str] = if self.cfg.lean {
            LEAN_ARGS
        } else {
            &[
                "disable-background-networking",
                "disable-component-update",
                "disable-sync",
                "no-first-run",
                "hide-scrollbars",
                "mute-audio",
            ]
        };
        args.extend(base.iter().map(|a| format!("--{a}")));
        for extra in &self.cfg.extra_args {
            let flag = extra.trim_start_matches('-');
            if flag.starts_with("remote-debugging") {
                tracing::warn!(flag = %extra, "ignored: DevTools stays on the pipe");
                continue;
            }
            args.push(format!("--{flag}"));
        }
        if let Some(server) = proxy {
            args.push(format!("--proxy-server={server}"));
        }
        args
    }
}

pub use centinela_actors::proxy::split as split_proxy;

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A 1:1 chat's jid from what the domain holds: digits (`<digits>@c.us`),
/// or a jid the page reported (`<digits>@c.us`, `<lid>@lid`).
fn chat_jid(chat: &str) -> Result<String, EngineError> {
    let (user, server) = chat.split_once('@').unwrap_or((chat, "c.us"));
    let digits = !user.is_empty() && user.len() <= 32 && user.bytes().all(|b| b.is_ascii_digit());
    if digits && matches!(server, "c.us" | "lid") {
        Ok(format!("{user}@{server}"))
    } else {
        Err(EngineError::Protocol(format!(
            "not a 1:1 chat: {}",
            truncate(chat, 64)
        )))
    }
}

/// Evaluates `expression` in the page's world, awaiting a promise, and
/// returns its value (JSON `null` for none).
async fn evaluate(
    page: &Page,
    what: &'static str,
    expression: String,
    limit: Duration,
) -> Result<serde_json::Value, EngineError> {
    let params = EvaluateParams::builder()
        .expression(expression)
        .await_promise(true)
        .return_by_value(true)
        .build()
        .map_err(EngineError::Protocol)?;
    let result = timed(what, limit, page.evaluate_expression(params)).await?;
    Ok(result.value().cloned().unwrap_or(serde_json::Value::Null))
}

/// A started browser: the DevTools client, its event loop, the process,
/// and the pipe's bridge.
struct Launched {
    browser: Browser,
    handler: chromiumoxide::Handler,
    child: tokio::process::Child,
    bridge: JoinHandle<()>,
}

/// Kills every process on a profile when dropped armed: the backstop for a
/// start that did not hand its browser to a driver.
struct LaunchGuard {
    profile: Option<PathBuf>,
}

impl LaunchGuard {
    fn new(profile: &Path) -> Self {
        Self {
            profile: Some(profile.to_path_buf()),
        }
    }

    fn disarm(mut self) {
        self.profile = None;
    }
}

impl Drop for LaunchGuard {
    fn drop(&mut self) {
        if let Some(profile) = self.profile.take() {
            process::sweep_from_drop(None, Vec::new(), profile);
        }
    }
}

/// Readies the session's profile for a launch and returns the guard that
/// owns whatever gets started on it: the profile is private to the
/// service's user (it is the pairing), no browser of an earlier process is
/// left on it, and no stale lock stops the new one.
async fn prepare_profile(profile: &Path) -> Result<LaunchGuard, EngineError> {
    if let Some(parent) = profile.parent() {
        centinela_actors::store::private_dir(parent).map_err(|e| EngineError::Io(e.to_string()))?;
    }
    centinela_actors::store::private_dir(profile).map_err(|e| EngineError::Io(e.to_string()))?;
    let guard = LaunchGuard::new(profile);
    // A browser left on this profile by a process that was killed
    // (kill -9 leaves its children running) would fight the new one.
    let stale = profile.to_path_buf();
    let _ =
        tokio::task::spawn_blocking(move || process::retire_stale(&stale, Duration::from_secs(10)))
            .await;
    clear_singleton_locks(profile);
    Ok(guard)
}

/// Stale Chromium singleton locks (from a killed browser, or another
/// hostname) make a new launch on the same profile exit at once.
fn clear_singleton_locks(profile: &Path) {
    for name in ["SingletonLock", "SingletonSocket", "SingletonCookie"] {
        let _ = std::fs::remove_file(profile.join(name));
    }
}

async fn timed<T, E: std::fmt::Display>(
    what: &'static str,
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, EngineError> {
    match tokio::time::timeout(limit, fut).await {
        Err(_) => Err(EngineError::Timeout(what)),
        Ok(Err(e)) => Err(EngineError::Protocol(format!("{what}: {e}"))),
        Ok(Ok(v)) => Ok(v),
    }
}

#[async_trait]
impl Engine for WebjsEngine {
    async fn start(&self, spec: &DriverSpec) -> Result<Driver, EngineError> {
        // Until the driver owns the browser, this guard does: an error, a
        // timeout or a cancelled start (a stop, delete or shutdown racing the
        // launch drops this future) kills whatever was started on the profile.
        let guard = prepare_profile(&spec.state_dir).await?;
        let ua = self.user_agent_for(spec).await;
        let (proxy_server, proxy_auth) = match &spec.proxy {
            Some(p) => {
                let (server, auth) = split_proxy(p);
                (Some(server), auth)
            }
            None => (None, None),
        };
        let launched = self.launch(spec, &ua, proxy_server.as_deref()).await?;
        let (control, events_tx, events) =
            WebjsControl::watch(launched, spec, self.cfg.page_timeout);
        if let Err(e) = self
            .attach(spec, &control, proxy_auth, events_tx, &ua)
            .await
        {
            let _ = control.stop().await;
            return Err(e);
        }
        guard.disarm();
        Ok(Driver {
            events,
            control: Box::new(control),
        })
    }

    async fn forget(&self, spec: &DriverSpec) -> Result<(), EngineError> {
        let profile = spec.state_dir.clone();
        let _ = tokio::task::spawn_blocking(move || process::sweep(None, &[], &profile)).await;
        match tokio::fs::remove_dir_all(&spec.state_dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EngineError::Io(e.to_string())),
        }
    }
}

impl WebjsEngine {
    /// The tenant's user agent (the session's own, if it has one), for the
    /// installed Chromium's version.
    async fn user_agent_for(&self, spec: &DriverSpec) -> String {
        let major = self.chrome_major().await;
        spec.user_agent
            .clone()
            .unwrap_or_else(|| user_agent::for_tenant(&spec.tenant, major))
    }

    /// Makes a launched browser a session's: the proxy's credentials
    /// answered (before any page), then WhatsApp Web open with the agent.
    async fn attach(
        &self,
        spec: &DriverSpec,
        control: &WebjsControl,
        proxy_auth: Option<(String, String)>,
        events: mpsc::Sender<EngineEvent>,
        ua: &str,
    ) -> Result<(), EngineError> {
        if let Some(credentials) = proxy_auth {
            let task = proxy_auth::install(control.browser.clone(), credentials)
                .await
                .map_err(|e| EngineError::Protocol(format!("proxy authentication: {e}")))?;
            control.keep_task(task);
        }
        self.open_page(spec, control, events, ua).await
    }

    /// Opens WhatsApp Web with the agent installed; returns once the agent
    /// has attached to the page's modules.
    async fn open_page(
        &self,
        spec: &DriverSpec,
        control: &WebjsControl,
        tx: mpsc::Sender<EngineEvent>,
        ua: &str,
    ) -> Result<(), EngineError> {
        let limit = self.cfg.page_timeout;
        let page = {
            let guard = control.browser.lock().await;
            let browser = guard.as_ref().ok_or(EngineError::Closed)?;
            timed("opening a page", limit, browser.new_page("about:blank")).await?
        };
        let mut calls = timed(
            "listening to the page",
            limit,
            page.event_listener::<EventBindingCalled>(),
        )
        .await?;
        // The binding lives in our isolated world only, so WhatsApp's own
        // scripts can neither see it nor call it; the agent in the page's
        // world reaches it through a channel named by a random token.
        let channel = format!("c{}", uuid::Uuid::new_v4().simple());
        let binding = AddBindingParams::builder()
            .name(BINDING)
            .execution_context_name(WORLD)
            .build()
            .map_err(EngineError::Protocol)?;
        timed("adding the binding", limit, page.execute(binding)).await?;
        let relay = AddScriptToEvaluateOnNewDocumentParams::builder()
            .source(RELAY.replace("__CHANNEL__", &channel))
            .world_name(WORLD)
            .build()
            .map_err(EngineError::Protocol)?;
        timed("installing the relay", limit, page.execute(relay)).await?;
        timed("setting the user agent", limit, page.set_user_agent(ua)).await?;
        timed(
            "installing the page agent",
            limit,
            page.evaluate_on_new_document(agent(&channel, self.cfg.deadman)),
        )
        .await?;
        let (injected_tx, injected_rx) = oneshot::channel::<String>();
        let logged_out = control.logged_out.clone();
        let beat_events = tx.clone();
        let pump = tokio::spawn(async move {
            let mut tracker = PageTracker::default();
            let mut injected = Some(injected_tx);
            while let Some(call) = calls.next().await {
                if call.name != BINDING {
                    continue;
                }
                let event = match PageEvent::parse(&call.payload) {
                    Ok(event) => event,
                    Err(why) => {
                        centinela_actors::engine::stats::count_dropped();
                        tracing::warn!(?why, bytes = call.payload.len(), "page report dropped");
                        continue;
                    }
                };
                match &event {
                    PageEvent::Injected { version } => {
                        if let Some(t) = injected.take() {
                            let _ = t.send(version.clone());
                        }
                    }
                    PageEvent::Logout { .. } => {
                        let _ = logged_out.send(true);
                    }
                    _ => {}
                }
                for e in tracker.on(event) {
                    if tx.send(e).await.is_err() {
                        return;
                    }
                }
            }
        });
        control.keep_task(pump);
        if !self.cfg.deadman.is_zero() {
            let beat = heartbeat(
                page.clone(),
                &channel,
                self.cfg.deadman,
                beat_events,
                control.stopping.clone(),
            );
            let span =
                tracing::info_span!("deadman", tenant = %spec.tenant, session = %spec.session);
            let beat = tokio::spawn(tracing::Instrument::instrument(beat, span));
            control.keep_task(beat);
        }
        let _ = control.page.set(page.clone());
        match tokio::time::timeout(limit, page.goto(self.cfg.wa_url.as_str())).await {
            Err(_) => return Err(EngineError::Timeout("loading WhatsApp Web")),
            Ok(Err(e)) if e.to_string().contains("ERR_CERT") => {
                return Err(EngineError::Protocol(format!(
                    "the TLS certificate of {} was refused ({e}): not WhatsApp's own, or the connection is intercepted",
                    self.cfg.wa_url
                )))
            }
            Ok(Err(e)) => {
                return Err(EngineError::Protocol(format!(
                    "loading {}: {e}",
                    self.cfg.wa_url
                )))
            }
            Ok(Ok(_)) => {}
        }
        match tokio::time::timeout(limit, injected_rx).await {
            Ok(Ok(version)) => {
                centinela_actors::engine::stats::note_version(&version);
                tracing::info!(tenant = %spec.tenant, session = %spec.session, version, "WhatsApp Web version");
                Ok(())
            }
            Ok(Err(_)) => Err(EngineError::Closed),
            Err(_) => Err(EngineError::Timeout(
                "waiting for window.Debug.VERSION (page agent injection)",
            )),
        }
    }
}

/// The page agent for one launch: its channel, and the dead-man switch's
/// deadline in milliseconds (0: off).
fn agent(channel: &str, deadman: Duration) -> String {
    let ms = u64::try_from(deadman.as_millis()).unwrap_or(u64::MAX);
    AGENT
        .replace("__CHANNEL__", channel)
        .replace("__DEADMAN_MS__", &ms.to_string())
}

/// The dead-man switch's ping (see the crate docs), to run as a task of
/// the session's browser: every [`PING_EVERY`] it tells the page's agent,
/// over `channel`, that this process is alive.
/// A ping that finds the page at [`DEADMAN_URL`] — it heard none for
/// `deadman` and left WhatsApp Web — reports the session disconnected
/// (`engine_error`, a local fault: a paired session is restored) and ends.
/// A ping that fails or times out (the page is busy or between documents)
/// is simply the next one's job.
fn heartbeat(
    page: Page,
    channel: &str,
    deadman: Duration,
    events: mpsc::Sender<EngineEvent>,
    stopping: Arc<AtomicBool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let ping = format!(
        "(() => {{ if (location.href === '{DEADMAN_URL}') return 'fired'; \
         EventTarget.prototype.dispatchEvent.call(document, new CustomEvent('{channel}:alive')); \
         return 'alive'; }})()"
    );
    async move {
        let mut tick = tokio::time::interval(PING_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let answer = evaluate(&page, "pinging the page", ping.clone(), PING_EVERY).await;
            let Ok(serde_json::Value::String(answer)) = answer else {
                continue;
            };
            if answer != "fired" || stopping.load(Ordering::SeqCst) {
                continue;
            }
            let ms = deadman.as_millis();
            tracing::warn!(
                deadman_ms = ms,
                "the page's dead-man switch fired: it left WhatsApp Web"
            );
            let _ = events.try_send(EngineEvent::Disconnected {
                reason: DisconnectReason::EngineError,
                detail: format!(
                    "the page heard no ping for {ms} ms and left WhatsApp Web (engine.deadman)"
                ),
            });
            return;
        }
    }
}

/// Reports a crash once, as `disconnected(browser_crashed)`, unless the
/// browser is being stopped.
fn crash_reporter(
    tx: mpsc::Sender<EngineEvent>,
    stopping: Arc<AtomicBool>,
) -> impl Fn(String) + Clone + Send + 'static {
    let crashed = Arc::new(AtomicBool::new(false));
    move |detail: String| {
        if !stopping.load(Ordering::SeqCst) && !crashed.swap(true, Ordering::SeqCst) {
            let _ = tx.try_send(EngineEvent::Disconnected {
                reason: DisconnectReason::BrowserCrashed,
                detail,
            });
        }
    }
}

/// Runs chromiumoxide's DevTools event loop; its end is a crash.
fn watch_devtools(
    mut handler: chromiumoxide::Handler,
    on_crash: impl Fn(String) + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let why = loop {
            match handler.next().await {
                Some(Ok(())) => continue,
                Some(Err(e)) => break format!("devtools connection lost: {e}"),
                None => break "devtools connection closed".to_owned(),
            }
        };
        on_crash(why);
    })
}

/// Watches the browser's main process and remembers its process tree, so
/// the children can still be found after the main process died; the main
/// process gone is a crash.
fn watch_process(
    pid: u32,
    known: Arc<std::sync::Mutex<Vec<u32>>>,
    on_crash: impl Fn(String) + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            // Its own stat file says whether the main process lives; its
            // children come from the process table all watchdogs share.
            let tree = tokio::task::spawn_blocking(move || process::recent_tree(pid))
                .await
                .unwrap_or_default();
            if !tree.contains(&pid) {
                on_crash(format!("chromium process {pid} exited"));
                return;
            }
            if let Ok(mut k) = known.lock() {
                k.extend(tree);
                k.sort_unstable();
                k.dedup();
            }
        }
    })
}

/// The running browser of one session.
struct WebjsControl {
    /// The browser process (its DevTools are on this child's pipe).
    child: Mutex<Option<tokio::process::Child>>,
    browser: Arc<Mutex<Option<Browser>>>,
    page: Arc<OnceCell<Page>>,
    pid: Option<u32>,
    /// Every process of this browser the watchdog has seen.
    known: Arc<std::sync::Mutex<Vec<u32>>>,
    profile: PathBuf,
    stopping: Arc<AtomicBool>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    page_timeout: Duration,
    /// Set once the page reported its logout.
    logged_out: Arc<watch::Sender<bool>>,
}

impl WebjsControl {
    /// Takes a launched browser over: a crash of it — the DevTools
    /// connection lost, or its main process gone — becomes one
    /// `disconnected(browser_crashed)` on the returned events channel
    /// (unless it is being stopped). Returns the control, the sender the page
    /// reports into, and the driver's end of the channel.
    fn watch(
        launched: Launched,
        spec: &DriverSpec,
        page_timeout: Duration,
    ) -> (
        WebjsControl,
        mpsc::Sender<EngineEvent>,
        mpsc::Receiver<EngineEvent>,
    ) {
        let Launched {
            browser,
            handler,
            child,
            bridge,
        } = launched;
        let pid = child.id();
        let (tx, rx) = mpsc::channel(256);
        let stopping = Arc::new(AtomicBool::new(false));
        let on_crash = crash_reporter(tx.clone(), stopping.clone());
        let known = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = vec![watch_devtools(handler, on_crash.clone())];
        if let Some(pid) = pid {
            tasks.push(watch_process(pid, known.clone(), on_crash));
        }
        tasks.push(bridge);
        let control = WebjsControl {
            child: Mutex::new(Some(child)),
            browser: Arc::new(Mutex::new(Some(browser))),
            page: Arc::new(OnceCell::new()),
            pid,
            known,
            profile: spec.state_dir.clone(),
            stopping,
            tasks: std::sync::Mutex::new(tasks),
            page_timeout,
            logged_out: Arc::new(watch::channel(false).0),
        };
        (control, tx, rx)
    }

    /// A task that lives as long as the browser: aborted when it stops.
    fn keep_task(&self, task: JoinHandle<()>) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.push(task);
        }
    }

    fn page(&self) -> Result<&Page, EngineError> {
        self.page.get().ok_or(EngineError::Closed)
    }

    async fn evaluate(
        &self,
        what: &'static str,
        expression: String,
    ) -> Result<serde_json::Value, EngineError> {
        evaluate(self.page()?, what, expression, self.page_timeout).await
    }

    fn known_pids(&self) -> Vec<u32> {
        self.known.lock().map(|k| k.clone()).unwrap_or_default()
    }

    fn abort_tasks(&self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
    }
}

#[async_trait]
impl DriverControl for WebjsControl {
    async fn send_text(&self, to: &str, text: &str) -> Result<String, EngineError> {
        let args =
            serde_json::to_string(&(to, text)).map_err(|e| EngineError::Protocol(e.to_string()))?;
        let js = format!("({SEND})({args})");
        let reply = self.evaluate("sending a message", js).await?;
        match (reply.get("id"), reply.get("error")) {
            (Some(serde_json::Value::String(id)), _) if !id.is_empty() && id.len() <= 256 => {
                Ok(id.clone())
            }
            (_, Some(serde_json::Value::String(e))) if e == "not_on_whatsapp" => {
                Err(EngineError::NotOnWhatsapp)
            }
            _ => Err(EngineError::Protocol(format!(
                "send returned {}",
                truncate(&reply.to_string(), 200)
            ))),
        }
    }

    /// `WAWebChatStateBridge` (`chat_state.js`): typing, recording or
    /// paused in the chat with `to`.
    async fn chat_state(&self, to: &str, state: ChatState) -> Result<(), EngineError> {
        let args = serde_json::to_string(&(to, state.as_str()))
            .map_err(|e| EngineError::Protocol(e.to_string()))?;
        let js = format!("({CHAT_STATE})({args})");
        match self.evaluate("sending a chat state", js).await? {
            serde_json::Value::Bool(true) => Ok(()),
            other => Err(EngineError::Protocol(format!(
                "chat state returned {}",
                truncate(&other.to_string(), 200)
            ))),
        }
    }

    /// `WAWebUpdateUnreadChatAction.sendSeen` (`seen.js`) on the chat
    /// `chat`: a jid (`…@c.us`, `…@lid`) or digits.
    async fn send_seen(&self, chat: &str) -> Result<(), EngineError> {
        let jid = chat_jid(chat)?;
        let args =
            serde_json::to_string(&(&jid,)).map_err(|e| EngineError::Protocol(e.to_string()))?;
        let js = format!("({SEEN})({args})");
        match self.evaluate("marking a chat read", js).await? {
            serde_json::Value::Bool(true) => Ok(()),
            serde_json::Value::Bool(false) => {
                Err(EngineError::Protocol(format!("no chat {jid} to mark read")))
            }
            other => Err(EngineError::Protocol(format!(
                "sendSeen returned {}",
                truncate(&other.to_string(), 200)
            ))),
        }
    }

    /// `WAWebAltDeviceLinkingApi` (WAWEB-CONTRACT.md, pairing code): the
    /// 8-character code, shown as `XXXX-XXXX`.
    async fn request_pairing_code(&self, phone: &str) -> Result<String, EngineError> {
        let arg = serde_json::to_string(phone).map_err(|e| EngineError::Protocol(e.to_string()))?;
        let js = format!(
            "(async (phone) => {{ const L = window.require('WAWebAltDeviceLinkingApi'); L.setPairingType('ALT_DEVICE_LINKING'); await L.initializeAltDeviceLinking(); return String(await L.startAltLinkingFlow(phone, false)); }})({arg})"
        );
        let reply = self.evaluate("requesting a pairing code", js).await?;
        let code: String = reply
            .as_str()
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_uppercase();
        if code.len() != 8 {
            return Err(EngineError::Protocol(format!(
                "pairing code {}",
                truncate(&reply.to_string(), 40)
            )));
        }
        Ok(format!("{}-{}", &code[..4], &code[4..]))
    }

    /// `Socket.logout()` (the contract's unpair action), then waits for the
    /// page to confirm with its own logout event or the `?post_logout=1`
    /// document.
    async fn logout(&self) -> Result<(), EngineError> {
        let js = "(async () => { await window.require('WAWebSocketModel').Socket.logout(); return true; })()"
            .to_owned();
        match self.evaluate("logging out", js).await {
            Ok(_) => {}
            // The page may navigate away before the evaluation answers.
            Err(EngineError::Protocol(e)) if e.contains("context") => {}
            Err(e) => return Err(e),
        }
        let mut rx = self.logged_out.subscribe();
        let confirmed = tokio::time::timeout(LOGOUT_CONFIRM, rx.wait_for(|done| *done))
            .await
            .is_ok_and(|r| r.is_ok());
        if confirmed {
            Ok(())
        } else {
            Err(EngineError::Timeout(
                "waiting for the page to confirm the logout",
            ))
        }
    }

    /// The PSS of the browser's whole process tree (main, zygotes,
    /// renderers, utilities), each shared page counted once.
    async fn memory(&self) -> Option<u64> {
        let pid = self.pid?;
        tokio::task::spawn_blocking(move || {
            let tree = process::recent_tree(pid);
            (!tree.is_empty()).then(|| process::pss_bytes(&tree))
        })
        .await
        .ok()
        .flatten()
    }

    async fn stop(&self) -> Result<(), EngineError> {
        self.stopping.store(true, Ordering::SeqCst);
        let browser = self.browser.lock().await.take();
        if let Some(mut browser) = browser {
            let _ = tokio::time::timeout(Duration::from_secs(5), browser.close()).await;
        }
        let child = self.child.lock().await.take();
        if let Some(mut child) = child {
            pipe::reap(&mut child).await;
        }
        self.abort_tasks();
        let (pid, known, profile) = (self.pid, self.known_pids(), self.profile.clone());
        let _ = tokio::task::spawn_blocking(move || process::sweep(pid, &known, &profile)).await;
        Ok(())
    }
}

impl Drop for WebjsControl {
    fn drop(&mut self) {
        // Backstop for a handle dropped without `stop` (e.g. its actor
        // panicked): kill the browser and everything it started.
        self.stopping.store(true, Ordering::SeqCst);
        self.abort_tasks();
        process::sweep_from_drop(self.pid, self.known_pids(), self.profile.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::{agent, chat_jid, DEADMAN_URL};
    use std::time::Duration;

    #[test]
    fn the_agent_carries_its_channel_and_the_dead_man_deadline() {
        let armed = agent("c0123", Duration::from_secs(25));
        assert!(armed.contains("const CHANNEL = 'c0123';"));
        assert!(armed.contains("Number('25000')"), "the deadline in ms");
        assert!(!armed.contains("__"), "no placeholder left: {armed}");
        assert!(armed.contains(&format!("leave.replace('{DEADMAN_URL}')")));
        let off = agent("c0123", Duration::ZERO);
        assert!(off.contains("Number('0')"), "0: off");
    }

    #[test]
    fn a_chat_is_digits_or_a_one_to_one_jid() {
        assert_eq!(
            chat_jid("5491100000000").as_deref(),
            Ok("5491100000000@c.us")
        );
        assert_eq!(
            chat_jid("5491100000000@c.us").as_deref(),
            Ok("5491100000000@c.us")
        );
        assert_eq!(
            chat_jid("123456789012345@lid").as_deref(),
            Ok("123456789012345@lid")
        );
        for bad in [
            "",
            "@c.us",
            "120363@g.us",
            "54911'); alert(1)//",
            "status@broadcast",
        ] {
            assert!(chat_jid(bad).is_err(), "{bad}");
        }
    }
}
