//! The load: `clients` connections, each its own request/response loop keeping
//! `pipeline` requests in flight, for a warm-up and then a measured window.
//!
//! All connections are driven from one thread by a current-thread tokio runtime (epoll),
//! not by a thread each. This machine has two cores: 64 client threads spend the load
//! generator's core switching between themselves, and a thread blocked in `recv` on a
//! Unix socket is woken not only by data but also whenever the server reads (the
//! socket's write-space wake-up has no event filter for a blocked reader), an extra
//! wake-up and cross-CPU interrupt per request that the server pays for (a read timeout,
//! `SO_RCVTIMEO`, does not help: the thread still blocks in `recv`). An epoll or `poll`
//! waiter (as tokend's own front) is woken only for the events it asked for.
//!
//! Each connection is a `client::Client`; what the run measured is an `outcome::Outcome`.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::net::UnixStream;

use super::client::{Client, Tally};
use super::daemon::{all_tasks_cpu_seconds, cpu_seconds_of, machine_idle_seconds};
use super::data;
use super::outcome::cpus;
pub use super::outcome::Outcome;

/// What the load asks for, by the wire operation it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `find_token_by_id` of a random token.
    FindById,
    /// `find_token` by `user_name` (the SDK's lookup by user signature).
    FindByUser,
    /// `find_token` by client credentials and refresh token.
    FindByRefresh,
    /// `save_token` of a whole token with a new access token and expiry, as the SDK saves
    /// after it refreshed: durable before the reply.
    Save,
    /// `access_token` by id (the refresher's read path: store lookup, expiry check).
    AccessToken,
    /// `MIX`, drawn per request.
    Mix,
}

/// The mix: what a fleet of SDK processes asks, mostly lookups (every CRM API call
/// makes one), now and then a save (the SDK saves after refreshing).
pub(super) const MIX: [(Op, u64); 5] = [
    (Op::FindById, 50),
    (Op::FindByUser, 35),
    (Op::AccessToken, 10),
    (Op::FindByRefresh, 4),
    (Op::Save, 1),
];

impl Op {
    pub const ALL: [Op; 6] = [
        Op::FindById,
        Op::FindByUser,
        Op::FindByRefresh,
        Op::Save,
        Op::AccessToken,
        Op::Mix,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::FindById => "find_token_by_id",
            Op::FindByUser => "find_by_user",
            Op::FindByRefresh => "find_by_refresh",
            Op::Save => "save_token",
            Op::AccessToken => "access_token",
            Op::Mix => "mix",
        }
    }

    /// By name; the alternatives' names (`find_by_id`, `save`) are accepted too.
    pub fn parse(s: &str) -> Option<Op> {
        match s {
            "find_by_id" => Some(Op::FindById),
            "save" => Some(Op::Save),
            _ => Op::ALL.into_iter().find(|op| op.name() == s),
        }
    }

    pub(super) fn is_find(self) -> bool {
        matches!(self, Op::FindById | Op::FindByUser | Op::FindByRefresh)
    }
}

/// One run: an operation at a client count and pipeline depth.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// What is measured: `tokend`, or `echo` for the do-nothing server (`echo.rs`).
    pub system: &'static str,
    pub op: Op,
    pub clients: usize,
    pub pipeline: usize,
    /// Tokens preloaded (ids 1..=tokens); requests pick one uniformly.
    pub tokens: u64,
    pub warmup: Duration,
    pub seconds: Duration,
    pub seed: u64,
    /// Confine the load thread (all clients) to these CPUs (`taskset -c` list): an
    /// experiment.
    pub client_cpus: Option<&'static str>,
}

/// The measured window, set once every client is connected.
#[derive(Clone, Copy)]
pub(super) struct Window {
    pub start: Instant,
    pub end: Instant,
}
/// Runs `spec` against the daemon on `socket` (process `pid`, for its CPU time).
pub fn run(socket: &Path, pid: i32, spec: Spec) -> anyhow::Result<Outcome> {
    if spec.clients == 0 || spec.pipeline == 0 || spec.tokens == 0 {
        bail!("clients, pipeline and tokens must be at least 1");
    }
    // The load thread connects, says so, waits for the window, runs it, then waits for
    // `done` so that it is still alive (and counted) when the CPU counters are read.
    // Every wait ends when the other side's channel end drops, so a failure on either
    // side cannot leave the other waiting.
    let (connected_tx, connected) = mpsc::channel::<Result<(), String>>();
    let (window_tx, window_rx) = mpsc::channel::<Window>();
    let (done, done_rx) = mpsc::channel::<()>();
    let socket = socket.to_owned();
    let load = std::thread::spawn(move || -> anyhow::Result<Vec<Tally>> {
        let setup = || -> anyhow::Result<_> {
            if let Some(cpus) = spec.client_cpus {
                super::pin_this_thread(cpus)?;
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let streams = rt.block_on(async {
                let mut streams = Vec::with_capacity(spec.clients);
                for _ in 0..spec.clients {
                    streams.push(UnixStream::connect(&socket).await.context("connect")?);
                }
                anyhow::Ok(streams)
            })?;
            Ok((rt, streams))
        };
        let (rt, streams) = match setup() {
            Ok(ready) => ready,
            Err(e) => {
                let _ = connected_tx.send(Err(format!("{e:#}")));
                return Err(e);
            }
        };
        let _ = connected_tx.send(Ok(()));
        let window = window_rx.recv().context("no window was set")?;
        let clients = Arc::new(data::clients());
        let tallies = rt.block_on(futures_util::future::join_all(
            streams.into_iter().enumerate().map(|(n, stream)| {
                let seed = data::mix(spec.seed ^ ((n as u64) << 32));
                Client::new(stream, spec, seed, clients.clone()).run(window)
            }),
        ));
        let _ = done_rx.recv();
        tallies.into_iter().collect()
    });
    let joined = |load: std::thread::JoinHandle<anyhow::Result<Vec<Tally>>>| {
        load.join()
            .map_err(|_| anyhow::anyhow!("the load thread panicked"))?
    };
    match connected.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => bail!("{e}"),
        Err(_) => {
            joined(load)?;
            bail!("the load thread ended before it connected");
        }
    }
    let start = Instant::now() + spec.warmup;
    let end = start + spec.seconds;
    let _ = window_tx.send(Window { start, end });

    let cpu = || {
        (
            cpu_seconds_of(&pid.to_string()).unwrap_or(0.0),
            cpu_seconds_of("self").unwrap_or(0.0),
            machine_idle_seconds(),
            all_tasks_cpu_seconds(),
        )
    };
    std::thread::sleep(start.saturating_duration_since(Instant::now()));
    let before = cpu();
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let after = cpu();
    drop(done);

    let mut outcome = Outcome {
        spec,
        ops: 0,
        window: end - start,
        latencies: Vec::new(),
        errors: 0,
        misses: 0,
        first_error: None,
        daemon_cpu: after.0 - before.0,
        loadgen_cpu: after.1 - before.1,
        machine_cpu: ((end - start).as_secs_f64() * cpus() as f64 - (after.2 - before.2)).max(0.0),
        tasks_cpu: after.3.zip(before.3).map(|(a, b)| a - b),
    };
    for c in joined(load)? {
        outcome.ops += c.latencies.len() as u64;
        outcome.latencies.extend_from_slice(&c.latencies);
        outcome.errors += c.errors;
        outcome.misses += c.misses;
        outcome.first_error = outcome.first_error.or(c.first_error);
    }
    outcome.latencies.sort_unstable();
    Ok(outcome)
}
