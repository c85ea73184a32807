//! The floor: a server that does nothing but answer, for the same client to measure the
//! machine's own cost of a request/response over a Unix socket.
//!
//! One blocking thread per connection reads a line and writes back `reply` (a real
//! tokend reply, captured once) with the request's `seq` put in: the same bytes both
//! ways as a tokend run, and the least a server can do per request (one wake-up, one
//! read, one write). What tokend spends above this is its own.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Starts the echo server on `dir/echo.sock`, its threads confined to `cpus` when given;
/// it serves until the process exits.
pub fn start(dir: &Path, reply: &[u8], cpus: Option<String>) -> anyhow::Result<PathBuf> {
    let path = dir.join("echo.sock");
    let listener = UnixListener::bind(&path)?;
    // The reply after its `{"seq":N`: the server writes `{"seq":` + N + this.
    let rest = reply
        .strip_prefix(b"{\"seq\":")
        .map(|r| {
            r.iter()
                .skip_while(|b| b.is_ascii_digit())
                .copied()
                .collect::<Vec<u8>>()
        })
        .ok_or_else(|| anyhow::anyhow!("the captured reply does not start with its seq"))?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (rest, cpus) = (rest.clone(), cpus.clone());
            std::thread::spawn(move || {
                if let Some(cpus) = cpus {
                    if let Err(e) = super::pin_this_thread(&cpus) {
                        eprintln!("# echo: {e:#}");
                    }
                }
                serve(stream, &rest)
            });
        }
    });
    Ok(path)
}

fn serve(stream: UnixStream, rest: &[u8]) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut input = BufReader::new(stream);
    let mut line = Vec::with_capacity(1024);
    let mut reply = Vec::with_capacity(rest.len() + 32);
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        reply.clear();
        reply.extend_from_slice(b"{\"seq\":");
        reply.extend_from_slice(seq_of(&line));
        reply.extend_from_slice(rest);
        if out.write_all(&reply).is_err() {
            return;
        }
    }
}

/// The digits after `"seq":` in a request line.
fn seq_of(line: &[u8]) -> &[u8] {
    let key = b"\"seq\":";
    let Some(at) = line.windows(key.len()).position(|w| w == key) else {
        return b"null";
    };
    let digits = &line[at + key.len()..];
    let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    &digits[..n]
}
