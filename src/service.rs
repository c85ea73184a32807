//! The daemon as a system service: what the process around `run` hands it (`Host`: a
//! socket passed by systemd, reload requests, a switch for the log level, a notify
//! socket), and what the daemon does with that while it serves (`Supervisor`): keep the
//! `STATUS=` line current, feed the watchdog, and apply reloads.
//!
//! # Reloads are all or nothing
//!
//! On SIGHUP `tokend serve` loads the configuration again, from the same file,
//! environment and flags as at start, and hands the result here. It applies only if it
//! loads and validates, and changes no key that only a restart can change
//! (`config::restart_only_changes`: the socket and database settings, `log.format`,
//! `cleanup.last_used_flush`). Otherwise nothing changes, the log says why, and the
//! `STATUS=` line says the last reload failed until one succeeds. Half a reload would
//! leave the daemon on a configuration that no file describes.
//!
//! What applies: `[refresh]` (the refresher gets the new tuning, and a new provider
//! client when the endpoints or timeouts changed), `[cleanup]` (policies, action,
//! schedule), and `log.level`.

use std::time::Duration;

use actix::Addr;
use tokio::sync::mpsc;

use crate::cleanup::{self, CleanupActor};
use crate::config::{self, Config, ConfigError};
use crate::model::TokenState;
use crate::notify::Notifier;
use crate::oauth::OAuthClient;
use crate::refresher::{self, RefresherActor};
use crate::store::{self, StoreActor};

/// How often the `STATUS=` line is brought up to date when there is no faster watchdog.
/// A periodic check rather than one per change: a busy store changes many times a second,
/// and `systemctl status` is read by people.
const STATUS_EVERY: Duration = Duration::from_secs(30);

/// Applies a new `log.level`; the error says why it could not.
pub type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String>>;

/// What the process around the daemon provides. `Host::default()` is what the in-process
/// `run` uses: bind the configured socket, no notifications, no reloads.
#[derive(Default)]
pub struct Host {
    /// A listening socket passed by the service manager (socket activation); without
    /// one, the daemon binds `socket.path`.
    pub listener: Option<std::os::unix::net::UnixListener>,
    pub notifier: Notifier,
    /// Send `WATCHDOG=1` this often (`notify::watchdog_interval`).
    pub watchdog: Option<Duration>,
    /// One message per reload request: the configuration loaded again, or why it did not.
    pub reloads: Option<mpsc::UnboundedReceiver<Result<Config, ConfigError>>>,
    /// Switches the log level (the subscriber's reload handle in `tokend serve`).
    pub set_log_level: Option<SetLogLevel>,
}

/// Keeps the service manager informed and applies reloads, while the daemon serves.
pub struct Supervisor {
    /// The configuration in force: the one started with, or the last reload applied.
    config: Config,
    host: Host,
    store: Addr<StoreActor>,
    refresher: Addr<RefresherActor>,
    cleanup: Addr<CleanupActor>,
    /// The last summary sent as `STATUS=`, so an unchanged one is not sent again.
    summary: String,
    /// Why the last reload failed, shown in `STATUS=` until one succeeds.
    reload_error: Option<String>,
}

impl Supervisor {
    pub fn new(
        config: Config,
        host: Host,
        store: Addr<StoreActor>,
        refresher: Addr<RefresherActor>,
        cleanup: Addr<CleanupActor>,
    ) -> Supervisor {
        Supervisor {
            config,
            host,
            store,
            refresher,
            cleanup,
            summary: String::new(),
            reload_error: None,
        }
    }

    /// Sends `READY=1`: called once the socket accepts connections and the store is open.
    pub async fn ready(&mut self) {
        // Without a service manager there is nobody to tell, and nothing to ask the actors.
        if !self.host.notifier.is_enabled() {
            return;
        }
        self.summary = self.summarise().await.unwrap_or_default();
        self.host.notifier.ready(&self.status_line());
    }

