//! The real `tokend` binary as a child process on a private temp dir, and what the
//! benches read about it: readiness, resident memory, CPU time.
//!
//! `CARGO_BIN_EXE_tokend` is the binary cargo built alongside this bench: the release
//! build under `cargo bench`, the debug build under `cargo test`. The daemon gets an
//! empty config file and a cleared environment plus these overrides:
//!
//! - `TOKEND_REFRESH__ENABLED`: off for load runs, so nothing is ever refreshed; on only
//!   where the refresher's own cost is measured;
//! - `TOKEND_REFRESH__ACCOUNTS_URL=http://127.0.0.1:9`: where the preloaded tokens'
//!   api_domain resolves to, a loopback port where nothing listens, so even a refresh
//!   attempt stays on this machine;
//! - `TOKEND_CLEANUP__ENABLED=false`: a cleanup pass scans every token on the store's
//!   thread and would land in a measurement window when one straddles a 5-minute mark.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// Upper bound on start-up (a million tokens take seconds) and on exit after SIGTERM.
const DEADLINE: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(1);

/// Where nothing listens: refreshes fail at once, locally.
pub const DEAD_ACCOUNTS_URL: &str = "http://127.0.0.1:9";

pub struct Daemon {
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
    /// From spawn to the first successful ping.
    pub ready_after: Duration,
}

impl Daemon {
    /// Starts the daemon on `dir` (socket in `dir/run`, database `dir/state/tokens.db`)
    /// and waits until it answers a ping.
    pub fn start(dir: &Path, refresh: bool) -> anyhow::Result<Daemon> {
        Daemon::start_on(dir, refresh, None)
    }

