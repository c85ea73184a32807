//! Moving in and out: `tokend import` reads the stores Zoho SDK applications kept their
//! tokens in before tokend, and `tokend export` writes tokend's tokens back to the SDK's
//! own FileStore CSV, for a rollback.
//!
//! The readers (`csv_in.rs`, `sqlite_in.rs`) are pure: a file becomes `(line, Token)`
//! pairs, or an error naming the file, the line and the problem, and never a value (most
//! fields are secrets). Every record is checked before anything is sent, so a malformed
//! file imports nothing. The import itself (`import.rs`) and the export (`export.rs`)
//! talk to the running daemon over its socket (`crate::client`) like any other client: the
//! daemon's own rules (matching, one token per user, kept ids) apply to what comes in,
//! and the daemon stays the only writer of its database.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::model::Token;

mod csv_in;
mod export;
mod import;
mod plan;
mod progress;
mod sqlite_in;

pub use export::{export, ExportError, FileStoreWriter};
pub use import::{import, ImportError, Report};
pub use progress::Progress;

/// One record read from a source: where it was (a line of a CSV file, or the row's
/// position in a SQLite table) and the token it holds.
pub type Record = (u64, Token);

/// What `tokend import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The Zoho SDK's FileStore CSV (header `id,user_name,...,redirect_uri,api_domain`,
    /// or the legacy 9-column form without `api_domain`).
    Filestore,
    /// A SQLite file with the MySQL DBStore's `oauthtoken` table, like the Kaizen #192
    /// sample's `zohooauth.db`.
    Sqlite,
    /// A CSV export of the MySQL DBStore's `oauthtoken` table: a header row naming the
    /// columns (in any order), `\N` or an empty field for NULL.
    MysqlCsv,
}

/// What `tokend export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// The Zoho SDK's FileStore CSV, readable by the SDK's own `FileStore`.
    Filestore,
}

/// Reads every record of `path` as `format`, or says what is wrong with the file.
pub fn read(format: Format, path: &Path) -> Result<Vec<Record>, ReadError> {
    match format {
        Format::Filestore => csv_in::read_filestore(path),
        Format::Sqlite => sqlite_in::read_sqlite(path),
        Format::MysqlCsv => csv_in::read_mysql_csv(path),
    }
}

/// Where a record is in its source: lines for CSV (a record with a quoted newline is
/// named by its first line), rows in table order for SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    Line(u64),
    Row(u64),
}

impl At {
    pub fn number(self) -> u64 {
        match self {
            At::Line(n) | At::Row(n) => n,
        }
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Line(n) => write!(f, "line {n}"),
            At::Row(n) => write!(f, "row {n}"),
        }
    }
}

/// One malformed record: where, and what is wrong, in words that quote no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: At,
    pub message: String,
}

/// Why a source could not be read. No variant carries a field's value.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read: check the path and its permissions.
    #[error("{}: cannot read it", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not of the format asked for (no header, no `oauthtoken` table, a
    /// column missing): check `--format`.
    #[error("{}: {problem}", path.display())]
    NotTheFormat { path: PathBuf, problem: String },
    /// SQLite could not read the file (not a database, corrupt, locked). SQLite's
    /// messages carry no values: nothing is bound into the queries run here.
    #[error("{}: cannot read it as SQLite", path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// Records are malformed; the first `MAX_LISTED` are listed, `more` were not. Fix
    /// them and import again: nothing was imported.
    #[error("{}: {}", path.display(), ProblemList(problems, *more))]
    Malformed {
        path: PathBuf,
        problems: Vec<Problem>,
        more: usize,
    },
}

impl ReadError {
    /// The problems of a `Malformed` error (empty for the others), for tests and callers
    /// that point at lines.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ReadError::Malformed { problems, .. } => problems,
            _ => &[],
        }
    }
}

/// How many malformed records an error lists; a file that is wrong throughout would
/// otherwise bury the first, most useful lines.
pub const MAX_LISTED: usize = 20;

struct ProblemList<'a>(&'a [Problem], usize);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ProblemList(problems, more) = *self;
        if let ([only], 0) = (problems, more) {
            return write!(f, "{}: {}", only.at, only.message);
        }
        write!(f, "{} malformed records", problems.len() + more)?;
        for p in problems {
            write!(f, "\n  {}: {}", p.at, p.message)?;
        }
        if more > 0 {
            write!(f, "\n  ... and {more} more")?;
        }
        Ok(())
    }
}

/// Gathers the problems of a whole source, so one run reports every bad line (up to
/// `MAX_LISTED`) rather than one per attempt.
#[derive(Default)]
pub(crate) struct Problems {
    listed: Vec<Problem>,
    more: usize,
}

impl Problems {
    pub(crate) fn push(&mut self, at: At, message: impl Into<String>) {
        if self.listed.len() < MAX_LISTED {
            self.listed.push(Problem {
                at,
                message: message.into(),
            });
        } else {
            self.more += 1;
        }
    }

    /// The records, when no problem was found, after the checks that span records.
    pub(crate) fn finish(
        mut self,
        path: &Path,
        records: Vec<(At, Token)>,
    ) -> Result<Vec<Record>, ReadError> {
        fields::check_across(&records, &mut self);
        if self.listed.is_empty() {
            return Ok(records
                .into_iter()
                .map(|(at, t)| (at.number(), t))
                .collect());
        }
        self.listed.sort_by_key(|p| p.at.number());
        Err(ReadError::Malformed {
            path: path.to_owned(),
            problems: self.listed,
            more: self.more,
        })
    }
}

mod fields;

#[cfg(test)]
mod tests;
