//! The CSV sources: the SDK's FileStore file, and a CSV export of the MySQL DBStore's
//! `oauthtoken` table. Both are standard CSV (RFC 4180: quoted fields may hold commas,
//! quotes and newlines); they differ in how columns are found. The FileStore is read by
//! position, as the SDK reads it; a MySQL export by its header's names, in any order.

use std::io::Cursor;
use std::path::Path;

use super::fields::{check_record, Field};
use super::{At, Problems, ReadError, Record};
use crate::model::Token;

/// The SDK's FileStore columns, by position: its header names (`redirect_uri`, and
/// `user_mail` in older SDKs) are accepted too. The legacy file has the first nine.
const FILESTORE_COLUMNS: usize = 10;

/// Reads the SDK's FileStore CSV: the 10-column file, or the legacy 9-column one
/// without `api_domain` (which the SDK upgrades by appending an empty column).
pub fn read_filestore(path: &Path) -> Result<Vec<Record>, ReadError> {
    let mut rows = Rows::open(path)?;
    let header = rows.header()?;
    let columns = filestore_columns(&header).map_err(|problem| ReadError::NotTheFormat {
        path: path.to_owned(),
        problem: format!("line 1: {problem}"),
    })?;
    rows.records(&columns, None)
}

/// Reads a CSV export of the MySQL `oauthtoken` table: columns found by the header's
/// names (extra columns are ignored), `\N` (MySQL's NULL) or an empty field for null.
pub fn read_mysql_csv(path: &Path) -> Result<Vec<Record>, ReadError> {
    let mut rows = Rows::open(path)?;
    let header = rows.header()?;
    let columns = named_columns(&header).map_err(|problem| ReadError::NotTheFormat {
        path: path.to_owned(),
        problem: format!("line 1: {problem}"),
    })?;
    rows.records(&columns, Some(r"\N"))
}