    /// `start`, with the daemon's threads confined to `cpus` (a `taskset -c` list) when
    /// given: an experiment on where its time goes, not a way to run it.
    pub fn start_on(dir: &Path, refresh: bool, cpus: Option<&str>) -> anyhow::Result<Daemon> {
        let config = dir.join("tokend.toml");
        if !config.exists() {
            File::create(&config).context("write the empty config file")?;
        }
        let log = dir.join("daemon.log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .context("open the daemon log")?;
        let socket = dir.join("run/tokend.sock");
        let started = Instant::now();
        let binary = env!("CARGO_BIN_EXE_tokend");
        let mut command = match cpus {
            // taskset execs the daemon, so the child's pid is the daemon's.
            Some(list) => {
                let mut c = Command::new("taskset");
                c.args(["-c", list, binary]);
                c
            }
            None => Command::new(binary),
        };
        let child = command
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--socket")
            .arg(&socket)
            .arg("--db")
            .arg(db_path(dir))
            .env_clear()
            .env("TOKEND_REFRESH__ENABLED", refresh.to_string())
            .env("TOKEND_REFRESH__ACCOUNTS_URL", DEAD_ACCOUNTS_URL)
            .env("TOKEND_CLEANUP__ENABLED", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("spawn tokend")?;
        let mut daemon = Daemon {
            child: Some(child),
            socket,
            log,
            ready_after: Duration::ZERO,
        };
        loop {
            if let Ok(reply) = daemon.request(r#"{"op":"ping"}"#) {
                if reply["ok"] == true {
                    daemon.ready_after = started.elapsed();
                    return Ok(daemon);
                }
            }
            if let Some(child) = daemon.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    daemon.child = None;
                    bail!(
                        "tokend exited with {status} before it was ready:\n{}",
                        daemon.log_text()
                    );
                }
            }
            if started.elapsed() > DEADLINE {
                bail!(
                    "tokend not ready after {DEADLINE:?}:\n{}",
                    daemon.log_text()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn pid(&self) -> i32 {
        self.child
            .as_ref()
            .and_then(|c| i32::try_from(c.id()).ok())
            .unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One request on a connection of its own; the reply, parsed.
    pub fn request(&self, line: &str) -> anyhow::Result<Value> {
        Ok(serde_json::from_str(&self.request_raw(line)?)?)
    }

    /// One request on a connection of its own; the reply line as it came.
    pub fn request_raw(&self, line: &str) -> anyhow::Result<String> {
        let mut stream = UnixStream::connect(&self.socket)
            .with_context(|| format!("connect to {}", self.socket.display()))?;
        stream.set_read_timeout(Some(DEADLINE))?;
        stream.write_all(line.as_bytes())?;
        stream.write_all(b"\n")?;
        let mut reply = String::new();
        BufReader::new(stream)
            .read_line(&mut reply)
            .with_context(|| format!("read the reply to {line}"))?;
        Ok(reply)
    }

    /// `status` until `scheduled` reaches `want`; the time that took from now.
    pub fn wait_scheduled(&self, want: u64) -> anyhow::Result<(Duration, Value)> {
        let started = Instant::now();
        loop {
            let status = self.request(r#"{"op":"status"}"#)?;
            if status["result"]["scheduled"].as_u64() >= Some(want) {
                return Ok((started.elapsed(), status));
            }
            if started.elapsed() > DEADLINE {
                bail!("scheduled stayed below {want}: {status}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// (VmRSS, VmHWM) in bytes.
    pub fn memory(&self) -> anyhow::Result<(u64, u64)> {
        memory_of(&format!("/proc/{}/status", self.pid()))
    }

    /// CPU seconds the daemon has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds_of(&self.pid().to_string()).unwrap_or(0.0)
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM)?;
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!("tokend exited with {status}:\n{}", self.log_text());
                }
                return Ok(());
            }
            if started.elapsed() > DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                bail!("tokend did not exit within {DEADLINE:?} of SIGTERM");
            }
            std::thread::sleep(POLL);
        }
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

pub fn db_path(dir: &Path) -> PathBuf {
    dir.join("state/tokens.db")
}

/// Starts the daemon once on `dir` so it creates and migrates an empty database, then
/// stops it: the preload then writes into the daemon's own schema.
pub fn create_database(dir: &Path) -> anyhow::Result<PathBuf> {
    Daemon::start(dir, false)?.stop()?;
    Ok(db_path(dir))
}

/// (VmRSS, VmHWM) in bytes from a `/proc/<pid>/status` file.
pub fn memory_of(status_file: &str) -> anyhow::Result<(u64, u64)> {
    let text = std::fs::read_to_string(status_file)?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    match (field("VmRSS:"), field("VmHWM:")) {
        (Some(rss), Some(hwm)) => Ok((rss, hwm)),
        _ => bail!("no VmRSS/VmHWM in {status_file}"),
    }
}

/// CPU seconds process `pid` (`"self"` for this one) has run so far, all its live threads
/// together, from the scheduler's nanosecond counters (`/proc/<pid>/task/*/schedstat`);
/// tick-sampled utime + stime would be off by a large fraction for threads that run a few
/// microseconds between wake-ups, as a server's do.
pub fn cpu_seconds_of(pid: &str) -> Option<f64> {
    let mut ns: u64 = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        // A thread that ended since the listing simply no longer counts.
        if let Ok(text) = std::fs::read_to_string(path) {
            ns += text.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(ns as f64 / 1e9)
}

/// CPU seconds every task on the machine has run so far, those that have ended
/// included: the root cgroup's counter (cgroup v1 `cpuacct.usage` in ns, or v2
/// `cpu.stat` `usage_usec`). `None` where neither is readable.
pub fn all_tasks_cpu_seconds() -> Option<f64> {
    if let Ok(ns) = std::fs::read_to_string("/sys/fs/cgroup/cpuacct/cpuacct.usage") {
        return ns.trim().parse::<u64>().ok().map(|ns| ns as f64 / 1e9);
    }
    let stat = std::fs::read_to_string("/sys/fs/cgroup/cpu.stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|us| us.trim().parse::<u64>().ok())
        .map(|us| us as f64 / 1e6)
}

/// Seconds the machine's CPUs have spent idle so far, all together: the cpuidle states'
/// own microsecond counters, else `/proc/stat`'s idle and iowait ticks.
pub fn machine_idle_seconds() -> f64 {
    let mut us: u64 = 0;
    let mut found = false;
    if let Ok(cpus) = std::fs::read_dir("/sys/devices/system/cpu") {
        for cpu in cpus.flatten() {
            let Ok(states) = std::fs::read_dir(cpu.path().join("cpuidle")) else {
                continue;
            };
            for state in states.flatten() {
                if let Some(t) = std::fs::read_to_string(state.path().join("time"))
                    .ok()
                    .and_then(|t| t.trim().parse::<u64>().ok())
                {
                    us += t;
                    found = true;
                }
            }
        }
    }
    if found {
        return us as f64 / 1e6;
    }
    let Ok(text) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    // cpu  user nice system idle iowait ...: idle and iowait, in USER_HZ (100 per second).
    let v: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    (v.get(3).unwrap_or(&0) + v.get(4).unwrap_or(&0)) as f64 / 100.0
}
