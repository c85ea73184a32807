//! The floor: a server that does nothing but answer, for the same client to measure the
//! machine's own cost of a request/response over a Unix socket.
//!
//! Built the way tokend's front is (one thread, a current-thread tokio runtime, a task
//! per connection, epoll), it reads lines and writes back `reply` (a real tokend reply,
//! captured once) with each request's `seq` put in: the same bytes both ways as a
//! tokend run, and the least a server of that shape can do per request (one wake-up,
//! one read, one write). What tokend spends above this is its own.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// Starts the echo server on `dir/echo.sock`, its thread confined to `cpus` when given;
/// it serves until the process exits.
pub fn start(dir: &Path, reply: &[u8], cpus: Option<String>) -> anyhow::Result<PathBuf> {
    let path = dir.join("echo.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path)?;
    listener.set_nonblocking(true)?;
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        if let Some(cpus) = cpus {
            if let Err(e) = super::pin_this_thread(&cpus) {
                eprintln!("# echo: {e:#}");
            }
        }
        rt.block_on(async move {
            let Ok(listener) = UnixListener::from_std(listener) else {
                return;
            };
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, rest.clone()));
            }
        });
    });
    Ok(path)
}

/// Answers every complete line of each read, all in one write.
async fn serve(mut stream: UnixStream, rest: Vec<u8>) {
    let mut input = vec![0u8; 64 * 1024];
    let mut filled = 0;
    let mut replies = Vec::with_capacity(rest.len() + 32);
    loop {
        if filled == input.len() {
            input.resize(input.len() * 2, 0);
        }
        match stream.read(&mut input[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
        replies.clear();
        let mut consumed = 0;
        while let Some(len) = input[consumed..filled].iter().position(|&b| b == b'\n') {
            replies.extend_from_slice(b"{\"seq\":");
            replies.extend_from_slice(seq_of(&input[consumed..consumed + len]));
            replies.extend_from_slice(&rest);
            consumed += len + 1;
        }
        input.copy_within(consumed..filled, 0);
        filled -= consumed;
        if stream.write_all(&replies).await.is_err() {
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
