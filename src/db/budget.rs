//! What the refresher reads back at start of the provider's limits as earlier runs met
//! them: the refreshes spent in the budget window (schema v6, written by `Write::Spend`)
//! and the throttles rows recorded (schema v7 and v8).

use super::{access_hash, Db};
use crate::error::StoreError;

/// Rows whose last answer was the provider's throttle, through schema v8's small index
/// of rows with a run of throttles. (A run a 5xx or a timeout interrupted is left out:
/// the block's state is unknown, and the row waits out its backoff anyway.)
pub(super) const THROTTLED: &str =
    "SELECT refresh_token, coalesce(next_refresh_at, 0), throttles FROM tokens \
     WHERE throttles > 0 AND last_error = 'throttled' AND refresh_token IS NOT NULL";

impl Db {
    /// The refresh budget's spending since `since` (schema v6): (token hash, time), oldest
    /// first.
    pub fn spent_since(&self, since: i64) -> Result<Vec<(i64, i64)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT token_hash, at FROM refresh_spent WHERE at >= ?1 ORDER BY at",
        )?;
        let rows = stmt.query_map([since], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The provider's throttles as rows recorded them (`THROTTLED`): (refresh token
    /// hash, end of the wait, throttles in a row). A wait that has ended still counts:
    /// nobody has yet found out whether the block lifted.
    pub fn throttled(&self) -> Result<Vec<(i64, i64, u32)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(THROTTLED)?;
        let rows = stmt.query_map([], |r| {
            let refresh_token: String = r.get(0)?;
            Ok((access_hash(&refresh_token), r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