    /// Runs until dropped (at shutdown). Applying a reload never awaits (`apply`), so
    /// dropping this never leaves a reload half done.
    pub async fn run(mut self) {
        let mut reloads = self.host.reloads.take();
        let every = match self.host.watchdog {
            Some(w) => w.min(STATUS_EVERY),
            None => STATUS_EVERY,
        };
        let ticking = self.host.notifier.is_enabled();
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                loaded = recv(&mut reloads) => self.reload(loaded).await,
                _ = ticks.tick(), if ticking => self.tick(every).await,
            }
        }
    }

    /// Refreshes `STATUS=` and feeds the watchdog, but only if the store answers: a
    /// daemon whose store is stuck should be restarted by the watchdog, not kept alive.
    async fn tick(&mut self, limit: Duration) {
        let Ok(Some(summary)) = tokio::time::timeout(limit, self.summarise()).await else {
            tracing::warn!("the store did not answer the status check in time");
            return;
        };
        if self.host.watchdog.is_some() {
            self.host.notifier.watchdog();
        }
        if summary != self.summary {
            self.summary = summary;
            self.host.notifier.status(&self.status_line());
        }
    }

    /// "serving 12 tokens (1 needs_reauth), 11 refreshes scheduled", or `None` when an
    /// actor did not answer.
    async fn summarise(&self) -> Option<String> {
        let counts = self.store.send(store::CountByState).await.ok()?.ok()?;
        let total: u64 = counts.iter().map(|(_, n)| n).sum();
        let needs_reauth = counts
            .iter()
            .find(|(s, _)| *s == TokenState::NeedsReauth)
            .map_or(0, |(_, n)| *n);
        let scheduled = self.refresher.send(refresher::GetStatus).await.ok()?;
        let refresh = if self.config.refresh.enabled {
            format!("{} refreshes scheduled", scheduled.scheduled)
        } else {
            "refreshing off".to_owned()
        };
        Some(format!(
            "serving {total} tokens ({needs_reauth} needs_reauth), {refresh}"
        ))
    }

    fn status_line(&self) -> String {
        match &self.reload_error {
            // The first line: a TOML error goes on to quote the file over several.
            Some(e) => format!(
                "{}; last reload failed (see the log): {}",
                self.summary,
                e.lines().next().unwrap_or_default()
            ),
            None => self.summary.clone(),
        }
    }

    /// `RELOADING=1`, apply (or not), `READY=1` with the outcome in `STATUS=`. `READY=1`
    /// waits for the summary, which the refresher answers only once it has rebuilt its
    /// schedule: a client that sees the reload finished sees its effect.
    async fn reload(&mut self, loaded: Result<Config, ConfigError>) {
        self.host.notifier.reloading();
        match self.apply(loaded) {
            Ok(changed) => {
                tracing::info!(changed = %changed, "configuration reloaded");
                self.reload_error = None;
            }
            Err(why) => {
                tracing::error!(
                    "configuration reload refused, the running configuration stays: {why}"
                );
                self.reload_error = Some(why);
            }
        }
        if let Some(summary) = self.summarise().await {
            self.summary = summary;
        }
        self.host.notifier.ready(&self.status_line());
    }

    /// Applies `loaded` whole, or returns why not having changed nothing. On success,
    /// names the sections that changed.
    fn apply(&mut self, loaded: Result<Config, ConfigError>) -> Result<String, String> {
        let new = loaded.map_err(|e| e.to_string())?;
        let fixed = config::restart_only_changes(&self.config, &new);
        if !fixed.is_empty() {
            return Err(format!(
                "{} can only change at a restart (systemctl restart tokend); nothing was applied",
                fixed.join(", ")
            ));
        }
        let (old_r, new_r) = (&self.config.refresh, &new.refresh);
        let oauth = if (&new_r.endpoints, new_r.connect_timeout, new_r.timeout)
            != (&old_r.endpoints, old_r.connect_timeout, old_r.timeout)
        {
            let client = OAuthClient::new(
                new_r.endpoints.clone(),
                new_r.connect_timeout,
                new_r.timeout,
            );
            Some(client.map_err(|e| format!("{e}; nothing was applied"))?)
        } else {
            None
        };
        let mut changed = Vec::new();
        if new.log.level != self.config.log.level {
            if let Some(set) = &self.host.set_log_level {
                set(&new.log.level).map_err(|e| format!("log.level: {e}; nothing was applied"))?;
            }
            changed.push("log.level");
        }
        if new.refresh != self.config.refresh {
            self.refresher.do_send(refresher::Reconfigure {
                cfg: new.refresh.clone(),
                oauth: oauth.clone(),
            });
            changed.push("refresh");
        }
        // The cleanup actor revokes through the same provider client, so new endpoints
        // reach it too.
        if new.cleanup != self.config.cleanup || oauth.is_some() {
            self.cleanup.do_send(cleanup::Reconfigure {
                cfg: new.cleanup.clone(),
                oauth,
            });
            changed.push("cleanup");
        }
        self.config = new;
        Ok(if changed.is_empty() {
            "nothing".to_owned()
        } else {
            changed.join(", ")
        })
    }
}

/// The next reload request; pending forever without a channel or once it is closed.
async fn recv(
    reloads: &mut Option<mpsc::UnboundedReceiver<Result<Config, ConfigError>>>,
) -> Result<Config, ConfigError> {
    if let Some(rx) = reloads {
        if let Some(loaded) = rx.recv().await {
            return loaded;
        }
    }
    std::future::pending().await
}
