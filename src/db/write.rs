//! Every write the store batches: a client's save (its rules in `save.rs`), deletes,
//! the refresher's spending and its conditional update, and the cleanup's conditional
//! delete. Called inside the batch transaction.

use rusqlite::{params, Connection};

use super::find_by_id;
use super::save::{save, update};
use crate::error::StoreError;
use crate::model::{StoredToken, Token, TokenState};

/// A write the store actor batches into one transaction.
// Short-lived and moved once: boxing the token would cost an allocation per save.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Write {
    /// A client's save, by the SDK's rules.
    Save(Token),
    Delete(String),
    DeleteAll,
    /// The cleanup's removal of an ended session: only if the token is still at
    /// `version` and unused since `used_before`, so a session that came back to life
    /// between the scan and the delete is kept.
    Expire {
        id: String,
        version: i64,
        used_before: i64,
    },
    /// One refresh of the refresh token hashed to `token_hash` asked of the provider at
    /// `at`, recorded before asking; spending before `forget_before` is deleted.
    Spend {
        token_hash: i64,
        at: i64,
        forget_before: i64,
    },
    /// The refresher's result for token `id`, asked with the credentials of `read` (the
    /// token as the attempt read it). Applied only if the same row still holds those
    /// credentials: a result for them is true whatever else a client saved meanwhile (a
    /// new redirect URL, the same token again), but it must not undo a client's new
    /// credentials, nor land on a token deleted and saved again (its credentials may
    /// have been revoked in between).
    Refreshed {
        id: String,
        read: StoredToken,
        update: RefreshUpdate,
    },
}

/// What a refresh attempt changes.
#[derive(Clone)]
pub enum RefreshUpdate {
    Succeeded {
        access_token: String,
        expiry_time: String,
        /// Only when the provider rotated it; otherwise the stored one stays.
        refresh_token: Option<String>,
        api_domain: Option<String>,
    },
    Failed {
        failures: u32,
        /// Throttles in a row, this one counted (0 for another failure).
        throttles: u32,
        last_error: String,
        /// When to try again; `None` with `needs_reauth`.
        next_refresh_at: Option<i64>,
        needs_reauth: bool,
    },
}

/// By hand, as `Token`'s: the new tokens are secrets.
impl std::fmt::Debug for RefreshUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RefreshUpdate::Succeeded {
                expiry_time,
                refresh_token,
                api_domain,
                ..
            } => f
                .debug_struct("Succeeded")
                .field("access_token", &"<redacted>")
                .field("expiry_time", expiry_time)
                .field(
                    "refresh_token",
                    &refresh_token.as_ref().map(|_| "<redacted>"),
                )
                .field("api_domain", api_domain)
                .finish(),
            RefreshUpdate::Failed {
                failures,
                throttles,
                last_error,
                next_refresh_at,
                needs_reauth,
            } => f
                .debug_struct("Failed")
                .field("failures", failures)
                .field("throttles", throttles)
                .field("last_error", last_error)
                .field("next_refresh_at", next_refresh_at)
                .field("needs_reauth", needs_reauth)
                .finish(),
        }
    }
}

/// What a write did, for the caller's reply and for the actors that follow changes.
#[allow(clippy::large_enum_variant)] // as for `Write`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Saved(StoredToken),
    Deleted {
        id: String,
        existed: bool,
    },
    DeletedAll(u64),
    /// A `Refreshed` write found the token gone or with new credentials, and changed
    /// nothing.
    Superseded {
        id: String,
    },
    /// A `Spend` was recorded: no token changed.
    Spent,
}

/// `versions`: the next token version to hand out; every change to a token takes one.
pub(super) fn apply(
    tx: &Connection,
    write: &Write,
    now: i64,
    versions: &mut i64,
) -> Result<Outcome, StoreError> {
    match write {
        Write::Save(token) => save(tx, token.clone(), now, versions).map(Outcome::Saved),
        Write::Delete(id) => {
            let n = tx
                .prepare_cached("DELETE FROM tokens WHERE id = ?1")?
                .execute([id])?;
            Ok(Outcome::Deleted {
                id: id.clone(),
                existed: n > 0,
            })
        }
        Write::DeleteAll => Ok(Outcome::DeletedAll(
            tx.prepare_cached("DELETE FROM tokens")?.execute([])? as u64,
        )),
        // `store::StillEnded` checks the same condition before a revoke: keep them alike.
        Write::Expire {
            id,
            version,
            used_before,
        } => {
            let n = tx
                .prepare_cached(
                    "DELETE FROM tokens WHERE id = ?1 AND version = ?2 AND coalesce(last_used_at, 0) <= ?3",
                )?
                .execute(params![id, version, used_before])?;
            Ok(Outcome::Deleted {
                id: id.clone(),
                existed: n > 0,
            })
        }
        Write::Spend {
            token_hash,
            at,
            forget_before,
        } => {
            // A time ahead of this one (the clock was ahead, then set right) becomes this
            // one, so that it leaves the window in time.
            tx.prepare_cached("UPDATE refresh_spent SET at = ?1 WHERE at > ?1")?
                .execute([at])?;
            tx.prepare_cached("INSERT INTO refresh_spent (token_hash, at) VALUES (?1, ?2)")?
                .execute([token_hash, at])?;
            tx.prepare_cached("DELETE FROM refresh_spent WHERE at < ?1")?
                .execute([forget_before])?;
            Ok(Outcome::Spent)
        }
        Write::Refreshed {
            id,
            read,
            update: change,
        } => match find_by_id(tx, id)? {
            // `created_at` tells the row read from one saved again after a delete: the
            // attempt read it before asking the provider, whose answer takes longer than
            // the clock's millisecond.
            Some(mut stored)
                if stored.meta.created_at == read.meta.created_at
                    && stored.token.same_credentials(&read.token) =>
            {
                let before = stored.clone();
                apply_refresh(&mut stored, change.clone(), now);
                update(tx, &before, &mut stored, versions)?;
                Ok(Outcome::Saved(stored))
            }
            _ => Ok(Outcome::Superseded { id: id.clone() }),
        },
    }
}

fn apply_refresh(stored: &mut StoredToken, change: RefreshUpdate, now: i64) {
    let (token, meta) = (&mut stored.token, &mut stored.meta);
    meta.updated_at = now;
    match change {
        RefreshUpdate::Succeeded {
            access_token,
            expiry_time,
            refresh_token,
            api_domain,
        } => {
            token.access_token = Some(access_token);
            token.expiry_time = Some(expiry_time);
            meta.expiry_set_at = Some(now);
            if refresh_token.is_some() {
                token.refresh_token = refresh_token;
            }
            if api_domain.is_some() {
                token.api_domain = api_domain;
            }
            meta.failures = 0;
            meta.throttles = 0;
            meta.last_error = None;
            meta.next_refresh_at = None;
            meta.state = TokenState::Active;
        }
        RefreshUpdate::Failed {
            failures,
            throttles,
            last_error,
            next_refresh_at,
            needs_reauth,
        } => {
            meta.failures = failures;
            meta.throttles = throttles;
            meta.last_error = Some(last_error);
            meta.next_refresh_at = next_refresh_at;
            if needs_reauth {
                meta.state = TokenState::NeedsReauth;
            }
        }
    }
}
