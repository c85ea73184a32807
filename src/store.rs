//! StoreActor: the one owner of the SQLite connection.
//!
//! It runs on the daemon's own thread, beside the connections, not on one of its own:
//! a find is a few microseconds of SQLite, while handing it to another thread and back
//! costs two thread wake-ups, several times that (benches/README.md measures both).
//!
//! Reads are answered at once. Reads that arrive together share one read transaction:
//! the first opens it and the actor closes it (`EndRead`) once its mailbox is drained,
//! because opening and closing a transaction costs more than the lookup itself.
//! Writes are queued and committed together: the actor drains its whole mailbox before
//! it handles the `Flush` it sent itself, so every save that arrived while the previous
//! commit was waiting on fsync goes into the next transaction. Each caller is answered
//! only after its own write is durable. A read first commits whatever is queued, so a
//! client that pipelines a save and then a find sees its save.

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::clock::Clock;
use std::collections::HashMap;
use std::time::Duration;

use crate::db::{Db, Ended, Outcome, RefreshUpdate, Write};
use crate::error::StoreError;
use crate::model::{StoredToken, Token, TokenState};
use crate::policy::Policies;
use crate::schedule::ScheduleInput;

/// Save a token by the SDK's `save_token` rules; the reply is the token as stored.
#[derive(Message)]
#[rtype(result = "Result<StoredToken, StoreError>")]
pub struct Save(pub Token);

/// Delete one token by id; the reply says whether it existed.
#[derive(Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct Delete(pub String);

/// Delete every token; the reply is how many there were.
#[derive(Message)]
#[rtype(result = "Result<u64, StoreError>")]
pub struct DeleteAll;

/// The token a partial token means, by the SDK's matching rules. `touch`: a client's
/// lookup, which counts as a use of the session (the daemon's own lookups do not).
#[derive(Message)]
#[rtype(result = "Result<Option<StoredToken>, StoreError>")]
pub struct Find {
    pub token: Token,
    pub touch: bool,
}

#[derive(Message)]
#[rtype(result = "Result<Option<StoredToken>, StoreError>")]
pub struct FindById {
    pub id: String,
    pub touch: bool,
}

/// The sessions the policies end now, judged with every use so far, flushed or not.
#[derive(Message)]
#[rtype(result = "Result<Vec<Ended>, StoreError>")]
pub struct EndedSessions(pub Policies);

/// Delete an ended session, unless it changed or was used since it was judged; the
/// reply says whether it was deleted.
#[derive(Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct Expire(pub Ended);

/// One page of tokens in paging order, and the cursor for the next page.
#[derive(Message)]
#[rtype(result = "Result<(Vec<StoredToken>, Option<String>), StoreError>")]
pub struct List {
    pub after: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Message)]
#[rtype(result = "Result<u64, StoreError>")]
pub struct Count;

#[derive(Message)]
#[rtype(result = "Result<Vec<(TokenState, u64)>, StoreError>")]
pub struct CountByState;

/// Record a refresh attempt's result for the token as it was at `version`. The reply is
/// the updated token, or `None` when a client changed or deleted it meanwhile (then
/// nothing was written).
#[derive(Message)]
#[rtype(result = "Result<Option<StoredToken>, StoreError>")]
pub struct ApplyRefresh {
    pub id: String,
    pub version: i64,
    pub update: RefreshUpdate,
}

/// One page of what the refresher schedules, for loading the schedule at start.
#[derive(Message)]
#[rtype(result = "Result<Vec<(String, ScheduleInput)>, StoreError>")]
pub struct SchedulePage {
    pub after: Option<String>,
    pub limit: u32,
}

/// Tell `0` about every committed change from now on. The refresher and the cleanup
/// actor follow saves and deletes this way, whoever made them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<Changed>);

/// Commit what is queued, write the last uses, and stop: the last message of a shutdown.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// A committed change, sent to subscribers after the commit.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Changed(pub Outcome);

/// Commit the queued writes. Sent by the actor to itself.
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

/// Close the read transaction the reads of this mailbox drain shared. Sent by the actor
/// to itself; like `Flush`, it is handled after the messages already in the mailbox.
#[derive(Message)]
#[rtype(result = "()")]
struct EndRead;

type Reply = oneshot::Sender<Result<Outcome, StoreError>>;

