//! One client connection: keeps `pipeline` requests in flight, times each from the
//! write that carried it to the read that returned its reply, and checks the reply.
//!
//! Replies come in request order, so the oldest request in flight is the one answered.
//! Only replies read inside the window count, towards both ops/s and the percentiles;
//! failed replies and finds that matched nothing are counted apart, as
//! `benches/alternatives/run.py` does. Requests are built with plain byte writes and
//! replies checked by their first bytes: every cycle the load generator spends is one the
//! daemon cannot.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::data::{self, N_CLIENTS};
use super::drive::{Op, Spec, Window, MIX};

/// What one client brings back.
pub(super) struct Tally {
    pub latencies: Vec<u64>,
    pub errors: u64,
    pub misses: u64,
    pub first_error: Option<String>,
}

pub(super) struct Client {
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
    pub fn new(
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

    pub async fn run(mut self, window: Window) -> anyhow::Result<Tally> {
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
