//! Configuration in two layers: `Raw` is what the file and the environment say, with
//! unknown keys rejected; `Config` is what the daemon runs on, validated, with every
//! default filled in. `config/tokend.toml` documents every key; a test checks that its
//! documented defaults are the `DEFAULT_*` constants here.
//!
//! Sources, later ones winning: the built-in defaults; the file (`--config`, else
//! `$TOKEND_CONFIG`, else `/etc/tokend/tokend.toml` if it exists); environment variables
//! `TOKEND_<SECTION>__<KEY>`; `TOKEND_SOCKET`; command-line flags.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::oauth::Endpoints;
use crate::policy::Policies;

pub const DEFAULT_CONFIG_FILE: &str = "/etc/tokend/tokend.toml";
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024;
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_LOG_LEVEL: &str = "info";
pub const DEFAULT_LOG_FORMAT: LogFormat = LogFormat::Auto;
pub const DEFAULT_LEAD_FRACTION: f64 = 0.1;
pub const DEFAULT_MIN_LEAD: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_LEAD: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_JITTER: f64 = 0.25;
pub const DEFAULT_MIN_VALIDITY: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_IN_FLIGHT: usize = 8;
/// Zoho's limit: 10 access tokens per refresh token per 10 minutes (ZOHO.md).
pub const DEFAULT_BUDGET: u32 = 10;
pub const DEFAULT_BUDGET_WINDOW: Duration = Duration::from_secs(10 * 60);
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_secs(10);
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(10 * 60);
/// Zoho's block outlasts its 10-minute window: field reports say 15 to 30 minutes.
pub const DEFAULT_THROTTLE_WAIT: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_CLEANUP_SCHEDULE: &str = "0 */5 * * * *";
pub const DEFAULT_IDLE_TIMEOUT: Option<Duration> = Some(Duration::from_secs(90 * 86_400));
pub const DEFAULT_MAX_SESSION_AGE: Option<Duration> = None;
pub const DEFAULT_NEEDS_REAUTH_GRACE: Option<Duration> = Some(Duration::from_secs(30 * 86_400));
pub const DEFAULT_EXPIRED_UNREFRESHABLE_GRACE: Option<Duration> =
    Some(Duration::from_secs(7 * 86_400));
pub const DEFAULT_LAST_USED_FLUSH: Duration = Duration::from_secs(60);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed, or a key is unknown or ill-typed; the
    /// message names the file and the key.
    #[error("configuration from {from}: {error}")]
    Load {
        /// The file, the `TOKEND_*` variables, or both.
        from: String,
        /// The `config` crate's message: it names the key.
        error: String,
    },
    /// A value parsed but is out of range.
    #[error("configuration key `{key}`: {problem}")]
    Invalid { key: String, problem: String },
}

/// The validated configuration the daemon runs on.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub socket: SocketConfig,
    pub store: StoreConfig,
    pub refresh: RefreshConfig,
    pub cleanup: CleanupConfig,
    pub log: LogConfig,
    /// The file the configuration came from, if any (for the log and for reloads).
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketConfig {
    pub path: PathBuf,
    /// Group allowed to connect (socket 0660, directory 0750); `None`: the owner only.
    pub group: Option<String>,
    pub max_request_bytes: usize,
    pub max_connections: usize,
    /// Connections one user (the peer's uid) may have open at once.
    pub max_connections_per_user: usize,
    /// How long shutdown waits for in-flight requests before giving up on them.
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub busy_timeout: Duration,
}

/// How the refresher schedules, paces and retries. See `[refresh]` in config/tokend.toml.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshConfig {
    pub enabled: bool,
    pub endpoints: Endpoints,
    pub lead_fraction: f64,
    pub min_lead: Duration,
    pub max_lead: Duration,
    pub jitter: f64,
    pub min_validity: Duration,
    pub max_in_flight: usize,
    pub budget: u32,
    pub budget_window: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub throttle_wait: Duration,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

