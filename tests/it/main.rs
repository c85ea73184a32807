//! Integration tests for tokend: each starts the real daemon binary on a temp dir and
//! talks to it over its Unix socket (`helpers/`). One file per feature.

// Tests unwrap and panic to fail; the crate's clippy lints are meant for library code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cache;
mod cleanup;
mod cli;
mod concurrency;
mod fake_zoho;
mod helpers;
mod hostile;
mod inproc;
mod lifecycle;
mod limits;
mod matching;
mod migrate;
mod operations;
mod paging;
mod refresh;
mod refresh_races;
mod reload;
mod robustness;
mod secrets;
mod service;
mod throttle;
