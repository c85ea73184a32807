//! tokend at a million tokens: the refresher's schedule, start-up, memory, and load.
//!
//! ```text
//! cargo bench --bench scale -- --tokens 1000000 [--json]
//! ```
//!
//! 1. **The schedule, in this process**: `deadline()` + `Deadlines::set` for every token,
//!    as the refresher does at start, timed; its memory counted twice: the bytes this
//!    process's allocator handed out for it (exact; a counting global allocator), and
//!    the growth of this process's VmRSS (what the kernel charges, malloc's overhead
//!    included). Then one reschedule of every token (what a save does), timed.
//! 2. **The daemon, refresher off**: preload, start, time to the first answered ping,
//!    VmRSS; finds and saves over the socket (`support/drive.rs`); a dry-run cleanup;
//!    one `status` request.
//! 3. **The daemon, refresher on**: every token refreshable, its expiry a day away, its
//!    api_domain resolving to a loopback port where nothing listens (so even a refresh
//!    attempt stays local): time to ready, time until `status` reports every token
//!    scheduled, VmRSS, and the growth over (2) per token; VmRSS again once as many
//!    tokens have been looked up by id as the store's cache holds. Last, one
//!    `delete_tokens`.
//!
//! The long steps (the cleanup pass, the schedule load, `delete_tokens`) run `probed`:
//! another client keeps finding a token meanwhile, and the slowest of those finds is how
//! long the step held every other client up.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it runs all three on a few
//! hundred tokens, as a smoke check.

#[path = "scale/summary.rs"]
mod summary;
#[allow(dead_code)] // each bench binary uses its own part of the support code
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use tokend::config::RefreshConfig;
use tokend::schedule::{deadline, Deadlines, ScheduleInput};

use summary::{print_summary, Probe, Summary};
use support::daemon::{create_database, memory_of, Daemon};
use support::data::LIFETIME_MS;
use support::drive::{self, Op, Spec};

/// The system allocator, counting the bytes live: the schedule's exact heap footprint.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Parser)]
#[command(
    name = "scale",
    about = "tokend's start-up, memory and schedule at N tokens"
)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    tokens: u64,
    /// Operations to drive against the preloaded daemon, comma-separated
    #[arg(
        long,
        default_value = "find_token_by_id,save_token",
        value_delimiter = ','
    )]
    op: Vec<String>,
    /// Client counts for those operations
    #[arg(long, default_value = "1,64", value_delimiter = ',')]
    clients: Vec<usize>,
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Print JSON objects (the load runs in the alternatives' shape, then a summary)
    #[arg(long)]
    json: bool,
    /// Where to make the temp dir; default: the system's temp dir
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let result = if support::invoked_by_cargo_bench() {
        Args::try_parse_from(support::bench_args())
            .map_err(|e| {
                let _ = e.print();
                anyhow::anyhow!("bad arguments")
            })
            .and_then(|a| scale(&a))
    } else {
        smoke()
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scale: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `work` while another client keeps finding a token: how long the work holds the
/// daemon's other clients up.
fn probed<T>(daemon: &Daemon, work: impl FnOnce() -> T) -> anyhow::Result<(T, Probe)> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let probe = scope.spawn(|| {
            let mut p = Probe::default();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                daemon.request(r#"{"op":"find_token_by_id","token_id":"1"}"#)?;
                p = Probe {
                    worst: p.worst.max(t.elapsed()),
                    finds: p.finds + 1,
                };
            }
            anyhow::Ok(p)
        });
        let out = work();
        stop.store(true, Ordering::Relaxed);
        let p = probe
            .join()
            .map_err(|_| anyhow::anyhow!("the probe thread panicked"))??;
        Ok((out, p))
    })
}