pub struct StoreActor {
    db: Db,
    clock: Clock,
    /// Writes waiting for the next group commit, each with its caller's reply channel.
    pending: Vec<(Write, Reply)>,
    /// Whether a `Flush` is already on its way, so a batch gets exactly one.
    flush_queued: bool,
    subscribers: Vec<Recipient<Changed>>,
    /// Last use per token id since the last flush. Lookups record here, not on disk, so
    /// that the lookup on every SDK API call stays a read; `flush_uses` writes them in
    /// one transaction every `use_flush`.
    uses: HashMap<String, i64>,
    use_flush: Duration,
    /// Dropped with the actor, after `db`: tells `start`'s caller the database is closed.
    _closed: oneshot::Sender<()>,
}

/// How many messages may wait in the mailbox before senders wait. Generous, because a
/// deep mailbox is what lets group commit batch many saves into one fsync.
const MAILBOX_CAPACITY: usize = 4096;

impl StoreActor {
    /// Starts the actor on the current thread. The receiver resolves once the actor has
    /// stopped and the database connection is closed (after `Shutdown`), so whoever
    /// opens the file next finds it unlocked.
    pub fn start(
        db: Db,
        clock: Clock,
        use_flush: Duration,
    ) -> (Addr<StoreActor>, oneshot::Receiver<()>) {
        let (closed, on_closed) = oneshot::channel();
        let addr = StoreActor::create(move |ctx| {
            ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
            StoreActor {
                db,
                clock,
                pending: Vec::new(),
                flush_queued: false,
                subscribers: Vec::new(),
                uses: HashMap::new(),
                use_flush,
                _closed: closed,
            }
        });
        (addr, on_closed)
    }

    /// Makes the reads of this mailbox drain share one read transaction.
    fn reading(&mut self, ctx: &mut Context<Self>) -> Result<&Db, StoreError> {
        self.flush();
        if self.db.begin_read()? {
            ctx.notify(EndRead);
        }
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
            ctx.notify(Flush);
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
                        for s in &self.subscribers {
                            s.do_send(Changed(done.clone()));
                        }
                    }
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, writes = writes.len(), "commit failed; no write in the batch was stored");
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

impl StoreActor {
    fn touch(&mut self, found: &Option<StoredToken>, touch: bool) {
        if let (true, Some(t)) = (touch, found) {
            self.uses.insert(t.id().to_owned(), self.clock.now_ms());
        }
    }

    fn flush_uses(&mut self) {
        if self.uses.is_empty() {
            return;
        }
        let uses: Vec<(String, i64)> = self.uses.drain().collect();
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

/// Queues `write` and resolves, after its commit, to what `pick` makes of the outcome.
fn write_reply<T: 'static>(
    actor: &mut StoreActor,
    ctx: &mut Context<StoreActor>,
    write: Write,
    pick: fn(Outcome) -> Option<T>,
) -> ResponseFuture<Result<T, StoreError>> {
    let rx = actor.enqueue(write, ctx);
    Box::pin(async move {
        match rx.await {
            Ok(Ok(outcome)) => pick(outcome).ok_or(StoreError::Unavailable),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StoreError::Unavailable),
        }
    })
}

impl Handler<Save> for StoreActor {
    type Result = ResponseFuture<Result<StoredToken, StoreError>>;

    fn handle(&mut self, msg: Save, ctx: &mut Self::Context) -> Self::Result {
        write_reply(self, ctx, Write::Save(msg.0), |o| match o {
            Outcome::Saved(t) => Some(t),
            _ => None,
        })
    }
}

impl Handler<Delete> for StoreActor {
    type Result = ResponseFuture<Result<bool, StoreError>>;

    fn handle(&mut self, msg: Delete, ctx: &mut Self::Context) -> Self::Result {
        write_reply(self, ctx, Write::Delete(msg.0), |o| match o {
            Outcome::Deleted { existed, .. } => Some(existed),
            _ => None,
        })
    }
}

impl Handler<DeleteAll> for StoreActor {
    type Result = ResponseFuture<Result<u64, StoreError>>;

    fn handle(&mut self, _: DeleteAll, ctx: &mut Self::Context) -> Self::Result {
        write_reply(self, ctx, Write::DeleteAll, |o| match o {
            Outcome::DeletedAll(n) => Some(n),
            _ => None,
        })
    }
}

