//! `tokend import`: records already read and checked (`super::read`) are compared with
//! what the daemon stores, then saved over the socket, pipelined.
//!
//! Idempotent by construction: a record whose save would change nothing is not sent at
//! all, so importing a file twice leaves the store as the first import left it, down to
//! tokend's own metadata (a save would reset a token's refresh-failure state and bump
//! its version). The comparison uses a snapshot read with `get_tokens`, which unlike
//! `find_token` does not count as a use of the session.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use serde_json::{json, Map, Value};

use super::fields::Field;
use super::plan::{plan, Action, Index, KEYS};
use super::{At, Format, Problems, ReadError, Record};
use crate::client::{for_each_token, Client, ClientError};
use crate::model::Token;

/// Saves in flight at once: enough to keep the daemon's group commit busy.
const WINDOW: usize = 64;
/// `get_tokens` page size for the snapshot.
pub(super) const PAGE: u32 = 1000;

/// What an import did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub read: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Things worth knowing that are not errors, one line each (no values).
    pub notes: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "read {}, inserted {}, updated {}, unchanged {}",
            self.read, self.inserted, self.updated, self.unchanged
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Records that would break the daemon's rules against what it stores (a
    /// `user_name` another token holds). Nothing was imported: fix the file.
    #[error("nothing was imported: {0}")]
    Rejected(ReadError),
    /// The daemon could not be asked, before anything was saved.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A save failed part-way (`at`: the record, when known). `report` counts what was
    /// saved; importing again after fixing the cause is safe and skips those.
    #[error("{}the import stopped: {cause}; {} of {} tokens to save were saved. \
             Importing again is safe: what is already stored is left unchanged",
             at.map(|a| format!("{a}: ")).unwrap_or_default(),
             report.inserted + report.updated, to_save)]
    Save {
        at: Option<At>,
        /// Named `cause`, not `source`: it is part of the message, not a separate link
        /// of the error chain to print again.
        cause: ClientError,
        report: Box<Report>,
        to_save: u64,
    },
}

/// Imports `records` (read from `path` as `format`) into the daemon behind `client`.
/// With `dry_run`, only plans and reports.
pub fn import(
    client: &mut Client,
    path: &Path,
    format: Format,
    records: Vec<Record>,
    dry_run: bool,
) -> Result<Report, ImportError> {
    let at = |n: u64| match format {
        Format::Sqlite => At::Row(n),
        Format::Filestore | Format::MysqlCsv => At::Line(n),
    };
    let mut report = Report {
        read: records.len() as u64,
        ..Report::default()
    };
    let mut index = snapshot(client, &records)?;
    let mut problems = Problems::default();
    let mut saves = Vec::new();
    for (n, token) in records {
        let action = plan(&mut index, &token, at(n), &mut problems, &mut report.notes);
        match action {
            Action::Unchanged => report.unchanged += 1,
            Action::Insert | Action::Update => saves.push((n, token, action)),
        }
    }
    if let Err(e) = problems.finish(path, Vec::new()) {
        return Err(ImportError::Rejected(e));
    }
    let to_save = saves.len() as u64;
    if dry_run {
        for (_, _, action) in &saves {
            match action {
                Action::Insert => report.inserted += 1,
                _ => report.updated += 1,
            }
        }
        return Ok(report);
    }

    let mut progress = super::Progress::new("saving", to_save);
    let mut failed = None;
    let requests = saves
        .iter()
        .map(|(_, t, _)| json!({"op": "save_token", "token": token_json(t)}));
    let sent = client.pipeline(requests, WINDOW, |i, reply| {
        let (n, _, action) = &saves[i];
        match reply {
            Ok(_) => {
                match action {
                    Action::Insert => report.inserted += 1,
                    _ => report.updated += 1,
                }
                progress.advance(1);
                Ok(())
            }
            Err(e) => {
                failed.get_or_insert((at(*n), e));
                Err(Halt(None))
            }
        }
    });
    progress.finish();
    let (at, cause) = match (sent, failed) {
        (Ok(()), _) => return Ok(report),
        (Err(_), Some((at, refused))) => (Some(at), refused),
        (Err(Halt(lost)), None) => (
            None,
            lost.unwrap_or_else(|| ClientError::Protocol {
                path: path.to_owned(),
                reason: "the import stopped".into(),
            }),
        ),
    };
    Err(ImportError::Save {
        at,
        cause,
        report: Box::new(report),
        to_save,
    })
}

/// Reads the daemon's tokens, keeping those that share a lookup value with a record:
/// only those can be matched, so memory follows the file, not the store.
fn snapshot(client: &mut Client, records: &[Record]) -> Result<Index, ClientError> {
    let wanted: HashSet<&str> = records
        .iter()
        .flat_map(|(_, t)| KEYS.iter().filter_map(|f| f.get(t)))
        .collect();
    let mut index = Index::default();
    for_each_token(client, PAGE, |t| {
        if KEYS
            .iter()
            .any(|f| f.get(&t).is_some_and(|v| wanted.contains(v)))
        {
            index.add(t);
        }
        Ok::<(), ClientError>(())
    })?;
    Ok(index)
}

/// A token as the protocol's JSON object, every field present (null when absent).
pub(super) fn token_json(t: &Token) -> Value {
    let fields: Map<String, Value> = Field::ALL
        .into_iter()
        .map(|f| {
            (
                f.name().to_owned(),
                f.get(t).map_or(Value::Null, Value::from),
            )
        })
        .collect();
    Value::Object(fields)
}

/// Stops the pipeline: with the connection's failure, or `None` after a refusal (kept
/// beside it with the record it was for).
struct Halt(Option<ClientError>);

impl From<ClientError> for Halt {
    fn from(e: ClientError) -> Halt {
        Halt(Some(e))
    }
}
