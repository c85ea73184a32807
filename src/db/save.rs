//! The SDK's `save_token` rules, and the INSERT and UPDATE every write goes through.

use std::fmt::Write as _;

use rusqlite::Connection;

use super::{access_hash, find, find_by_id, COLUMNS};
use crate::error::StoreError;
use crate::model::{Meta, StoredToken, Token, TokenState};

/// The SDK's `save_token`: update the token this one means, or insert it as new.
pub(super) fn save(
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
            // New credentials from a client (after the user authorised again, or after
            // the SDK refreshed by itself) end any failure state: they deserve a try.
            // The same ones saved again do not: that would cut a throttle short. A new
            // client id or secret counts: the provider refuses a wrong one as it does a
            // dead refresh token (`invalid_client_secret` marks needs_reauth too).
            // A new api_domain sends the next refresh to another accounts server, so the
            // failures at the old one (none known, the wrong data centre) say nothing of
            // it; but a throttle is the refresh token's, wherever it is sent.
            let new_server =
                stored.token.api_domain != before.token.api_domain && before.meta.throttles == 0;
            if !stored.token.same_credentials(&before.token) || new_server {
                stored.meta.state = TokenState::Active;
                stored.meta.failures = 0;
                stored.meta.last_error = None;
                stored.meta.next_refresh_at = None;
                stored.meta.throttles = 0;
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
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)"
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
pub(super) fn update(
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

fn row_params(t: &StoredToken) -> [&dyn rusqlite::ToSql; 20] {
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
        &m.throttles,
    ]
}

impl rusqlite::ToSql for TokenState {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}
