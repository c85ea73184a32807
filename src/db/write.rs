//! Every write: the SDK's save semantics, deletes, the refresher's conditional update
//! and the cleanup's conditional delete. Called inside the batch transaction.

use std::fmt::Write as _;

use rusqlite::{params, Connection};

use super::{access_hash, find, find_by_id, COLUMNS};
use crate::error::StoreError;
use crate::model::{Meta, StoredToken, Token, TokenState};

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
    /// The refresher's result for token `id` as it was at `version`. Applied only if the
    /// token is still at that version: a refresh must not undo a client's newer save, nor
    /// bring back a deleted token.
    Refreshed {
        id: String,
        version: i64,
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
                last_error,
                next_refresh_at,
                needs_reauth,
            } => f
                .debug_struct("Failed")
                .field("failures", failures)
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
    /// A `Refreshed` write found the token gone or changed since, and changed nothing.
    Superseded {
        id: String,
    },
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
        Write::Refreshed {
            id,
            version,
            update: change,
        } => match find_by_id(tx, id)? {
            Some(mut stored) if stored.meta.version == *version => {
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
            meta.last_error = None;
            meta.next_refresh_at = None;
            meta.state = TokenState::Active;
        }
        RefreshUpdate::Failed {
            failures,
            last_error,
            next_refresh_at,
            needs_reauth,
        } => {
            meta.failures = failures;
            meta.last_error = Some(last_error);
            meta.next_refresh_at = next_refresh_at;
            if needs_reauth {
                meta.state = TokenState::NeedsReauth;
            }
        }
    }
}

/// The SDK's `save_token`: update the token this one means, or insert it as new.
fn save(
    tx: &Connection,
    token: Token,
    now: i64,
    versions: &mut i64,
) -> Result<StoredToken, StoreError> {
    let existing = match token.id.as_deref() {
        Some(id) => find_by_id(tx, id)?,
        None => None,
    };
    // Falling back to the matching rules even when an unknown id was given keeps the
    // one-row-per-user promise: an id must not let a save duplicate a user.
    let existing = match existing {
        Some(found) => Some(found),
        None => match token.lookup() {
            Some(lookup) => find(tx, lookup)?,
            None => None,
        },
    };
    match existing {
        Some(mut stored) => {
            let before = stored.clone();
            stored.token.merge_from(token);
            let (is, was) = (&stored.token, &before.token);
            // New credentials from a client (after the user authorised again, or after
            // the SDK refreshed by itself) end any failure state: they deserve a try.
            // The same ones saved again do not: that would cut a throttle short. A new
            // client id or secret counts: the provider refuses a wrong one as it does a
            // dead refresh token (`invalid_client_secret` marks needs_reauth too).
            if is.refresh_token != was.refresh_token
                || is.grant_token != was.grant_token
                || is.access_token != was.access_token
                || is.client_id != was.client_id
                || is.client_secret != was.client_secret
            {
                stored.meta.state = TokenState::Active;
                stored.meta.failures = 0;
                stored.meta.last_error = None;
                stored.meta.next_refresh_at = None;
            }
            if stored.token.expiry_time != before.token.expiry_time {
                stored.meta.expiry_set_at = Some(now);
            }
            stored.meta.updated_at = now;
            stored.meta.last_used_at = Some(now);
            update(tx, &before, &mut stored, versions)?;
            Ok(stored)
        }
        None if !token.has_credential() => Err(StoreError::IncompleteToken),
        None => {
            let mut token = token;
            match &token.id {
                None => token.id = Some(next_id(tx)?),
                // A kept id (an import) that looks like one of ours moves the counter past
                // it, so it is never handed out again, even after this token is deleted.
                // Not one past `MOVES_COUNTER_BELOW`: near i64::MAX the counter would have
                // no room left (SQLite's overflow turns it into a REAL), and every later
                // save without an id would fail. The counter never reaches such an id.
                Some(id) => {
                    if let Some(n) = id
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (0..MOVES_COUNTER_BELOW).contains(n) && n.to_string() == *id)
                    {
                        tx.prepare_cached("UPDATE id_counter SET next = max(next, ?1 + 1)")?
                            .execute([n])?;
                    }
                }
            }
            let expiry_set_at = token.expiry_time.is_some().then_some(now);
            let stored = StoredToken {
                token,
                meta: Meta {
                    created_at: now,
                    updated_at: now,
                    last_used_at: Some(now),
                    version: next_version(versions),
                    expiry_set_at,
                    ..Meta::default()
                },
            };
            insert(tx, &stored)?;
            Ok(stored)
        }
    }
}

