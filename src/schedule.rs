//! The refresher's pure rules and its one timer structure. No I/O and no clock: "now"
//! and the random draws are parameters, so every rule is unit-tested exactly.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::config::RefreshConfig;
use crate::model::{StoredToken, Token, TokenState};

/// What the schedule needs of a token. Small, because a million are loaded at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleInput {
    pub expiry_ms: Option<i64>,
    /// When the current expiry was saved: expiry minus this is the token's lifetime.
    pub saved_at: i64,
    /// A retry time the refresher set after a failure; wins over the expiry rule.
    pub next_refresh_at: Option<i64>,
}

/// Whether tokend can refresh this token by itself: it needs the refresh token and the
/// client credentials that go with it.
pub fn is_refreshable(t: &Token) -> bool {
    t.refresh_token.is_some() && t.client_id.is_some() && t.client_secret.is_some()
}

impl ScheduleInput {
    /// The input for a stored token, or `None` when the refresher should leave it alone.
    pub fn of(t: &StoredToken) -> Option<ScheduleInput> {
        (is_refreshable(&t.token) && t.meta.state == TokenState::Active).then(|| ScheduleInput {
            // No access token: nothing to keep alive yet, so refresh as soon as possible.
            expiry_ms: t.token.access_token.as_ref().and(t.token.expiry_ms()),
            saved_at: t.meta.expiry_set_at.unwrap_or(t.meta.updated_at),
            next_refresh_at: t.meta.next_refresh_at,
        })
    }
}

/// How long before expiry a token is refreshed: a fraction of its lifetime, clamped.
pub fn lead(lifetime_ms: i64, cfg: &RefreshConfig) -> Duration {
    let fraction = Duration::from_millis(lifetime_ms.max(0) as u64).mul_f64(cfg.lead_fraction);
    fraction.clamp(cfg.min_lead, cfg.max_lead)
}

/// When to refresh, in epoch ms. `draw` in [0, 1) picks the jitter, which only ever
/// moves a refresh earlier (up to `jitter` × lead), so tokens saved together spread out
/// yet none is refreshed later than `expiry − lead`.
pub fn deadline(input: ScheduleInput, cfg: &RefreshConfig, draw: f64) -> i64 {
    if let Some(retry) = input.next_refresh_at {
        return retry;
    }
    let Some(expiry) = input.expiry_ms else {
        return input.saved_at;
    };
    let lead = lead(expiry - input.saved_at, cfg);
    let jitter = lead.mul_f64(cfg.jitter * draw.clamp(0.0, 1.0));
    expiry - lead.as_millis() as i64 - jitter.as_millis() as i64
}

/// The wait before retry number `failures` (1 = first retry) after a transient error:
/// `backoff_initial` doubling, jittered by ±50% with `draw` in [0, 1), capped.
pub fn backoff(failures: u32, cfg: &RefreshConfig, draw: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    let base = cfg
        .backoff_initial
        .saturating_mul(1 << doublings)
        .min(cfg.backoff_max);
    base.mul_f64(0.5 + draw.clamp(0.0, 1.0))
        .min(cfg.backoff_max)
}

/// The provider's rate limit, kept on our side: at most `budget` refreshes per refresh
/// token per `window`, counting every refresh however it was asked for. Each one is also
/// recorded in the database before the provider is asked (`store::Spend`), and read
/// back at start (`record`): Zoho does not forget them when tokend restarts.
#[derive(Debug, Default)]
pub struct RateBudget {
    /// Refresh times per refresh token, keyed by its stable hash (`key`): the map holds
    /// no secret, and the keys match the database's.
    spent: HashMap<i64, VecDeque<i64>>,
    /// No refresh at all before this time: what was spent before this run is unknown.
    closed_until: i64,
    /// Refresh tokens the provider is throttling, by key, and until when to leave them
    /// alone. Zoho blocks the refresh token, not one of our rows: every row holding it
    /// must wait, or asking through another re-arms the block.
    blocked: HashMap<i64, i64>,
}

impl RateBudget {
    /// The key of `refresh_token`, here and in the database: FNV-1a, stable across runs.
    pub fn key(refresh_token: &str) -> i64 {
        crate::db::access_hash(refresh_token)
    }

    /// Spends one refresh of `refresh_token` at `now`, or says when one is next allowed.
    pub fn take(&mut self, refresh_token: &str, now: i64, cfg: &RefreshConfig) -> Result<(), i64> {
        if now < self.closed_until {
            return Err(self.closed_until);
        }
        let key = RateBudget::key(refresh_token);
        if let Some(&until) = self.blocked.get(&key).filter(|&&until| now < until) {
            return Err(until);
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
            return Err(times.front().map_or(now, |&oldest| oldest + window));
        }
        times.push_back(now);
        Ok(())
    }

    /// Gives back the refresh `take` just spent at `at`: it was never asked for (its
    /// record could not be written).
    pub fn refund(&mut self, refresh_token: &str, at: i64) {
        if let Some(times) = self.spent.get_mut(&RateBudget::key(refresh_token)) {
            if times.back() == Some(&at) {
                times.pop_back();
            }
        }
    }

    /// Counts a refresh spent before this run (read from the database, oldest first).
    pub fn record(&mut self, key: i64, at: i64) {
        self.spent.entry(key).or_default().push_back(at);
    }

    /// Refuses every refresh until `until`: what earlier runs spent could not be read,
    /// and only a window without any refresh is sure to be within the budget.
    pub fn close_until(&mut self, until: i64) {
        self.closed_until = until;
    }

    /// Refuses every refresh of `refresh_token` until `until`: the provider throttled it.
    pub fn block(&mut self, refresh_token: &str, until: i64) {
        self.blocked.insert(RateBudget::key(refresh_token), until);
    }

    /// Forgets refreshes older than the window and throttles that have ended, so the
    /// maps do not grow forever.
    pub fn prune(&mut self, now: i64, cfg: &RefreshConfig) {
        let horizon = now - cfg.budget_window.as_millis() as i64;
        self.spent
            .retain(|_, times| times.back().is_some_and(|&t| t > horizon));
        self.blocked.retain(|_, &mut until| until > now);
    }
}

mod deadlines;

pub use deadlines::Deadlines;

#[cfg(test)]
mod tests;
