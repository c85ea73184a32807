//! StoreActor: the one owner of the SQLite connection.
//!
//! It runs on the daemon's own thread, beside the connections, not on one of its own:
//! a find is a few microseconds of SQLite, while handing it to another thread and back
//! costs two thread wake-ups, several times that (benches/README.md measures both).
//!
//! Reads are answered at once, and share one read transaction that stays open until the
//! next write, because opening and closing a transaction costs more than the lookup
//! itself. (Its snapshot cannot go stale: the file is locked to this one connection, and
//! every write closes the read first.) Writes are queued and committed together once the
//! runtime has run every task that was ready (`after_this_turn`): every save that arrived
//! while the previous commit was waiting on fsync goes into the next transaction. Each
//! caller is answered only after its own write is durable. A read first commits whatever
//! is queued, so a client that pipelines a save and then a find sees its save.
//!
//! Tokens that clients looked up by id are also kept encoded, with the uses not yet
//! written, in memory the connections share (`shared.rs`), so that the connections
//! answer repeated lookups by id themselves.

use actix::prelude::*;
use tokio::sync::oneshot;

use std::time::Duration;

use crate::clock::Clock;
use crate::db::{Db, Outcome, Write};
use crate::error::StoreError;
use crate::model::StoredToken;

/// Tell `0` about every committed change from now on. The refresher and the cleanup
/// actor follow saves and deletes this way, whoever made them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<Changed>);

impl Handler<Subscribe> for StoreActor {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _: &mut Self::Context) {
        self.subscribers.push(msg.0);
    }
}

/// Commit what is queued, write the last uses, and stop: the last message of a shutdown.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for StoreActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        self.flush();
        self.flush_uses();
        ctx.stop();
    }
}

/// A committed change, sent to subscribers after the commit.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Changed(pub Outcome);

/// Runs `then` once every task the runtime can run now has run: the connections woken
/// by the same wake-up as the one that sent the first request have queued theirs too.
/// That is what batches the saves that arrived together into one commit. (A message to
/// self would run as soon as this mailbox is empty, which, with the connections on the
/// same thread, is before most of them have been polled.)
fn after_this_turn(ctx: &mut Context<StoreActor>, then: fn(&mut StoreActor)) {
    ctx.spawn(fut::wrap_future(tokio::task::yield_now()).map(move |(), act, _| then(act)));
}

/// Awaited between the pages of a long scan of the store (a cleanup pass, the
/// refresher's schedule load). Every task shares the daemon's one thread, and while some
/// task is ready tokio looks for socket events only every 61 task polls: a loop that asks
/// for the next page as soon as it has the last keeps a task ready for the whole scan, so
/// clients' requests sat unread for ~60 pages (0.2–0.35 s at 1M tokens, `scale` bench).
/// Yielding lets that look happen first.
pub async fn let_clients_in() {
    tokio::task::yield_now().await;
}

type Reply = oneshot::Sender<Result<Outcome, StoreError>>;

pub struct StoreActor {
    db: Db,
    clock: Clock,
    /// Writes waiting for the next group commit, each with its caller's reply channel.
    pending: Vec<(Write, Reply)>,
    /// Whether a commit is already due (`after_this_turn`), so a batch gets exactly one.
    flush_queued: bool,
    subscribers: Vec<Recipient<Changed>>,
    /// The last uses not yet written (`flush_uses` writes them every `use_flush`), and
    /// the tokens the connections may answer `find_token_by_id` with themselves.
    shared: Shared,
    use_flush: Duration,
    /// Dropped with the actor, after `db`: tells `start`'s caller the database is closed.
    _closed: oneshot::Sender<()>,
}

/// How many messages may wait in the mailbox before senders wait. Generous, because a
/// deep mailbox is what lets group commit batch many saves into one fsync.
const MAILBOX_CAPACITY: usize = 4096;

impl StoreActor {
    /// Starts the actor on the current thread, with what it shares with the connections
    /// on that thread. The receiver resolves once the actor has stopped and the database
    /// connection is closed (after `Shutdown`), so whoever opens the file next finds it
    /// unlocked.
    pub fn start(
        db: Db,
        clock: Clock,
        use_flush: Duration,
    ) -> (Addr<StoreActor>, Shared, oneshot::Receiver<()>) {
        let (closed, on_closed) = oneshot::channel();
        let shared = Shared::new(clock.clone());
        let theirs = shared.clone();
        let addr = StoreActor::create(move |ctx| {
            ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
            StoreActor {
                db,
                clock,
                pending: Vec::new(),
                flush_queued: false,
                subscribers: Vec::new(),
                shared,
                use_flush,
                _closed: closed,
            }
        });
        (addr, theirs, on_closed)
    }

    /// Commits what is queued, then makes the read share the open read transaction.
    fn reading(&mut self) -> Result<&Db, StoreError> {
        self.flush();
        self.db.begin_read()?;
        Ok(&self.db)
    }

    fn enqueue(
        &mut self,
        write: Write,
        ctx: &mut Context<Self>,
    ) -> oneshot::Receiver<Result<Outcome, StoreError>> {
        let (tx, rx) = oneshot::channel();
        self.pending.push((write, tx));
        if !self.flush_queued {
            self.flush_queued = true;
            after_this_turn(ctx, StoreActor::flush);
        }
        rx
    }

    fn flush(&mut self) {
        self.flush_queued = false;
        if self.pending.is_empty() {
            return;
        }
        let (writes, replies): (Vec<Write>, Vec<Reply>) =
            std::mem::take(&mut self.pending).into_iter().unzip();
        match self.db.apply_batch(&writes, self.clock.now_ms()) {
            Ok(outcomes) => {
                for (outcome, reply) in outcomes.into_iter().zip(replies) {
                    if let Ok(done) = &outcome {
                        // Before the writer hears of it: from then on, nobody may be
                        // answered with what was there before.
                        self.shared.forget(done);
                        for s in &self.subscribers {
                            s.do_send(Changed(done.clone()));
                        }
                    }
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                self.shared.forget_all();
                tracing::error!(error = %e, writes = writes.len(), "commit failed; no write in the batch was stored");
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

impl StoreActor {
    /// Whether `id` was used after `at` by a use still in memory: the cleanup's checks
    /// count one as much as a use on disk.
    fn used_after(&self, id: &str, at: i64) -> bool {
        self.shared.last_use(id).is_some_and(|used| used > at)
    }

    fn touch(&mut self, found: &Option<StoredToken>, touch: bool) {
        if let (true, Some(t)) = (touch, found) {
            self.shared.record_use(t.id());
        }
    }

    fn flush_uses(&mut self) {
        let uses = self.shared.take_uses();
        if uses.is_empty() {
            return;
        }
        if let Err(e) = self.db.record_uses(&uses) {
            // Only last-use times are lost, and only until the next use of each token.
            tracing::warn!(error = %e, tokens = uses.len(), "could not record last uses");
        }
    }
}

impl Actor for StoreActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.use_flush, |act, _| act.flush_uses());
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // Writes still queued were never acknowledged, but committing them is what their
        // senders asked for; the uses are what idle_timeout will be judged by.
        self.flush();
        self.flush_uses();
    }
}

mod reads;
mod shared;
mod writes;

pub use reads::{
    Count, CountByState, EndedSessions, Find, FindById, FindJsonById, List, SchedulePage,
    SpentSince, StillEnded, Throttled,
};
pub use shared::{Shared, CAPACITY as CACHE_CAPACITY};
pub use writes::{ApplyRefresh, Delete, DeleteAll, Expire, Save, Spend};