fn next_version(versions: &mut i64) -> i64 {
    let v = *versions;
    *versions += 1;
    v
}

/// Kept numeric ids from here up leave the id counter alone (see `save`).
const MOVES_COUNTER_BELOW: i64 = 1 << 53;

fn next_id(tx: &Connection) -> Result<String, StoreError> {
    let n: i64 = tx
        .prepare_cached("UPDATE id_counter SET next = next + 1 RETURNING next - 1")?
        .query_row([], |r| r.get(0))?;
    Ok(n.to_string())
}

fn insert(tx: &Connection, t: &StoredToken) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO tokens ({COLUMNS}, access_hash) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"
    );
    let hash = t.token.access_token.as_deref().map(access_hash);
    let mut values = row_params(t).to_vec();
    values.push(&hash);
    tx.prepare_cached(&sql)?
        .execute(values.as_slice())
        .map_err(conflict)?;
    Ok(())
}

/// Writes the columns of `t` that differ from `before`, the row as read. Only those:
/// SQLite rewrites the entries of every index whose column is in the SET list, changed
/// or not, and a save after a refresh changes two indexed columns of six (the store
/// bench measured 69 against 45 µs per save).
fn update(
    tx: &Connection,
    before: &StoredToken,
    t: &mut StoredToken,
    versions: &mut i64,
) -> Result<(), StoreError> {
    t.meta.version = next_version(versions);
    let (old, new) = (row_params(before), row_params(t));
    let mut sql = String::from("UPDATE tokens SET ");
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![new[0]];
    for (i, name) in COLUMNS.split(", ").enumerate().skip(1) {
        if old[i].to_sql()? != new[i].to_sql()? {
            values.push(new[i]);
            if values.len() > 2 {
                sql.push_str(", ");
            }
            // `name` is one of our own column names; every value is bound.
            let _ = write!(sql, "{name} = ?{}", values.len());
        }
    }
    // The access token's index entry is its hash (`access_hash`): it moves with it.
    let hash = t.token.access_token.as_deref().map(access_hash);
    if before.token.access_token != t.token.access_token {
        values.push(&hash);
        let _ = write!(sql, ", access_hash = ?{}", values.len());
    }
    sql.push_str(" WHERE id = ?1");
    // The version always changes, so the SET list is never empty.
    tx.prepare_cached(&sql)?
        .execute(values.as_slice())
        .map_err(conflict)?;
    Ok(())
}

/// A unique-index violation on save means the save would give a second token an
/// existing user_name: a caller error, not a database failure.
fn conflict(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::Conflict,
        _ => StoreError::from(e),
    }
}

fn row_params(t: &StoredToken) -> [&dyn rusqlite::ToSql; 19] {
    let (k, m) = (&t.token, &t.meta);
    [
        &k.id,
        &k.user_name,
        &k.client_id,
        &k.client_secret,
        &k.refresh_token,
        &k.access_token,
        &k.grant_token,
        &k.expiry_time,
        &k.redirect_url,
        &k.api_domain,
        &m.created_at,
        &m.updated_at,
        &m.last_used_at,
        &m.state,
        &m.failures,
        &m.last_error,
        &m.next_refresh_at,
        &m.version,
        &m.expiry_set_at,
    ]
}

impl rusqlite::ToSql for TokenState {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}
