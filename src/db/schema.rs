//! The schema: its migrations, and the access-token hash that schema v2 indexes.

use rusqlite::{params, Connection};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
/// Append only: a released migration is never edited.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
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
"#,
    r#"
-- v2: the access-token index holds an 8-byte hash of the token instead of the token.
-- Every save after a refresh moves a token in this index; with entries a sixth of the
-- size, a commit of many saves dirties far fewer pages (the store bench: 53 -> 31 us per
-- save without the index at all). `access_hash` is written by tokend (`access_hash()`),
-- never by SQL, and filled for existing rows by `migrate`.
ALTER TABLE tokens ADD COLUMN access_hash INTEGER;
DROP INDEX tokens_access_token;
CREATE INDEX tokens_access_hash ON tokens(access_hash) WHERE access_hash IS NOT NULL;
"#,
    r#"
-- v3: counting tokens by state (the `status` operation, and systemd's STATUS= line every
-- 30 s) read every row and sorted them: 0.35 s at 1M tokens, with every client waiting.
-- From this index the count reads ~10 bytes per token, already in order. A save adds an
-- entry only for a new token, and moves one only when the state changes.
CREATE INDEX tokens_state ON tokens(state);
"#,
    r#"
-- v4: every write takes its token's new version from one counter for the whole table
-- (`Db::apply_batch`), not version + 1. A token deleted and saved again under the same
-- id then never repeats a version that a refresh or cleanup under way judged the old
-- one at, so their conditional writes cannot land on the new token.
ALTER TABLE id_counter ADD COLUMN next_version INTEGER NOT NULL DEFAULT 1;
UPDATE id_counter SET next_version = (SELECT coalesce(max(version), 0) + 1 FROM tokens);
"#,
    r#"
-- v5: when the expiry_time was last set. The refresh lead is a fraction of the access
-- token's lifetime, measured from here; measured from updated_at, a save that changed
-- something else late in the token's life squeezed the lead to its floor.
ALTER TABLE tokens ADD COLUMN expiry_set_at INTEGER;
UPDATE tokens SET expiry_set_at = updated_at WHERE expiry_time IS NOT NULL;
"#,
    r#"
-- v6: the refresh budget's spending, written before each request to the provider. Zoho
-- counts the access tokens a refresh token mints across tokend's restarts, so tokend
-- must not forget them at a restart, nor at a crash between the request and its record.
-- A row is a stable hash of the refresh token (`access_hash()`, never the token) and
-- the time; rows older than the budget window are deleted as new ones are written.
CREATE TABLE refresh_spent (token_hash INTEGER NOT NULL, at INTEGER NOT NULL);
CREATE INDEX refresh_spent_at ON refresh_spent(at);
"#,
    r#"
-- v7: the provider's throttles in a row: each doubles the wait before the next request
-- (up to four times throttle_wait), as Zoho lifts its block only after quiet minutes.
-- A row throttled before counts as one throttle: how many in a row it had is not known.
ALTER TABLE tokens ADD COLUMN throttles INTEGER NOT NULL DEFAULT 0;
UPDATE tokens SET throttles = 1 WHERE last_error = 'throttled';
"#,
    r#"
-- v8: the rows whose refresh token the provider throttled, read at start so that every
-- row holding it waits (`Db::throttled`); few, so the index is small.
CREATE INDEX tokens_throttled ON tokens(throttles) WHERE throttles > 0;
"#,
];

/// The migration (0-based) after which `fill_access_hashes` runs.
const ACCESS_HASH_MIGRATION: usize = 1;

/// Refuses a newer tokend's schema before anything is written (even the journal mode):
/// this one would write it by rules it has outgrown (say, versions bumped without the v4
/// counter).
pub(super) fn refuse_newer(conn: &Connection) -> rusqlite::Result<()> {
    let done: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if done <= MIGRATIONS.len() {
        return Ok(());
    }
    Err(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
        Some(format!(
            "its schema is version {done}, from a newer tokend (this one knows up to {}); run that tokend, or restore a backup",
            MIGRATIONS.len()
        )),
    ))
}

pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let done: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        if n == ACCESS_HASH_MIGRATION {
            fill_access_hashes(&tx)?;
        }
        // PRAGMA takes no parameters; `n` is our own loop counter, not a value from outside.
        tx.execute_batch(&format!("PRAGMA user_version = {}", n + 1))?;
        tx.commit()?;
        tracing::info!(version = n + 1, "database schema migrated");
    }
    Ok(())
}

/// The stored, indexed stand-in for an access token: FNV-1a, 64 bits, as an SQLite
/// integer. Persisted, so it must never change: not `std`'s hasher, whose output may
/// change between Rust releases. Lookups compare the token itself too, so a collision
/// costs a row read, never a wrong answer.
pub fn access_hash(token: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in token.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}

fn fill_access_hashes(tx: &Connection) -> rusqlite::Result<()> {
    let rows: Vec<(i64, String)> = tx
        .prepare("SELECT rowid, access_token FROM tokens WHERE access_token IS NOT NULL")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut set = tx.prepare("UPDATE tokens SET access_hash = ?2 WHERE rowid = ?1")?;
    for (rowid, token) in rows {
        set.execute(params![rowid, access_hash(&token)])?;
    }
    Ok(())
}
