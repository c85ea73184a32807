//! The store's side of a find, alone: no socket, no actor, one thread.
//!
//! ```text
//! cargo bench --bench store -- --tokens 10000 --finds 200000
//! ```
//!
//! Every find goes through the store actor's one SQLite connection, so the cost of one
//! `find_by_id` on that thread bounds the daemon's throughput whatever else is fast. This
//! times random finds by id on a preloaded database of the daemon's own schema:
//!
//! - `tokend::db::Db::find_by_id`: the daemon's own code and pragmas;
//! - then the same query on a plain connection, with the daemon's pragmas (exclusive
//!   lock, 32 MiB page cache, WAL) and one change each: memory-mapped I/O, and finds
//!   grouped 64 to a read transaction, as the store groups the finds of one mailbox drain;
//!
//! and then durable saves through `tokend::db::Db::apply_batch` (the store's group
//! commit: one transaction and one fsync per batch) at several batch sizes, each save
//! the SDK's after a refresh (the whole token, a new access token and expiry). So a
//! change to `src/db.rs` can be weighed by its measured effect.

#[allow(dead_code)] // each bench binary uses its own part of the support code
mod support;

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rusqlite::{Connection, OptionalExtension};

use support::daemon::create_database;

#[derive(Parser)]
#[command(
    name = "store",
    about = "The cost of one find on the store's SQLite connection"
)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    tokens: u64,
    /// Finds per variant
    #[arg(long, default_value_t = 200_000)]
    finds: u64,
    /// Seconds of saves per batch size
    #[arg(long, default_value_t = 2.0)]
    save_seconds: f64,
    /// Where to make the temp dir; default: the system's temp dir
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// `src/db.rs`'s columns and its `find_by_id` query.
const FIND: &str = "SELECT id, user_name, client_id, client_secret, refresh_token, access_token, \
     grant_token, expiry_time, redirect_url, api_domain, created_at, updated_at, \
     last_used_at, state, failures, last_error, next_refresh_at, version FROM tokens WHERE id = ?1";

/// The pragmas `Db::open` sets (the lock mode before WAL, as there).
const DAEMON_PRAGMAS: &str = "PRAGMA locking_mode=EXCLUSIVE; PRAGMA cache_size=-32768; \
     PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;";

/// Variants of the plain connection: (name, extra pragmas, finds per read transaction).
/// The daemon's finds share a read transaction per mailbox drain, as many as arrived
/// together: the 64 here is what 64 waiting clients give at most.
const VARIANTS: &[(&str, &str, usize)] = &[
    ("same query, daemon's pragmas", "", 1),
    ("+ mmap_size 1 GB", "PRAGMA mmap_size=1073741824;", 1),
    ("+ 64 finds per read transaction", "", 64),
    (
        "+ mmap 1 GB + 64 finds per read transaction",
        "PRAGMA mmap_size=1073741824;",
        64,
    ),
];

