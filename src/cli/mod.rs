//! The command line: every command, its flags and their help, and the dispatch. `serve`
//! runs the daemon (`serve.rs`); every other command is a client of a running daemon,
//! over the same socket the daemon serves (`status.rs`, `tokens.rs`, `add.rs`), except
//! `config check` (`config_check.rs`), which only reads the configuration.
//!
//! Output goes to stdout as text for people, or with `--json` as one JSON document for
//! scripts; errors go to stderr, and the exit status says which kind (`exit_code`).

mod add;
mod config_check;
mod logging;
mod migrate;
pub mod output;
mod serve;
mod status;
mod tokens;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::builder::{PathBufValueParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use tokend::client::{Client, ClientError};
use tokend::config::{self, ConfigError};
use tokend::migrate::{ExportError, ImportError};
use tokend::notify::ActivationError;
use tokend::Config;

/// Exit statuses, documented in `--help` and the README.
pub const EXIT_FAILURE: u8 = 1;
/// The daemon could not be reached: not running, no permission, connection lost.
pub const EXIT_UNREACHABLE: u8 = 3;
/// A configuration error (sysexits' EX_CONFIG), so that a unit restart loop and a script
/// can tell "fix the config" from "something broke" (`RestartPreventExitStatus=78`).
pub const EXIT_CONFIG: u8 = 78;

/// Where the system unit's socket is, tried last by clients (see `socket_path`).
const SYSTEM_SOCKET: &str = "/run/tokend/tokend.sock";

#[derive(Parser)]
#[command(
    name = "tokend",
    version,
    about = "Keeps the OAuth tokens of the programs on this machine: stores them, refreshes them, serves them over a Unix socket",
    after_help = "\
Configuration is read from --config, else $TOKEND_CONFIG, else /etc/tokend/tokend.toml if it exists, \
else built-in defaults; TOKEND_<SECTION>__<KEY> environment variables override single keys. \
Every key is documented in config/tokend.toml.

Commands other than `serve` talk to a running daemon over its socket: --socket, else \
$TOKEND_SOCKET, else socket.path from the configuration, else the default path (as the daemon \
resolves it), else /run/tokend/tokend.sock (the system unit's) if that exists.

Exit status: 0 success; 1 failure (including an error answered by the daemon); 2 usage error; \
3 daemon not reachable (not running, no permission, connection lost); 78 configuration error."
)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Configuration file (TOML)
    #[arg(long, global = true, value_name = "FILE", value_parser = PathBufValueParser::new().map(absolute))]
    config: Option<PathBuf>,
    /// Unix socket path; overrides the config and $TOKEND_SOCKET
    #[arg(long, global = true, value_name = "PATH", value_parser = PathBufValueParser::new().map(absolute))]
    socket: Option<PathBuf>,
    /// Print the result as JSON, for scripts (not for `serve`: its logs follow log.format)
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground: SIGTERM or SIGINT stops it, SIGHUP reloads the
    /// configuration file
    Serve {
        /// SQLite database file; overrides the config
        #[arg(long, value_name = "PATH", value_parser = PathBufValueParser::new().map(absolute))]
        db: Option<PathBuf>,
    },
    /// Show the daemon's version, token counts and refresh schedule
    Status,
    /// Commands on all tokens
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Commands on one token
    #[command(subcommand)]
    Token(TokenCommand),
    /// Run the session-timeout policies now (`[cleanup]` in the daemon's config)
    Cleanup {
        /// Only report what would be removed (without it, the daemon's `cleanup.dry_run`
        /// decides)
        #[arg(long)]
        dry_run: bool,
    },
    /// Commands on the configuration
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Import tokens from the Zoho SDK's FileStore CSV, the Kaizen sample's SQLite file or
    /// a MySQL table export; all or nothing for malformed input, and importing twice
    /// changes nothing
    Import(migrate::ImportArgs),
    /// Export every token to the Zoho SDK's FileStore CSV, which the SDK's own FileStore reads
    Export(migrate::ExportArgs),
}

