//! The `tokend` binary: parses the command line, sets up logging, loads the
//! configuration and runs the daemon. Everything else lives in the library.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokend::Config;

/// Exit status for a configuration error (sysexits' EX_CONFIG), so that a unit restart
/// loop and a shell script can tell "fix the config" from "something broke".
const EXIT_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "tokend",
    version,
    about = "Keeps the OAuth tokens of the programs on this machine: stores them, refreshes them, serves them over a Unix socket",
    after_help = "Configuration is read from --config, else $TOKEND_CONFIG, else /etc/tokend/tokend.toml if it exists, \
else built-in defaults; TOKEND_<SECTION>__<KEY> environment variables override single keys. \
Every key is documented in config/tokend.toml.\n\n\
Exit status: 0 success, 1 failure, 2 usage error, 78 configuration error."
)]
struct Cli {
    /// Configuration file (TOML)
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Unix socket path; overrides the config and $TOKEND_SOCKET
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground until SIGTERM or SIGINT
    Serve {
        /// SQLite database file; overrides the config
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: HashMap<String, String> = std::env::vars().collect();
    let mut config = match Config::load(cli.config.as_deref(), &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tokend: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(socket) = cli.socket {
        config.socket.path = socket;
    }
    let result = match cli.command {
        Command::Serve { db } => {
            if let Some(db) = db {
                config.store.path = db;
            }
            init_logging(&config.log.level, &env);
            serve(config)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("tokend: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    actix_rt::System::new().block_on(async move {
        // Registered before the socket exists, so a SIGTERM sent as soon as the daemon is
        // ready is never met by the default action (which would skip the cleanup).
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot register the SIGTERM handler")?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .context("cannot register the SIGINT handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        };
        tokend::run(config, shutdown)
            .await
            .context("tokend stopped on an error")
    })
}

/// Human-readable logs on stderr; under journald (`JOURNAL_STREAM` set) without our own
/// timestamps, since the journal adds its own. `RUST_LOG` overrides the configured level.
fn init_logging(level: &str, env: &HashMap<String, String>) {
    let filter = env
        .get("RUST_LOG")
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    if env.contains_key("JOURNAL_STREAM") {
        builder.without_time().init();
    } else {
        builder.init();
    }
}
