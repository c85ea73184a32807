//! Synthetic tokens and the fast preload.
//!
//! Every token is a pure function of its index, so a client thread can name the token it
//! is about to look up (its id, user_name or refresh token) without holding the data set.
//! Shapes and lengths follow `benches/alternatives/common.py` (ids "1".."N",
//! `user<i>@example.com:<zgid>`, 70-character `1000.<hex>.<hex>` tokens, eight OAuth
//! clients shared by all users), so tokend and the alternatives compare the same bytes.
//! The values differ (a keyed mix instead of blake2b): only their length and spread
//! matter to a store.
//!
//! The preload writes straight into the daemon's own SQLite file, after the daemon has
//! created and migrated it, in one transaction: a million tokens in seconds instead of a
//! million durable saves.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rusqlite::{params, Connection};

/// OAuth clients (apps) shared by the users, as in `common.py`.
pub const N_CLIENTS: u64 = 8;
pub const REDIRECT_URL: &str = "https://app.example.com/oauth/callback";
/// Not in Zoho's data-centre table, so a refresh of these tokens goes to the configured
/// `refresh.accounts_url` (a loopback port where nothing listens, see `daemon.rs`) and
/// never to Zoho.
pub const API_DOMAIN: &str = "https://www.zohoapis.invalid";
/// How long the preloaded access tokens stay valid: far longer than any bench runs, so
/// the refresher, when on, schedules every token and refreshes none.
pub const LIFETIME_MS: i64 = 24 * 3600 * 1000;

/// The `tokens` columns the preload fills, as `src/db.rs` declares them. The preload
/// refuses to run when the table has others (the schema moved on: update this list).
const COLUMNS: [&str; 21] = [
    "id",
    "user_name",
    "client_id",
    "client_secret",
    "refresh_token",
    "access_token",
    "grant_token",
    "expiry_time",
    "redirect_url",
    "api_domain",
    "created_at",
    "updated_at",
    "last_used_at",
    "state",
    "failures",
    "last_error",
    "next_refresh_at",
    "version",
    "expiry_set_at",
    "access_hash",
    "throttles",
];
/// Generated from `id`; SQLite fills it.
const GENERATED: &[&str] = &["page_key"];

/// splitmix64's finaliser: a well-spread 64-bit value for each input.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Appends `n` lowercase hex digits drawn from `seed`.
fn hex(out: &mut Vec<u8>, seed: u64, n: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut word = 0;
    for k in 0..n {
        if k % 16 == 0 {
            word = mix(seed ^ (k as u64).wrapping_mul(0x632b_e59b_d9b4_e019));
        }
        out.push(DIGITS[(word & 0xf) as usize]);
        word >>= 4;
    }
}

/// Appends a `1000.<32 hex>.<32 hex>` token (70 bytes, a Zoho token's shape).
fn zoho_token(out: &mut Vec<u8>, seed: u64) {
    out.extend_from_slice(b"1000.");
    hex(out, seed, 32);
    out.push(b'.');
    hex(out, seed ^ 0x5555_5555, 32);
}

/// What distinguishes the three derived secrets of one token index.
const RT: u64 = 0x7274_0000_0000_0000;
const AT: u64 = 0x6174_0000_0000_0000;

pub fn token_id(i: u64) -> u64 {
    i + 1
}

pub fn write_user_name(out: &mut Vec<u8>, i: u64) {
    let _ = write!(out, "user{i}@example.com:{}", 700_000_000 + i);
}

pub fn write_refresh_token(out: &mut Vec<u8>, i: u64) {
    zoho_token(out, RT ^ i);
}

/// An access token; `salt` 0 is the preloaded one, others are "freshly refreshed" ones.
pub fn write_access_token(out: &mut Vec<u8>, i: u64, salt: u64) {
    zoho_token(out, AT ^ i ^ salt.rotate_left(17));
}

/// `(client_id, client_secret)` of client `c`: `1000.` + 30 upper-case hex, 42 hex.
pub fn client(c: u64) -> (String, String) {
    let mut id = b"1000.".to_vec();
    hex(&mut id, 0xc1 ^ c, 30);
    id[5..].make_ascii_uppercase();
    let mut secret = Vec::new();
    hex(&mut secret, 0xc5 ^ c, 42);
    (
        String::from_utf8_lossy(&id).into_owned(),
        String::from_utf8_lossy(&secret).into_owned(),
    )
}

