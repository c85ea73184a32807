//! What the benchmark binaries share: the real daemon as a child process
//! (`daemon.rs`), the synthetic tokens and the fast preload (`data.rs`), the load
//! driver (`drive.rs`; `client.rs` is one of its connections, `outcome.rs` what a run
//! measured), and the do-nothing server that measures the machine's floor (`echo.rs`).
//!
//! Each bench binary uses a different part of this, hence `dead_code` allowed where it
//! is declared.

mod client;
pub mod daemon;
pub mod data;
pub mod drive;
pub mod echo;
mod outcome;

use std::time::{SystemTime, UNIX_EPOCH};

/// Whether the binary was started by `cargo bench`, which appends `--bench`. Under
/// `cargo test --all-targets` a `harness = false` bench runs as a plain program without
/// it (and with whatever test arguments were given), so the binaries then run a
/// seconds-long smoke check instead of a load.
pub fn invoked_by_cargo_bench() -> bool {
    std::env::args().skip(1).any(|a| a == "--bench")
}

/// The arguments meant for the benchmark: everything but the `--bench` cargo adds.
pub fn bench_args() -> Vec<String> {
    std::env::args().filter(|a| a != "--bench").collect()
}

/// Confines the calling thread to `cpus` (a `taskset -c` list), for the experiments on
/// where a request's time goes; `taskset` is used because the crate has no binding for
/// `sched_setaffinity`.
pub fn pin_this_thread(cpus: &str) -> anyhow::Result<()> {
    let me = std::fs::read_link("/proc/thread-self")?;
    let tid = me
        .file_name()
        .and_then(|t| t.to_str())
        .ok_or_else(|| anyhow::anyhow!("no thread id in {}", me.display()))?
        .to_owned();
    let status = std::process::Command::new("taskset")
        .args(["-p", "-c", cpus, &tid])
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "taskset -p -c {cpus} {tid}: {status}");
    Ok(())
}

/// Epoch milliseconds now: the time the preloaded tokens are saved at.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The machine and its load, for the notes each run prints on stderr.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
