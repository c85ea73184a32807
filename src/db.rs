//! The SQLite database behind the store actor: opening it and every query. The schema
//! and its migrations are in `db/schema.rs`, writes in `db/write.rs` (a save's rules in
//! `db/save.rs`), the cleanup's scan in `db/scan.rs`, the files' modes and identity in
//! `db/files.rs`, what the refresher reads back of the provider's limits in
//! `db/budget.rs`.
//!
//! Only the store actor uses this module, so its thread is the only place SQL runs.
//! Every value is bound as a parameter; no value is ever formatted into SQL.
//! Writes come in batches (`apply_batch`): one transaction and one fsync for all the
//! saves that arrived together, each in its own savepoint so one bad save does not undo
//! the others.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::StoreError;
use crate::model::{Lookup, Meta, StoredToken, Token, TokenState};
use files::{create_private_dir, keep_private};
use schema::migrate;

/// The paging key of the id `?1`, or '' (before every key) when `?1` is NULL. Written as
/// one range on `page_key` so SQLite walks its index; an `?1 IS NULL OR ...` condition
/// would make every page scan the table.
const AFTER: &str = "coalesce(printf('%010d', length(?1)) || ?1, '')";

const COLUMNS: &str = "id, user_name, client_id, client_secret, refresh_token, access_token, \
     grant_token, expiry_time, redirect_url, api_domain, created_at, updated_at, \
     last_used_at, state, failures, last_error, next_refresh_at, version, expiry_set_at, \
     throttles";

/// The open database. Not `Sync`: it lives on the store actor's thread.
pub struct Db {
    conn: Connection,
    path: PathBuf,
    /// A read transaction is open (`begin_read`).
    reading: bool,
    /// The next token version to hand out (schema v4); written back with each batch.
    next_version: i64,
    /// The file opened, to notice it deleted or replaced (`files::gone`); `None` for an
    /// in-memory database.
    file: Option<files::FileId>,
}

impl Db {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Db, StoreError> {
        let at = |e: rusqlite::Error| StoreError::Open {
            path: path.to_owned(),
            reason: match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DatabaseBusy) => {
                    "another process holds it (is another tokend using this database?)".into()
                }
                _ => e.to_string(),
            },
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(|e| StoreError::CreateDir {
                path: dir.to_owned(),
                reason: e.to_string(),
            })?;
        }
        keep_private(path);
        let mut conn = Connection::open(path).map_err(at)?;
        conn.busy_timeout(busy_timeout).map_err(at)?;
        schema::refuse_newer(&conn).map_err(at)?;
        // The store is the database's only user, so it holds the file's lock for good:
        // a second daemon on the same file fails at start instead of refreshing the same
        // tokens uncoordinated, and, set before WAL mode is entered, the exclusive lock
        // keeps the WAL index in private memory, sparing two fcntl calls per transaction.
        // A 32 MiB page cache holds 10k tokens whole (about 7 MB) and the hot pages of 1M.
        conn.execute_batch("PRAGMA locking_mode=EXCLUSIVE; PRAGMA cache_size=-32768;")
            .map_err(at)?;
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
        let next_version = conn
            .query_row("SELECT next_version FROM id_counter", [], |r| r.get(0))
            .map_err(at)?;
        let db = Db {
            conn,
            path: path.to_owned(),
            reading: false,
            next_version,
            file: files::file_id(path).ok(),
        };
        // Take the exclusive lock now: a second daemon on this file fails here, at
        // start, with "database is locked", not at its first write.
        db.conn
            .execute_batch("BEGIN IMMEDIATE; COMMIT;")
            .map_err(at)?;
        Ok(db)
    }

    /// Opens a read transaction unless one is open; true if it opened one. The reads
    /// until the next write share it: one transaction's setup for all of them.
    pub fn begin_read(&mut self) -> Result<bool, StoreError> {
        if self.reading {
            return Ok(false);
        }
        self.conn.execute_batch("BEGIN")?;
        self.reading = true;
        Ok(true)
    }

    /// Closes the read transaction, if one is open. Every write calls it first.
    fn end_read(&mut self) {
        if std::mem::take(&mut self.reading) {
            // A read-only transaction has nothing to lose: if COMMIT fails, ROLLBACK.
            if self.conn.execute_batch("COMMIT").is_err() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
        }
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
        limit: u32,
    ) -> Result<(Vec<StoredToken>, Option<String>), StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM tokens WHERE page_key > {AFTER} ORDER BY page_key LIMIT ?2"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let tokens = stmt
            .query_map(params![after, limit], read_row)?
            .collect::<Result<Vec<_>, _>>()?;
        let last = tokens.last().map(|t| t.id().to_owned());
        let next = next_cursor(tokens.len(), limit, last);
        Ok((tokens, next))
    }

    /// Writes the last-use times gathered in memory, in one transaction. Not a change to
    /// the token: the version stays, so a refresh under way is not superseded by a read.
    pub fn record_uses(&mut self, uses: &[(String, i64)]) -> Result<(), StoreError> {
        self.end_read();
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
        if let Some(what) = self.file.and_then(|opened| files::gone(&self.path, opened)) {
            let path = self.path.clone();
            return Err(StoreError::Gone { path, what });
        }
        self.end_read();
        let mut tx = self.conn.transaction()?;
        let versions = &mut self.next_version;
        let first_version = *versions;
        let mut outcomes = Vec::with_capacity(writes.len());
        for write in writes {
            let sp = tx.savepoint()?;
            let outcome = write::apply(&sp, write, now, versions);
            if outcome.is_ok() {
                sp.commit()?;
            } // else the savepoint rolls back when dropped
            outcomes.push(outcome);
        }
        // Versions a failed batch used are not handed out again either: gaps are fine.
        if *versions != first_version {
            tx.prepare_cached("UPDATE id_counter SET next_version = ?1")?
                .execute([*versions])?;
        }
        tx.commit()?;
        Ok(outcomes)
    }
}

/// A page's cursor: the last key read when the page came back full (`rows` of `limit`),
/// as more may follow; `None` once a page comes back short.
fn next_cursor<T>(rows: usize, limit: u32, last: Option<T>) -> Option<T> {
    last.filter(|_| limit > 0 && rows == limit as usize)
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
        Lookup::AccessToken(v) => Ok(conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM tokens WHERE access_hash = ?1 AND access_token = ?2 LIMIT 1"
            ))?
            .query_row(params![access_hash(v), v], read_row)
            .optional()?),
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
            expiry_set_at: r.get(18)?,
            throttles: r.get(19)?,
        },
    })
}

mod budget;
mod files;
mod save;
mod scan;
mod schema;
mod write;

pub use scan::Ended;
pub use schema::access_hash;
pub use write::{Outcome, RefreshUpdate, Write};

#[cfg(test)]
mod tests;
