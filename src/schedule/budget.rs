//! The provider's rate limits, kept on our side. Zoho counts and blocks refresh tokens,
//! not our rows: every row that holds the same refresh token (one grant saved under two
//! user names) shares its budget and its throttle, so both are keyed by the refresh
//! token's stable hash (`RateBudget::key`), never by token id.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::config::RefreshConfig;

/// At most `budget` refreshes per refresh token per `window`, counting every refresh
/// however it was asked for, and none while the provider throttles the refresh token.
/// Each refresh is also recorded in the database before the provider is asked
/// (`store::Spend`) and read back at start (`record`): Zoho does not forget them when
/// tokend restarts.
#[derive(Debug, Default)]
pub struct RateBudget {
    /// Refresh times per refresh token, keyed by its stable hash (`key`): the map holds
    /// no secret, and the keys match the database's.
    spent: HashMap<i64, VecDeque<i64>>,
    /// No refresh at all before this time: what was spent before this run is unknown.
    closed_until: i64,
    /// Refresh tokens the provider throttled, by key.
    throttled: HashMap<i64, Throttle>,
    /// The next `Ticket`.
    tickets: u64,
}

/// One refresh `take` allowed, to hand back with its answer. Tickets only grow, so an
/// answer can be told apart from one to a request sent before a throttle was known.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

#[derive(Debug, Default, Clone, Copy)]
struct Throttle {
    /// No request before this.
    until: i64,
    /// Throttles in a row; each doubles the wait (`throttle_wait`).
    count: u32,
    /// The first ticket handed out after this throttle was recorded. An answer to an
    /// earlier one is to a request of the same burst, sent before anyone knew: it
    /// neither lifts the throttle nor counts as another in a row.
    since: Ticket,
    /// One request is out to learn whether the block has lifted. The other rows wait for
    /// its answer: all asking at once when the wait ends would re-arm the block once each.
    probing: bool,
}

/// Why `take` said no, and when to ask again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub until: i64,
    /// For the log: which limit holds the refresh.
    pub why: &'static str,
}

impl RateBudget {
    /// The key of `refresh_token`, here and in the database: FNV-1a, stable across runs.
    pub fn key(refresh_token: &str) -> i64 {
        crate::db::access_hash(refresh_token)
    }

    /// Spends one refresh of `refresh_token` at `now`, or says when one is next allowed.
    pub fn take(
        &mut self,
        refresh_token: &str,
        now: i64,
        cfg: &RefreshConfig,
    ) -> Result<Ticket, Refused> {
        let refused = |until, why| Err(Refused { until, why });
        if now < self.closed_until {
            let why = "the refreshes spent before this start could not be read";
            return refused(self.closed_until, why);
        }
        let key = RateBudget::key(refresh_token);
        if let Some(t) = self.throttled.get(&key) {
            if now < t.until {
                return refused(t.until, "the provider is throttling this refresh token");
            }
            if t.probing {
                let why = "another token's refresh is finding out whether the provider's block has lifted";
                return refused(now + cfg.backoff_initial.as_millis() as i64, why);
            }
        }
        let window = cfg.budget_window.as_millis() as i64;
        let times = self.spent.entry(key).or_default();
        // A time ahead of `now` (the clock was stepped back) counts as now: it must
        // neither stay in the window forever nor hide the older ones behind it.
        for t in times.iter_mut() {
            *t = (*t).min(now);
        }
        while times.front().is_some_and(|&t| t <= now - window) {
            times.pop_front();
        }
        if times.len() >= cfg.budget as usize {
            let until = times.front().map_or(now, |&oldest| oldest + window);
            return refused(until, "the refresh budget of this refresh token is spent");
        }
        times.push_back(now);
        if let Some(t) = self.throttled.get_mut(&key) {
            t.probing = true;
        }
        let ticket = Ticket(self.tickets);
        self.tickets += 1;
        Ok(ticket)
    }

    /// Gives back the refresh `take` just spent at `at`: it was never asked for (its
    /// record could not be written).
    pub fn refund(&mut self, refresh_token: &str, at: i64, ticket: Ticket) {
        let key = RateBudget::key(refresh_token);
        if let Some(times) = self.spent.get_mut(&key) {
            if times.back() == Some(&at) {
                times.pop_back();
            }
        }
        self.unanswered(refresh_token, ticket);
    }