fn scale(args: &Args) -> anyhow::Result<()> {
    let ops = args
        .op
        .iter()
        .map(|n| Op::parse(n).with_context(|| format!("unknown --op {n}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut s = Summary {
        tokens: args.tokens,
        ..Summary::default()
    };
    schedule_in_process(&mut s)?;

    let mut builder = tempfile::Builder::new();
    builder.prefix("tokend-scale-");
    let dir = match &args.dir {
        Some(d) => builder.tempdir_in(d)?,
        None => builder.tempdir()?,
    };
    let db = create_database(dir.path())?;
    s.preload_s = support::data::preload(&db, args.tokens, support::now_ms())?.as_secs_f64();
    eprintln!(
        "# {} tokens preloaded in {:.1} s into {}",
        args.tokens,
        s.preload_s,
        db.display()
    );

    let daemon = Daemon::start(dir.path(), false)?;
    s.ready_s = daemon.ready_after.as_secs_f64();
    s.ready_cpu_s = daemon.cpu_seconds();
    s.rss_ready = daemon.memory()?.0;
    for &op in &ops {
        for &clients in &args.clients {
            let spec = Spec {
                system: "tokend",
                op,
                clients,
                pipeline: 1,
                tokens: args.tokens,
                warmup: Duration::from_secs_f64(args.warmup),
                seconds: Duration::from_secs_f64(args.seconds),
                seed: 7,
                client_cpus: None,
            };
            let outcome = drive::run(daemon.socket(), daemon.pid(), spec)?;
            println!(
                "{}",
                if args.json {
                    outcome.json()
                } else {
                    outcome.line()
                }
            );
            eprintln!("{}", outcome.note());
        }
    }
    s.rss_after_load = daemon.memory()?.0;
    let started = Instant::now();
    let (cleanup, probe) = probed(&daemon, || {
        daemon.request(r#"{"op":"cleanup","dry_run":true}"#)
    })?;
    let cleanup = cleanup?;
    s.cleanup_probe = probe;
    if cleanup["ok"] == true {
        s.cleanup_dry_run_s = Some(started.elapsed().as_secs_f64());
        let removable = cleanup["result"]["removed"].as_array().map_or(0, Vec::len);
        eprintln!("# the dry-run cleanup would remove {removable} sessions");
    } else {
        eprintln!("# dry-run cleanup refused: {cleanup}");
    }
    let started = Instant::now();
    let status = daemon.request(r#"{"op":"status"}"#)?;
    s.status_s = started.elapsed().as_secs_f64();
    if status["ok"] != true {
        bail!("status failed: {status}");
    }
    daemon.stop()?;

    refresher_in_daemon(dir.path(), &mut s)?;
    print_summary(&s, args.json);
    Ok(())
}

/// Part 1: the refresher's schedule for `s.tokens` tokens, built here directly.
fn schedule_in_process(s: &mut Summary) -> anyhow::Result<()> {
    let cfg = default_refresh_config()?;
    let now = support::now_ms();
    // The rows the refresher gets from the store at start, made before the clock and
    // the counters start, and alive until after they stop: only the schedule is measured.
    let rows: Vec<(String, ScheduleInput)> = (0..s.tokens)
        .map(|i| {
            let expiry = now + LIFETIME_MS + (i % 3600) as i64 * 1000;
            let input = ScheduleInput {
                expiry_ms: Some(expiry),
                saved_at: now,
                next_refresh_at: None,
            };
            (support::data::token_id(i).to_string(), input)
        })
        .collect();
    let heap_before = LIVE.load(Ordering::Relaxed);
    let rss_before = memory_of("/proc/self/status")?.0;
    let started = Instant::now();
    let mut deadlines = Deadlines::default();
    for (id, input) in &rows {
        deadlines.set(id, deadline(*input, &cfg, fastrand::f64()));
    }
    s.schedule_build_s = started.elapsed().as_secs_f64();
    s.schedule_heap_bytes = LIVE.load(Ordering::Relaxed) - heap_before;
    s.schedule_rss_bytes = memory_of("/proc/self/status")?.0.saturating_sub(rss_before);
    if deadlines.len() as u64 != s.tokens {
        bail!("scheduled {} of {} tokens", deadlines.len(), s.tokens);
    }
    // Every token saved again by a client: its deadline moves.
    let started = Instant::now();
    for (id, input) in &rows {
        let moved = ScheduleInput {
            expiry_ms: input.expiry_ms.map(|e| e + 3_600_000),
            saved_at: now + 3_600_000,
            ..*input
        };
        deadlines.set(id, deadline(moved, &cfg, fastrand::f64()));
    }
    s.reschedule_ns_per_token = started.elapsed().as_nanos() as f64 / s.tokens as f64;
    drop(deadlines);
    Ok(())
}

/// The refresher's configuration with every default, as a daemon without a config
/// file runs.
fn default_refresh_config() -> anyhow::Result<RefreshConfig> {
    Ok(tokend::Config::builtin(&HashMap::new())?.refresh)
}

/// Part 3: the daemon's own start with every token refreshable and scheduled.
fn refresher_in_daemon(dir: &Path, s: &mut Summary) -> anyhow::Result<()> {
    let daemon = Daemon::start(dir, true)?;
    s.refresh_ready_s = daemon.ready_after.as_secs_f64();
    let (scheduled, probe) = probed(&daemon, || daemon.wait_scheduled(s.tokens))?;
    let (after_ready, status) = scheduled?;
    s.schedule_load_probe = probe;
    s.refresh_scheduled_s = s.refresh_ready_s + after_ready.as_secs_f64();
    s.refresh_rss = daemon.memory()?.0;
    let r = &status["result"];
    eprintln!("# refresher on: status {r}");
    if r["scheduled"].as_u64() != Some(s.tokens) || r["in_flight"] != 0 || r["refreshed"] != 0 {
        bail!("expected {} scheduled and nothing refreshed: {r}", s.tokens);
    }
    fill_the_cache(&daemon, s.tokens)?;
    s.refresh_rss_cache_full = daemon.memory()?.0;
    // Last, because it empties the database.
    let started = Instant::now();
    let (deleted, probe) = probed(&daemon, || daemon.request(r#"{"op":"delete_tokens"}"#))?;
    s.delete_all_s = started.elapsed().as_secs_f64();
    s.delete_all_probe = probe;
    let deleted = deleted.context("delete_tokens")?;
    if deleted["result"]["deleted"].as_u64() != Some(s.tokens) {
        bail!("delete_tokens: expected {} deleted: {deleted}", s.tokens);
    }
    daemon.stop()
}

/// Looks up as many distinct tokens by id as the store's cache holds (the ids the
/// preload numbers from 1), so that it is full.
fn fill_the_cache(daemon: &Daemon, tokens: u64) -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::os::unix::net::UnixStream::connect(daemon.socket())?;
    let mut out = stream.try_clone()?;
    let mut replies = BufReader::new(stream);
    let mut reply = String::new();
    for i in 0..(tokend::store::CACHE_CAPACITY as u64).min(tokens) {
        let id = support::data::token_id(i);
        writeln!(out, r#"{{"op":"find_token_by_id","token_id":"{id}"}}"#)?;
        reply.clear();
        replies.read_line(&mut reply)?;
        if !reply.contains(r#""ok":true"#) || reply.contains(r#""token":null"#) {
            bail!("looking up token {id} to fill the cache: {reply}");
        }
    }
    Ok(())
}

/// What `cargo test --all-targets` runs: all three parts on a few hundred tokens.
fn smoke() -> anyhow::Result<()> {
    let tokens = 300;
    let mut s = Summary {
        tokens,
        ..Summary::default()
    };
    schedule_in_process(&mut s)?;
    let dir = tempfile::Builder::new()
        .prefix("tokend-scale-smoke-")
        .tempdir()?;
    let db = create_database(dir.path())?;
    support::data::preload(&db, tokens, support::now_ms())?;
    let daemon = Daemon::start(dir.path(), false)?;
    let spec = Spec {
        system: "tokend",
        op: Op::FindById,
        clients: 1,
        pipeline: 1,
        tokens,
        warmup: Duration::ZERO,
        seconds: Duration::from_millis(100),
        seed: 7,
        client_cpus: None,
    };
    let outcome = drive::run(daemon.socket(), daemon.pid(), spec)?;
    if outcome.errors > 0 || outcome.misses > 0 || outcome.ops == 0 {
        bail!("{}", outcome.note());
    }
    daemon.stop()?;
    refresher_in_daemon(dir.path(), &mut s)?;
    eprintln!("scale smoke check passed (`cargo bench --bench scale` runs the benchmark)");
    Ok(())
}
