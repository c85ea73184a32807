//! `tokend import` and `tokend export`: moving tokens in from the Zoho SDK's stores, and
//! back out to its FileStore CSV (`tokend::migrate` does the work).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde_json::json;
use tokend::migrate::{self, ExportFormat, Format};

use super::output::json;

#[derive(Args)]
pub struct ImportArgs {
    /// What FILE is: the SDK's FileStore CSV, a SQLite file with the `oauthtoken` table
    /// (the Kaizen #192 sample's zohooauth.db), or a CSV export of the MySQL
    /// `oauthtoken` table
    #[arg(long, value_enum)]
    format: Format,
    /// Check every record and report what would change, without saving anything
    #[arg(long)]
    dry_run: bool,
    /// The file to import
    file: PathBuf,
}

#[derive(Args)]
pub struct ExportArgs {
    /// The format to write: the SDK's FileStore CSV
    #[arg(long, value_enum, default_value = "filestore")]
    format: ExportFormat,
    /// Replace FILE if it exists
    #[arg(long)]
    force: bool,
    /// The file to write (created with mode 0600: it holds every secret)
    file: PathBuf,
}

/// Reads and checks the whole file (a malformed record imports nothing), then saves
/// what differs from what the daemon stores.
pub fn import(socket: &Path, args: ImportArgs, as_json: bool) -> anyhow::Result<String> {
    let records = migrate::read(args.format, &args.file).context("nothing was imported")?;
    let mut client = tokend::client::Client::connect(socket)?;
    let report = migrate::import(&mut client, &args.file, args.format, records, args.dry_run)?;
    if as_json {
        return Ok(json(&json!({
            "file": args.file.display().to_string(),
            "dry_run": args.dry_run,
            "read": report.read,
            "inserted": report.inserted,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "notes": report.notes,
        })));
    }
    let mut out = String::new();
    for note in &report.notes {
        out += &format!("note: {note}\n");
    }
    if args.dry_run {
        out += &format!(
            "dry run, nothing saved: {}: read {}, would insert {}, update {}, leave {} unchanged\n",
            args.file.display(),
            report.read,
            report.inserted,
            report.updated,
            report.unchanged
        );
    } else {
        out += &format!("imported {}: {report}\n", args.file.display());
    }
    Ok(out)
}

/// Writes every stored token to a new FileStore CSV.
pub fn export(socket: &Path, args: ExportArgs, as_json: bool) -> anyhow::Result<String> {
    let ExportFormat::Filestore = args.format;
    let mut client = tokend::client::Client::connect(socket)?;
    let written = migrate::export(&mut client, &args.file, args.force)?;
    if as_json {
        return Ok(json(
            &json!({"file": args.file.display().to_string(), "exported": written}),
        ));
    }
    Ok(format!(
        "exported {written} tokens to {} (mode 0600; it holds every secret)\n",
        args.file.display()
    ))
}
