//! What the refresher is asked, each message with its handler: access tokens and forced
//! refreshes for clients, its counters for `status`, and the reload and shutdown that
//! the service sends.

use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use serde::Serialize;

use super::{attempt, wait_for, RefreshError, RefresherActor};
use crate::config::RefreshConfig;
use crate::model::{StoredToken, Token};
use crate::oauth::OAuthClient;
use crate::store;

/// An access token with at least `refresh.min_validity` left, refreshing first if needed.
#[derive(Message)]
#[rtype(result = "Result<StoredToken, RefreshError>")]
pub enum AccessToken {
    ById(String),
    ByUserName(String),
}

impl Handler<AccessToken> for RefresherActor {
    type Result = ResponseActFuture<Self, Result<StoredToken, RefreshError>>;

    fn handle(&mut self, msg: AccessToken, _: &mut Self::Context) -> Self::Result {
        let store = self.deps.store.clone();
        let lookup = async move {
            match msg {
                AccessToken::ById(id) => store.send(store::FindById { id, touch: true }).await,
                AccessToken::ByUserName(name) => {
                    let token = Token {
                        user_name: Some(name),
                        ..Token::default()
                    };
                    store.send(store::Find { token, touch: true }).await
                }
            }
        };
        Box::pin(lookup.into_actor(self).then(|found, act, ctx| {
            // Either an answer now, or the refresh to wait for.
            let answer = match found {
                Ok(Ok(Some(t))) if attempt::fresh_enough(&t, &act.deps) => Ok(Ok(t)),
                Ok(Ok(Some(t))) => Err(act.join(t.id().to_owned(), false, ctx)),
                Ok(Ok(None)) => Ok(Err(RefreshError::NotFound)),
                Ok(Err(e)) => Ok(Err(RefreshError::Store(e))),
                Err(_) => Ok(Err(RefreshError::ShuttingDown)),
            };
            wait_for(answer).into_actor(act)
        }))
    }
}

/// Refresh now, whatever the token's expiry (still within the rate budget).
#[derive(Message)]
#[rtype(result = "Result<StoredToken, RefreshError>")]
pub struct Refresh(pub String);

impl Handler<Refresh> for RefresherActor {
    type Result = ResponseFuture<Result<StoredToken, RefreshError>>;

    fn handle(&mut self, msg: Refresh, ctx: &mut Self::Context) -> Self::Result {
        let rx = self.join(msg.0, true, ctx);
        Box::pin(wait_for(Err(rx)))
    }
}

/// The refresher's counters, for the `status` operation.
#[derive(Message)]
#[rtype(result = "Status")]
pub struct GetStatus;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Status {
    pub scheduled: usize,
    pub in_flight: usize,
    /// Callers (`access_token`, `refresh`) waiting for those refreshes to end.
    pub waiting: usize,
    pub refreshed: u64,
    pub failed: u64,
    pub next_refresh_at: Option<i64>,
}

impl Handler<GetStatus> for RefresherActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Self::Context) -> Self::Result {
        MessageResult(Status {
            scheduled: self.deadlines.len(),
            in_flight: self.in_flight.len(),
            waiting: self.in_flight.values().map(|f| f.waiters.len()).sum(),
            refreshed: self.deps.refreshed.get(),
            failed: self.deps.failed.get(),
            next_refresh_at: self.deadlines.next(),
        })
    }
}

/// Apply a reloaded `[refresh]` (SIGHUP). `oauth`: a client built for new endpoints or
/// timeouts, or `None` to keep the current one. Refreshes under way finish with the
/// provider client they started with. When the rules that place deadlines changed,
/// every deadline is computed again from the store, as at start (the actor answers
/// other messages once that is done, so `status` after a reload shows the new plan).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconfigure {
    pub cfg: RefreshConfig,
    pub oauth: Option<OAuthClient>,
}

impl Handler<Reconfigure> for RefresherActor {
    type Result = ();

    fn handle(&mut self, msg: Reconfigure, ctx: &mut Self::Context) {
        let old = self.deps.cfg();
        let new = msg.cfg;
        // The inputs of `schedule::deadline`, and whether there is a schedule at all.
        let replan = (
            new.enabled,
            new.lead_fraction,
            new.min_lead,
            new.max_lead,
            new.jitter,
        ) != (
            old.enabled,
            old.lead_fraction,
            old.min_lead,
            old.max_lead,
            old.jitter,
        );
        let enabled = new.enabled;
        *self.deps.cfg.borrow_mut() = Rc::new(new);
        if let Some(oauth) = msg.oauth {
            *self.deps.oauth.borrow_mut() = oauth;
        }
        if self.stopping {
            return;
        }
        if replan {
            // Deadlines only keep the time they were computed for, not their inputs, so
            // they are computed again from the store, as at start (`load`), and a
            // retry of the old load must not add to them.
            if let Some(retry) = self.load_retry.take() {
                ctx.cancel_future(retry);
            }
            self.deadlines.clear();
            if enabled {
                self.load(None, ctx);
            }
        }
        // `max_in_flight` may have grown, or the schedule emptied.
        self.arm(ctx);
    }
}

/// Start no new refresh; wait (bounded) for those under way to be recorded.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for RefresherActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        self.stopping = true;
        if let Some((handle, _)) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        let under_way = self.in_flight.len();
        let drained = self.drained.clone();
        // An attempt is bounded by the HTTP timeout plus a store write.
        let cfg = self.deps.cfg();
        let limit = cfg.timeout + cfg.connect_timeout + Duration::from_secs(5);
        Box::pin(async move {
            if under_way == 0 {
                return;
            }
            tracing::info!(under_way, "waiting for refreshes under way to be recorded");
            if tokio::time::timeout(limit, drained.notified())
                .await
                .is_err()
            {
                // The store never got their results, so the old tokens stay stored and
                // valid; they are refreshed again after the restart.
                tracing::warn!(under_way, "gave up waiting for refreshes under way");
            }
        })
    }
}
