//! Wiring: config → store → supervisor → HTTP. [`Running::start`] wires and
//! starts it, one step per function (open the store, start the supervisor,
//! wire the web layer, mount the simulator for `--demo`, serve HTTP);
//! [`Running::shutdown`] stops it in order; [`run`] (both, around a shutdown
//! signal) is what `serve` calls and what the end-to-end tests call
//! in-process on `127.0.0.1:0`.
//!
//! Shutdown order matters: stop accepting HTTP, stop the supervisor (which
//! stops every session actor, which closes every driver and browser), then
//! close the store last so every final write lands.

use centinela_actors::bus::Bus;
use centinela_actors::clock::{SharedClock, SystemClock};
use centinela_actors::config::Config;
use centinela_actors::engine::cloud::{CloudAccount, CloudHooks, CloudSecrets};
use centinela_actors::engine::{EngineKind, EngineSet};
use centinela_actors::messaging::webhooks::{Lookup, SystemLookup};
use centinela_actors::secret::{Secret, SecretBox};
use centinela_actors::session::actor::SessionEnv;
use centinela_actors::store::{AccountRepo, Store, StoreError};
use centinela_actors::supervisor::{Supervisor, SupervisorArgs};
use centinela_engine_cloud::{CloudConfig, CloudEngine};
use centinela_engine_webjs::{WebjsConfig, WebjsEngine};
use centinela_web::serve::{Limits, TlsError};
use centinela_web::sim::graph::{GraphNumber, GraphSim};
use centinela_web::sim::{ControlAccess, Guard, SimOptions, Simulator};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub mod bootstrap;
pub mod fleet;

