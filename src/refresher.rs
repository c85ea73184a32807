//! RefresherActor: refreshes every refreshable token once, ahead of its expiry, for
//! everyone; and hands out access tokens with time left on them.
//!
//! Deadlines live in one ordered structure (`schedule::Deadlines`) with a single timer
//! for the earliest, so a million tokens cost a million small entries, not a million
//! timers. Every committed save or delete reaches the actor through `store::Changed` and
//! moves or cancels that token's deadline. A refresh is single-flight per token: whoever
//! asks while one runs (the schedule, `access_token`, `refresh`) waits for that one. The
//! attempt itself (`attempt.rs`) reads the token fresh, spends the rate budget, calls
//! the provider and records the result through the store, which refuses the write if a
//! client saved new credentials or deleted the token meanwhile (a save that kept the
//! credentials leaves the result true). The messages it answers, each with its handler,
//! are in `requests.rs`; loading the budget and the schedule at start, in `load.rs`.

mod attempt;
mod error;
mod load;
mod requests;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{oneshot, Notify};

use crate::clock::Clock;
use crate::config::RefreshConfig;
use crate::db::Outcome;
use crate::model::StoredToken;
use crate::oauth::OAuthClient;
use crate::schedule::{deadline, Deadlines, RateBudget, ScheduleInput};
use crate::store::{self, StoreActor};

pub use error::RefreshError;
pub use requests::{AccessToken, GetStatus, Reconfigure, Refresh, Shutdown, Status};

/// What a refresh attempt needs, shared with the attempts under way.
///
/// A reload swaps `cfg` and `oauth` in place rather than building new `Deps`: attempts
/// under way hold this `Rc`, and the budget and counters they update must stay the ones
/// the actor reads. Each is behind a `RefCell` borrowed only to clone out an `Rc` or a
/// client (never across an await); an attempt reads the configuration in force at
/// each step.
struct Deps {
    cfg: RefCell<Rc<RefreshConfig>>,
    clock: Clock,
    store: Addr<StoreActor>,
    oauth: RefCell<OAuthClient>,
    /// Shared with attempts, which spend it once they know the refresh token. Borrowed
    /// only between awaits: everything here runs on the actor's one thread.
    budget: RefCell<RateBudget>,
    /// Provider answers since start, for `status`.
    refreshed: Cell<u64>,
    failed: Cell<u64>,
}

impl Deps {
    /// The configuration in force now.
    fn cfg(&self) -> Rc<RefreshConfig> {
        self.cfg.borrow().clone()
    }

    /// The provider client in force now (a cheap clone sharing the connection pool).
    fn oauth(&self) -> OAuthClient {
        self.oauth.borrow().clone()
    }
}

type Waiter = oneshot::Sender<Result<StoredToken, RefreshError>>;

/// A refresh under way.
#[derive(Default)]
struct Flight {
    /// The callers waiting for its result.
    waiters: Vec<Waiter>,
    /// The token as the last change committed meanwhile left it. The store tells of each
    /// commit before it answers anyone, so this is the newest state, or a newer change is
    /// still on its way: either way, not older than what the attempt saw. The schedule
    /// goes on from it, not from the attempt's view, which a client's save committed in
    /// the same batch as the attempt's write would have overtaken.
    changed: Option<attempt::Latest>,
}

pub struct RefresherActor {
    deps: Rc<Deps>,
    deadlines: Deadlines,
    /// The single wake-up, and the deadline it is set for.
    timer: Option<(SpawnHandle, i64)>,
    /// A schedule page to load again after a store failure; a reload that loads the
    /// schedule afresh cancels it.
    load_retry: Option<SpawnHandle>,
    /// Tokens being refreshed now.
    in_flight: HashMap<String, Flight>,
    stopping: bool,
    /// Signalled when the last refresh under way finishes during shutdown.
    drained: Rc<Notify>,
}

/// The longest single sleep: the wall clock can jump (suspend, NTP) while a monotonic
/// timer sleeps, so a far deadline is re-checked against the clock at least this often.
const MAX_SLEEP: Duration = Duration::from_secs(300);

impl RefresherActor {
    pub fn new(
        cfg: RefreshConfig,
        clock: Clock,
        store: Addr<StoreActor>,
        oauth: OAuthClient,
    ) -> Self {
        RefresherActor {
            deps: Rc::new(Deps {
                cfg: RefCell::new(Rc::new(cfg)),
                clock,
                store,
                oauth: RefCell::new(oauth),
                budget: RefCell::default(),
                refreshed: Cell::new(0),
                failed: Cell::new(0),
            }),
            deadlines: Deadlines::default(),
            timer: None,
            load_retry: None,
            in_flight: HashMap::new(),
            stopping: false,
            drained: Rc::new(Notify::new()),
        }
    }

    fn schedule(&mut self, id: &str, input: Option<ScheduleInput>, ctx: &mut Context<Self>) {
        match input.filter(|_| self.deps.cfg().enabled) {
            Some(input) => {
                let at = deadline(input, &self.deps.cfg(), fastrand::f64());
                self.deadlines.set(id, at);
                if self.timer.as_ref().is_none_or(|&(_, armed)| at < armed) {
                    self.arm(ctx);
                }
            }
            None => self.deadlines.cancel(id),
        }
    }

