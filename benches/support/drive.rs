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
//! A request's latency is the time from the write that carried it to the read that
//! returned its reply (replies come in request order, so the oldest request in flight is
//! the one answered). Only replies read inside the window count, towards both ops/s and
//! the percentiles; failed replies and finds that matched nothing are counted apart, as
//! `benches/alternatives/run.py` does. Clients build requests with plain byte writes and
//! check replies by their first bytes: every cycle the load generator spends is one the
//! daemon cannot.

use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::daemon::{all_tasks_cpu_seconds, cpu_seconds_of, machine_idle_seconds};
use super::data::{self, N_CLIENTS};

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
const MIX: [(Op, u64); 5] = [
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

    fn is_find(self) -> bool {
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

/// What one run measured.
pub struct Outcome {
    pub spec: Spec,
    /// Successful replies read inside the window.
    pub ops: u64,
    pub window: Duration,
    /// Their latencies in nanoseconds, ascending.
    pub latencies: Vec<u64>,
    pub errors: u64,
    pub misses: u64,
    pub first_error: Option<String>,
    /// CPU seconds used inside the window by the server (the daemon, or this process for
    /// `echo`), by this load generator, and by the whole machine.
    pub daemon_cpu: f64,
    pub loadgen_cpu: f64,
    pub machine_cpu: f64,
    /// CPU seconds all tasks ran inside the window, when the cgroup counter is readable.
    pub tasks_cpu: Option<f64>,
}

impl Outcome {
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.window.as_secs_f64()
    }

    /// Nearest-rank percentile in µs, as `common.py`'s `percentile`.
    pub fn percentile_us(&self, p: f64) -> f64 {
        let n = self.latencies.len();
        if n == 0 {
            return 0.0;
        }
        let rank = ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n);
        self.latencies[rank - 1] as f64 / 1000.0
    }

    /// The alternatives' JSON line, key for key and in their order.
    pub fn json(&self) -> String {
        format!(
            "{{\"system\": \"{}\", \"op\": \"{}\", \"tokens\": {}, \"clients\": {}, \"ops\": {}, \
             \"seconds\": {:.3}, \"ops_per_sec\": {:.1}, \"p50_us\": {:.1}, \"p99_us\": {:.1}, \"p999_us\": {:.1}}}",
            self.spec.system,
            self.spec.op.name(),
            self.spec.tokens,
            self.spec.clients,
            self.ops,
            self.window.as_secs_f64(),
            self.ops_per_sec(),
            self.percentile_us(50.0),
            self.percentile_us(99.0),
            self.percentile_us(99.9),
        )
    }

    /// A line for people.
    pub fn line(&self) -> String {
        format!(
            "{:<6} {:<16} tokens={:<8} clients={:<3} pipeline={:<3} ops={:<8} {:>10.1} ops/s  p50 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs",
            self.spec.system,
            self.spec.op.name(),
            self.spec.tokens,
            self.spec.clients,
            self.spec.pipeline,
            self.ops,
            self.ops_per_sec(),
            self.percentile_us(50.0),
            self.percentile_us(99.0),
            self.percentile_us(99.9),
        )
    }

    /// The conditions of the run, for stderr: the cores used by the server, by this
    /// generator, by other processes (others' builds on this shared machine: a figure
    /// taken while they ran is disturbed), and busy but charged to no task (interrupts,
    /// context switches, idle entry and exit, time the hypervisor took: it grows with
    /// wake-ups). The last two come from the root cgroup's CPU counter and the CPUs' idle
    /// counters; without the cgroup counter they are reported as one.
    pub fn note(&self) -> String {
        let secs = self.window.as_secs_f64();
        // The echo server runs in this process: its CPU is in the generator's.
        let server = if self.spec.system == "echo" {
            0.0
        } else {
            self.daemon_cpu
        };
        let ours = server + self.loadgen_cpu;
        let others = match self.tasks_cpu {
            Some(all) => format!(
                "other processes {:.2}, uncharged {:.2}",
                (all - ours).max(0.0) / secs,
                (self.machine_cpu - all).max(0.0) / secs
            ),
            None => format!(
                "other processes and uncharged {:.2}",
                (self.machine_cpu - ours).max(0.0) / secs
            ),
        };
        let mut note = format!(
            "# {} {} clients={} pipeline={}: errors {}; misses {}; cores used: server {:.2}, \
             load generator {:.2}, {others} (of {}); loadavg1 {}",
            self.spec.system,
            self.spec.op.name(),
            self.spec.clients,
            self.spec.pipeline,
            self.errors,
            self.misses,
            server / secs,
            self.loadgen_cpu / secs,
            cpus(),
            super::loadavg(),
        );
        if let Some(e) = &self.first_error {
            note.push_str("; first error: ");
            note.push_str(e);
        }
        note
    }
}

