//! One client connection: framing, pipelining and dispatch.
//!
//! Each connection runs as its own task, so a slow or stuck client delays nobody else.
//! Requests are read and sent on to the store without waiting for earlier replies to be
//! written (a connection that waits for each reply before reading the next request loses
//! an order of magnitude of pipelined throughput), and replies are written in request
//! order. At most `MAX_IN_FLIGHT` requests per connection are outstanding, and at most
//! one of them a `get_tokens` page: a client that writes without reading gets
//! backpressure, not unbounded memory.
//!
//! A connection's requests take effect in the order it sent them, so that a pipelined
//! lookup sees what the requests before it did. The store's mailbox keeps that order
//! among the store's requests. A request to the refresher or the cleanup actor (a
//! refresh, an access token, a cleanup pass) writes through the store later, at its own
//! pace, so nothing after it is read until it is answered; its reply would be waited for
//! anyway, since replies go out in order.
//!
//! A `find_token_by_id` the store's cache can answer (`store::Shared`) is answered here,
//! without a message to the store, but only when no earlier request of the connection
//! is still waiting on an actor: answered ahead of them, it could reflect less than an
//! earlier reply will (an earlier save of the client's own, or a newer version of the
//! token that an earlier lookup found).

use std::future::Future;
use std::pin::Pin;

use actix::Addr;
use futures_util::stream::{FuturesOrdered, StreamExt};
use futures_util::FutureExt;
use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::UnixStream;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::cleanup::{CleanupActor, RunCleanup};
use crate::framing::{Frame, LineCodec};
use crate::protocol::{self, Answer, Code, Request, TokenJson, TokenKey, WireError};
use crate::refresher::{self, RefresherActor};
use crate::store::{self, StoreActor};

/// Requests one connection may have outstanding before it stops reading.
const MAX_IN_FLIGHT: usize = 128;

/// `get_tokens` pages one connection may have outstanding. A page holds up to 1,000
/// tokens; `MAX_IN_FLIGHT` of them, pipelined by a client that does not read, would pin
/// ~100 MB per connection. Paging is sequential anyway (each cursor comes from the page
/// before), so one is all a client can use.
const MAX_PAGES_IN_FLIGHT: usize = 1;

/// What the rest of the daemon offers a connection.
#[derive(Clone)]
pub struct Services {
    pub store: Addr<StoreActor>,
    pub shared: store::Shared,
    pub refresher: Addr<RefresherActor>,
    pub cleanup: Addr<CleanupActor>,
}

/// An encoded reply line, and what its request was.
type PendingReply = Pin<Box<dyn Future<Output = (Vec<u8>, Kind)>>>;

/// What a request's reply waits for, for what a connection may have in flight.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Nothing: it was answered as it was read (a cache hit, or an error).
    Ready,
    /// The store.
    Store,
    /// The store, for a `get_tokens` page.
    Page,
    /// The refresher or the cleanup actor: nothing after it is read until it is answered.
    Alone,
}

/// Requests a connection has in flight: waiting on an actor; pages and `Alone` ones
/// among them.
#[derive(Default)]
struct InFlight {
    at_actors: usize,
    pages: usize,
    alone: usize,
}

impl InFlight {
    fn count(&mut self, kind: Kind, started: bool) {
        let step = |n: &mut usize| if started { *n += 1 } else { *n -= 1 };
        match kind {
            Kind::Ready => return,
            Kind::Store => {}
            Kind::Page => step(&mut self.pages),
            Kind::Alone => step(&mut self.alone),
        }
        step(&mut self.at_actors);
    }

    /// Whether the connection may read its next request.
    fn may_read(&self) -> bool {
        self.pages < MAX_PAGES_IN_FLIGHT && self.alone == 0
    }
}

/// Serves one connection until the client hangs up or `shutdown` fires; on shutdown,
/// requests already read are still answered. `uid`: the client's user, for the log.
pub async fn serve(
    stream: UnixStream,
    uid: u32,
    services: Services,
    max_line: usize,
    shutdown: CancellationToken,
) {
    let (read, write) = stream.into_split();
    let mut requests = FramedRead::new(read, LineCodec::new(max_line));
    let mut out = BufWriter::new(write);
    let mut pending: FuturesOrdered<PendingReply> = FuturesOrdered::new();
    let mut reading = true;
    let mut in_flight = InFlight::default();
    loop {
        tokio::select! {
            biased;
            Some((reply, kind)) = pending.next(), if !pending.is_empty() => {
                in_flight.count(kind, false);
                if out.write_all(&reply).await.is_err() {
                    return;
                }
                // Write every reply that is already done, then flush once.
                while let Some(Some((reply, kind))) = pending.next().now_or_never() {
                    in_flight.count(kind, false);
                    if out.write_all(&reply).await.is_err() {
                        return;
                    }
                }
                if out.flush().await.is_err() {
                    return;
                }
            }
            frame = requests.next(), if reading && pending.len() < MAX_IN_FLIGHT && in_flight.may_read() => match frame {
                Some(Ok(Frame::Line(line))) => {
                    let (reply, kind) = handle(&line, &services, uid, in_flight.at_actors == 0);
                    in_flight.count(kind, true);
                    pending.push_back(reply);
                }
                Some(Ok(Frame::TooLong)) => pending.push_back(ready(&Value::Null, Err(WireError::new(
                    Code::TooLarge,
                    format!("request line longer than {max_line} bytes; it was skipped"),
                )))),
                // A read error or end of input: answer what was read, then close.
                Some(Err(_)) | None => reading = false,
            },
            () = shutdown.cancelled(), if reading => reading = false,
        }
        if !reading && pending.is_empty() {
            break;
        }
    }
    let _ = out.shutdown().await;
}

