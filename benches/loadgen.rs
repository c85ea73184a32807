//! Load generator: the real daemon, preloaded with N tokens, driven over its socket.
//!
//! ```text
//! cargo bench --bench loadgen -- --tokens 10000 --op find_token_by_id,save_token \
//!     --clients 1,16,64 --pipeline 1 --seconds 5 --json
//! ```
//!
//! Starts `target/release/tokend` (built by `cargo bench`) on a temp dir with the
//! refresher off, preloads the tokens straight into its database (`support/data.rs`),
//! then runs every operation at every client count, one after the other, on that one
//! daemon. Prints one line per run, or with `--json` the JSON object
//! `benches/alternatives/run.py` prints (`"system": "tokend"`); the conditions of each
//! run (errors, CPU used by the daemon, by this generator and by others) go to stderr.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it only runs a smoke check
//! of a second or two: every operation, a few dozen tokens, debug build.

#[allow(dead_code)] // each bench binary uses its own part of the support code
mod support;

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;

use support::daemon::{create_database, Daemon};
use support::drive::{self, Op, Outcome, Spec};

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Drive a preloaded tokend over its Unix socket"
)]
struct Args {
    /// Tokens to preload
    #[arg(long, default_value_t = 10_000)]
    tokens: u64,
    /// Operations, comma-separated: find_token_by_id, find_by_user, find_by_refresh,
    /// save_token, access_token, mix
    #[arg(long, default_value = "find_token_by_id", value_delimiter = ',')]
    op: Vec<String>,
    /// Client counts, comma-separated; one connection per client, all driven by one thread
    #[arg(long, default_value = "1", value_delimiter = ',')]
    clients: Vec<usize>,
    /// Requests in flight per connection (at most 128, the daemon's per-connection cap)
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Measured seconds per run
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Unmeasured seconds before each run's window
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Print the alternatives' JSON object per run instead of a line for people
    #[arg(long)]
    json: bool,
    /// Seed for the token choice
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where to make the temp dir (database and socket); default: the system's temp dir
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also run everything against the do-nothing echo server (the machine's floor)
    #[arg(long)]
    echo: bool,
    /// Confine the daemon to these CPUs (`taskset -c` list, e.g. `1`): an experiment on
    /// cross-core wake-ups; run the generator itself under `taskset -c 0` to match
    #[arg(long, value_name = "LIST")]
    daemon_cpus: Option<String>,
    /// Confine the load thread to these CPUs (`taskset -c` list): an experiment
    #[arg(long, value_name = "LIST")]
    client_cpus: Option<String>,
    /// Confine the echo server's thread to these CPUs (`taskset -c` list): an experiment
    #[arg(long, value_name = "LIST")]
    echo_cpus: Option<String>,
    /// Record the daemon with `perf record` during each run, into FILE.<op>.<clients>
    #[arg(long, value_name = "FILE")]
    perf: Option<PathBuf>,
}

fn main() -> ExitCode {
    let result = if support::invoked_by_cargo_bench() {
        Args::try_parse_from(support::bench_args())
            .map_err(|e| {
                let _ = e.print();
                anyhow::anyhow!("bad arguments")
            })
            .and_then(bench)
    } else {
        smoke()
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: Args) -> anyhow::Result<()> {
    let ops = args
        .op
        .iter()
        .map(|name| Op::parse(name).with_context(|| format!("unknown --op {name}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !(1..=128).contains(&args.pipeline) {
        bail!("--pipeline must be from 1 to 128");
    }
    // Lives as long as the process: each run's load thread holds it.
    let client_cpus: Option<&'static str> = args.client_cpus.clone().map(|c| &*c.leak());
    let mut builder = tempfile::Builder::new();
    builder.prefix("tokend-bench-");
    let dir = match &args.dir {
        Some(d) => builder.tempdir_in(d)?,
        None => builder.tempdir()?,
    };
    let daemon = preloaded(dir.path(), args.tokens, args.daemon_cpus.as_deref())?;
    for &op in &ops {
        for &clients in &args.clients {
            let spec = Spec {
                system: "tokend",
                op,
                clients,
                pipeline: args.pipeline,
                tokens: args.tokens,
                warmup: Duration::from_secs_f64(args.warmup),
                seconds: Duration::from_secs_f64(args.seconds),
                seed: args.seed,
                client_cpus,
            };
            let perf = match &args.perf {
                Some(file) => Some(start_perf(file, &spec, daemon.pid())?),
                None => None,
            };
            let outcome = drive::run(daemon.socket(), daemon.pid(), spec);
            if let Some(perf) = perf {
                stop_perf(perf)?;
            }
            report(&outcome?, args.json);
        }
    }
    let (rss, hwm) = daemon.memory()?;
    eprintln!(
        "# tokend after the runs: VmRSS {:.1} MB, VmHWM {:.1} MB",
        mb(rss),
        mb(hwm)
    );
    // A real reply to a find, for the echo server to send back.
    let reply = daemon.request_raw(r#"{"op":"find_token_by_id","seq":1,"token_id":"1"}"#)?;
    daemon.stop()?;
    if args.echo {
        let socket = support::echo::start(dir.path(), reply.as_bytes(), args.echo_cpus.clone())?;
        for &op in &ops {
            for &clients in &args.clients {
                let spec = Spec {
                    system: "echo",
                    op,
                    clients,
                    pipeline: args.pipeline,
                    tokens: args.tokens,
                    warmup: Duration::from_secs_f64(args.warmup),
                    seconds: Duration::from_secs_f64(args.seconds),
                    seed: args.seed,
                    client_cpus,
                };
                report(
                    &drive::run(&socket, std::process::id() as i32, spec)?,
                    args.json,
                );
            }
        }
    }
    Ok(())
}

/// A daemon on `dir` with `tokens` preloaded, refresher off.
fn preloaded(dir: &std::path::Path, tokens: u64, cpus: Option<&str>) -> anyhow::Result<Daemon> {
    let db = create_database(dir)?;
    let took = support::data::preload(&db, tokens, support::now_ms())?;
    let daemon = Daemon::start_on(dir, false, cpus)?;
    let (rss, _) = daemon.memory()?;
    eprintln!(
        "# tokend {} (pid {}): {tokens} tokens preloaded in {:.2} s into {}; ready in {:.3} s; VmRSS {:.1} MB",
        env!("CARGO_BIN_EXE_tokend"),
        daemon.pid(),
        took.as_secs_f64(),
        db.display(),
        daemon.ready_after.as_secs_f64(),
        mb(rss),
    );
    Ok(daemon)
}

fn report(outcome: &Outcome, json: bool) {
    if json {
        println!("{}", outcome.json());
    } else {
        println!("{}", outcome.line());
    }
    eprintln!("{}", outcome.note());
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// `perf record` of the daemon's threads with DWARF call graphs (the release build has
/// line tables but no frame pointers).
fn start_perf(file: &std::path::Path, spec: &Spec, pid: i32) -> anyhow::Result<Child> {
    let out = format!("{}.{}.{}", file.display(), spec.op.name(), spec.clients);
    let child = Command::new("perf")
        .args([
            "record",
            "-q",
            "-F",
            "499",
            "--call-graph",
            "dwarf,16384",
            "-o",
            &out,
            "-p",
        ])
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("start perf (is it installed?)")?;
    eprintln!("# perf recording into {out}; figures of this run are perturbed by it");
    Ok(child)
}

fn stop_perf(mut perf: Child) -> anyhow::Result<()> {
    let pid = nix::unistd::Pid::from_raw(perf.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT)?;
    perf.wait()?;
    Ok(())
}

/// What `cargo test --all-targets` runs: every operation briefly against a small data
/// set, failing on any error or miss, so that a change to the schema or the protocol
/// that breaks the benchmark breaks CI rather than the next benchmark run.
fn smoke() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("tokend-bench-smoke-")
        .tempdir()?;
    let tokens = 64;
    let daemon = preloaded(dir.path(), tokens, None)?;
    for op in Op::ALL {
        let spec = Spec {
            system: "tokend",
            op,
            clients: 2,
            pipeline: 4,
            tokens,
            warmup: Duration::ZERO,
            seconds: Duration::from_millis(150),
            seed: 1,
            client_cpus: None,
        };
        let outcome = drive::run(daemon.socket(), daemon.pid(), spec)?;
        eprintln!("{}", outcome.line());
        if outcome.errors > 0 || outcome.misses > 0 || outcome.ops == 0 {
            bail!("{}", outcome.note());
        }
    }
    daemon.stop()?;
    eprintln!("loadgen smoke check passed (`cargo bench --bench loadgen` runs the benchmark)");
    Ok(())
}
