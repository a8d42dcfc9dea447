//! The `centinela` command: parses the CLI, loads the config, starts tracing,
//! and calls [`centinela::run`]. Nothing else lives here.

use centinela::config::{Config, LogFormat};
use centinela::Services;
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
    }
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

fn serve(config: Config, demo: bool) -> ExitCode {
    init_tracing(&config);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("centinela: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        if demo {
            tracing::warn!("--demo: the WhatsApp Web simulator is not part of this build yet; sessions cannot connect");
        }
        let listener = match tokio::net::TcpListener::bind(config.server.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("centinela: cannot listen on {}: {e}", config.server.listen);
                return ExitCode::FAILURE;
            }
        };
        match centinela::run(config, Services::default(), listener, shutdown_signal()).await {
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
