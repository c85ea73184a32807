//! The store's reads: each message with its handler. Every one first commits the writes
//! queued before it (read-your-writes), and the lookups share one read transaction
//! (`StoreActor::reading`).

use std::sync::Arc;

use actix::prelude::*;

use super::StoreActor;
use crate::db::Ended;
use crate::error::StoreError;
use crate::model::{StoredToken, Token, TokenState};
use crate::policy::Policies;
use crate::schedule::ScheduleInput;

/// The token a partial token means, by the SDK's matching rules. `touch`: a client's
/// lookup, which counts as a use of the session (the daemon's own lookups do not).
#[derive(Message)]
#[rtype(result = "Result<Option<StoredToken>, StoreError>")]
pub struct Find {
    pub token: Token,
    pub touch: bool,
}

impl Handler<Find> for StoreActor {
    type Result = Result<Option<StoredToken>, StoreError>;

    fn handle(&mut self, msg: Find, _: &mut Self::Context) -> Self::Result {
        let found = self.reading()?.find(&msg.token)?;
        self.touch(&found, msg.touch);
        Ok(found)
    }
}

#[derive(Message)]
#[rtype(result = "Result<Option<StoredToken>, StoreError>")]
pub struct FindById {
    pub id: String,
    pub touch: bool,
}

impl Handler<FindById> for StoreActor {
    type Result = Result<Option<StoredToken>, StoreError>;

    fn handle(&mut self, msg: FindById, _: &mut Self::Context) -> Self::Result {
        let found = self.reading()?.find_by_id(&msg.id)?;
        self.touch(&found, msg.touch);
        Ok(found)
    }
}

/// A client's `find_token_by_id`: the token's JSON as the reply carries it, and kept
/// for the next lookup by id (`Shared`). Only clients' lookups fill the cache: the
/// daemon's own (a refresh about to write the token, a cleanup about to delete it) would
/// fill it with what is about to go.
#[derive(Message)]
#[rtype(result = "Result<Option<Arc<[u8]>>, StoreError>")]
pub struct FindJsonById(pub String);

impl Handler<FindJsonById> for StoreActor {
    type Result = Result<Option<Arc<[u8]>>, StoreError>;

    fn handle(&mut self, msg: FindJsonById, _: &mut Self::Context) -> Self::Result {
        let found = self.reading()?.find_by_id(&msg.0)?;
        self.touch(&found, true);
        let encoded = found.map(|t| self.shared.remember(&t)).transpose();
        encoded.map_err(|_| StoreError::Sqlite("a stored token could not be encoded".into()))
    }
}

/// The token, if `Expire` would still delete it now: at the same version and unused
/// since (uses in memory included). The cleanup asks before it revokes, which cannot be
/// taken back, and asks it token by token: a pass may reach a session minutes after
/// judging it.
#[derive(Message)]
#[rtype(result = "Result<Option<StoredToken>, StoreError>")]
pub struct StillEnded(pub super::Expire);

impl Handler<StillEnded> for StoreActor {
    type Result = Result<Option<StoredToken>, StoreError>;

    fn handle(&mut self, msg: StillEnded, _: &mut Self::Context) -> Self::Result {
        let e = msg.0;
        if self.used_after(&e.id, e.used_before) {
            return Ok(None);
        }
        let found = self.reading()?.find_by_id(&e.id)?;
        // The condition of `Write::Expire`'s DELETE (db/write.rs), which must match it.
        Ok(found.filter(|t| {
            t.meta.version == e.version && t.meta.last_used_at.unwrap_or(0) <= e.used_before
        }))
    }
}

/// One page of tokens in paging order, and the cursor for the next page.
#[derive(Message)]
#[rtype(result = "Result<(Vec<StoredToken>, Option<String>), StoreError>")]
pub struct List {
    pub after: Option<String>,
    pub limit: u32,
}

impl Handler<List> for StoreActor {
    type Result = Result<(Vec<StoredToken>, Option<String>), StoreError>;

    fn handle(&mut self, msg: List, _: &mut Self::Context) -> Self::Result {
        self.flush();
        self.db.list(msg.after.as_deref(), msg.limit)
    }
}

#[derive(Message)]
#[rtype(result = "Result<u64, StoreError>")]
pub struct Count;

impl Handler<Count> for StoreActor {
    type Result = Result<u64, StoreError>;

    fn handle(&mut self, _: Count, _: &mut Self::Context) -> Self::Result {
        self.flush();
        self.db.count()
    }
}

/// The refresh budget's spending since the given time (epoch ms): (token hash, time),
/// oldest first. The refresher reads it once at start.
#[derive(Message)]
#[rtype(result = "Result<Vec<(i64, i64)>, StoreError>")]
pub struct SpentSince(pub i64);

impl Handler<SpentSince> for StoreActor {
    type Result = Result<Vec<(i64, i64)>, StoreError>;

    fn handle(&mut self, msg: SpentSince, _: &mut Self::Context) -> Self::Result {
        self.reading()?.spent_since(msg.0)
    }
}

/// The provider's throttles as rows recorded them: (refresh token hash, end of the
/// wait, throttles in a row). The refresher reads them once at start, so that every row
/// holding a throttled refresh token waits, not only the row that was told.
#[derive(Message)]
#[rtype(result = "Result<Vec<(i64, i64, u32)>, StoreError>")]
pub struct Throttled;

impl Handler<Throttled> for StoreActor {
    type Result = Result<Vec<(i64, i64, u32)>, StoreError>;

    fn handle(&mut self, _: Throttled, _: &mut Self::Context) -> Self::Result {
        self.reading()?.throttled()
    }
}

#[derive(Message)]
#[rtype(result = "Result<Vec<(TokenState, u64)>, StoreError>")]
pub struct CountByState;

impl Handler<CountByState> for StoreActor {
    type Result = Result<Vec<(TokenState, u64)>, StoreError>;

    fn handle(&mut self, _: CountByState, _: &mut Self::Context) -> Self::Result {
        self.flush();
        self.db.count_by_state()
    }
}

/// One page of what the refresher schedules, for loading the schedule at start.
#[derive(Message)]
#[rtype(result = "Result<Vec<(String, ScheduleInput)>, StoreError>")]
pub struct SchedulePage {
    pub after: Option<String>,
    pub limit: u32,
}

impl Handler<SchedulePage> for StoreActor {
    type Result = Result<Vec<(String, ScheduleInput)>, StoreError>;

    fn handle(&mut self, msg: SchedulePage, _: &mut Self::Context) -> Self::Result {
        self.flush();
        self.db.schedule_page(msg.after.as_deref(), msg.limit)
    }
}

/// The sessions the policies end now among one page of tokens (`Db::ended_sessions`),
/// judged with every use so far, flushed or not; and the cursor for the next page.
#[derive(Message)]
#[rtype(result = "Result<(Vec<Ended>, Option<i64>), StoreError>")]
pub struct EndedSessions {
    pub policies: Policies,
    pub after: Option<i64>,
    pub limit: u32,
}

impl Handler<EndedSessions> for StoreActor {
    type Result = Result<(Vec<Ended>, Option<i64>), StoreError>;

    fn handle(&mut self, msg: EndedSessions, _: &mut Self::Context) -> Self::Result {
        self.flush();
        let shared = &self.shared;
        self.db.ended_sessions(
            &msg.policies,
            self.clock.now_ms(),
            &|id| shared.last_use(id),
            msg.after,
            msg.limit,
        )
    }
}
