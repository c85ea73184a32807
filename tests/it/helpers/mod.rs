//! Test fixtures: the real `tokend` binary on a private temp dir, and a blocking client.
//!
//! Every test starts its own daemon (`Daemon::start`), so tests share nothing and run in
//! parallel. The daemon's socket lives in `<tmp>/run/` (a directory the daemon creates
//! itself, so its mode can be checked), its database in `<tmp>/state/`, and everything it
//! writes on stderr is appended to `<tmp>/daemon.log` across restarts.
//!
//! Nothing here waits for time to pass: readiness and exit are conditions polled up to a
//! deadline, and every socket read has a timeout, so a stuck daemon fails a test with a
//! message instead of hanging the suite. The deadlines are generous upper bounds for a
//! loaded machine, never expectations about speed.
//!
//! `client.rs` is the client; `tokens.rs` makes test tokens and checks replies;
//! `notify.rs` stands in for systemd's notify socket.

mod client;
mod notify;
mod tokens;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

pub use client::Client;
pub use notify::NotifySocket;
pub use tokens::{assert_has, check_reply_shape, fields, id_of, token, FIELDS};

/// How long a daemon may take to answer its first ping, or to exit after a signal.
const PROCESS_DEADLINE: Duration = Duration::from_secs(20);
/// How long a client waits for one reply before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// The pause between two checks of a polled condition.
const POLL_INTERVAL: Duration = Duration::from_millis(2);

/// The configuration these tests run the daemon with: the built-in defaults, except that
/// nothing runs on a timer. Test tokens name Zoho's real domains and carry past expiry
/// times; a refresher would send them to Zoho's accounts server, and the cleanup's
/// schedule (every 5 minutes of the wall clock) would remove some in the middle of a
/// test. Both have their own tests (`refresh.rs`, `cleanup.rs`); a `cleanup` request
/// still runs a pass. Ends inside `[cleanup]`, so a test may add keys of that section.
pub const QUIET: &str = "[refresh]\nenabled = false\n[cleanup]\nenabled = false\n";
/// The real daemon, on a temp dir of its own. Dropping it kills the process and removes
/// the directory.
pub struct Daemon {
    dir: TempDir,
    child: Option<Child>,
    /// Extra environment for the daemon; `RUST_LOG=trace` unless a test sets it.
    env: Vec<(String, String)>,
}

impl Daemon {
    /// Starts a daemon logging at trace level and waits until it answers a ping.
    pub fn start() -> Daemon {
        Daemon::start_with(QUIET, &[])
    }

    /// Like `start`, with extra environment variables (e.g. another `RUST_LOG`).
    pub fn start_with_env(env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with(QUIET, env)
    }

    /// Starts a daemon with `config` as its configuration file and extra environment.
    pub fn start_with(config: &str, env: &[(&str, &str)]) -> Daemon {
        let mut daemon = Daemon::prepare(config, env);
        daemon.launch();
        daemon
    }

    /// A daemon's temp dir, config file and environment, not started yet: `launch` or
    /// `spawn` starts it.
    pub fn prepare(config: &str, env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("tokend-it-")
            .tempdir()
            .expect("create a temp dir");
        // Our own config file, so /etc/tokend on the test machine plays no part.
        std::fs::write(dir.path().join("tokend.toml"), config).expect("write the config file");
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        if !env.iter().any(|(k, _)| k == "RUST_LOG") {
            env.push(("RUST_LOG".into(), "trace".into()));
        }
        Daemon {
            dir,
            child: None,
            env,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir().join("run").join("tokend.sock")
    }

    pub fn db(&self) -> PathBuf {
        self.dir().join("state").join("tokens.db")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir().join("daemon.log")
    }

    /// Everything the daemon (every run of it on this dir) wrote on stderr so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    /// The command line that serves this dir: the same one `launch` runs, for tests that
    /// start a second daemon on it.
    pub fn command(&self) -> Command {
        self.command_with_db(&self.db())
    }

    /// This dir's command line with another database.
    pub fn command_with_db(&self, db: &Path) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokend"));
        cmd.arg("serve")
            .arg("--config")
            .arg(self.dir().join("tokend.toml"))
            .arg("--socket")
            .arg(self.socket())
            .arg("--db")
            .arg(db)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts the daemon on this dir (again) and waits until it answers a ping.
    pub fn launch(&mut self) {
        self.spawn();
        self.wait_ready();
    }

    /// Starts the daemon on this dir without waiting for it to be ready.
    pub fn spawn(&mut self) {
        let cmd = self.command();
        self.spawn_command(cmd);
    }

    /// Runs `cmd` as this dir's daemon (its stderr appended to the log), for tests that
    /// start it another way (a wrapper that passes a socket, say).
    pub fn spawn_command(&mut self, mut cmd: Command) {
        assert!(self.child.is_none(), "the daemon is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the daemon log");
        let child = cmd.stderr(Stdio::from(log)).spawn().expect("spawn tokend");
        self.child = Some(child);
    }

    /// Adds (or replaces) a variable in the daemon's environment for its next start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Whether the daemon process is still running (it has not exited).
    pub fn is_running(&mut self) -> bool {
        let child = self.child.as_mut().expect("a started daemon");
        child.try_wait().expect("poll the daemon").is_none()
    }

    /// Polls connect + ping until the daemon answers, failing fast if it exits.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + PROCESS_DEADLINE;
        loop {
            if let Some(mut client) = Client::try_connect(&self.socket()) {
                if let Some(reply) = client.try_ping() {
                    assert_eq!(reply["ok"], true, "first ping failed: {reply}");
                    return;
                }
            }
            let child = self.child.as_mut().expect("a running daemon");
            if let Some(status) = child.try_wait().expect("poll the daemon") {
                self.child = None;
                panic!(
                    "tokend exited with {status} before it was ready; its log:\n{}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "tokend did not answer a ping within {PROCESS_DEADLINE:?}; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    pub fn pid(&self) -> Pid {
        let child = self.child.as_ref().expect("a running daemon");
        Pid::from_raw(i32::try_from(child.id()).expect("a pid fits in i32"))
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal the daemon");
    }

    /// SIGTERM, then waits for the exit and returns its status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait_exit()
    }

    /// Waits for the daemon to exit (after a signal sent by the test) and returns the status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("a running daemon");
        match wait_with_deadline(&mut child) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "tokend did not exit within {PROCESS_DEADLINE:?}; its log:\n{}",
                    self.log()
                );
            }
        }
    }

    /// SIGKILL: the daemon gets no chance to clean up (the socket file stays behind).
    pub fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
        let status = self.wait_exit();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "expected death by SIGKILL, got {status}"
        );
    }

    /// SIGTERM, asserting a clean exit, then starts again on the same dir.
    pub fn restart(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "tokend exited with {status} on SIGTERM; log:\n{}",
            self.log()
        );
        self.launch();
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `child` until it exits or the deadline passes (`None`).
fn wait_with_deadline(child: &mut Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + PROCESS_DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("poll a child process") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Runs `cmd` to its end (killing it past the deadline, which fails the test) and returns
/// its exit status and stderr.
pub fn run_to_exit(mut cmd: Command, stderr_file: &Path) -> (ExitStatus, String) {
    let err = File::create(stderr_file).expect("create a stderr file");
    let mut child = cmd.stderr(Stdio::from(err)).spawn().expect("spawn tokend");
    let status = wait_with_deadline(&mut child);
    let stderr = std::fs::read_to_string(stderr_file).unwrap_or_default();
    match status {
        Some(status) => (status, stderr),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tokend kept running past {PROCESS_DEADLINE:?}; stderr:\n{stderr}");
        }
    }
}
