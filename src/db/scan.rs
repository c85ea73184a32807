//! What the refresher and the cleanup actor read in bulk: the schedule at start, the
//! sessions the policies end, counts for `status`. Compact rows, no secrets.

use std::time::Duration;

use rusqlite::params;

use super::{next_cursor, Db, AFTER};
use crate::error::StoreError;
use crate::model::TokenState;
use crate::policy::{verdict, Policies, Policy, Session};
use crate::schedule::ScheduleInput;

/// Read from the `tokens_state` index alone (`db::tests::lookups_by_key_use_an_index`).
pub(super) const COUNT_BY_STATE: &str = "SELECT state, count(*) FROM tokens GROUP BY state";

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

/// The index is named: by `state = 'active'` alone SQLite would rather read every active
/// token from `tokens_state` and sort them, for each page (the schedule load at 1M
/// tokens never finished), than walk `tokens_page_key` from the cursor.
pub(super) fn schedule_page_sql() -> String {
    format!(
        "SELECT id, CASE WHEN access_token IS NULL THEN NULL ELSE expiry_time END, \
                coalesce(expiry_set_at, updated_at), next_refresh_at \
         FROM tokens INDEXED BY tokens_page_key \
         WHERE page_key > {AFTER} AND refresh_token IS NOT NULL AND client_id IS NOT NULL \
           AND client_secret IS NOT NULL AND state = 'active' \
         ORDER BY page_key LIMIT ?2"
    )
}

impl Db {
    /// One page of the tokens the refresher schedules (refreshable and active), in
    /// paging order after `after`. Compact rows, because all of them are loaded at start.
    pub fn schedule_page(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, ScheduleInput)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&schedule_page_sql())?;
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

    /// The sessions the policies end at `now` among up to `limit` tokens after the
    /// cursor `after`, and the cursor for the next page (`None` after the last).
    /// `unflushed` gives last uses not yet on disk. Rows are judged while SQLite reads
    /// them, so only the ended ones are kept. The cursor is the rowid: rowid order is the
    /// table's own order, so each page is a plain range of the table.
    pub fn ended_sessions(
        &self,
        policies: &Policies,
        now: i64,
        unflushed: &dyn Fn(&str) -> Option<i64>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<Ended>, Option<i64>), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, user_name, client_id, created_at, last_used_at, updated_at, state, \
                    expiry_time, refresh_token IS NOT NULL, version, rowid FROM tokens \
             WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
        )?;
        let mut rows = stmt.query(params![after.unwrap_or(i64::MIN), limit])?;
        let (mut ended, mut scanned, mut last) = (Vec::new(), 0usize, None);
        while let Some(r) = rows.next()? {
            scanned += 1;
            last = Some(r.get::<_, i64>(10)?);
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
        Ok((ended, next_cursor(scanned, limit, last)))
    }

    /// How many tokens are in each state.
    pub fn count_by_state(&self) -> Result<Vec<(TokenState, u64)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(COUNT_BY_STATE)?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))?;
        let mut counts = Vec::new();
        for row in rows {
            let (state, n) = row?;
            counts.push((TokenState::parse(&state).unwrap_or_default(), n));
        }
        Ok(counts)
    }
}
