//! Logging for `tokend serve`: text for a terminal, no timestamps of our own under
//! journald (it adds its own; `JOURNAL_STREAM` tells), or JSON lines (`log.format`).
//! The level comes from `RUST_LOG` when set, else `log.level`, and a reload can change
//! `log.level` (a `tracing_subscriber::reload` layer holds the filter).

use std::collections::HashMap;
use std::io::IsTerminal;

use tokend::config::{log_filter_problem, LogConfig, LogFormat};
use tokend::service::SetLogLevel;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Layer};

/// Installs the subscriber; returns the switch a reload uses for `log.level`.
pub fn init(config: &LogConfig, env: &HashMap<String, String>) -> SetLogLevel {
    let rust_log = env.get("RUST_LOG").filter(|f| !f.is_empty());
    let refused = rust_log.and_then(|f| log_filter_problem(f));
    let filter = match rust_log {
        Some(f) if refused.is_none() => EnvFilter::new(f),
        _ => configured(&config.level),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let journald = env.contains_key("JOURNAL_STREAM");
    let text = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let output = match config.format {
        LogFormat::Json => fmt::layer().json().with_writer(std::io::stderr).boxed(),
        LogFormat::Auto if journald => text.without_time().boxed(),
        LogFormat::Auto | LogFormat::Text => text.boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .init();
    if let Some(problem) = &refused {
        tracing::warn!(problem = %problem.escape_debug(), "RUST_LOG ignored; logging by log.level");
    }
    let rust_log_set = rust_log.is_some() && refused.is_none();
    Box::new(move |level: &str| {
        if rust_log_set {
            tracing::info!("RUST_LOG is set and wins over log.level: the log level stays");
            return Ok(());
        }
        EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(configured(level)).map_err(|e| e.to_string())
    })
}

/// `log.level`, with the cron scheduler's own chatter ("Uninited", "Job creator
/// created") kept to warnings unless the level names that crate itself.
fn configured(level: &str) -> EnvFilter {
    let quiet = if level.contains("tokio_cron_scheduler") {
        ""
    } else {
        ",tokio_cron_scheduler=warn"
    };
    EnvFilter::new(format!("{level}{quiet}"))
}
