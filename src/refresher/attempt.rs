//! One refresh attempt: read the token fresh, spend the rate budget, ask the provider,
//! record the result through the store. Plain async code with no actor state, so the
//! single-flight bookkeeping stays in `refresher.rs` and this reads top to bottom.

use std::future::Future;
use std::rc::Rc;

use crate::db::RefreshUpdate;
use crate::error::StoreError;
use crate::model::{StoredToken, TokenState};
use crate::oauth::{OAuthError, RefreshRequest};
use crate::schedule::{backoff, RateBudget, ScheduleInput, Ticket};
use crate::store;

use super::{Deps, RefreshError};

/// What the refresher should schedule after an attempt.
pub enum Latest {
    /// The token as now stored (`None`: not to be scheduled).
    Stored(Option<ScheduleInput>),
    /// Not stored anew; try again at this time.
    RetryAt(i64),
    /// The token no longer exists.
    Gone,
}

/// Whether the stored access token has at least `min_validity` left.
pub(super) fn fresh_enough(t: &StoredToken, deps: &Deps) -> bool {
    let min = deps.cfg().min_validity.as_millis() as i64;
    t.token.access_token.is_some()
        && t.token
            .expiry_ms()
            .is_some_and(|e| e - deps.clock.now_ms() >= min)
}

pub(super) async fn run(
    deps: Rc<Deps>,
    id: String,
    force: bool,
) -> (Result<StoredToken, RefreshError>, Latest) {
    let token = match ask(deps.store.send(store::FindById {
        id: id.clone(),
        touch: false,
    }))
    .await
    {
        Ok(Some(t)) => t,
        Ok(None) => return (Err(RefreshError::NotFound), Latest::Gone),
        Err(e) => return (Err(e), retry_soon(&deps)),
    };
    // Someone refreshed (or a client saved) while this caller waited: nothing to do.
    if !force && fresh_enough(&token, &deps) {
        return fresh(token);
    }
    if token.meta.state == TokenState::NeedsReauth {
        let provider_error = Some(token.meta.last_error.clone().unwrap_or_default());
        return (
            Err(RefreshError::NeedsReauth { provider_error }),
            Latest::Stored(ScheduleInput::of(&token)),
        );
    }
    // A caller does not get to cut the row's wait short: asking the provider again now
    // is what the wait is there to prevent. `refresh` forces past a backoff (within
    // budget), never past a throttle: Zoho lifts its block only after quiet minutes, and
    // every call re-arms it. That the budget enforces, for every row holding the refresh
    // token (`RateBudget::take`), so it is not checked here again.
    if let Some(retry_at) = token
        .meta
        .next_refresh_at
        .filter(|&at| !force && at > deps.clock.now_ms())
    {
        let error = if token.meta.last_error.as_deref() == Some("throttled") {
            RefreshError::Throttled { retry_at }
        } else {
            RefreshError::Failed {
                provider_error: token
                    .meta
                    .last_error
                    .as_deref()
                    .unwrap_or("unknown")
                    .to_owned(),
                reason: format!("the last attempt failed; the next is at {retry_at} (epoch ms)"),
                retry_at: Some(retry_at),
            }
        };
        return (Err(error), Latest::Stored(ScheduleInput::of(&token)));
    }
    let t = &token.token;
    let (Some(client_id), Some(client_secret), Some(refresh_token)) =
        (&t.client_id, &t.client_secret, &t.refresh_token)
    else {
        return (
            Err(RefreshError::NeedsReauth {
                provider_error: None,
            }),
            Latest::Stored(ScheduleInput::of(&token)),
        );
    };
    let now = deps.clock.now_ms();
    let taken = deps
        .budget
        .borrow_mut()
        .take(refresh_token, now, &deps.cfg());
    let ticket = match taken {
        Ok(ticket) => ticket,
        Err(refused) => {
            let retry_at = refused.until;
            tracing::warn!(token_id = %id.escape_debug(), retry_at, "not asking the provider until then: {}", refused.why);
            return (
                Err(RefreshError::Throttled { retry_at }),
                Latest::RetryAt(retry_at),
            );
        }
    };
    // On disk before the request goes: a restart, or a crash before the answer is
    // recorded, must not give back what Zoho still counts.
    let spend = store::Spend {
        token_hash: RateBudget::key(refresh_token),
        at: now,
        forget_before: now - deps.cfg().budget_window.as_millis() as i64,
    };
    if let Err(e) = ask(deps.store.send(spend)).await {
        deps.budget.borrow_mut().refund(refresh_token, now, ticket);
        return (Err(e), retry_soon(&deps));
    }
    let request = RefreshRequest {
        client_id,
        client_secret,
        refresh_token,
        api_domain: t.api_domain.as_deref(),
    };
    let response = deps.oauth().refresh(&request).await;
    let now = deps.clock.now_ms();
    match &response {
        Ok(_) | Err(OAuthError::Permanent { .. }) => {
            deps.budget.borrow_mut().answered(refresh_token, ticket);
        }
        Err(OAuthError::Throttled) => {} // `failed` records it
        Err(_) => deps.budget.borrow_mut().unanswered(refresh_token, ticket),
    }
    let counter = if response.is_ok() {
        &deps.refreshed
    } else {
        &deps.failed
    };
    counter.set(counter.get() + 1);
    let (update, error) = match response {
        Ok(grant) => {
            let expiry = now + grant.expires_in.as_millis() as i64;
            tracing::info!(token_id = %id.escape_debug(), expiry_time = expiry, rotated = grant.refresh_token.is_some(), "token refreshed");
            let update = RefreshUpdate::Succeeded {
                access_token: grant.access_token,
                expiry_time: expiry.to_string(),
                refresh_token: grant.refresh_token,
                api_domain: grant.api_domain,
            };
            (update, None)
        }
        Err(e) => failed(&deps, &id, &token, (refresh_token, ticket), e, now),
    };
    record(&deps, id, token, update, error).await
}

