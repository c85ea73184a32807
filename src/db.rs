//! The SQLite database behind the store actor: schema, migrations and every query.
//!
//! Only `store.rs` uses this module, so the store actor's thread is the only place SQL
//! runs. Every value is bound as a parameter; no value is ever formatted into SQL.
//! Writes come in batches (`apply_batch`): one transaction and one fsync for all the
//! saves that arrived together, each in its own savepoint so one bad save does not undo
//! the others.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::StoreError;
use crate::model::{Lookup, Meta, StoredToken, Token, TokenState};
use crate::policy::{verdict, Policies, Policy, Session};
use crate::schedule::ScheduleInput;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
/// Append only: a released migration is never edited.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE tokens (
    id              TEXT PRIMARY KEY NOT NULL,
    user_name       TEXT,
    client_id       TEXT,
    client_secret   TEXT,
    refresh_token   TEXT,
    access_token    TEXT,
    grant_token     TEXT,
    expiry_time     TEXT,
    redirect_url    TEXT,
    api_domain      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    last_used_at    INTEGER,
    state           TEXT NOT NULL DEFAULT 'active',
    failures        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_refresh_at INTEGER,
    version         INTEGER NOT NULL DEFAULT 0,
    -- Paging order: shorter ids first, so generated ids page as numbers ("9" before "10").
    page_key        TEXT GENERATED ALWAYS AS (printf('%010d', length(id)) || id) VIRTUAL
) STRICT;
-- One row per user: the database itself refuses a duplicate.
CREATE UNIQUE INDEX tokens_user_name ON tokens(user_name) WHERE user_name IS NOT NULL;
CREATE INDEX tokens_access_token ON tokens(access_token) WHERE access_token IS NOT NULL;
CREATE INDEX tokens_refresh_token ON tokens(refresh_token) WHERE refresh_token IS NOT NULL;
CREATE INDEX tokens_grant_token ON tokens(grant_token) WHERE grant_token IS NOT NULL;
CREATE INDEX tokens_page_key ON tokens(page_key);
CREATE INDEX tokens_next_refresh ON tokens(next_refresh_at) WHERE next_refresh_at IS NOT NULL;
-- The next generated id. Only grows, so an id is never handed out twice, even after
-- its token is deleted (unlike max(id)+1).
CREATE TABLE id_counter (next INTEGER NOT NULL);
INSERT INTO id_counter (next) VALUES (1);
"#];

/// The paging key of the id `?1`, or '' (before every key) when `?1` is NULL. Written as
/// one range on `page_key` so SQLite walks its index; an `?1 IS NULL OR ...` condition
/// would make every page scan the table.
const AFTER: &str = "coalesce(printf('%010d', length(?1)) || ?1, '')";

const COLUMNS: &str = "id, user_name, client_id, client_secret, refresh_token, access_token, \
     grant_token, expiry_time, redirect_url, api_domain, created_at, updated_at, \
     last_used_at, state, failures, last_error, next_refresh_at, version";

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
#[derive(Debug, Clone)]
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

/// A session the policies ended, as the cleanup actor needs it. No secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub id: String,
    pub user_name: Option<String>,
    pub client_id: Option<String>,
    pub policy: Policy,
    /// How long the ending condition has held.
    pub age: Duration,
    pub version: i64,
    pub last_used_at: i64,
}

/// The open database. Not `Sync`: it lives on the store actor's thread.
pub struct Db {
    conn: Connection,
    path: PathBuf,
}