    /// Sets the one timer for the earliest deadline, unless the refresh slots are full
    /// (then the next finished refresh re-arms).
    fn arm(&mut self, ctx: &mut Context<Self>) {
        if let Some((handle, _)) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        if self.stopping || self.in_flight.len() >= self.deps.cfg().max_in_flight {
            return;
        }
        let Some(at) = self.deadlines.next() else {
            return;
        };
        let wait =
            Duration::from_millis((at - self.deps.clock.now_ms()).max(0) as u64).min(MAX_SLEEP);
        let handle = ctx.run_later(wait, |act, ctx| {
            act.timer = None;
            act.fire(ctx);
        });
        self.timer = Some((handle, at));
    }

    /// Starts the due refreshes, earliest first, as far as the slots allow.
    fn fire(&mut self, ctx: &mut Context<Self>) {
        let now = self.deps.clock.now_ms();
        while !self.stopping && self.in_flight.len() < self.deps.cfg().max_in_flight {
            let Some(id) = self.deadlines.pop_due(now) else {
                break;
            };
            // A refresh already under way reschedules the token when it ends.
            if !self.in_flight.contains_key(&id) {
                drop(self.join(id, true, ctx));
            }
        }
        self.deps.budget.borrow_mut().prune(now, &self.deps.cfg());
        self.arm(ctx);
    }

    /// Joins the refresh of `id` under way, or starts one. `force`: refresh even if the
    /// token has time left (the schedule and `refresh` want that; `access_token` not).
    fn join(
        &mut self,
        id: String,
        force: bool,
        ctx: &mut Context<Self>,
    ) -> oneshot::Receiver<Result<StoredToken, RefreshError>> {
        let (tx, rx) = oneshot::channel();
        if self.stopping {
            let _ = tx.send(Err(RefreshError::ShuttingDown));
            return rx;
        }
        if let Some(flight) = self.in_flight.get_mut(&id) {
            flight.waiters.push(tx);
            return rx;
        }
        let flight = Flight {
            waiters: vec![tx],
            changed: None,
        };
        self.in_flight.insert(id.clone(), flight);
        let attempt = attempt::run(self.deps.clone(), id.clone(), force);
        ctx.spawn(
            attempt
                .into_actor(self)
                .map(move |(result, latest), act, ctx| act.finished(&id, result, latest, ctx)),
        );
        rx
    }

    fn finished(
        &mut self,
        id: &str,
        result: Result<StoredToken, RefreshError>,
        latest: attempt::Latest,
        ctx: &mut Context<Self>,
    ) {
        let flight = self.in_flight.remove(id).unwrap_or_default();
        match flight.changed.unwrap_or(latest) {
            attempt::Latest::Stored(input) => self.schedule(id, input, ctx),
            attempt::Latest::RetryAt(at) if self.deps.cfg().enabled => self.deadlines.set(id, at),
            attempt::Latest::RetryAt(_) => {}
            attempt::Latest::Gone => self.deadlines.cancel(id),
        }
        for waiter in flight.waiters {
            let _ = waiter.send(result.clone());
        }
        if self.stopping && self.in_flight.is_empty() {
            self.drained.notify_one();
        }
        self.arm(ctx);
    }
}

impl Actor for RefresherActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Saves arriving while the schedule loads still count, so subscribe first.
        self.deps
            .store
            .do_send(store::Subscribe(ctx.address().recipient()));
        ctx.add_stream(self.deps.clock.changes());
        self.load_spent(ctx);
        if self.deps.cfg().enabled {
            self.load_all(ctx);
        }
    }
}

/// A manual clock moved: deadlines may now be due.
impl StreamHandler<()> for RefresherActor {
    fn handle(&mut self, (): (), ctx: &mut Self::Context) {
        self.fire(ctx);
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

impl Handler<store::Changed> for RefresherActor {
    type Result = ();

    fn handle(&mut self, msg: store::Changed, ctx: &mut Self::Context) {
        match msg.0 {
            Outcome::Saved(t) => {
                let input = ScheduleInput::of(&t);
                if let Some(flight) = self.in_flight.get_mut(t.id()) {
                    flight.changed = Some(attempt::Latest::Stored(input));
                }
                self.schedule(t.id(), input, ctx);
            }
            // A refused conditional delete (`existed: false`: the cleanup found the session
            // alive again) changed nothing: the token keeps its deadline.
            Outcome::Deleted { id, existed: true } => {
                if let Some(flight) = self.in_flight.get_mut(&id) {
                    flight.changed = Some(attempt::Latest::Gone);
                }
                self.deadlines.cancel(&id);
            }
            Outcome::DeletedAll(_) => {
                for flight in self.in_flight.values_mut() {
                    flight.changed = Some(attempt::Latest::Gone);
                }
                self.deadlines.clear();
            }
            Outcome::Deleted { existed: false, .. }
            | Outcome::Superseded { .. }
            | Outcome::Spent => {}
        }
    }
}

async fn wait_for(
    answer: Result<
        Result<StoredToken, RefreshError>,
        oneshot::Receiver<Result<StoredToken, RefreshError>>,
    >,
) -> Result<StoredToken, RefreshError> {
    match answer {
        Ok(done) => done,
        Err(rx) => rx.await.unwrap_or(Err(RefreshError::ShuttingDown)),
    }
}
