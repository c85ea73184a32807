//! The daemon started in-process (`tokend::run_with_clock`) on a manual clock, for tests
//! about time: they move the clock and the daemon acts as if that time had passed.
//! No test here sleeps; conditions are polled up to a generous deadline.

use std::collections::HashMap;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokend::clock::Clock;
use tokend::Config;

use crate::helpers::Client;

/// An arbitrary fixed "now" (2027-01-15) that tests start their clocks at.
pub const T0: i64 = 1_800_000_000_000;
pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 60 * MINUTE;

/// Waits until `done` holds, failing the test with `what` after 20 s.
pub fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub struct InProcess {
    pub clock: Clock,
    pub config: Config,
    dir: Option<TempDir>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl InProcess {
    /// A daemon on a fresh temp dir whose accounts server is `accounts_url`, with the
    /// clock at `T0`; `tweak` adjusts the configuration first.
    pub fn start(accounts_url: &str, tweak: impl FnOnce(&mut Config)) -> InProcess {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::builtin(&HashMap::new()).unwrap();
        config.socket.path = dir.path().join("run/tokend.sock");
        config.store.path = dir.path().join("state/tokens.db");
        config.refresh.endpoints.accounts_url = Some(accounts_url.to_owned());
        tweak(&mut config);
        InProcess::start_in(dir, config, Clock::manual(T0))
    }

    /// Starts on an existing directory and configuration (a restart).
    pub fn start_in(dir: TempDir, config: Config, clock: Clock) -> InProcess {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (c, k) = (config.clone(), clock.clone());
        let thread = std::thread::spawn(move || {
            actix_rt::System::new()
                .block_on(tokend::run_with_clock(c, k, async {
                    let _ = stopped.await;
                }))
                .map_err(|e| e.to_string())
        });
        let daemon = InProcess {
            clock,
            config,
            dir: Some(dir),
            stop: Some(stop),
            thread: Some(thread),
        };
        let socket = daemon.socket();
        eventually("the daemon to listen", || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        });
        daemon
    }

    pub fn socket(&self) -> PathBuf {
        self.config.socket.path.clone()
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket())
    }

    /// Shuts down as on SIGTERM and waits for `run` to return; gives back the directory
    /// and configuration for a restart.
    pub fn stop(mut self) -> (TempDir, Config) {
        self.shutdown();
        (self.dir.take().unwrap(), self.config.clone())
    }

    /// Stops, then starts again on the same directory and configuration, its clock at
    /// `at`.
    pub fn restart_at(self, at: i64) -> InProcess {
        let (dir, config) = self.stop();
        InProcess::start_in(dir, config, Clock::manual(at))
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap().unwrap();
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.shutdown();
        }
    }
}