impl Db {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Db, StoreError> {
        let at = |e: rusqlite::Error| StoreError::Open {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(|e| StoreError::CreateDir {
                path: dir.to_owned(),
                reason: e.to_string(),
            })?;
        }
        let mut conn = Connection::open(path).map_err(at)?;
        conn.busy_timeout(busy_timeout).map_err(at)?;
        // WAL lets readers and the writer proceed together; synchronous=FULL makes every
        // commit wait for fsync, so an acknowledged save survives power loss, not only a
        // crash. Group commit (see `apply_batch`) pays for that.
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(at)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), %mode, "SQLite refused WAL mode");
        }
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
            .map_err(at)?;
        conn.set_prepared_statement_cache_capacity(64);
        migrate(&mut conn).map_err(at)?;
        Ok(Db {
            conn,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn find_by_id(&self, id: &str) -> Result<Option<StoredToken>, StoreError> {
        find_by_id(&self.conn, id)
    }

    pub fn find(&self, token: &Token) -> Result<Option<StoredToken>, StoreError> {
        match token.lookup() {
            Some(lookup) => find(&self.conn, lookup),
            None => Ok(None),
        }
    }

    /// One page of tokens after `after` (exclusive) in paging order, and the cursor for
    /// the next page when there may be one.
    pub fn list(
        &self,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<(Vec<StoredToken>, Option<String>), StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM tokens WHERE page_key > {AFTER} ORDER BY page_key LIMIT ?2"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        // SQLite treats a negative LIMIT as no limit.
        let limit_sql = limit.map_or(-1, i64::from);
        let tokens = stmt
            .query_map(params![after, limit_sql], read_row)?
            .collect::<Result<Vec<_>, _>>()?;
        let next = match limit {
            Some(n) if tokens.len() == n as usize && n > 0 => {
                tokens.last().map(|t| t.id().to_owned())
            }
            _ => None,
        };
        Ok((tokens, next))
    }

    /// One page of the tokens the refresher schedules (refreshable and active), in
    /// paging order after `after`. Compact rows, because all of them are loaded at start.
    pub fn schedule_page(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, ScheduleInput)>, StoreError> {
        let sql = format!(
            "SELECT id, CASE WHEN access_token IS NULL THEN NULL ELSE expiry_time END, \
                    updated_at, next_refresh_at FROM tokens \
             WHERE page_key > {AFTER} AND refresh_token IS NOT NULL AND client_id IS NOT NULL \
               AND client_secret IS NOT NULL AND state = 'active' \
             ORDER BY page_key LIMIT ?2"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![after, limit], |r| {
            let expiry: Option<String> = r.get(1)?;
            Ok((
                r.get(0)?,
                ScheduleInput {
                    expiry_ms: expiry.and_then(|e| e.parse().ok()),
                    saved_at: r.get(2)?,
                    next_refresh_at: r.get(3)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Writes the last-use times gathered in memory, in one transaction. Not a change to
    /// the token: the version stays, so a refresh under way is not superseded by a read.
    pub fn record_uses(&mut self, uses: &[(String, i64)]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE tokens SET last_used_at = max(coalesce(last_used_at, 0), ?2) WHERE id = ?1",
            )?;
            for (id, at) in uses {
                stmt.execute(params![id, at])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every session the policies end at `now`. `unflushed` gives last uses not yet on
    /// disk. Rows are judged while SQLite reads them, so only the ended ones are kept.
    pub fn ended_sessions(
        &self,
        policies: &Policies,
        now: i64,
        unflushed: &dyn Fn(&str) -> Option<i64>,
    ) -> Result<Vec<Ended>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, user_name, client_id, created_at, last_used_at, updated_at, state, \
                    expiry_time, refresh_token IS NOT NULL, version FROM tokens",
        )?;
        let mut rows = stmt.query([])?;
        let mut ended = Vec::new();
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            let client_id: Option<String> = r.get(2)?;
            let last_used_at = r.get::<_, Option<i64>>(4)?.max(unflushed(&id));
            let state: String = r.get(6)?;
            let expiry: Option<String> = r.get(7)?;
            let session = Session {
                created_at: r.get(3)?,
                last_used_at,
                updated_at: r.get(5)?,
                state: TokenState::parse(&state).unwrap_or_default(),
                expiry_ms: expiry.and_then(|e| e.parse().ok()),
                has_refresh_token: r.get(8)?,
            };
            let limits = policies.for_client(client_id.as_deref());
            if let Some((policy, age)) = verdict(&session, limits, now) {
                ended.push(Ended {
                    id,
                    user_name: r.get(1)?,
                    client_id,
                    policy,
                    age,
                    version: r.get(9)?,
                    last_used_at: last_used_at.unwrap_or(session.created_at),
                });
            }
        }
        Ok(ended)
    }

    /// How many tokens are in each state.
    pub fn count_by_state(&self) -> Result<Vec<(TokenState, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT state, count(*) FROM tokens GROUP BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))?;
        let mut counts = Vec::new();
        for row in rows {
            let (state, n) = row?;
            counts.push((TokenState::parse(&state).unwrap_or_default(), n));
        }
        Ok(counts)
    }

    pub fn count(&self) -> Result<u64, StoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT count(*) FROM tokens")?;
        Ok(stmt.query_row([], |r| r.get(0))?)
    }

    /// Applies `writes` in one transaction, each in its own savepoint. Returns one outcome
    /// per write, in order. `Err` means the commit itself failed: nothing was written.
    pub fn apply_batch(
        &mut self,
        writes: &[Write],
        now: i64,
    ) -> Result<Vec<Result<Outcome, StoreError>>, StoreError> {
        let mut tx = self.conn.transaction()?;
        let mut outcomes = Vec::with_capacity(writes.len());
        for write in writes {
            let sp = tx.savepoint()?;
            let outcome = apply(&sp, write, now);
            if outcome.is_ok() {
                sp.commit()?;
            } // else the savepoint rolls back when dropped
            outcomes.push(outcome);
        }
        tx.commit()?;
        Ok(outcomes)
    }
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let done: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        // PRAGMA takes no parameters; `n` is our own loop counter, not a value from outside.
        tx.execute_batch(&format!("PRAGMA user_version = {}", n + 1))?;
        tx.commit()?;
        tracing::info!(version = n + 1, "database schema migrated");
    }
    Ok(())
}

/// Creates `dir` (and parents) readable only by the daemon's user: the database holds
/// refresh tokens.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn apply(tx: &Connection, write: &Write, now: i64) -> Result<Outcome, StoreError> {
    match write {
        Write::Save(token) => save(tx, token.clone(), now).map(Outcome::Saved),
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
                apply_refresh(&mut stored, change.clone(), now);
                update(tx, &mut stored)?;
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
fn save(tx: &Connection, token: Token, now: i64) -> Result<StoredToken, StoreError> {
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
            // New credentials from a client (after the user authorised again, or after
            // the SDK refreshed by itself) end any failure state: they deserve a try.
            if token.has_credential() {
                stored.meta.state = TokenState::Active;
                stored.meta.failures = 0;
                stored.meta.last_error = None;
                stored.meta.next_refresh_at = None;
            }
            stored.token.merge_from(token);
            stored.meta.updated_at = now;
            stored.meta.last_used_at = Some(now);
            update(tx, &mut stored)?;
            Ok(stored)
        }
        None if !token.has_credential() => Err(StoreError::IncompleteToken),
        None => {
            let mut token = token;
            match &token.id {
                None => token.id = Some(next_id(tx)?),
                // A kept id (an import) that looks like one of ours moves the counter past
                // it, so it is never handed out again, even after this token is deleted.
                Some(id) => {
                    if let Some(n) = id
                        .parse::<i64>()
                        .ok()
                        .filter(|n| *n >= 0 && n.to_string() == *id)
                    {
                        tx.prepare_cached("UPDATE id_counter SET next = max(next, ?1 + 1)")?
                            .execute([n])?;
                    }
                }
            }
            let stored = StoredToken {
                token,
                meta: Meta {
                    created_at: now,
                    updated_at: now,
                    last_used_at: Some(now),
                    ..Meta::default()
                },
            };
            insert(tx, &stored)?;
            Ok(stored)
        }
    }
}

