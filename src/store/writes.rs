//! The store's writes: each message with its handler. Each is queued for the next group
//! commit (`StoreActor::enqueue`) and answered only once it is durable.

use actix::prelude::*;

use super::StoreActor;
use crate::db::{Outcome, RefreshUpdate, Write};
use crate::error::StoreError;
use crate::model::{StoredToken, Token};

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

/// Save a token by the SDK's `save_token` rules; the reply is the token as stored.
#[derive(Message)]
#[rtype(result = "Result<StoredToken, StoreError>")]
pub struct Save(pub Token);

impl Handler<Save> for StoreActor {
    type Result = ResponseFuture<Result<StoredToken, StoreError>>;

    fn handle(&mut self, msg: Save, ctx: &mut Self::Context) -> Self::Result {
        write_reply(self, ctx, Write::Save(msg.0), |o| match o {
            Outcome::Saved(t) => Some(t),
            _ => None,
        })
    }
}

/// Delete one token by id; the reply says whether it existed.
#[derive(Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct Delete {
    pub id: String,
    /// The client's user, for the log.
    pub uid: u32,
}

// A client's deletes are logged here, once committed, not where the client awaits the
// reply: a client that hangs up first must not leave the delete without a trace.
impl Handler<Delete> for StoreActor {
    type Result = ResponseFuture<Result<bool, StoreError>>;

    fn handle(&mut self, msg: Delete, ctx: &mut Self::Context) -> Self::Result {
        let deleted = write_reply(self, ctx, Write::Delete(msg.id.clone()), |o| match o {
            Outcome::Deleted { existed, .. } => Some(existed),
            _ => None,
        });
        Box::pin(async move {
            let deleted = deleted.await;
            if let Ok(true) = deleted {
                tracing::info!(uid = msg.uid, token_id = %msg.id.escape_debug(), "a client deleted a token");
            }
            deleted
        })
    }
}

/// Delete every token; the reply is how many there were.
#[derive(Message)]
#[rtype(result = "Result<u64, StoreError>")]
pub struct DeleteAll {
    /// The client's user, for the log.
    pub uid: u32,
}

impl Handler<DeleteAll> for StoreActor {
    type Result = ResponseFuture<Result<u64, StoreError>>;

    fn handle(&mut self, msg: DeleteAll, ctx: &mut Self::Context) -> Self::Result {
        let deleted = write_reply(self, ctx, Write::DeleteAll, |o| match o {
            Outcome::DeletedAll(n) => Some(n),
            _ => None,
        });
        Box::pin(async move {
            let deleted = deleted.await;
            if let Ok(n) = deleted {
                tracing::info!(uid = msg.uid, deleted = n, "a client deleted every token");
            }
            deleted
        })
    }
}

/// Record a refresh attempt's result for the token `read` as the attempt read it. The
/// reply is the updated token, or `None` when a client saved new credentials or deleted
/// it meanwhile (then nothing was written; see `Write::Refreshed`).
#[derive(Message)]
#[rtype(result = "Result<Option<StoredToken>, StoreError>")]
pub struct ApplyRefresh {
    pub id: String,
    pub read: StoredToken,
    pub update: RefreshUpdate,
}

impl Handler<ApplyRefresh> for StoreActor {
    type Result = ResponseFuture<Result<Option<StoredToken>, StoreError>>;

    fn handle(&mut self, msg: ApplyRefresh, ctx: &mut Self::Context) -> Self::Result {
        let write = Write::Refreshed {
            id: msg.id,
            read: msg.read,
            update: msg.update,
        };
        write_reply(self, ctx, write, |o| match o {
            Outcome::Saved(t) => Some(Some(t)),
            Outcome::Superseded { .. } => Some(None),
            _ => None,
        })
    }
}

/// Delete token `id` only if it is still at `version` and unused since `used_before`
/// (pass `i64::MAX` to ignore uses); the reply says whether it was deleted. The
/// cleanup's delete: a session that changed or came back to life since it was judged
/// is kept.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct Expire {
    pub id: String,
    pub version: i64,
    pub used_before: i64,
}

impl Handler<Expire> for StoreActor {
    type Result = ResponseFuture<Result<bool, StoreError>>;

    fn handle(&mut self, msg: Expire, ctx: &mut Self::Context) -> Self::Result {
        if self.used_after(&msg.id, msg.used_before) {
            return Box::pin(async { Ok(false) });
        }
        let write = Write::Expire {
            id: msg.id,
            version: msg.version,
            used_before: msg.used_before,
        };
        write_reply(self, ctx, write, |o| match o {
            Outcome::Deleted { existed, .. } => Some(existed),
            _ => None,
        })
    }
}

/// Record, durably, one refresh about to be asked of the provider for the refresh token
/// hashed to `token_hash` (the rate budget's spending, schema v6), and forget what is
/// older than `forget_before`. Answered once on disk: only then may the request go.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Spend {
    pub token_hash: i64,
    pub at: i64,
    pub forget_before: i64,
}

impl Handler<Spend> for StoreActor {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, msg: Spend, ctx: &mut Self::Context) -> Self::Result {
        let write = Write::Spend {
            token_hash: msg.token_hash,
            at: msg.at,
            forget_before: msg.forget_before,
        };
        write_reply(self, ctx, write, |o| match o {
            Outcome::Spent => Some(()),
            _ => None,
        })
    }
}