/// Parses one line and starts its work; the future yields the encoded reply line.
/// `use_cache`: whether a lookup by id may be answered from the store's cache.
fn handle(line: &[u8], services: &Services, uid: u32, use_cache: bool) -> (PendingReply, Kind) {
    let (seq, request) = protocol::parse(line);
    let request = match request {
        Ok(r) => r,
        Err(e) => return (ready(&seq, Err(e)), Kind::Ready),
    };
    // A peek goes to the store: a cache hit counts as a use.
    if let (
        true,
        Request::FindTokenById {
            token_id,
            peek: false,
        },
    ) = (use_cache, &request)
    {
        if let Some(json) = services.shared.find_by_id(token_id) {
            return (ready(&seq, Ok(Answer::Found(TokenJson(json)))), Kind::Ready);
        }
    }
    let kind = match request {
        Request::GetTokens { .. } => Kind::Page,
        Request::AccessToken { .. } | Request::Refresh { .. } | Request::Cleanup { .. } => {
            Kind::Alone
        }
        _ => Kind::Store,
    };
    let services = services.clone();
    let reply = Box::pin(async move {
        let result = dispatch(request, &services, uid).await;
        let mut out = Vec::with_capacity(512);
        protocol::encode(&seq, &result, &mut out);
        (out, kind)
    });
    (reply, kind)
}

fn ready(seq: &Value, result: Result<Answer, WireError>) -> PendingReply {
    let mut out = Vec::with_capacity(1024);
    protocol::encode(seq, &result, &mut out);
    Box::pin(std::future::ready((out, Kind::Ready)))
}

/// Every operation, each a hand-off to the actor that does it. Deletes carry the
/// client's `uid` for the store's log: a token gone is what an operator asks about.
async fn dispatch(request: Request, s: &Services, uid: u32) -> Result<Answer, WireError> {
    let (store, refresher) = (&s.store, &s.refresher);
    let answer = match request {
        Request::SaveToken { token } => Answer::Token {
            token: Some(ask(store.send(store::Save(token))).await?),
        },
        Request::FindToken { token } => Answer::Token {
            token: ask(store.send(store::Find { token, touch: true })).await?,
        },
        Request::FindTokenById {
            token_id,
            peek: true,
        } => Answer::Token {
            token: ask(store.send(store::FindById {
                id: token_id,
                touch: false,
            }))
            .await?,
        },
        Request::FindTokenById { token_id, .. } => {
            match ask(store.send(store::FindJsonById(token_id))).await? {
                Some(json) => Answer::Found(TokenJson(json)),
                None => Answer::Token { token: None },
            }
        }
        Request::DeleteToken { token_id } => Answer::Deleted {
            deleted: ask(store.send(store::Delete { id: token_id, uid })).await?,
        },
        Request::GetTokens { limit, after } => {
            let (tokens, next) = ask(store.send(store::List { after, limit })).await?;
            Answer::Tokens { tokens, next }
        }
        Request::DeleteTokens => Answer::DeletedCount {
            deleted: ask(store.send(store::DeleteAll { uid })).await?,
        },
        Request::Ping => Answer::Pong {
            version: env!("CARGO_PKG_VERSION"),
            protocol: protocol::PROTOCOL_VERSION,
            tokens: ask(store.send(store::Count)).await?,
        },
        Request::AccessToken { key } => {
            let ask_for = match key {
                TokenKey::Id(id) => refresher::AccessToken::ById(id),
                TokenKey::UserName(name) => refresher::AccessToken::ByUserName(name),
            };
            let t = ask(refresher.send(ask_for)).await?;
            Answer::Access {
                token_id: t.id().to_owned(),
                access_token: t.token.access_token,
                expiry_time: t.token.expiry_time,
                api_domain: t.token.api_domain,
            }
        }
        Request::Refresh { token_id } => Answer::Token {
            token: Some(ask(refresher.send(refresher::Refresh(token_id))).await?),
        },
        Request::Cleanup { dry_run } => {
            let (dry_run, removed) = ask(s.cleanup.send(RunCleanup { dry_run })).await?;
            Answer::Cleanup { dry_run, removed }
        }
        Request::Status => Answer::Status {
            tokens: ask(store.send(store::CountByState))
                .await?
                .into_iter()
                .map(|(state, n)| (state.as_str(), n))
                .collect(),
            refresher: refresher
                .send(refresher::GetStatus)
                .await
                .map_err(|_| WireError::new(Code::ShuttingDown, "tokend is shutting down"))?,
        },
    };
    Ok(answer)
}

/// Awaits an actor's reply; a mailbox error means the actor has stopped.
async fn ask<T, E: Into<WireError>>(
    sent: impl Future<Output = Result<Result<T, E>, actix::MailboxError>>,
) -> Result<T, WireError> {
    match sent.await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(WireError::new(
            Code::ShuttingDown,
            "tokend is shutting down",
        )),
    }
}
