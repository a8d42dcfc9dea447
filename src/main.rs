//! The `centinela` command: parses the CLI, loads the config, starts tracing,
//! and calls [`centinela::run`]. Nothing else lives here.

use centinela::config::{Config, LogFormat};
use centinela::Services;
use centinela_web::sim::Simulator;
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
        /// Demo mode: WhatsApp Web is the bundled simulator.
        #[arg(long)]
        demo: bool,
    },
    /// Print the effective configuration, secrets masked.
    Config,
    /// Run only the WhatsApp Web simulator (page at /sim/wa/, control API under /sim).
    Sim {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:3013")]
        listen: SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::load(cli.config.as_deref()) {
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
        Command::Config => {
            print!("{}", config.to_masked_toml());
            ExitCode::SUCCESS
        }
        Command::Serve { listen, data, demo } => {
            if let Some(addr) = listen {
                config.server.listen = addr;
            }
            if let Some(dir) = data {
                config.storage.data_dir = dir;
            }
            serve(config, demo)
        }
        Command::Sim { listen } => simulate(config, listen),
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

fn simulate(config: Config, listen: SocketAddr) -> ExitCode {
    init_tracing(&config);
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
        match centinela::run_simulator(config.engine.sim_qr_rotation, listener, shutdown_signal())
            .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("centinela: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

fn serve(mut config: Config, demo: bool) -> ExitCode {
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
        let mut services = Services::for_config(&config);
        if demo {
            if let Ok(addr) = listener.local_addr() {
                config.engine.wa_url = centinela::demo_wa_url(addr);
                services = Services::for_config(&config);
            }
            services.simulator = Some(Simulator::new(config.engine.sim_qr_rotation));
        }
        match centinela::run(config, services, listener, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("centinela: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}
