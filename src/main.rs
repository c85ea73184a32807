//! The `tokend` binary: parses the command line and runs the command (`cli/`): `serve`
//! runs the daemon from the library, the others talk to it over its socket. The exit
//! status tells scripts what kind of failure happened (`cli::exit_code`).

mod cli;

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Usage errors exit 2 here, before anything runs.
    let args = cli::Cli::parse();
    // Variables that are not UTF-8 cannot be ours; skip them rather than panic.
    let env: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    match cli::run(args, env) {
        Ok(out) => {
            // A closed pipe (`tokend tokens list | head`) is not a failure.
            let out = out.unwrap_or_default();
            let _ = std::io::stdout().write_all(cli::output::printable(&out, true).as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Errors can quote what a client stored, or the command line.
            eprintln!(
                "tokend: {}",
                cli::output::printable(&format!("{e:#}"), true)
            );
            ExitCode::from(cli::exit_code(&e))
        }
    }
}

/// Every request allocates its parsed JSON, its row's strings and its reply; glibc's
/// malloc took ~9% of a find's CPU (benches/README.md), mimalloc less: +8% finds/s at
/// 10k tokens and +17% at 1M, for ~15 MB more resident memory at 1M tokens.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