/// The header of a FileStore file, checked position by position.
fn filestore_columns(header: &[String]) -> Result<Vec<Option<Field>>, String> {
    let expected = || {
        Field::ALL
            .iter()
            .map(|f| match f {
                Field::RedirectUrl => "redirect_uri",
                f => f.name(),
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    if header.len() != FILESTORE_COLUMNS && header.len() != FILESTORE_COLUMNS - 1 {
        return Err(format!(
            "not a FileStore header: {} columns, expected `{}` (or the legacy form without `api_domain`)",
            header.len(),
            expected()
        ));
    }
    for (i, (name, field)) in header.iter().zip(Field::ALL).enumerate() {
        if Field::from_column(name) != Some(field) {
            return Err(format!(
                "not a FileStore header: column {} should be `{}`, expected `{}`; \
                 for a MySQL table export with its own column order use --format mysql-csv",
                i + 1,
                field.name(),
                expected()
            ));
        }
    }
    Ok(Field::ALL[..header.len()]
        .iter()
        .copied()
        .map(Some)
        .collect())
}

/// The header of a table export: each known column name, once; every column but
/// `api_domain` present.
fn named_columns(header: &[String]) -> Result<Vec<Option<Field>>, String> {
    let columns: Vec<Option<Field>> = header.iter().map(|h| Field::from_column(h)).collect();
    for field in Field::ALL {
        match columns.iter().filter(|c| **c == Some(field)).count() {
            0 if !field.optional() => {
                return Err(format!(
                    "the header has no `{}` column (the columns of the `oauthtoken` table are expected)",
                    field.name()
                ))
            }
            0 | 1 => {}
            _ => return Err(format!("the header names `{}` twice", field.name())),
        }
    }
    Ok(columns)
}

/// A record's values, or why they are unreadable (not UTF-8).
type Values = Result<Vec<String>, String>;

/// A CSV file read record by record, with the line each record starts on.
///
/// The file is read whole: csv's own positions name where the previous record ended
/// (before the blank lines and the `\n` of a `\r\n` it skips), so the start line is
/// counted here from the bytes. Token files are small; a million tokens is ~500 MB
/// either way, as every record is kept until the import.
struct Rows<'a> {
    path: &'a Path,
    reader: csv::Reader<Cursor<Vec<u8>>>,
    /// A byte offset whose line is known, and that line: lines are counted forward
    /// from here, so the whole file is counted once.
    counted: (usize, u64),
}

impl<'a> Rows<'a> {
    fn open(path: &'a Path) -> Result<Rows<'a>, ReadError> {
        let data = std::fs::read(path).map_err(|source| ReadError::Io {
            path: path.to_owned(),
            source,
        })?;
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            // Records of the wrong length are reported with their line, not as a
            // csv error that would end the reading.
            .flexible(true)
            .from_reader(Cursor::new(data));
        Ok(Rows {
            path,
            reader,
            counted: (0, 1),
        })
    }

    /// The next record and the line it starts on; empty lines are skipped (as the SDK
    /// skips them). The values are an error for a record that is not UTF-8.
    fn next(&mut self) -> Result<Option<(At, Values)>, ReadError> {
        let mut record = csv::ByteRecord::new();
        let more = self
            .reader
            .read_byte_record(&mut record)
            .map_err(|e| self.csv_error(e))?;
        if !more {
            return Ok(None);
        }
        let after_previous = record.position().map_or(0, |p| p.byte());
        let line = At::Line(self.line_of(usize::try_from(after_previous).unwrap_or(0)));
        let fields = record
            .iter()
            .enumerate()
            .map(|(i, f)| {
                String::from_utf8(f.to_vec())
                    .map_err(|_| format!("field {} is not valid UTF-8", i + 1))
            })
            .collect();
        Ok(Some((line, fields)))
    }

    /// The line of the first byte at or after `from` that is not a line end: where a
    /// record that csv began reading at `from` really starts.
    fn line_of(&mut self, from: usize) -> u64 {
        let data = self.reader.get_ref().get_ref();
        let start = data
            .iter()
            .skip(from)
            .position(|b| *b != b'\r' && *b != b'\n')
            .map_or(data.len(), |i| from + i);
        let (offset, line) = self.counted;
        let start = start.max(offset);
        let newlines = data[offset..start].iter().filter(|b| **b == b'\n').count();
        self.counted = (start, line + newlines as u64);
        self.counted.1
    }

    /// The first record, with a UTF-8 byte order mark (which spreadsheet programs
    /// write) taken off its first name.
    fn header(&mut self) -> Result<Vec<String>, ReadError> {
        let not_the_format = |problem: &str| ReadError::NotTheFormat {
            path: self.path.to_owned(),
            problem: problem.to_owned(),
        };
        match self.next()? {
            None => Err(not_the_format("the file is empty: no header line")),
            Some((_, Err(e))) => Err(not_the_format(&format!("line 1: {e}"))),
            Some((_, Ok(mut names))) => {
                if let Some(first) = names.first_mut() {
                    if let Some(rest) = first.strip_prefix('\u{feff}') {
                        *first = rest.to_owned();
                    }
                }
                Ok(names)
            }
        }
    }

    /// Every record after the header as a token, `columns[i]` naming the field of the
    /// i-th value (`None`: ignored). A value equal to `null` means null.
    fn records(
        mut self,
        columns: &[Option<Field>],
        null: Option<&str>,
    ) -> Result<Vec<Record>, ReadError> {
        let mut problems = Problems::default();
        let mut records = Vec::new();
        while let Some((at, values)) = self.next()? {
            let values = match values {
                Ok(v) => v,
                Err(e) => {
                    problems.push(at, e);
                    continue;
                }
            };
            if values.len() != columns.len() {
                problems.push(
                    at,
                    format!("expected {} fields, found {}", columns.len(), values.len()),
                );
                continue;
            }
            match token(columns, &values, null) {
                Ok(t) => records.push((at, t)),
                Err(e) => problems.push(at, e),
            }
        }
        problems.finish(self.path, records)
    }

    fn csv_error(&self, e: csv::Error) -> ReadError {
        let path = self.path.to_owned();
        match e.into_kind() {
            csv::ErrorKind::Io(source) => ReadError::Io { path, source },
            // Reading byte records flexibly fails only on I/O; the other kinds are not
            // shown, as some could quote data.
            _ => ReadError::NotTheFormat {
                path,
                problem: "unreadable as CSV".into(),
            },
        }
    }
}

/// One record's values as a token.
fn token(
    columns: &[Option<Field>],
    values: &[String],
    null: Option<&str>,
) -> Result<Token, String> {
    let mut t = Token::default();
    for (field, value) in columns.iter().zip(values) {
        if let Some(field) = field {
            let value = Some(value.as_str()).filter(|v| Some(*v) != null);
            field.set(&mut t, value)?;
        }
    }
    check_record(&t)?;
    Ok(t)
}
