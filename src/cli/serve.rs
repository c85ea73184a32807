//! `tokend serve`: the daemon in the foreground, as systemd runs it.
//!
//! Signals are registered before the socket exists, so one sent as soon as the daemon
//! is ready never meets the default action: SIGTERM and SIGINT stop it cleanly (exit 0),
//! SIGHUP loads the configuration again, from the same file, environment and flags as
//! at start, and hands it to the daemon, which applies all of it or none
//! (`tokend::service`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tokend::clock::Clock;
use tokend::config::{ConfigError, LogFormat};
use tokend::notify::{self, Notifier};
use tokend::service::Host;
use tokend::Config;
use tokio::signal::unix::{signal, SignalKind};

pub fn serve(
    file: Option<PathBuf>,
    socket: Option<PathBuf>,
    db: Option<PathBuf>,
    env: HashMap<String, String>,
) -> anyhow::Result<()> {
    let load = {
        let env = env.clone();
        move |file: Option<&Path>| -> Result<Config, ConfigError> {
            let mut config = super::load(file, socket.as_deref(), &env)?;
            if let Some(db) = &db {
                config.store.path = db.clone();
            }
            Ok(config)
        }
    };
    let config = load(file.as_deref())?;
    // Reloads read the file the daemon started from by name, found or given: if it has
    // gone (moved aside to edit, mid-upgrade), the reload is refused and names it,
    // instead of applying the built-in defaults (say, cleanup.dry_run = false).
    let reload_from = file.or_else(|| config.source.clone());
    let set_log_level = super::logging::init(&config.log, &env);
    let json_log = config.log.format == LogFormat::Json;
    let result = actix_rt::System::new().block_on(async move {
        let listener = notify::inherited_listener(&env)?;
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        let (reloads, reload_requests) = tokio::sync::mpsc::unbounded_channel();
        actix_rt::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP received: reloading the configuration");
                if reloads.send(load(reload_from.as_deref())).is_err() {
                    break;
                }
            }
        });
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        };
        let host = Host {
            listener,
            notifier: Notifier::from_env(&env),
            watchdog: notify::watchdog_interval(&env),
            reloads: Some(reload_requests),
            set_log_level: Some(set_log_level),
        };
        Ok(tokend::run_hosted(config, Clock::system(), host, shutdown).await?)
    });
    // `main` prints the error as the last line on stderr, which the journal keeps too:
    // once is enough for a person. A JSON log is read by programs, which need it as a
    // record of their own.
    if let (Err(e), true) = (&result, json_log) {
        tracing::error!("{e:#}");
    }
    result
}