#[derive(Subcommand)]
enum TokensCommand {
    /// List stored tokens as a table; secrets are masked
    List,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Show one token's fields; secrets are masked unless --reveal
    Show {
        /// The token's id (see `tokend tokens list`)
        id: String,
        /// Print the secrets in full
        #[arg(long)]
        reveal: bool,
    },
    /// Delete one token
    Delete {
        /// The token's id
        id: String,
    },
    /// Refresh one token's access token now (within the rate budget)
    Refresh {
        /// The token's id
        id: String,
    },
    /// Exchange a Zoho grant code for tokens and store them. The grant code is read from
    /// standard input (or a prompt that does not echo), never from the command line
    Add(add::AddArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file and print the effective configuration (secrets
    /// redacted). Without FILE, checks what `tokend serve` would read
    Check {
        /// The file to check
        file: Option<PathBuf>,
    },
}

/// Runs the parsed command; returns what to print on stdout.
pub fn run(cli: Cli, env: HashMap<String, String>) -> anyhow::Result<Option<String>> {
    let g = &cli.global;
    let json = g.json;
    let out = match cli.command {
        Command::Serve { db } => {
            serve::serve(g.config.clone(), g.socket.clone(), db, env)?;
            return Ok(None);
        }
        Command::Config(ConfigCommand::Check { file }) => {
            let file = file.as_deref().or(g.config.as_deref());
            config_check::check(file, g.socket.as_deref(), &env, json)
        }
        Command::Status => status::status(&mut daemon(g, &env)?, json),
        Command::Tokens(TokensCommand::List) => tokens::list(&mut daemon(g, &env)?, json),
        Command::Token(TokenCommand::Show { id, reveal }) => {
            tokens::show(&mut daemon(g, &env)?, &id, reveal, json)
        }
        Command::Token(TokenCommand::Delete { id }) => {
            tokens::delete(&mut daemon(g, &env)?, &id, json)
        }
        Command::Token(TokenCommand::Refresh { id }) => {
            tokens::refresh(&mut daemon(g, &env)?, &id, json)
        }
        Command::Token(TokenCommand::Add(args)) => {
            let (config, path) = target(g, &env)?;
            add::add(&path, &config, args, json)
        }
        Command::Cleanup { dry_run } => status::cleanup(&mut daemon(g, &env)?, dry_run, json),
        Command::Import(args) => migrate::import(&target(g, &env)?.1, args, json),
        Command::Export(args) => migrate::export(&target(g, &env)?.1, args, json),
    }?;
    Ok(Some(out))
}

/// The configuration a client command runs with, and the daemon's socket.
fn target(g: &Global, env: &HashMap<String, String>) -> anyhow::Result<(Config, PathBuf)> {
    let config = load(g.config.as_deref(), g.socket.as_deref(), env)?;
    let path = socket_path(&config, g.socket.is_some(), env);
    Ok((config, path))
}

/// A path flag made absolute against the working directory, as a person means it: the
/// configuration file refuses relative paths, whose meaning would change with the
/// directory a service starts in. (Only a missing working directory makes it fail; the
/// path is then left as given.)
fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

/// A connection to the daemon.
fn daemon(g: &Global, env: &HashMap<String, String>) -> anyhow::Result<Client> {
    Ok(Client::connect(&target(g, env)?.1)?)
}

/// The configuration as the daemon would load it, with `--socket` applied.
fn load(
    file: Option<&Path>,
    socket: Option<&Path>,
    env: &HashMap<String, String>,
) -> Result<Config, ConfigError> {
    let mut config = Config::load(file, env)?;
    if let Some(socket) = socket {
        config.socket.path = socket.to_owned();
    }
    Ok(config)
}

/// The daemon's socket: the configured one; but when nothing named one (no flag,
/// variable or key) and the default path has no socket, the system unit's if it exists,
/// so that `sudo tokend status` finds the system daemon.
fn socket_path(config: &Config, flag: bool, env: &HashMap<String, String>) -> PathBuf {
    let defaulted = !flag && config.socket.path == config::default_socket_path(env);
    let system = Path::new(SYSTEM_SOCKET);
    if defaulted && !config.socket.path.exists() && system.exists() {
        return system.to_owned();
    }
    config.socket.path.clone()
}

/// The exit status for an error: 78 for configuration, 3 when the daemon could not be
/// reached, 1 otherwise. (Usage errors exit 2 from clap before anything runs.)
pub fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        let no_such_group = matches!(
            cause.downcast_ref::<tokend::Error>(),
            Some(tokend::Error::NoSuchGroup(_))
        );
        if cause.is::<ConfigError>() || cause.is::<ActivationError>() || no_such_group {
            return EXIT_CONFIG;
        }
        // Import and export carry the client's error inside, not as a link of the chain.
        let client = cause
            .downcast_ref::<ClientError>()
            .or_else(|| match cause.downcast_ref::<ImportError>()? {
                ImportError::Client(c) | ImportError::Save { cause: c, .. } => Some(c),
                ImportError::Rejected(_) => None,
            })
            .or_else(|| match cause.downcast_ref::<ExportError>()? {
                ExportError::Client(c) => Some(c),
                _ => None,
            });
        if let Some(c) = client {
            return if c.is_unreachable() {
                EXIT_UNREACHABLE
            } else {
                EXIT_FAILURE
            };
        }
    }
    EXIT_FAILURE
}

/// `result`, or the daemon's error with what to do about it, when there is something
/// to say. (A daemon's error exits 1, the default, so its type need not survive.)
fn answer(result: Result<serde_json::Value, ClientError>) -> anyhow::Result<serde_json::Value> {
    result.map_err(|e| {
        let ClientError::Daemon { code, .. } = &e else {
            return anyhow::Error::new(e);
        };
        let advice = match code.as_str() {
            "not_found" => "see `tokend tokens list` for the ids",
            "needs_reauth" => "have the user authorise again, then run `tokend token add`",
            "throttled" => "retry after that time; the stored access token works until it expires",
            "refresh_failed" => "tokend retries by itself; its log says more",
            "shutting_down" => "the daemon is stopping; retry once it is back",
            _ => return anyhow::Error::new(e),
        };
        anyhow::anyhow!("{e}; {advice}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_lost_mid_import_or_export_exits_3_and_a_refused_save_1() {
        let lost = || ClientError::Io {
            path: "/run/tokend/tokend.sock".into(),
            source: std::io::ErrorKind::BrokenPipe.into(),
        };
        let refused = ClientError::Daemon {
            code: "too_large".into(),
            message: "request line longer than 1024 bytes".into(),
            retry_at: None,
        };
        let save = |cause| ImportError::Save {
            at: None,
            cause,
            report: Box::default(),
            to_save: 3,
        };
        for (e, code) in [
            (
                anyhow::Error::new(ImportError::Client(lost())),
                EXIT_UNREACHABLE,
            ),
            (anyhow::Error::new(save(lost())), EXIT_UNREACHABLE),
            (
                anyhow::Error::new(ExportError::Client(lost())),
                EXIT_UNREACHABLE,
            ),
            (anyhow::Error::new(save(refused)), EXIT_FAILURE),
        ] {
            assert_eq!(exit_code(&e), code, "{e}");
        }
    }
}