/// The clients, computed once.
pub fn clients() -> Vec<(String, String)> {
    (0..N_CLIENTS).map(client).collect()
}

fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut out = Vec::with_capacity(80);
    f(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Fills the empty, migrated database at `db` with tokens `0..n`, all saved at `now`
/// and refreshable (refresh token, client credentials, an access token valid for
/// `LIFETIME_MS` and then some). Returns how long it took.
pub fn preload(db: &Path, n: u64, now: i64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut conn = Connection::open(db).with_context(|| format!("open {}", db.display()))?;
    check_columns(&conn)?;
    let rows: i64 = conn.query_row("SELECT count(*) FROM tokens", [], |r| r.get(0))?;
    if rows != 0 {
        bail!("{} already holds {rows} tokens", db.display());
    }
    // Load speed only; the daemon sets its own pragmas (WAL, synchronous=FULL) at open.
    // Pragmas that return a row are read with query_row.
    let _: String = conn.query_row("PRAGMA journal_mode=OFF", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA synchronous=OFF; PRAGMA cache_size=-262144;")?;
    // Indexes are rebuilt after the load from their own SQL: sorting once is far faster
    // than a million random B-tree inserts into each of six indexes.
    let indexes: Vec<(String, String)> = conn
        .prepare(
            "SELECT name, sql FROM sqlite_master \
             WHERE type = 'index' AND tbl_name = 'tokens' AND sql IS NOT NULL",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let tx = conn.transaction()?;
    for (name, _) in &indexes {
        // `name` comes from sqlite_master, not from outside; DDL takes no parameters.
        tx.execute_batch(&format!("DROP INDEX \"{name}\""))?;
    }
    {
        let clients = clients();
        let sql = format!(
            "INSERT INTO tokens ({}) VALUES ({})",
            COLUMNS.join(", "),
            (1..=COLUMNS.len())
                .map(|k| format!("?{k}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut insert = tx.prepare(&sql)?;
        for i in 0..n {
            let (client_id, client_secret) = &clients[(i % N_CLIENTS) as usize];
            let expiry = now + LIFETIME_MS + (i % 3600) as i64 * 1000;
            let access = text(|o| write_access_token(o, i, 0));
            let hash = tokend::db::access_hash(&access);
            insert.execute(params![
                token_id(i).to_string(),
                text(|o| write_user_name(o, i)),
                client_id,
                client_secret,
                text(|o| write_refresh_token(o, i)),
                access,
                None::<String>, // grant_token: single-use, gone once exchanged
                expiry.to_string(),
                REDIRECT_URL,
                API_DOMAIN,
                now,            // created_at
                now,            // updated_at
                now,            // last_used_at: a first save counts as a use
                "active",       // state
                0,              // failures
                None::<String>, // last_error
                None::<i64>,    // next_refresh_at
                0,              // version: below the counter's first (1)
                now,            // expiry_set_at: the expiry is set by this save
                hash,           // access_hash, as the daemon writes it
                0,              // throttles
            ])?;
        }
    }
    for (_, sql) in &indexes {
        tx.execute_batch(sql)?;
    }
    // The daemon numbers new tokens from here, as if it had saved these itself.
    tx.execute("UPDATE id_counter SET next = ?1", [token_id(n) as i64])?;
    tx.commit()?;
    let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    conn.close().map_err(|(_, e)| e)?;
    Ok(started.elapsed())
}

/// Fails with a clear message when `tokens` no longer has exactly the columns the
/// preload fills.
fn check_columns(conn: &Connection) -> anyhow::Result<()> {
    let found: BTreeSet<String> = conn
        .prepare("SELECT name FROM pragma_table_xinfo('tokens')")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let expected: BTreeSet<String> = COLUMNS
        .iter()
        .chain(GENERATED)
        .map(|c| (*c).to_owned())
        .collect();
    if found != expected {
        bail!(
            "the tokens table changed (has {found:?}, the preload fills {expected:?}); \
             update COLUMNS in benches/support/data.rs to match src/db.rs"
        );
    }
    Ok(())
}