/// Session-timeout policies and when they run. See `[cleanup]` in config/tokend.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupConfig {
    pub enabled: bool,
    /// A cron expression with seconds (`sec min hour day month weekday`).
    pub schedule: String,
    /// Scheduled runs only report what they would remove.
    pub dry_run: bool,
    pub action: CleanupAction,
    pub policies: Policies,
    /// How stale the on-disk last-use time may get: uses are kept in memory and written
    /// in one batch this often, so a lookup stays a read.
    pub last_used_flush: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupAction {
    Delete,
    /// Revoke the refresh token at the provider first; a failed revoke keeps the token.
    RevokeAndDelete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A tracing filter (`info`, `tokend=debug`); `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
}

/// How log lines look on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Text; without timestamps under journald (`JOURNAL_STREAM` set), which adds its own.
    Auto,
    /// Text with timestamps, always.
    Text,
    /// One JSON object per line, for a log shipper.
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Auto => "auto",
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Raw {
    socket: RawSocket,
    store: RawStore,
    refresh: RawRefresh,
    cleanup: RawCleanup,
    log: RawLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSocket {
    path: Option<PathBuf>,
    group: Option<String>,
    max_request_bytes: Option<usize>,
    max_connections: Option<usize>,
    max_connections_per_user: Option<usize>,
    #[serde(with = "humantime_serde")]
    shutdown_timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    path: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    busy_timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    level: Option<String>,
    format: Option<String>,
}

impl Config {
    /// Loads the configuration. `file` is `--config`; `env` is the process environment
    /// (a parameter so tests need not touch the real one).
    pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let source = file
            .map(Path::to_owned)
            .or_else(|| env.get("TOKEND_CONFIG").map(PathBuf::from))
            .or_else(|| Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()));
        let mut builder = config::Config::builder();
        if let Some(path) = &source {
            builder = builder
                .add_source(config::File::from(path.as_path()).format(config::FileFormat::Toml));
        }
        // Only `TOKEND_<SECTION>__<KEY>` names are configuration; `TOKEND_SOCKET` and
        // `TOKEND_CONFIG` are read separately, and other tools' `TOKEND_*` are not ours.
        let overrides: HashMap<String, String> = env
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix("TOKEND_")
                    .is_some_and(|rest| rest.contains("__"))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let from = match (&source, overrides.is_empty()) {
            (Some(file), true) => file.display().to_string(),
            (Some(file), false) => format!("{} and TOKEND_* variables", file.display()),
            (None, _) => "TOKEND_* variables".to_owned(),
        };
        builder = builder.add_source(
            config::Environment::with_prefix("TOKEND")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(overrides)),
        );
        let loaded = builder.build().and_then(config::Config::try_deserialize);
        let raw: Raw = loaded.map_err(|e| ConfigError::Load {
            from,
            error: e.to_string(),
        })?;
        let mut config = Config::validate(raw, env)?;
        config.source = source;
        if let Some(socket) = env.get("TOKEND_SOCKET").filter(|s| !s.is_empty()) {
            config.socket.path = PathBuf::from(socket);
        }
        Ok(config)
    }

    /// The built-in defaults: what a daemon runs on with no file and no `TOKEND_*`
    /// overrides (`env` places the default paths). Unlike `load(None, ..)`, never reads
    /// /etc/tokend/tokend.toml, so tests and benches start from the same place anywhere.
    pub fn builtin(env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        Config::validate(Raw::default(), env)
    }

    fn validate(raw: Raw, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let max_request_bytes = raw
            .socket
            .max_request_bytes
            .unwrap_or(DEFAULT_MAX_REQUEST_BYTES);
        if !(1024..=16 * 1024 * 1024).contains(&max_request_bytes) {
            return Err(invalid(
                "socket.max_request_bytes",
                "must be from 1024 to 16777216",
            ));
        }
        let max_connections = raw
            .socket
            .max_connections
            .unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            return Err(invalid("socket.max_connections", "must be at least 1"));
        }
        // Half by default: whatever one user's programs hold, others still get in.
        let max_connections_per_user = raw
            .socket
            .max_connections_per_user
            .unwrap_or(max_connections.div_ceil(2));
        if !(1..=max_connections).contains(&max_connections_per_user) {
            return Err(invalid(
                "socket.max_connections_per_user",
                format!("must be from 1 to socket.max_connections ({max_connections})"),
            ));
        }
        let level = raw
            .log
            .level
            .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned());
        if let Some(problem) = log_filter_problem(&level) {
            return Err(invalid("log.level", problem));
        }
        let format = match raw.log.format.as_deref() {
            None => DEFAULT_LOG_FORMAT,
            Some("auto") => LogFormat::Auto,
            Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(invalid(
                    "log.format",
                    format!("{other:?} is not `auto`, `text` or `json`"),
                ))
            }
        };
        Ok(Config {
            socket: SocketConfig {
                path: non_empty(raw.socket.path, "socket.path")?
                    .unwrap_or_else(|| default_socket_path(env)),
                group: raw.socket.group.filter(|g| !g.is_empty()),
                max_request_bytes,
                max_connections,
                max_connections_per_user,
                shutdown_timeout: raw
                    .socket
                    .shutdown_timeout
                    .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
            },
            store: StoreConfig {
                path: non_empty(raw.store.path, "store.path")?
                    .unwrap_or_else(|| default_db_path(env)),
                busy_timeout: raw.store.busy_timeout.unwrap_or(DEFAULT_BUSY_TIMEOUT),
            },
            refresh: validate_refresh(raw.refresh)?,
            cleanup: validate_cleanup(raw.cleanup)?,
            log: LogConfig { level, format },
            source: None,
        })
    }
}

/// Why `filter` is not a log filter a person meant, if it is not. `EnvFilter` reads a
/// bare word as a module name, so a misspelt level (`warning`) would turn every log line
/// off without a word: a bare word must be a level, or name a module path (`a::b`).
pub fn log_filter_problem(filter: &str) -> Option<String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let hint = "(try `info`, `debug` or `tokend=debug`)";
    if tracing_subscriber::EnvFilter::try_new(filter).is_err() {
        return Some(format!("{filter:?} is not a log filter {hint}"));
    }
    filter
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty() && !d.contains(['=', '[', ':']))
        .find(|d| !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(d)))
        .map(|d| {
            format!(
                "{d:?} is not a level: use one of {} {hint}",
                LEVELS.join(", ")
            )
        })
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

fn non_empty(path: Option<PathBuf>, key: &'static str) -> Result<Option<PathBuf>, ConfigError> {
    match path {
        Some(p) if p.as_os_str().is_empty() => Ok(None),
        Some(p) if p.is_relative() => Err(invalid(key, "must be an absolute path")),
        other => Ok(other),
    }
}

mod cleanup;
mod paths;
mod refresh;
mod reload;

use cleanup::{validate_cleanup, RawCleanup};
use refresh::{validate_refresh, RawRefresh};

pub use paths::{default_db_path, default_socket_path};
pub use reload::restart_only_changes;

#[cfg(test)]
mod tests;
