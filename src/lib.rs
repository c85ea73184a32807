//! tokend: one daemon that owns the OAuth tokens of every program on a machine.
//!
//! # Architecture
//!
//! Four actors (actix, on tokio), each in one file. The **store actor** (`store.rs`,
//! its read and write messages with their handlers in `store/`) is the only owner of
//! the SQLite connection (`db.rs` and `db/`); it runs on the daemon's one thread with
//! everything else (a lookup costs less than a hand-off to another thread), commits
//! writes that arrive together in one transaction (group commit), keeps last-use times
//! in memory and writes them in batches, and tells subscribers about every committed
//! change. What it keeps in memory it shares with the connections on its thread
//! (`store/shared.rs`): with it, a connection answers a `find_token_by_id` for a token
//! the store has read before, and not changed since, without a message. The **front
//! actor** (`front.rs`) owns the Unix socket, limits connections in all and per user,
//! and runs a task per client (`connection.rs`, with `framing.rs`) that reads
//! newline-delimited JSON requests (`protocol.rs`, user docs in `docs/protocol.md`),
//! hands each to the actor that answers it, and writes the replies in order. The
//! **refresher actor** (`refresher.rs`) keeps one deadline per refreshable token
//! (`schedule.rs`), refreshes each once, ahead of expiry, through the provider client
//! (`oauth.rs`), single-flight and within a rate budget that it records in the store
//! before each request, so that a restart does not reset it. The **cleanup actor**
//! (`cleanup.rs`) ends sessions by policy (`policy.rs`) on a cron schedule. Time is an
//! input (`clock.rs`); the token record and its matching rules are in `model.rs`,
//! configuration in `config.rs`. `run` wires these together and is what both the
//! `tokend` binary and the integration tests start; `run_hosted` is the same as a
//! system service (`service.rs`: readiness and status for systemd through `notify.rs`,
//! a socket systemd passed, the watchdog, SIGHUP reloads). The command line
//! (`src/cli/`, in the binary) talks to a running daemon through `client.rs`.

pub mod cleanup;
pub mod client;
pub mod clock;
pub mod config;
pub mod connection;
pub mod db;
pub mod error;
pub mod framing;
pub mod front;
pub mod migrate;
pub mod model;
pub mod notify;
pub mod oauth;
pub mod policy;
pub mod protocol;
pub mod refresher;
pub mod schedule;
pub mod service;
pub mod store;

use std::future::Future;

use actix::Actor;

pub use config::Config;
pub use error::Error;

/// Runs the daemon until `shutdown` resolves, then stops accepting clients, answers the
/// requests already read, and returns. Must be called inside an actix `System`.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    run_with_clock(config, clock::Clock::system(), shutdown).await
}

/// `run` on a given clock: tests pass a manual one and move time instead of waiting.
pub async fn run_with_clock(
    config: Config,
    clock: clock::Clock,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    run_hosted(config, clock, service::Host::default(), shutdown).await
}

/// `run_with_clock` as a service (`tokend serve`): on a socket systemd passed if `host`
/// has one, telling the service manager about readiness, status and shutdown, and
/// applying the reloads `host` delivers (`service.rs`).
pub async fn run_hosted(
    config: Config,
    clock: clock::Clock,
    mut host: service::Host,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let r = &config.refresh;
    let oauth = oauth::OAuthClient::new(r.endpoints.clone(), r.connect_timeout, r.timeout)?;
    let (listener, socket_guard, socket_path) = match host.listener.take() {
        Some(passed) => {
            let path = front::socket_path(&passed);
            (front::adopt(passed)?, None, path)
        }
        None => {
            let (listener, guard) = front::bind(&config.socket)?;
            (listener, Some(guard), config.socket.path.clone())
        }
    };
    // After the socket: a second daemon is told about the live socket it would displace
    // before it is told that the database is locked.
    let db = db::Db::open(&config.store.path, config.store.busy_timeout)?;
    let tokens = db.count()?;
    let (store, shared, store_closed) =
        store::StoreActor::start(db, clock.clone(), config.cleanup.last_used_flush);
    let refresher =
        refresher::RefresherActor::new(r.clone(), clock, store.clone(), oauth.clone()).start();
    let stopping = tokio_util::sync::CancellationToken::new();
    let cleanup = cleanup::CleanupActor::new(
        config.cleanup.clone(),
        store.clone(),
        oauth,
        stopping.clone(),
    )
    .start();
    let services = connection::Services {
        store: store.clone(),
        shared,
        refresher: refresher.clone(),
        cleanup: cleanup.clone(),
    };
    let front =
        front::FrontActor::new(listener, services, &config.socket, stopping.clone()).start();
    tracing::info!(
        socket = %socket_path.display(),
        activated = socket_guard.is_none(),
        database = %config.store.path.display(),
        tokens,
        config = %config.source.as_ref().map_or("built-in defaults".into(), |p| p.display().to_string()),
        "tokend ready"
    );
    let notifier = host.notifier;
    let (store2, refresher2, cleanup2) = (store.clone(), refresher.clone(), cleanup.clone());
    let mut supervisor = service::Supervisor::new(config, host, store2, refresher2, cleanup2);
    supervisor.ready().await;
    tokio::select! {
        () = shutdown => {}
        () = supervisor.run() => {}
    }
    notifier.stopping();
    stopping.cancel();
    tracing::info!("shutting down: accepting no new clients, answering requests in flight");
    let _ = front.send(front::Shutdown).await;
    drop(socket_guard);
    let _ = refresher.send(refresher::Shutdown).await;
    let _ = cleanup.send(cleanup::Shutdown).await;
    let _ = store.send(store::Shutdown).await;
    // Wait for the connection to close, so the file is unlocked and clean when we return.
    let _ = store_closed.await;
    tracing::info!("stopped");
    Ok(())
}