    /// The provider throttled `refresh_token`, asked with `ticket` at `now` through a row
    /// that had counted `row_count` throttles in a row. Returns until when to leave it
    /// alone, and the throttles in a row now: the row's count or the refresh token's,
    /// whichever is higher, so a throttle answered through another row does not start
    /// the doubling over.
    pub fn throttled(
        &mut self,
        refresh_token: &str,
        row_count: u32,
        ticket: Ticket,
        now: i64,
        cfg: &RefreshConfig,
    ) -> (i64, u32) {
        let since = Ticket(self.tickets);
        let t = self
            .throttled
            .entry(RateBudget::key(refresh_token))
            .or_default();
        if ticket < t.since {
            return (t.until, t.count.max(row_count));
        }
        let before = row_count.max(t.count);
        // Never shorter than a wait already set (the wall clock may have stepped back).
        let until = (now + throttle_wait(before, cfg).as_millis() as i64).max(t.until);
        *t = Throttle {
            until,
            count: before.saturating_add(1),
            since,
            probing: false,
        };
        (until, before.saturating_add(1))
    }

    /// The provider answered the request of `ticket` with a token or a refusal of the
    /// refresh token: its block, if any, is over. Not an answer to a request sent
    /// before the block was known, which says nothing of it now.
    pub fn answered(&mut self, refresh_token: &str, ticket: Ticket) {
        let key = RateBudget::key(refresh_token);
        if self.throttled.get(&key).is_some_and(|t| ticket >= t.since) {
            self.throttled.remove(&key);
        }
    }

    /// The request of `ticket` got no answer from the provider (a network error, a 5xx,
    /// no accounts server): nothing is known of the block, so it stays, and the next
    /// request finds out (another row's at once, this row's after its backoff).
    pub fn unanswered(&mut self, refresh_token: &str, ticket: Ticket) {
        let key = RateBudget::key(refresh_token);
        if let Some(t) = self.throttled.get_mut(&key).filter(|t| ticket >= t.since) {
            t.probing = false;
        }
    }

    /// Counts a refresh spent before this run (read from the database, oldest first).
    pub fn record(&mut self, key: i64, at: i64) {
        self.spent.entry(key).or_default().push_back(at);
    }

    /// A throttle recorded on a row before this run, with its wait ending at `until`
    /// (perhaps ended already: then the first request finds out for every row).
    pub fn record_throttle(&mut self, key: i64, until: i64, count: u32) {
        let t = self.throttled.entry(key).or_default();
        t.until = t.until.max(until);
        t.count = t.count.max(count);
    }

    /// Refuses every refresh until `until`: what earlier runs spent, or throttled, could
    /// not be read, and only that long without any refresh is sure to be safe.
    pub fn close_until(&mut self, until: i64) {
        self.closed_until = self.closed_until.max(until);
    }

    /// Forgets refreshes older than the window, so the map does not grow forever, and
    /// throttles whose wait ended the longest wait ago with nobody asking (every row
    /// holding the refresh token deleted): by then Zoho's block has lifted, and a
    /// throttle after that starts a new run.
    pub fn prune(&mut self, now: i64, cfg: &RefreshConfig) {
        let horizon = now - cfg.budget_window.as_millis() as i64;
        self.spent
            .retain(|_, times| times.back().is_some_and(|&t| t > horizon));
        let longest = longest_throttle_wait(cfg).as_millis() as i64;
        self.throttled
            .retain(|_, t| t.probing || t.until + longest > now);
    }
}

/// The longest wait after a throttle: four times `throttle_wait`.
pub fn longest_throttle_wait(cfg: &RefreshConfig) -> Duration {
    throttle_wait(u32::MAX, cfg)
}

/// How long to leave the provider alone after its throttle, the `before`-th in a row
/// before this one. Zoho lifts its block only after 15-30 quiet minutes, and a request
/// during it re-arms it (ZOHO.md): a fixed wait shorter than the block would never see
/// it lifted. So each throttle in a row doubles the wait, from `throttle_wait` up to
/// four times that.
fn throttle_wait(before: u32, cfg: &RefreshConfig) -> Duration {
    cfg.throttle_wait.saturating_mul(1 << before.min(2))
}

#[cfg(test)]
mod tests;
