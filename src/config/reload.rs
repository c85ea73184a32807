//! What a reload (SIGHUP) may not change.

use super::{CleanupConfig, Config, LogConfig, SocketConfig, StoreConfig};

/// The keys, among those that differ between the running configuration and a reloaded
/// one, that only a restart can change: the socket and the database are open, the log
/// format is set up, the store flushes on its start-time schedule. A reload that changes
/// any of them applies nothing (`service.rs`). Everything else (`[refresh]`, the rest of
/// `[cleanup]`, `log.level`) a reload applies.
///
/// The structs are taken apart field by field so that a new field does not compile
/// until it is sorted into "restart only" or "reloadable" here.
pub fn restart_only_changes(running: &Config, reloaded: &Config) -> Vec<&'static str> {
    // `[refresh]` is reloadable whole (the refresher takes a new provider client too).
    let Config {
        socket: _,
        store: _,
        refresh: _,
        cleanup: _,
        log: _,
        source: _,
    } = running;
    let SocketConfig {
        path,
        group,
        max_request_bytes,
        max_connections,
        max_connections_per_user,
        shutdown_timeout,
    } = &running.socket;
    let StoreConfig {
        path: db_path,
        busy_timeout,
    } = &running.store;
    let LogConfig { level: _, format } = &running.log;
    let CleanupConfig {
        last_used_flush,
        enabled: _,
        schedule: _,
        dry_run: _,
        action: _,
        policies: _,
    } = &running.cleanup;
    let (s, d) = (&reloaded.socket, &reloaded.store);
    [
        ("socket.path", *path != s.path),
        ("socket.group", *group != s.group),
        (
            "socket.max_request_bytes",
            *max_request_bytes != s.max_request_bytes,
        ),
        (
            "socket.max_connections",
            *max_connections != s.max_connections,
        ),
        (
            "socket.max_connections_per_user",
            *max_connections_per_user != s.max_connections_per_user,
        ),
        (
            "socket.shutdown_timeout",
            *shutdown_timeout != s.shutdown_timeout,
        ),
        ("store.path", *db_path != d.path),
        ("store.busy_timeout", *busy_timeout != d.busy_timeout),
        ("log.format", *format != reloaded.log.format),
        (
            "cleanup.last_used_flush",
            *last_used_flush != reloaded.cleanup.last_used_flush,
        ),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}