impl Handler<ApplyRefresh> for StoreActor {
    type Result = ResponseFuture<Result<Option<StoredToken>, StoreError>>;

    fn handle(&mut self, msg: ApplyRefresh, ctx: &mut Self::Context) -> Self::Result {
        let write = Write::Refreshed {
            id: msg.id,
            version: msg.version,
            update: msg.update,
        };
        write_reply(self, ctx, write, |o| match o {
            Outcome::Saved(t) => Some(Some(t)),
            Outcome::Superseded { .. } => Some(None),
            _ => None,
        })
    }
}

impl Handler<Flush> for StoreActor {
    type Result = ();

    fn handle(&mut self, _: Flush, _: &mut Self::Context) {
        self.flush();
    }
}

impl Handler<EndRead> for StoreActor {
    type Result = ();

    fn handle(&mut self, _: EndRead, _: &mut Self::Context) {
        self.db.end_read();
    }
}

impl Handler<Find> for StoreActor {
    type Result = Result<Option<StoredToken>, StoreError>;

    fn handle(&mut self, msg: Find, ctx: &mut Self::Context) -> Self::Result {
        let found = self.reading(ctx)?.find(&msg.token)?;
        self.touch(&found, msg.touch);
        Ok(found)
    }
}

impl Handler<FindById> for StoreActor {
    type Result = Result<Option<StoredToken>, StoreError>;

    fn handle(&mut self, msg: FindById, ctx: &mut Self::Context) -> Self::Result {
        let found = self.reading(ctx)?.find_by_id(&msg.id)?;
        self.touch(&found, msg.touch);
        Ok(found)
    }
}

impl Handler<List> for StoreActor {
    type Result = Result<(Vec<StoredToken>, Option<String>), StoreError>;

    fn handle(&mut self, msg: List, _: &mut Self::Context) -> Self::Result {
        self.flush();
        self.db.list(msg.after.as_deref(), msg.limit)
    }
}

impl Handler<Count> for StoreActor {
    type Result = Result<u64, StoreError>;

    fn handle(&mut self, _: Count, _: &mut Self::Context) -> Self::Result {
        self.flush();
        self.db.count()
    }
}

impl Handler<Shutdown> for StoreActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        self.flush();
        self.flush_uses();
        ctx.stop();
    }
}

impl Handler<CountByState> for StoreActor {
    type Result = Result<Vec<(TokenState, u64)>, StoreError>;

    fn handle(&mut self, _: CountByState, _: &mut Self::Context) -> Self::Result {
        self.flush();
        self.db.count_by_state()
    }
}

impl Handler<SchedulePage> for StoreActor {
    type Result = Result<Vec<(String, ScheduleInput)>, StoreError>;

    fn handle(&mut self, msg: SchedulePage, _: &mut Self::Context) -> Self::Result {
        self.flush();
        self.db.schedule_page(msg.after.as_deref(), msg.limit)
    }
}

impl Handler<EndedSessions> for StoreActor {
    type Result = Result<Vec<Ended>, StoreError>;

    fn handle(&mut self, msg: EndedSessions, _: &mut Self::Context) -> Self::Result {
        self.flush();
        let uses = &self.uses;
        self.db
            .ended_sessions(&msg.0, self.clock.now_ms(), &|id| uses.get(id).copied())
    }
}

impl Handler<Expire> for StoreActor {
    type Result = ResponseFuture<Result<bool, StoreError>>;

    fn handle(&mut self, msg: Expire, ctx: &mut Self::Context) -> Self::Result {
        let ended = msg.0;
        // A use not yet flushed counts as much as one on disk. Only idle sessions are
        // saved by a use; the other policies end a session whatever its use.
        let used_before = match ended.policy {
            crate::policy::Policy::IdleTimeout => ended.last_used_at,
            _ => i64::MAX,
        };
        if self.uses.get(&ended.id).is_some_and(|&at| at > used_before) {
            return Box::pin(async { Ok(false) });
        }
        let write = Write::Expire {
            id: ended.id,
            version: ended.version,
            used_before,
        };
        write_reply(self, ctx, write, |o| match o {
            Outcome::Deleted { existed, .. } => Some(existed),
            _ => None,
        })
    }
}

impl Handler<Subscribe> for StoreActor {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _: &mut Self::Context) {
        self.subscribers.push(msg.0);
    }
}