/// Writes the result of asking the provider with the credentials of `read`, the token
/// as read before asking. The store applies it if the token still holds those
/// credentials: a client's save meanwhile that kept them (the SDK saving what it read, a
/// new redirect URL) leaves the result true, a grant for them or the provider's refusal
/// or throttle of them, which must not be forgotten (asking again during a throttle
/// re-arms it). New credentials are newer than the result, which is then dropped.
async fn record(
    deps: &Deps,
    id: String,
    read: StoredToken,
    update: RefreshUpdate,
    error: Option<RefreshError>,
) -> (Result<StoredToken, RefreshError>, Latest) {
    let write = store::ApplyRefresh {
        id: id.clone(),
        read,
        update,
    };
    match ask(deps.store.send(write)).await {
        Ok(Some(t)) => {
            let input = ScheduleInput::of(&t);
            (error.map_or(Ok(t), Err), Latest::Stored(input))
        }
        // New credentials, or the token deleted, while the provider answered.
        Ok(None) => match ask(deps.store.send(store::FindById { id, touch: false })).await {
            Ok(Some(now)) => superseded(now, deps),
            Ok(None) => (Err(RefreshError::NotFound), Latest::Gone),
            Err(e) => (Err(e), retry_soon(deps)),
        },
        // Not recorded: the old token stays stored and valid, and is retried.
        Err(e) => (Err(e), retry_soon(deps)),
    }
}

/// The answer when a client saved new credentials during the attempt: their token if it
/// holds a fresh access token (what every caller wants), else word to ask again. Not the
/// attempt's own error, which was about the credentials replaced (a `needs_reauth` for
/// the old refresh token would send the user to authorise once more for nothing), and
/// never the stored token as if it were fresh.
fn superseded(t: StoredToken, deps: &Deps) -> (Result<StoredToken, RefreshError>, Latest) {
    if fresh_enough(&t, deps) {
        return fresh(t);
    }
    let error = RefreshError::Failed {
        provider_error: "superseded".into(),
        reason: "a client saved new credentials during the refresh, without a fresh access token; ask again".into(),
        retry_at: None,
    };
    (Err(error), Latest::Stored(ScheduleInput::of(&t)))
}

fn retry_soon(deps: &Deps) -> Latest {
    Latest::RetryAt(deps.clock.now_ms() + deps.cfg().backoff_initial.as_millis() as i64)
}

/// `t` as the answer, and as what the schedule goes on from.
fn fresh(t: StoredToken) -> (Result<StoredToken, RefreshError>, Latest) {
    let input = ScheduleInput::of(&t);
    (Ok(t), Latest::Stored(input))
}

/// The record of a failed attempt, and what the caller is told.
fn failed(
    deps: &Deps,
    id: &str,
    token: &StoredToken,
    (refresh_token, ticket): (&str, Ticket),
    e: OAuthError,
    now: i64,
) -> (RefreshUpdate, Option<RefreshError>) {
    let failures = token.meta.failures.saturating_add(1);
    // A refusal of the refresh token ends a run of throttles; a failure without an
    // answer (a 5xx, a timeout) says nothing of Zoho's block, so the run goes on.
    let mut throttles = 0;
    let (next, error) = match &e {
        OAuthError::Permanent { code } => {
            tracing::warn!(token_id = %id.escape_debug(), error = %code, user_name = %token.token.user_name.as_deref().unwrap_or("").escape_debug(),
                "the provider rejected the refresh token; the user must authorise again");
            (
                None,
                RefreshError::NeedsReauth {
                    provider_error: Some(code.clone()),
                },
            )
        }
        OAuthError::Throttled => {
            // Every row holding the refresh token waits (`RateBudget::throttled`).
            let (retry_at, in_a_row) = deps.budget.borrow_mut().throttled(
                refresh_token,
                token.meta.throttles,
                ticket,
                now,
                &deps.cfg(),
            );
            throttles = in_a_row;
            tracing::warn!(token_id = %id.escape_debug(), retry_at, throttles, "the provider is throttling refreshes of this token");
            (Some(retry_at), RefreshError::Throttled { retry_at })
        }
        other => {
            throttles = token.meta.throttles;
            let retry_at = now + backoff(failures, &deps.cfg(), fastrand::f64()).as_millis() as i64;
            tracing::warn!(token_id = %id.escape_debug(), error = %other, failures, retry_at, "refresh failed; will retry");
            let error = RefreshError::Failed {
                provider_error: other.code().to_owned(),
                reason: other.to_string(),
                retry_at: Some(retry_at),
            };
            (Some(retry_at), error)
        }
    };
    let update = RefreshUpdate::Failed {
        failures,
        throttles,
        last_error: e.code().to_owned(),
        next_refresh_at: next,
        needs_reauth: next.is_none(),
    };
    (update, Some(error))
}

/// Awaits a store reply; a mailbox error means the store has stopped.
async fn ask<T>(
    sent: impl Future<Output = Result<Result<T, StoreError>, actix::MailboxError>>,
) -> Result<T, RefreshError> {
    match sent.await {
        Ok(r) => r.map_err(RefreshError::Store),
        Err(_) => Err(RefreshError::ShuttingDown),
    }
}