/// The machine's CPUs (not this process's share of them: `taskset` may narrow that).
fn cpus() -> usize {
    std::fs::read_to_string("/proc/stat")
        .map(|s| {
            s.lines()
                .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
                .count()
        })
        .unwrap_or(1)
        .max(1)
}

/// The measured window, set once every client is connected.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
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

/// What one client brings back.
struct Tally {
    latencies: Vec<u64>,
    errors: u64,
    misses: u64,
    first_error: Option<String>,
}

struct Client {
    stream: UnixStream,
    spec: Spec,
    clients: Arc<Vec<(String, String)>>,
    rng: u64,
    next_seq: u64,
    /// Requests written and not yet answered: seq, write time, operation.
    in_flight: VecDeque<(u64, Instant, Op)>,
    out: Vec<u8>,
    input: Vec<u8>,
    /// Bytes of `input` holding data not yet consumed.
    filled: usize,
    /// An access-token expiry an hour from the start, for saves.
    expiry_ms: i64,
    tally: Tally,
}

/// How long a client waits on the socket before it calls the daemon stuck.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

impl Client {
    fn new(
        stream: UnixStream,
        spec: Spec,
        seed: u64,
        clients: Arc<Vec<(String, String)>>,
    ) -> Client {
        let expected = (spec.seconds + spec.warmup).as_secs_f64() * 200_000.0 / spec.clients as f64;
        Client {
            stream,
            spec,
            clients,
            rng: seed,
            next_seq: 1,
            in_flight: VecDeque::with_capacity(spec.pipeline),
            out: Vec::with_capacity(spec.pipeline * 512),
            input: vec![0; 64 * 1024],
            filled: 0,
            expiry_ms: super::now_ms() + 3_600_000,
            tally: Tally {
                latencies: Vec::with_capacity(expected.min(4e6) as usize),
                errors: 0,
                misses: 0,
                first_error: None,
            },
        }
    }

    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        data::mix(self.rng)
    }

    async fn run(mut self, window: Window) -> anyhow::Result<Tally> {
        loop {
            if Instant::now() >= window.end {
                break;
            }
            let want = self.spec.pipeline - self.in_flight.len();
            if want > 0 {
                self.out.clear();
                for _ in 0..want {
                    self.write_request()?;
                }
                let sent = Instant::now();
                for entry in self.in_flight.iter_mut().rev().take(want) {
                    entry.1 = sent;
                }
                tokio::time::timeout(IO_TIMEOUT, self.stream.write_all(&self.out))
                    .await
                    .context("write requests: timed out")?
                    .context("write requests")?;
            }
            self.read_replies(Some(window)).await?;
        }
        // Collect what is still in flight, unmeasured, so no reply is left unread.
        while !self.in_flight.is_empty() {
            self.read_replies(None).await?;
        }
        Ok(self.tally)
    }

    /// Appends one request line to `out` and notes it as in flight.
    fn write_request(&mut self) -> anyhow::Result<()> {
        let op = match self.spec.op {
            Op::Mix => {
                let total: u64 = MIX.iter().map(|(_, w)| w).sum();
                let mut pick = self.random() % total;
                MIX.iter()
                    .find(|(_, w)| {
                        let hit = pick < *w;
                        pick = pick.saturating_sub(*w);
                        hit
                    })
                    .map_or(Op::FindById, |(op, _)| *op)
            }
            op => op,
        };
        let i = self.random() % self.spec.tokens;
        let seq = self.next_seq;
        self.next_seq += 1;
        let out = &mut self.out;
        let (client_id, client_secret) = &self.clients[(i % N_CLIENTS) as usize];
        match op {
            Op::FindById => write!(
                out,
                r#"{{"op":"find_token_by_id","seq":{seq},"token_id":"{}"}}"#,
                data::token_id(i)
            )?,
            Op::AccessToken => write!(
                out,
                r#"{{"op":"access_token","seq":{seq},"token_id":"{}"}}"#,
                data::token_id(i)
            )?,
            Op::FindByUser => {
                write!(
                    out,
                    r#"{{"op":"find_token","seq":{seq},"token":{{"user_name":""#
                )?;
                data::write_user_name(out, i);
                out.extend_from_slice(b"\"}}");
            }
            Op::FindByRefresh => {
                write!(
                    out,
                    r#"{{"op":"find_token","seq":{seq},"token":{{"client_id":"{client_id}","client_secret":"{client_secret}","refresh_token":""#
                )?;
                data::write_refresh_token(out, i);
                out.extend_from_slice(b"\"}}");
            }
            Op::Save => {
                let salt = self.rng | 1;
                write!(
                    out,
                    r#"{{"op":"save_token","seq":{seq},"token":{{"id":"{}","user_name":""#,
                    data::token_id(i)
                )?;
                data::write_user_name(out, i);
                write!(
                    out,
                    r#"","client_id":"{client_id}","client_secret":"{client_secret}","refresh_token":""#
                )?;
                data::write_refresh_token(out, i);
                out.extend_from_slice(br#"","access_token":""#);
                data::write_access_token(out, i, salt);
                write!(
                    out,
                    r#"","expiry_time":"{}","redirect_url":"{}","api_domain":"{}"}}}}"#,
                    self.expiry_ms,
                    data::REDIRECT_URL,
                    data::API_DOMAIN
                )?;
            }
            Op::Mix => bail!("a mix draws a concrete operation per request"),
        }
        out.push(b'\n');
        self.in_flight.push_back((seq, Instant::now(), op));
        Ok(())
    }

    /// One read; checks and (inside `window`) records every complete reply it brought.
    async fn read_replies(&mut self, window: Option<Window>) -> anyhow::Result<()> {
        if self.filled == self.input.len() {
            self.input.resize(self.input.len() * 2, 0);
        }
        let n = tokio::time::timeout(IO_TIMEOUT, self.stream.read(&mut self.input[self.filled..]))
            .await
            .context("read replies: timed out")?
            .context("read replies")?;
        if n == 0 {
            bail!("the daemon closed the connection");
        }
        let received = Instant::now();
        self.filled += n;
        let mut consumed = 0;
        while let Some(len) = self.input[consumed..self.filled]
            .iter()
            .position(|&b| b == b'\n')
        {
            let line = consumed..consumed + len;
            consumed += len + 1;
            let (seq, sent, op) = self
                .in_flight
                .pop_front()
                .context("a reply to no request")?;
            let verdict = check(&self.input[line], seq, op)?;
            let counted = window.is_some_and(|w| received >= w.start && received <= w.end);
            match verdict {
                Verdict::Ok if counted => {
                    let ns = received.duration_since(sent).as_nanos() as u64;
                    self.tally.latencies.push(ns);
                }
                Verdict::Ok => {}
                Verdict::Miss => self.tally.misses += 1,
                Verdict::Error(e) => {
                    self.tally.errors += 1;
                    self.tally.first_error.get_or_insert(e);
                }
            }
        }
        self.input.copy_within(consumed..self.filled, 0);
        self.filled -= consumed;
        Ok(())
    }
}

enum Verdict {
    Ok,
    /// A find that matched nothing: every requested token exists, so this is a fault.
    Miss,
    Error(String),
}

/// Judges a reply line by its first bytes: `{"seq":N,"ok":true,"result":...`.
fn check(line: &[u8], seq: u64, op: Op) -> anyhow::Result<Verdict> {
    let rest = line
        .strip_prefix(b"{\"seq\":")
        .with_context(|| format!("not a reply: {}", show(line)))?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let got: u64 = std::str::from_utf8(&rest[..digits])?.parse()?;
    if got != seq {
        bail!("reply for seq {got} where {seq} was next: replies out of order");
    }
    let Some(rest) = rest[digits..].strip_prefix(b",\"ok\":true") else {
        // Error replies carry a code and a message, never a secret.
        return Ok(Verdict::Error(show(line)));
    };
    if op.is_find() && rest.starts_with(b",\"result\":{\"token\":null") {
        return Ok(Verdict::Miss);
    }
    Ok(Verdict::Ok)
}

fn show(line: &[u8]) -> String {
    String::from_utf8_lossy(&line[..line.len().min(300)]).into_owned()
}