fn next_id(tx: &Connection) -> Result<String, StoreError> {
    let n: i64 = tx
        .prepare_cached("UPDATE id_counter SET next = next + 1 RETURNING next - 1")?
        .query_row([], |r| r.get(0))?;
    Ok(n.to_string())
}

fn insert(tx: &Connection, t: &StoredToken) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO tokens ({COLUMNS}) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
    );
    tx.prepare_cached(&sql)?
        .execute(row_params(t).as_slice())
        .map_err(conflict)?;
    Ok(())
}

fn update(tx: &Connection, t: &mut StoredToken) -> Result<(), StoreError> {
    t.meta.version += 1;
    let sql = "UPDATE tokens SET user_name = ?2, client_id = ?3, client_secret = ?4, \
         refresh_token = ?5, access_token = ?6, grant_token = ?7, expiry_time = ?8, \
         redirect_url = ?9, api_domain = ?10, created_at = ?11, updated_at = ?12, \
         last_used_at = ?13, state = ?14, failures = ?15, last_error = ?16, \
         next_refresh_at = ?17, version = ?18 WHERE id = ?1";
    tx.prepare_cached(sql)?
        .execute(row_params(t).as_slice())
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

fn row_params(t: &StoredToken) -> [&dyn rusqlite::ToSql; 18] {
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
    ]
}

impl rusqlite::ToSql for TokenState {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

fn find_by_id(conn: &Connection, id: &str) -> Result<Option<StoredToken>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM tokens WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], read_row)
        .optional()?)
}

/// Every lookup by a secret value goes through here (see `Lookup`).
fn find(conn: &Connection, lookup: Lookup<'_>) -> Result<Option<StoredToken>, StoreError> {
    let by = |column: &str, value: &str| -> Result<Option<StoredToken>, StoreError> {
        // `column` is one of the fixed names below, never input.
        let sql = format!("SELECT {COLUMNS} FROM tokens WHERE {column} = ?1 LIMIT 1");
        Ok(conn
            .prepare_cached(&sql)?
            .query_row([value], read_row)
            .optional()?)
    };
    match lookup {
        Lookup::UserName(v) => by("user_name", v),
        Lookup::AccessToken(v) => by("access_token", v),
        Lookup::Credentials {
            grant_token,
            refresh_token,
        } => {
            if let Some(g) = grant_token {
                if let Some(found) = by("grant_token", g)? {
                    return Ok(Some(found));
                }
            }
            match refresh_token {
                Some(r) => by("refresh_token", r),
                None => Ok(None),
            }
        }
    }
}

fn read_row(r: &Row<'_>) -> rusqlite::Result<StoredToken> {
    let state: String = r.get(13)?;
    Ok(StoredToken {
        token: Token {
            id: r.get(0)?,
            user_name: r.get(1)?,
            client_id: r.get(2)?,
            client_secret: r.get(3)?,
            refresh_token: r.get(4)?,
            access_token: r.get(5)?,
            grant_token: r.get(6)?,
            expiry_time: r.get(7)?,
            redirect_url: r.get(8)?,
            api_domain: r.get(9)?,
        },
        meta: Meta {
            created_at: r.get(10)?,
            updated_at: r.get(11)?,
            last_used_at: r.get(12)?,
            // An unknown state can only come from a newer tokend; treating it as active
            // keeps serving the token instead of failing every lookup.
            state: TokenState::parse(&state).unwrap_or_default(),
            failures: r.get(14)?,
            last_error: r.get(15)?,
            next_refresh_at: r.get(16)?,
            version: r.get(17)?,
        },
    })
}

#[cfg(test)]
mod tests;
