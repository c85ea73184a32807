//! The refresher's pure rules and its one timer structure. No I/O and no clock: "now"
//! and the random draws are parameters, so every rule is unit-tested exactly.

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

mod budget;
mod deadlines;

pub use budget::{longest_throttle_wait, RateBudget, Refused, Ticket};
pub use deadlines::Deadlines;

#[cfg(test)]
mod tests;
