//! `tokend export`: every stored token, written as the Zoho SDK's FileStore CSV, so an
//! application can go back to the SDK's own `FileStore` with the same tokens.
//!
//! The file holds every secret tokend keeps, so it is created with mode 0600, written
//! under a temporary name beside the target and moved into place only once complete and
//! on disk: a failed export never leaves a half-written file, and never a readable one.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::fields::Field;
use crate::client::{for_each_token, Client, ClientError};
use crate::model::Token;

/// Writes tokens as the SDK's FileStore CSV: its header (`redirect_uri`, ten columns),
/// null as an empty field, quoting only where needed, `\r\n` line ends — byte for byte
/// what the SDK's Python `csv.writer` produces.
pub struct FileStoreWriter<W: Write> {
    csv: csv::Writer<W>,
}

impl<W: Write> FileStoreWriter<W> {
    /// Starts the file with the header line.
    pub fn new(out: W) -> std::io::Result<FileStoreWriter<W>> {
        let mut csv = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(out);
        let header = Field::ALL.map(|f| match f {
            Field::RedirectUrl => "redirect_uri",
            f => f.name(),
        });
        csv.write_record(header).map_err(into_io)?;
        Ok(FileStoreWriter { csv })
    }

    pub fn write(&mut self, t: &Token) -> std::io::Result<()> {
        self.csv
            .write_record(Field::ALL.map(|f| f.get(t).unwrap_or_default()))
            .map_err(into_io)
    }

    /// Flushes and hands back the underlying writer.
    pub fn finish(self) -> std::io::Result<W> {
        self.csv.into_inner().map_err(|e| e.into_error())
    }
}

/// csv's errors while writing to an `io::Write` are I/O errors.
fn into_io(e: csv::Error) -> std::io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        _ => std::io::Error::other("cannot encode a CSV record"),
    }
}

/// Why an export failed. The target file is then left as it was (absent, or the old one).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The target exists and `--force` was not given.
    #[error("{} already exists; pass --force to replace it", path.display())]
    Exists { path: PathBuf },
    /// Creating, writing or moving the file failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Writes every token the daemon stores to `path` as a FileStore CSV; returns how many.
/// An existing `path` is replaced only with `force`.
pub fn export(client: &mut Client, path: &Path, force: bool) -> Result<u64, ExportError> {
    if !force && path.symlink_metadata().is_ok() {
        return Err(ExportError::Exists {
            path: path.to_owned(),
        });
    }
    let total = client.call("ping", json!({}))?["tokens"]
        .as_u64()
        .unwrap_or_default();
    let mut progress = super::Progress::new("exporting", total);
    let temp = TempFile::create(path)?;
    let io = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| ExportError::Io {
            action,
            path,
            source,
        }
    };
    let file = temp.file.try_clone().map_err(io("write", path))?;
    let mut out = FileStoreWriter::new(BufWriter::new(file)).map_err(io("write", path))?;
    let mut written = 0;
    for_each_token(client, super::import::PAGE, |t| {
        out.write(&t).map_err(io("write", path))?;
        written += 1;
        progress.advance(1);
        Ok::<(), ExportError>(())
    })?;
    progress.finish();
    out.finish()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .and_then(|f| f.sync_all())
        .map_err(io("write", path))?;
    temp.persist(path, force)?;
    Ok(written)
}

/// The file being written, under a temporary name in the target's directory (so the
/// final move is a rename on one filesystem); removed on drop unless persisted.
struct TempFile {
    path: PathBuf,
    file: File,
    persisted: bool,
}

impl TempFile {
    fn create(target: &Path) -> Result<TempFile, ExportError> {
        let name = target.file_name().unwrap_or_default().to_string_lossy();
        let path = target.with_file_name(format!(".{name}.tokend-export-{}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| ExportError::Io {
                action: "create",
                path: target.to_owned(),
                source,
            })?;
        Ok(TempFile {
            path,
            file,
            persisted: false,
        })
    }

    /// Moves the complete file to `target`. Without `force`, a hard link refuses an
    /// existing target atomically (one created since the check at the start included).
    fn persist(mut self, target: &Path, force: bool) -> Result<(), ExportError> {
        let moved = if force {
            std::fs::rename(&self.path, target)
        } else {
            std::fs::hard_link(&self.path, target)
        };
        match moved {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(ExportError::Exists {
                    path: target.to_owned(),
                })
            }
            Err(source) => {
                return Err(ExportError::Io {
                    action: "move the export into place at",
                    path: target.to_owned(),
                    source,
                })
            }
        }
        self.persisted = force;
        // Make the new name durable too; a failure here loses nothing already written.
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // After a hard link the temporary name is removed too; after a rename it is gone.
        if !self.persisted {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