pub use bootstrap::AdminBootstrap;
pub use centinela_actors::config;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the supervisor: {0}")]
    Supervisor(String),
    #[error("HTTP server failed: {0}")]
    Http(#[from] std::io::Error),
    #[error("first-start set-up failed: {0}")]
    Bootstrap(#[from] bootstrap::BootstrapError),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Demo(#[from] DemoError),
    #[error("secret key: {0}")]
    Secret(#[from] centinela_actors::secret::SecretError),
    #[error(transparent)]
    Fleet(#[from] fleet::FleetStartError),
}

/// Why `serve --demo` refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("--demo on {0} would give anyone who can reach that address the simulator's control API (read every QR, pair any session to their own phone, read and inject messages, ban a tenant for 24 h); listen on 127.0.0.1, or add --demo-public to require a control token (printed at start)")]
    Exposed(SocketAddr),
}

/// `serve --demo`'s simulator and who may drive its control API.
pub struct Demo {
    pub simulator: Simulator,
    pub control: ControlAccess,
}

/// Everything `run` needs beyond the config; tests swap the engines, the
/// clock and the webhook resolver.
pub struct Services {
    pub engines: EngineSet,
    pub clock: SharedClock,
    /// Mounted under `/sim` when set (`serve --demo`).
    pub demo: Option<Demo>,
    /// How the first admin is made on an empty store.
    pub admin: AdminBootstrap,
    /// Looks up webhook hosts (the system's resolver; scripted in tests).
    pub webhook_dns: Arc<dyn Lookup>,
}

impl Default for Services {
    /// No engine, no simulator: enough for tests of the HTTP layer.
    fn default() -> Self {
        Self {
            engines: EngineSet::default(),
            clock: Arc::new(SystemClock),
            demo: None,
            admin: AdminBootstrap::FromEnvironment,
            webhook_dns: Arc::new(SystemLookup),
        }
    }
}

impl Services {
    /// The real engines for `config`, the system clock, no simulator.
    pub fn for_config(config: &Config) -> Self {
        Self {
            engines: engines_for(config),
            ..Self::default()
        }
    }
}

/// The engines a server offers: webjs (Chromium) on the configured page.
pub fn engines_for(config: &Config) -> EngineSet {
    EngineSet::default().with(EngineKind::Webjs, Arc::new(webjs_engine(config)))
}

/// The webjs engine for `config` (`serve`, `doctor`).
pub fn webjs_engine(config: &Config) -> WebjsEngine {
    let e = &config.engine;
    WebjsEngine::new(WebjsConfig {
        chromium_path: e.browser_binary().to_path_buf(),
        wa_url: e.wa_url.clone(),
        launch_timeout: e.launch_timeout,
        page_timeout: e.page_timeout,
        extra_args: e.extra_args.clone(),
        lean: e.lean_flags,
        deadman: fleet::deadman(config),
    })
}

/// The tenant `--demo` sessions go to, created on first start.
pub const DEMO_TENANT: &str = "demo";

/// Refuses a demo whose control API is open on an address other than
/// loopback: on `0.0.0.0` anyone on the network could read every QR, pair
/// any tenant's session to their own phone, read what was sent, inject
/// messages and write a ban into the ledger. A token
/// ([`ControlAccess::Token`], `--demo-public`) makes any address fine.
pub fn check_demo_listen(listen: SocketAddr, control: &ControlAccess) -> Result<(), DemoError> {
    match control {
        ControlAccess::Open if !listen.ip().is_loopback() => Err(DemoError::Exposed(listen)),
        ControlAccess::Open | ControlAccess::Token(_) => Ok(()),
    }
}

/// An address a local client can connect to for a server listening on
/// `addr`: loopback for `0.0.0.0` / `[::]` (which Chromium refuses to
/// load pages from), else `addr` itself.
pub fn local_address(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// The URL of the simulator page mounted on a server listening at `addr`.
pub fn demo_wa_url(addr: SocketAddr) -> String {
    format!("http://{}/sim/wa/", local_address(addr))
}

/// `--demo`: the engine loads the simulator mounted on this very server,
/// whatever `engine.wa_url` says (the demo's relaxed limits are defaults
/// instead: `config/demo.toml`, under the file and the environment).
pub fn point_at_simulator(config: &mut Config, addr: SocketAddr) {
    config.engine.wa_url = demo_wa_url(addr);
    config.engine.cloud_base_url = demo_graph_url(addr);
}

/// The Graph API simulator mounted on a server listening at `addr` (the
/// cloud engine's `engine.cloud_base_url` in `--demo`).
pub fn demo_graph_url(addr: SocketAddr) -> String {
    format!("http://{}/sim/graph", local_address(addr))
}

/// The dashboard's address carrying a public demo's control token in its
/// fragment (`#sim_token=`), which the browser never sends to a server
/// nor puts in a `Referer`; the dashboard keeps it for its demo phone.
pub fn demo_dashboard_url(addr: SocketAddr, token: &str) -> String {
    format!("http://{}/#sim_token={token}", local_address(addr))
}

/// Runs the service on `listener` until `shutdown` completes (or the
/// server fails), then shuts it down in order.
pub async fn run(
    config: Config,
    services: Services,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let mut running = Running::start(config, services, listener).await?;
    let failed = tokio::select! {
        _ = shutdown => None,
        served = &mut running.serve => Some(served),
    };
    running.shutdown(failed).await
}

/// A started service: the HTTP server, the supervisor and the background
/// tasks, and what [`Running::shutdown`] needs to stop them in order.
pub struct Running {
    serve: tokio::task::JoinHandle<std::io::Result<()>>,
    stop_tx: tokio::sync::watch::Sender<bool>,
    supervisor: Supervisor,
    supervisor_task: tokio::task::JoinHandle<()>,
    bus: Bus,
    /// Ended in order after the bus is gone ([`centinela_web::Wired::tasks`]).
    tasks: Vec<tokio::task::JoinHandle<()>>,
    store: Store,
    timeout: Duration,
    /// Fleet mode: this node's membership, drained first on shutdown.
    fleet: Option<fleet::Joined>,
    _rotation: Option<AbortOnDrop>,
}

impl Running {
    /// Opens the store, makes the first admin if there is none, starts the
    /// supervisor (which restores the sessions that were running) and the
    /// background tasks, and serves HTTP on `listener`. Refuses, before
    /// all that, a demo whose open control API would listen beyond
    /// loopback ([`check_demo_listen`]).
    pub async fn start(
        config: Config,
        services: Services,
        listener: TcpListener,
    ) -> Result<Running, RunError> {
        // Before anything starts: no demo with an open control API on the
        // network.
        if let Some(demo) = &services.demo {
            check_demo_listen(listener.local_addr()?, &demo.control)?;
        }
        // A certificate that cannot be read stops the start before anything
        // else happens.
        let tls = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => Some(centinela_web::serve::tls_from_pem(cert, key)?),
            _ => None,
        };
        let store = Store::open(&config.storage.data_dir)?;
        let sealing = Arc::new(
            SecretBox::load(
                config.storage.secret_key.as_deref(),
                &config.storage.data_dir,
            )?
            .with_previous(config.storage.previous_secret_key.as_deref())?,
        );
        reseal_secrets(&store, &sealing)?;
        let bus = Bus::default();
        // Subscribed before the supervisor starts: the log stream has its
        // restores too.
        let logs = centinela_web::logstream::subscribe(10_000);
        let joining = match config.fleet.enabled() {
            true => {
                let scheme = if tls.is_some() { "https" } else { "http" };
                let listening = format!("{scheme}://{}", local_address(listener.local_addr()?));
                Some(fleet::connect(&config, &store, &sealing, &listening).await?)
            }
            false => None,
        };
        // In fleet mode messages are the fleet's: every path that reads or
        // writes them is given the fleet's store.
        let fleet_store = joining.as_ref().map(|j| j.store.clone());
        let inbox: Arc<dyn centinela_actors::store::InboxRepo> = match &fleet_store {
            Some(fleet_store) => Arc::new(fleet_store.clone()),
            None => Arc::new(store.clone()),
        };
        let (engines, cloud_hooks) = with_cloud_engine(
            services.engines,
            &config,
            (&store, inbox),
            &sealing,
            &services.clock,
        );
        let accounts: Arc<dyn AccountRepo> = match &joining {
            Some(joining) => Arc::new(joining.accounts.clone()),
            None => Arc::new(store.clone()),
        };
        let secrets =
            prepare_accounts(&config, accounts.as_ref(), &services.admin, &services.clock)?;
        let (supervisor, supervisor_task) = start_supervisor(
            &config,
            &store,
            engines,
            &services.clock,
            &bus,
            joining.as_ref(),
        )
        .await?;
        let fleet_status = joining.as_ref().map(fleet::Joining::status);
        let otps = joining
            .as_ref()
            .map(|j| Arc::new(j.otps.clone()) as Arc<dyn centinela_actors::store::OtpRepo>);
        let settings = joining.as_ref().map(|j| {
            Arc::new(j.settings.clone()) as Arc<dyn centinela_actors::store::TenantSettingsRepo>
        });
        let forward = joining.as_ref().map(|j| {
            j.forwarder(
                config
                    .storage
                    .secret_key
                    .as_deref()
                    .expect("fleet mode requires storage.secret_key (checked by the config)"),
            )
        });
        let (mut fleet, supervisor) = match joining {
            Some(joining) => {
                let (joined, supervisor) =
                    joining.start(&config, supervisor, &bus, sealing.clone());
                (Some(joined), supervisor)
            }
            None => (None, supervisor),
        };
        let injected = centinela_web::Injected {
            clock: services.clock.clone(),
            webhook_dns: services.webhook_dns.clone(),
            secrets: sealing.clone(),
            cloud: cloud_hooks,
            fleet: fleet_status,
            accounts: Some(accounts.clone()),
            settings,
            otps,
            forward,
        };
        let wired = match fleet_store {
            Some(fleet_store) => centinela_web::wire(
                (fleet_store, &store),
                supervisor.clone(),
                &bus,
                injected,
                &secrets,
                logs,
                &config,
            ),
            None => centinela_web::wire(
                (store.clone(), &store),
                supervisor.clone(),
                &bus,
                injected,
                &secrets,
                logs,
                &config,
            ),
        };
        if let Some(joined) = fleet.as_mut() {
            joined.follow(wired.state.auth.clone(), &wired.state.hub);
        }
        let app = centinela_web::router(wired.state);
        let (app, _rotation) = match services.demo {
            Some(demo) => {
                let listen = listener.local_addr()?;
                let (sim_app, rotation) =
                    mount_simulator(demo, listen, accounts.as_ref(), &config, &services.clock)?;
                demo_cloud_session(&supervisor, &store, &sealing).await;
                (app.merge(sim_app), Some(rotation))
            }
            None => (app, None),
        };
        let serve = serve_http(listener, app, tls, &wired.stop, &config)?;
        Ok(Running {
            serve,
            stop_tx: wired.stop,
            supervisor,
            supervisor_task,
            bus,
            tasks: wired.tasks,
            store,
            timeout: config.server.shutdown_timeout,
            fleet,
            _rotation,
        })
    }

    /// Shuts down, in order: new connections stop and, at once, the
    /// supervisor stops (every session closes its browser, which also ends
    /// the simulator page's event streams to this very server); open
    /// WebSockets are told to close; connections still open after a short
    /// drain are cut. Then the background tasks end and the store is
    /// closed, last. `failed` is the server's own end, when it ended first.
    pub async fn shutdown(
        self,
        failed: Option<Result<std::io::Result<()>, tokio::task::JoinError>>,
    ) -> Result<(), RunError> {
        tracing::info!("shutting down: stopping sessions");
        let _ = self.stop_tx.send(true);
        if let Some(fleet) = self.fleet {
            // Tenants go to other nodes first: browsers closed, profiles
            // stored, leases given back.
            tracing::info!("leaving the fleet: handing the tenants over");
            fleet.drain().await;
        }
        let mut serve = self.serve;
        let drain = async {
            match failed {
                Some(served) => served,
                None => match tokio::time::timeout(self.timeout, &mut serve).await {
                    Ok(served) => served,
                    Err(_) => {
                        tracing::warn!("connections still open after the drain; closing them");
                        serve.abort();
                        Ok(Ok(()))
                    }
                },
            }
        };
        // The sessions stop while the connections drain.
        let (_, served) = tokio::join!(self.supervisor.stop(self.timeout), drain);
        let _ = self.supervisor_task.await;
        // The hub writes the last events, then ends with the bus; only then
        // is the store free to close (a restart in the same process may
        // reopen it).
        drop(self.bus);
        for task in self.tasks {
            let _ = tokio::time::timeout(self.timeout, task).await;
        }
        drop(self.store);
        tracing::info!("shutdown complete");
        match served {
            Ok(r) => r.map_err(RunError::Http),
            Err(e) => Err(RunError::Http(std::io::Error::other(e))),
        }
    }
}

/// Readies the accounts for the first start (the node's store, or the
/// fleet's in fleet mode): the JWT secret and the OTP key (each from the
/// config, or made once and kept there), and the first admin if there is
/// no user yet.
fn prepare_accounts(
    config: &Config,
    accounts: &dyn AccountRepo,
    admin: &AdminBootstrap,
    clock: &SharedClock,
) -> Result<centinela_web::Secrets, RunError> {
    let secrets = centinela_web::Secrets {
        jwt: bootstrap::jwt_secret(config, accounts)?,
        otp: bootstrap::otp_secret(config, accounts)?,
    };
    if let Some((user, password)) = bootstrap::ensure_admin(accounts, admin, clock.now())? {
        // Shown once, on the console of whoever started the first run.
        eprintln!("centinela: created the first admin: username {user:?}, password {password:?} (shown once; change it with POST /auth/change-password)");
    }
    Ok(secrets)
}

/// Spawns the supervisor on `store` with `engines`; it restores the
/// sessions that were running. Returns its handle and its task.
async fn start_supervisor(
    config: &Config,
    store: &Store,
    engines: EngineSet,
    clock: &SharedClock,
    bus: &Bus,
    fleet: Option<&fleet::Joining>,
) -> Result<(Supervisor, tokio::task::JoinHandle<()>), RunError> {
    let messages: Arc<dyn centinela_actors::store::MessageStore> = match fleet {
        Some(joining) => Arc::new(joining.store.messages().clone()),
        None => Arc::new(store.clone()),
    };
    let env = SessionEnv::from_config(config, clock.clone(), bus.clone(), Some(messages));
    let mut args = SupervisorArgs::on_store(config.clone(), store.clone(), engines, env);
    if let Some(joining) = fleet {
        args.sessions = Arc::new(joining.sessions.clone());
        args.fleet = Some(joining.seam.clone());
    }
    Supervisor::spawn(args)
        .await
        .map_err(|e| RunError::Supervisor(e.to_string()))
}

/// `--demo`: the simulator's routes, to be mounted under `/sim` of a
/// server listening on `listen`, and its QR rotation (running until
/// dropped); the demo tenant is made on the first start. The routes answer
/// only to this server's own `Host`, the control routes only to the token
/// when there is one ([`centinela_web::sim::guard`]), and they carry the
/// API's security headers and body limit.
fn mount_simulator(
    demo: Demo,
    listen: SocketAddr,
    accounts: &dyn AccountRepo,
    config: &Config,
    clock: &SharedClock,
) -> Result<(axum::Router, AbortOnDrop), RunError> {
    let tenant = centinela_actors::ids::TenantId::new(DEMO_TENANT).expect("a valid literal id");
    if accounts.tenant(&tenant)?.is_none() {
        let record = centinela_actors::store::TenantRecord {
            id: tenant,
            name: "Demo".into(),
            created_at: clock.now(),
        };
        accounts
            .create_tenant(&record)
            .map_err(bootstrap::BootstrapError::from)?;
    }
    tracing::info!(wa_url = %config.engine.wa_url, "demo: the WhatsApp Web simulator is mounted under /sim");
    let sim = demo.simulator;
    let guard = Guard::new(listen, demo.control);
    let graph = GraphSim::new(format!("http://{}/webhooks/meta", local_address(listen)));
    graph.add_number(demo_number());
    tracing::info!(cloud_base_url = %config.engine.cloud_base_url, "demo: the Graph API simulator is mounted under /sim/graph");
    let app = centinela_web::sim::guarded(sim.clone(), guard.clone())
        .merge(centinela_web::sim::graph::guarded(graph, guard));
    let app = centinela_web::security::harden(app, config.server.max_body_bytes);
    Ok((app, AbortOnDrop(sim.spawn_rotation())))
}

/// The demo's cloud number, as the Graph simulator plays it. Fixed values
/// (a simulator's, not secrets), so the demo's cloud session restores
/// after a restart against a fresh simulator.
pub const DEMO_PHONE_NUMBER_ID: &str = "100000000000001";
const DEMO_DISPLAY_NUMBER: &str = "15550001111";
const DEMO_ACCESS_TOKEN: &str = "demo-access-token";
const DEMO_APP_SECRET: &str = "demo-app-secret";
const DEMO_VERIFY_TOKEN: &str = "demo-verify-token";

fn demo_number() -> GraphNumber {
    GraphNumber {
        phone_number_id: DEMO_PHONE_NUMBER_ID.into(),
        display_phone_number: DEMO_DISPLAY_NUMBER.into(),
        access_token: DEMO_ACCESS_TOKEN.into(),
        app_secret: DEMO_APP_SECRET.into(),
    }
}

/// A key rotation: every cloud session's secrets that only the previous
/// key opens are sealed again under the current one, before anything
/// reads them. A secret neither key opens is left as it is and logged
/// (the wrong key was given; its session cannot connect until the right
/// one is).
fn reseal_secrets(store: &Store, secrets: &SecretBox) -> Result<(), RunError> {
    use centinela_actors::store::SessionRepo;
    let mut resealed = 0;
    for mut record in store.list_sessions()? {
        let Some(cloud) = record.cloud.as_mut() else {
            continue;
        };
        let again = match secrets.reseal(&cloud.secrets) {
            Ok(Some(again)) => again,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(tenant = %record.tenant, session = %record.id, error = %e, "a cloud session's secrets do not open with the configured key");
                continue;
            }
        };
        cloud.secrets = again;
        store.put_session(&record)?;
        resealed += 1;
    }
    if resealed > 0 {
        tracing::warn!(resealed, "secret key rotated: cloud sessions' secrets sealed again under the new key; storage.previous_secret_key can go");
    }
    Ok(())
}

/// The engines of `engines`, with the cloud engine added unless there is
/// one; and its webhook end for `/webhooks/meta`.
fn with_cloud_engine(
    engines: EngineSet,
    config: &Config,
    (store, inbox): (&Store, Arc<dyn centinela_actors::store::InboxRepo>),
    secrets: &Arc<SecretBox>,
    clock: &SharedClock,
) -> (EngineSet, Option<Arc<dyn CloudHooks>>) {
    if engines.get(EngineKind::Cloud).is_some() {
        return (engines, None);
    }
    let e = &config.engine;
    let cloud = CloudEngine::new(
        CloudConfig {
            base_url: e.cloud_base_url.clone(),
            api_version: e.cloud_api_version.clone(),
            max_per_second: e.cloud_max_per_second,
            pair_interval: e.cloud_pair_interval,
        },
        secrets.clone(),
        clock.clone(),
    )
    .keeping(centinela_engine_cloud::hooks::Keeping {
        inbox,
        known: {
            let store = store.clone();
            Arc::new(move |pnid: &str| {
                use centinela_actors::store::SessionRepo;
                store.list_sessions().is_ok_and(|all| {
                    all.iter()
                        .any(|s| s.cloud.as_ref().is_some_and(|c| c.phone_number_id == pnid))
                })
            })
        },
        clock: clock.clone(),
    });
    let hooks: Arc<dyn CloudHooks> = cloud.hooks();
    (
        engines.with(EngineKind::Cloud, Arc::new(cloud)),
        Some(hooks),
    )
}

/// `--demo`: a cloud session for the demo tenant on the Graph simulator's
/// number, made on the first start and connected (a restart restores it).
async fn demo_cloud_session(supervisor: &Supervisor, store: &Store, secrets: &SecretBox) {
    use centinela_actors::store::SessionRepo;
    let tenant = centinela_actors::ids::TenantId::new(DEMO_TENANT).expect("a valid literal id");
    let exists = store.list_sessions().map(|all| {
        all.iter()
            .any(|s| s.tenant == tenant && s.engine == EngineKind::Cloud)
    });
    if !matches!(exists, Ok(false)) {
        return;
    }
    let secrets = CloudSecrets {
        access_token: Secret::new(DEMO_ACCESS_TOKEN),
        app_secret: Secret::new(DEMO_APP_SECRET),
        verify_token: Secret::new(DEMO_VERIFY_TOKEN),
    }
    .seal(secrets);
    let new = centinela_actors::supervisor::NewSession {
        tenant,
        name: "Cloud API (simulated)".into(),
        engine: EngineKind::Cloud,
        user_agent: None,
        proxy: None,
        cloud: Some(CloudAccount {
            phone_number_id: DEMO_PHONE_NUMBER_ID.into(),
            waba_id: None,
            api_version: None,
            secrets,
        }),
    };
    let made = match supervisor.create(new).await {
        Ok(view) => supervisor.connect(view.id).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match made {
        Ok(()) => tracing::info!("demo: a cloud session on the Graph simulator is connecting"),
        Err(e) => tracing::warn!(error = %e, "demo: could not make the cloud session"),
    }
}

/// Serves `app` on `listener` in a task until `stop` turns `true`, then
/// drains (graceful shutdown); the task's result is the server's.
fn serve_http(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<centinela_web::serve::TlsAcceptor>,
    stop: &tokio::sync::watch::Sender<bool>,
    config: &Config,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, RunError> {
    tracing::info!(
        listen = %listener.local_addr()?,
        tls = tls.is_some(),
        data_dir = %config.storage.data_dir.display(),
        "centinela serving"
    );
    let signal = {
        let mut rx = stop.subscribe();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let limits = Limits {
        header_timeout: config.server.header_timeout,
        max_connections: config.server.max_connections,
    };
    Ok(tokio::spawn(centinela_web::serve::serve(
        listener, app, tls, limits, signal,
    )))
}

/// Aborts a background task when dropped (the simulator's QR rotation).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the WhatsApp Web simulator alone (`centinela sim`). With `tls` the
/// listener speaks HTTPS under a fresh self-signed certificate and the page
/// is also at `/`, so a browser that maps web.whatsapp.com to this address
/// loads it as WhatsApp Web.
pub async fn run_simulator(
    options: SimOptions,
    tls: bool,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    run_simulators(options, tls, None, listener, shutdown).await
}

/// [`run_simulator`], with the Graph API simulator under `/sim/graph/` too
/// when `graph_webhook` names where its signed webhooks go (a service's
/// `/webhooks/meta`); it plays the demo's number from the start.
pub async fn run_simulators(
    options: SimOptions,
    tls: bool,
    graph_webhook: Option<String>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let sim = Simulator::with_options(options);
    let _rotation = AbortOnDrop(sim.spawn_rotation());
    let addr = listener.local_addr()?;
    let mut app = centinela_web::sim::router_with(sim, tls);
    if let Some(url) = graph_webhook {
        tracing::info!(webhooks_to = %url, "Graph API simulator at /sim/graph/");
        let graph = GraphSim::new(url);
        graph.add_number(demo_number());
        app = app.merge(centinela_web::sim::graph::router(graph));
    }
    let acceptor = match tls {
        true => Some(centinela_web::sim::tls::self_signed()?),
        false => None,
    };
    match tls {
        true => tracing::info!(listen = %addr, "simulator serving HTTPS at / and /sim/wa/"),
        false => tracing::info!(listen = %addr, "simulator serving at /sim/wa/"),
    }
    centinela_web::serve::serve(listener, app, acceptor, Limits::default(), shutdown)
        .await
        .map_err(RunError::Http)
}
