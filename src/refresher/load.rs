//! Loading at start: the rate budget's spending in the window and the provider's
//! throttles in force, then the schedule, a page of tokens at a time, letting clients in
//! between pages, and retrying a page the store could not read.

use actix::prelude::*;

use super::RefresherActor;
use crate::schedule::{deadline, longest_throttle_wait};
use crate::store;

/// Page size when loading the schedule at start. Small, because the store shares the
/// daemon's one thread: each page holds every client up for as long as it takes to
/// read (about 3 ms for 1,000 rows).
const LOAD_PAGE: u32 = 1_000;

impl RefresherActor {
    /// Reads back the rate budget's spending in the current window and the throttles in
    /// force, before any refresh can start (`ctx.wait`): Zoho still counts what an
    /// earlier run asked of it, and still blocks what it throttled.
    pub(super) fn load_spent(&mut self, ctx: &mut Context<Self>) {
        let now = self.deps.clock.now_ms();
        let window = self.deps.cfg().budget_window.as_millis() as i64;
        let longest = longest_throttle_wait(&self.deps.cfg()).as_millis() as i64;
        let store = self.deps.store.clone();
        let read = async move {
            let spent = store.send(store::SpentSince(now - window)).await;
            let throttled = store.send(store::Throttled).await;
            (spent, throttled)
        };
        ctx.wait(read.into_actor(self).map(move |(spent, throttled), act, _| {
            let mut budget = act.deps.budget.borrow_mut();
            match spent {
                // A time ahead of now is brought back to it by `RateBudget::take`.
                Ok(Ok(rows)) => rows.into_iter().for_each(|(key, at)| budget.record(key, at)),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, until = now + window,
                        "cannot read the refreshes already spent; no refresh until the budget window has passed");
                    budget.close_until(now + window);
                }
                Err(_) => {}
            }
            match throttled {
                Ok(Ok(rows)) => {
                    for (key, until, count) in rows {
                        budget.record_throttle(key, until, count);
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, until = now + longest,
                        "cannot read the provider's throttles; no refresh until the longest throttle wait has passed");
                    budget.close_until(now + longest);
                }
                Err(_) => {}
            }
        }));
    }

    /// Loads every schedulable token's deadline from the store: sized first by the
    /// token count (SQLite counts from its smallest index, where counting only the
    /// schedulable ones would read every row while clients wait), then a page at a time.
    pub(super) fn load_all(&mut self, ctx: &mut Context<Self>) {
        let count = self.deps.store.send(store::Count);
        ctx.wait(count.into_actor(self).map(|count, act, ctx| {
            if let Ok(Ok(n)) = count {
                act.deadlines.reserve(usize::try_from(n).unwrap_or(0));
            }
            act.load(None, ctx);
        }));
    }

    pub(super) fn load(&mut self, after: Option<String>, ctx: &mut Context<Self>) {
        let store = self.deps.store.clone();
        let again = after.clone();
        let page = async move {
            if after.is_some() {
                store::let_clients_in().await;
            }
            let limit = LOAD_PAGE;
            store.send(store::SchedulePage { after, limit }).await
        };
        ctx.wait(page.into_actor(self).map(|page, act, ctx| {
            let rows = match page {
                Ok(Ok(rows)) => rows,
                Ok(Err(e)) => {
                    // A store failure (I/O, a full disk) must not leave the tokens after
                    // this page unscheduled for the life of the process: try the page
                    // again after a backoff, serving what is loaded meanwhile.
                    let retry = act.deps.cfg().backoff_initial;
                    tracing::error!(error = %e, ?retry, "cannot load the refresh schedule; trying again");
                    act.load_retry = Some(ctx.run_later(retry, move |act, ctx| {
                        act.load_retry = None;
                        act.load(again, ctx);
                    }));
                    return act.arm(ctx);
                }
                Err(_) => return,
            };
            let last = rows.last().map(|(id, _)| id.clone());
            for (id, input) in rows {
                let at = deadline(input, &act.deps.cfg(), fastrand::f64());
                act.deadlines.set(&id, at);
            }
            match last {
                Some(last) => act.load(Some(last), ctx),
                None => {
                    tracing::info!(scheduled = act.deadlines.len(), "refresh schedule loaded");
                    act.arm(ctx);
                }
            }
        }));
    }
}
