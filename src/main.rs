//! The `centinela` command: parses the CLI, loads the config, starts tracing,
//! and calls [`centinela::run`]. Nothing else lives here.

use centinela::config::{Config, LogFormat, Profile};
use centinela::{Demo, Services};
use centinela_web::sim::{ControlAccess, SimOptions, Simulator};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "centinela",
    version,
    about = "Multi-tenant WhatsApp session supervisor"
)]
struct Cli {
    /// A TOML file overriding config/default.toml.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log output: pretty or json (overrides log.format).
    #[arg(long, global = true, value_parser = ["pretty", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve {
        /// Address to listen on (overrides server.listen).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data directory (overrides storage.data_dir).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Demo mode: WhatsApp Web is the bundled simulator (whose control
        /// API pairs, reads and bans any session), with config/demo.toml's
        /// relaxed limits under the file and the environment. Loopback only,
        /// unless --demo-public.
        #[arg(long)]
        demo: bool,
        /// Allow --demo on an address other than loopback: the simulator's
        /// control API then wants a token, printed at start.
        #[arg(long, requires = "demo")]
        demo_public: bool,
    },
    /// Print the effective configuration, secrets masked.
    Config {
        /// As `serve --demo` would run: config/demo.toml's values under the
        /// file and the environment, the engine on the simulator.
        #[arg(long)]
        demo: bool,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Fleet mode's chores.
    Fleet {
        #[command(subcommand)]
        action: FleetAction,
    },
    /// Check that WhatsApp Web still offers every module and function the
    /// engine uses; exits 1 naming what is missing.
    Doctor {
        /// The page to check (default: engine.wa_url).
        #[arg(long)]
        wa_url: Option<String>,
    },
    /// Run only the WhatsApp Web simulator (page at /sim/wa/, control API under /sim).
    Sim {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:3013")]
        listen: SocketAddr,
        /// Serve HTTPS (self-signed certificate made at start) and the page
        /// at `/` too, so a browser mapping web.whatsapp.com here loads it.
        #[arg(long)]
        tls: bool,
        /// QR refs shown without a scan before the page goes UNPAIRED_IDLE.
        #[arg(long, default_value_t = 5)]
        idle_after: u32,
        /// Message keys without `_serialized`, as newer WhatsApp Web builds
        /// (only `toString()` gives the serialized key).
        #[arg(long)]
        no_serialized_keys: bool,
        /// A module the page never registers (repeatable), to model a
        /// WhatsApp Web update that renamed it.
        #[arg(long = "without-module", value_name = "MODULE")]
        without_modules: Vec<String>,
        /// Also serve the Graph API (Cloud API) simulator under
        /// /sim/graph/, delivering its signed webhooks to this URL (a
        /// service's /webhooks/meta).
        #[arg(long, value_name = "URL")]
        graph_webhook: Option<String>,
    },
}