fn main() -> ExitCode {
    let result = if support::invoked_by_cargo_bench() {
        Args::try_parse_from(support::bench_args())
            .map_err(|e| {
                let _ = e.print();
                anyhow::anyhow!("bad arguments")
            })
            .and_then(|a| bench(a.tokens, a.finds, a.save_seconds, a.dir.as_deref()))
    } else {
        // cargo test --all-targets: the same, small.
        bench(100, 1_000, 0.05, None)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("store: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(tokens: u64, finds: u64, save_seconds: f64, dir: Option<&Path>) -> anyhow::Result<()> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("tokend-store-");
    let dir = match dir {
        Some(d) => builder.tempdir_in(d)?,
        None => builder.tempdir()?,
    };
    let db = create_database(dir.path())?;
    let took = support::data::preload(&db, tokens, support::now_ms())?;
    let size = std::fs::metadata(&db)?.len();
    eprintln!(
        "# {tokens} tokens preloaded in {:.1} s; database {:.1} MB; {finds} random finds per variant; loadavg1 {}",
        took.as_secs_f64(),
        size as f64 / 1e6,
        support::loadavg()
    );
    let ids: Vec<String> = (0..finds)
        .map(|k| (support::data::mix(k) % tokens + 1).to_string())
        .collect();

    let store = tokend::db::Db::open(&db, Duration::from_secs(5))?;
    // One pass unmeasured, so every variant starts with the file in the OS page cache.
    for id in &ids {
        store
            .find_by_id(id)?
            .context("a preloaded token is missing")?;
    }
    let started = Instant::now();
    for id in &ids {
        store
            .find_by_id(id)?
            .context("a preloaded token is missing")?;
    }
    print("the daemon's Db::find_by_id", started.elapsed(), finds);
    drop(store);

    for (name, pragmas, per_txn) in VARIANTS {
        let conn = Connection::open(&db)?;
        conn.execute_batch(DAEMON_PRAGMAS)?;
        conn.execute_batch(pragmas)?;
        run(&conn, &ids, *per_txn)?; // warm this connection's cache
        let started = Instant::now();
        run(&conn, &ids, *per_txn)?;
        print(name, started.elapsed(), finds);
    }

    let mut store = tokend::db::Db::open(&db, Duration::from_secs(5))?;
    let limit = Duration::from_secs_f64(save_seconds);
    for batch in SAVE_BATCHES {
        saves(&mut store, tokens, batch, limit)?;
    }
    drop(store);
    let conn = Connection::open(&db)?;
    conn.execute_batch(DAEMON_PRAGMAS)?;
    for (name, sql, savepoints) in SAVE_VARIANTS {
        raw_saves(&conn, tokens, name, sql, *savepoints, limit)?;
    }
    Ok(())
}

/// What `src/db/write.rs`'s `update` was: every column set, changed or not.
const UPDATE_ALL: &str = "UPDATE tokens SET user_name = ?2, client_id = ?3, client_secret = ?4, \
     refresh_token = ?5, access_token = ?6, grant_token = ?7, expiry_time = ?8, \
     redirect_url = ?9, api_domain = ?10, created_at = ?11, updated_at = ?12, \
     last_used_at = ?13, state = ?14, failures = ?15, last_error = ?16, \
     next_refresh_at = ?17, version = ?18 WHERE id = ?1";
/// Only what an SDK save after a refresh changes. SQLite rewrites the entries of every
/// index whose column is in the SET list, whether or not its value changed.
const UPDATE_CHANGED: &str = "UPDATE tokens SET access_token = ?6, expiry_time = ?8, \
     updated_at = ?12, last_used_at = ?13, version = ?18 WHERE id = ?1";

/// Saves on a plain connection, 64 per commit, each a read of the row then an update,
/// as `apply_batch` does: (name, update statement, a savepoint per save).
const SAVE_VARIANTS: &[(&str, &str, bool)] = &[
    (
        "every column set, savepoint each (the daemon until 2026-11-22)",
        UPDATE_ALL,
        true,
    ),
    ("every column set, no savepoints", UPDATE_ALL, false),
    ("changed columns set, savepoint each", UPDATE_CHANGED, true),
    ("changed columns set, no savepoints", UPDATE_CHANGED, false),
];

fn raw_saves(
    conn: &Connection,
    tokens: u64,
    name: &str,
    update: &str,
    savepoints: bool,
    limit: Duration,
) -> anyhow::Result<()> {
    let batch = 64;
    let (mut done, mut k) = (0u64, 0u64);
    let started = Instant::now();
    while started.elapsed() < limit {
        conn.execute_batch("BEGIN")?;
        for _ in 0..batch {
            k += 1;
            let i = support::data::mix(k ^ 0xa5a5) % tokens;
            let id = support::data::token_id(i).to_string();
            if savepoints {
                conn.execute_batch("SAVEPOINT s")?;
            }
            let mut row: Vec<rusqlite::types::Value> = conn
                .prepare_cached(FIND)?
                .query_row([&id], |r| (0..18).map(|c| r.get(c)).collect())?;
            let mut access = Vec::new();
            support::data::write_access_token(&mut access, i, k);
            row[5] = String::from_utf8_lossy(&access).into_owned().into();
            row[7] = (support::now_ms() + 3_600_000).to_string().into();
            row[11] = support::now_ms().into();
            row[12] = support::now_ms().into();
            row[17] = rusqlite::types::Value::Integer(k as i64);
            conn.prepare_cached(update)?
                .execute(rusqlite::params_from_iter(row.iter()))?;
            if savepoints {
                conn.execute_batch("RELEASE s")?;
            }
        }
        conn.execute_batch("COMMIT")?;
        done += batch;
    }
    let took = started.elapsed();
    println!(
        "saves, 64 per commit, {name:<62} {:>7.1} µs per save {:>9.0} saves/s",
        took.as_secs_f64() * 1e6 / done as f64,
        done as f64 / took.as_secs_f64()
    );
    Ok(())
}

/// Batch sizes for saves: one save per commit (a lone client), then what group commit
/// gathers with 16 and 64 clients waiting, and beyond.
const SAVE_BATCHES: [usize; 5] = [1, 16, 64, 256, 1024];

/// Durable saves through the daemon's own `apply_batch`, `batch` per commit, for about
/// `limit`.
fn saves(
    store: &mut tokend::db::Db,
    tokens: u64,
    batch: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    use tokend::db::Write;
    let clients = support::data::clients();
    let text = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut out = Vec::with_capacity(80);
        f(&mut out);
        Some(String::from_utf8_lossy(&out).into_owned())
    };
    let (mut done, mut k) = (0u64, 0u64);
    let started = Instant::now();
    while started.elapsed() < limit {
        let writes: Vec<Write> = (0..batch)
            .map(|_| {
                k += 1;
                let i = support::data::mix(k ^ 0x5a5a) % tokens;
                let (client_id, client_secret) = &clients[(i % support::data::N_CLIENTS) as usize];
                Write::Save(tokend::model::Token {
                    id: Some(support::data::token_id(i).to_string()),
                    user_name: text(&|o| support::data::write_user_name(o, i)),
                    client_id: Some(client_id.clone()),
                    client_secret: Some(client_secret.clone()),
                    refresh_token: text(&|o| support::data::write_refresh_token(o, i)),
                    access_token: text(&|o| support::data::write_access_token(o, i, k)),
                    grant_token: None,
                    expiry_time: Some((support::now_ms() + 3_600_000).to_string()),
                    redirect_url: Some(support::data::REDIRECT_URL.to_owned()),
                    api_domain: Some(support::data::API_DOMAIN.to_owned()),
                })
            })
            .collect();
        for outcome in store.apply_batch(&writes, support::now_ms())? {
            outcome?;
        }
        done += batch as u64;
    }
    let took = started.elapsed();
    println!(
        "saves, {batch:>4} per commit (the daemon's Db::apply_batch) {:>7.1} µs per save {:>9.0} saves/s",
        took.as_secs_f64() * 1e6 / done as f64,
        done as f64 / took.as_secs_f64()
    );
    Ok(())
}

/// Every find in `ids`, `per_txn` to a read transaction (1: each its own, as the
/// daemon's autocommit statements are).
fn run(conn: &Connection, ids: &[String], per_txn: usize) -> anyhow::Result<()> {
    let mut stmt = conn.prepare_cached(FIND)?;
    for chunk in ids.chunks(per_txn) {
        if per_txn > 1 {
            conn.execute_batch("BEGIN")?;
        }
        for id in chunk {
            let row = stmt
                .query_row([id], |r| {
                    // Read every column as the daemon's read_row does.
                    let mut texts = Vec::with_capacity(18);
                    for k in 0..10 {
                        texts.push(r.get::<_, Option<String>>(k)?);
                    }
                    texts.push(r.get::<_, Option<String>>(13)?);
                    texts.push(r.get::<_, Option<String>>(15)?);
                    let nums: [Option<i64>; 6] = [
                        r.get(10)?,
                        r.get(11)?,
                        r.get(12)?,
                        r.get(14)?,
                        r.get(16)?,
                        r.get(17)?,
                    ];
                    Ok((texts, nums))
                })
                .optional()?;
            row.context("a preloaded token is missing")?;
        }
        if per_txn > 1 {
            conn.execute_batch("COMMIT")?;
        }
    }
    Ok(())
}

fn print(name: &str, took: Duration, finds: u64) {
    let ns = took.as_nanos() as f64 / finds as f64;
    println!(
        "finds, {name:<46} {ns:>7.0} ns per find {:>9.0} finds/s",
        1e9 / ns
    );
}
