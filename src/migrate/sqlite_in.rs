//! The SQLite source: a file with the MySQL DBStore's `oauthtoken` table, as the Zoho
//! Kaizen #192 sample keeps it in `zohooauth.db`.
//!
//! This is a foreign file, the application's old store, not tokend's own database: the
//! store actor (`store.rs`, `db.rs`) remains the only code that opens *that*. This file
//! is opened read-only, so an import can never change the store being moved out of.

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::fields::{check_record, Field};
use super::{At, Problems, ReadError, Record};
use crate::model::Token;

/// Reads every row of the `oauthtoken` table, numbered from 1 in the table's own order
/// (insertion order for the sample's table).
pub fn read_sqlite(path: &Path) -> Result<Vec<Record>, ReadError> {
    // SQLite would report a missing file as "unable to open database file"; the OS's
    // words say more.
    if let Err(source) = std::fs::metadata(path) {
        return Err(ReadError::Io {
            path: path.to_owned(),
            source,
        });
    }
    let sqlite = |source| ReadError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite)?;
    let fields = present_fields(&conn).map_err(sqlite)?;
    if fields.is_empty() {
        return Err(ReadError::NotTheFormat {
            path: path.to_owned(),
            problem: "no `oauthtoken` table (the table of the SDK's DBStore and the Kaizen sample)"
                .into(),
        });
    }
    if let Some(missing) = Field::ALL
        .into_iter()
        .find(|f| !f.optional() && !fields.contains(f))
    {
        return Err(ReadError::NotTheFormat {
            path: path.to_owned(),
            problem: format!("the `oauthtoken` table has no `{}` column", missing.name()),
        });
    }
    // Built from our own column names only, never from the file's: no value and no
    // name read from the file reaches the SQL.
    let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
    let sql = format!("SELECT {} FROM oauthtoken", names.join(", "));
    let mut stmt = conn.prepare(&sql).map_err(sqlite)?;
    let mut rows = stmt.query([]).map_err(sqlite)?;
    let mut problems = Problems::default();
    let mut records = Vec::new();
    let mut n = 0;
    while let Some(row) = rows.next().map_err(sqlite)? {
        n += 1;
        let at = At::Row(n);
        match token(&fields, row) {
            Ok(t) => records.push((at, t)),
            Err(e) => problems.push(at, e),
        }
    }
    problems.finish(path, records)
}

/// The token fields the `oauthtoken` table has columns for; empty when there is no
/// such table.
fn present_fields(conn: &Connection) -> rusqlite::Result<Vec<Field>> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('oauthtoken')")?;
    let columns = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Field::ALL
        .into_iter()
        .filter(|f| columns.iter().any(|c| c.eq_ignore_ascii_case(f.name())))
        .collect())
}

/// One row as a token. The columns are declared `varchar`, but SQLite keeps whatever
/// was inserted: an integer (an `expiry_time` written as a number) is taken as its
/// digits; a real number or a blob is an error.
fn token(fields: &[Field], row: &rusqlite::Row<'_>) -> Result<Token, String> {
    let mut t = Token::default();
    for (i, field) in fields.iter().enumerate() {
        let value = match row.get_ref(i).map_err(|e| e.to_string())? {
            ValueRef::Null => None,
            ValueRef::Integer(n) => Some(n.to_string()),
            ValueRef::Text(bytes) => Some(
                String::from_utf8(bytes.to_vec())
                    .map_err(|_| format!("`{}` is not valid UTF-8", field.name()))?,
            ),
            ValueRef::Real(_) => {
                return Err(format!("`{}` holds a real number, not text", field.name()))
            }
            ValueRef::Blob(_) => return Err(format!("`{}` holds a blob, not text", field.name())),
        };
        field.set(&mut t, value.as_deref())?;
    }
    check_record(&t)?;
    Ok(t)
}