#[derive(Subcommand)]
enum FleetAction {
    /// Bring this node's own store into the fleet ([fleet] database_url),
    /// once, with the node stopped, before it first serves in the fleet:
    /// tenants, users, API keys, settings, session records, webhooks,
    /// auto-replies and paired profiles the fleet does not have yet.
    Import {
        /// Data directory (overrides storage.data_dir).
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Add a user; the password is read from standard input (one line).
    Add {
        #[arg(long)]
        username: String,
        /// An administrator (every tenant).
        #[arg(long, conflicts_with = "tenant")]
        admin: bool,
        /// A user of this tenant (created if new).
        #[arg(long, required_unless_present = "admin")]
        tenant: Option<String>,
        /// Data directory (overrides storage.data_dir).
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let profile = match cli.command {
        Command::Serve { demo: true, .. } | Command::Config { demo: true } => Profile::Demo,
        _ => Profile::Standard,
    };
    let mut config = match Config::load(cli.config.as_deref(), profile) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("centinela: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(f) = &cli.log_format {
        config.log.format = if f == "json" {
            LogFormat::Json
        } else {
            LogFormat::Pretty
        };
    }
    match cli.command {
        Command::Config { demo } => {
            if demo {
                let listen = config.server.listen;
                centinela::point_at_simulator(&mut config, listen);
            }
            print!("{}", config.to_masked_toml());
            ExitCode::SUCCESS
        }
        Command::Serve {
            listen,
            data,
            demo,
            demo_public,
        } => {
            if let Some(addr) = listen {
                config.server.listen = addr;
            }
            if let Some(dir) = data {
                config.storage.data_dir = dir;
            }
            let control = demo.then(|| {
                if demo_public {
                    ControlAccess::Token(centinela_web::auth::random_token(32))
                } else {
                    ControlAccess::Open
                }
            });
            if let Some(control) = &control {
                // Refused before anything listens or opens the data dir.
                if let Err(e) = centinela::check_demo_listen(config.server.listen, control) {
                    eprintln!("centinela: {e}");
                    return ExitCode::from(2);
                }
            }
            serve(config, control)
        }
        Command::Doctor { wa_url } => doctor(&config, wa_url),
        Command::Sim {
            listen,
            tls,
            idle_after,
            no_serialized_keys,
            without_modules,
            graph_webhook,
        } => {
            let options = SimOptions {
                qr_rotation: config.engine.sim_qr_rotation,
                idle_after,
                serialized_keys: !no_serialized_keys,
                without_modules,
            };
            simulate(&config, options, tls, graph_webhook, listen)
        }
        Command::Fleet {
            action: FleetAction::Import { data },
        } => {
            if let Some(dir) = data {
                config.storage.data_dir = dir;
            }
            fleet_import(&config)
        }
        Command::User {
            action:
                UserAction::Add {
                    username,
                    admin,
                    tenant,
                    data,
                },
        } => {
            if let Some(dir) = data {
                config.storage.data_dir = dir;
            }
            add_user(&config, &username, admin, tenant.as_deref())
        }
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Runtime::new() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("centinela: cannot start the runtime: {e}");
            None
        }
    }
}

fn simulate(
    config: &Config,
    options: SimOptions,
    tls: bool,
    graph_webhook: Option<String>,
    listen: SocketAddr,
) -> ExitCode {
    init_tracing(config);
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("centinela: cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let run =
            centinela::run_simulators(options, tls, graph_webhook, listener, shutdown_signal());
        match run.await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("centinela: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn doctor(config: &Config, wa_url: Option<String>) -> ExitCode {
    init_tracing(config);
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    let url = wa_url.unwrap_or_else(|| config.engine.wa_url.clone());
    let engine = centinela::webjs_engine(config);
    runtime.block_on(async move {
        match engine
            .doctor(&url, std::time::Duration::from_secs(10))
            .await
        {
            Ok(report) => {
                print!("{}", report.table());
                if report.ok() {
                    println!("ok: every module and function the engine uses is there");
                    ExitCode::SUCCESS
                } else {
                    println!("FAILED: the engine cannot run on this page as it is");
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("centinela: doctor could not check {url}: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn fleet_import(config: &Config) -> ExitCode {
    if !config.fleet.enabled() {
        eprintln!("centinela: fleet import needs [fleet] database_url (the fleet to import into)");
        return ExitCode::from(2);
    }
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    match rt.block_on(centinela::fleet::import(config)) {
        Ok(done) => {
            println!(
                "imported into the fleet: {} tenants, {} users, {} API keys, {} settings, {} sessions, {} tenants' webhook or auto-replies, {} profiles, {} messages, {} incoming messages, {} contacts, {} hours of activity, {} campaigns, {} webhook deliveries",
                done.tenants,
                done.users,
                done.api_keys,
                done.settings,
                done.sessions,
                done.tenant_settings,
                done.profiles,
                done.messages,
                done.incoming,
                done.contacts,
                done.activity_hours,
                done.campaigns,
                done.deliveries
            );
            for tenant in &done.skipped {
                println!("skipped tenant {tenant}: another node hosts it");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("centinela: {e}");
            ExitCode::FAILURE
        }
    }
}

fn add_user(config: &Config, username: &str, admin: bool, tenant: Option<&str>) -> ExitCode {
    use centinela_actors::ids::TenantId;
    use centinela_actors::store::{Role, Store};
    let tenant = match tenant.map(TenantId::new).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("centinela: {e}");
            return ExitCode::from(2);
        }
    };
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprint!("Password for {username} (visible; or pipe it in): ");
    }
    let mut password = String::new();
    if std::io::stdin().read_line(&mut password).is_err() {
        eprintln!("centinela: cannot read the password from standard input");
        return ExitCode::from(2);
    }
    let password = password.trim_end_matches(['\r', '\n']);
    let role = if admin { Role::Admin } else { Role::Tenant };
    let now = centinela_actors::clock::Clock::now(&centinela_actors::clock::SystemClock);
    let add = |accounts: &dyn centinela_actors::store::AccountRepo| {
        centinela::bootstrap::add_user(accounts, username, password, role, tenant.as_ref(), now)
            .map_err(|e| e.to_string())
    };
    let added = match config.fleet.enabled() {
        false => Store::open(&config.storage.data_dir)
            .map_err(|e| e.to_string())
            .and_then(|store| add(&store)),
        // Fleet mode: the user (and a new tenant) goes to the fleet's
        // accounts, for every node; the node's data dir is not opened (its
        // server may be running).
        true => match runtime() {
            Some(rt) => rt.block_on(async {
                let fleet = centinela_fleet::Fleet::connect(&config.fleet.database_url, 1)
                    .await
                    .map_err(|e| e.to_string())?;
                add(&centinela_fleet::PgAccounts::new(&fleet))
            }),
            None => return ExitCode::FAILURE,
        },
    };
    match added {
        Ok(user) => {
            println!("created user {} ({})", user.username, user.id);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("centinela: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(config: &Config) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.filter));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match config.log.format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Pretty => fmt.boxed(),
    };
    // The supervisor log stream sees the actors' events whatever the console filter.
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(centinela_web::logstream::layer())
        .try_init();
}

fn serve(mut config: Config, demo: Option<ControlAccess>) -> ExitCode {
    init_tracing(&config);
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(config.server.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("centinela: cannot listen on {}: {e}", config.server.listen);
                return ExitCode::FAILURE;
            }
        };
        let demo = match (demo, listener.local_addr()) {
            (Some(control), Ok(addr)) => {
                centinela::point_at_simulator(&mut config, addr);
                announce_token(&control, addr);
                Some(Demo {
                    simulator: Simulator::new(config.engine.sim_qr_rotation),
                    control,
                })
            }
            (Some(_), Err(e)) => {
                eprintln!("centinela: cannot read the listen address: {e}");
                return ExitCode::FAILURE;
            }
            (None, _) => None,
        };
        let services = Services {
            demo,
            ..Services::for_config(&config)
        };
        match centinela::run(config, services, listener, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("centinela: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// A public demo's control token, on the console of whoever started it
/// (like the first admin's password): for scripts, and in the dashboard
/// address that hands it to the demo phone.
fn announce_token(control: &ControlAccess, addr: SocketAddr) {
    let ControlAccess::Token(token) = control else {
        return;
    };
    eprintln!("centinela: public demo: the simulator's control API (/sim/devices, /sim/scan, ...) wants the header X-Sim-Token: {token}");
    let url = centinela::demo_dashboard_url(addr, token);
    let other = if addr.ip().is_unspecified() {
        " (from another machine, put this one's address in place of the loopback one)"
    } else {
        ""
    };
    eprintln!("centinela: the dashboard's demo phone gets it when you open {url}{other}");
}

/// Completes on Ctrl-C or SIGTERM. The handlers are installed now, when
/// this is called (before the server announces it listens), so a signal
/// that arrives early is never the default "terminate at once".
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    async move {
        let wait = |s: &mut Option<tokio::signal::unix::Signal>| {
            let s = s.take();
            async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
        };
        tokio::select! {
            _ = wait(&mut term) => {},
            _ = wait(&mut int) => {},
        }
        tracing::info!("shutdown signal received");
    }
}
