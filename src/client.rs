//! A small blocking client for the command line (`tokend status`, `tokend token ...`):
//! one connection, one request at a time, over std's `UnixStream`. The daemon speaks
//! newline-delimited JSON (`docs/protocol.md`); this adds a `seq` to each request, checks
//! the reply echoes it, and turns an error reply into [`ClientError::Daemon`].
//!
//! Errors say what to do next: a missing daemon names the path tried and how to start
//! one, a refused connection names the socket group.

use std::io::{self, BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

/// How long one reply may take. A `refresh` waits for the provider (15 s by default, and
/// single flight may queue it behind another), so this is generous.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a command got no answer. Messages never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the path: start the daemon, or point at the right socket.
    #[error("daemon not running at {}: start it with `tokend serve` (or `systemctl start tokend`), or name its socket with --socket or TOKEND_SOCKET", path.display())]
    NotRunning { path: PathBuf },
    /// The socket is there but this user may not connect to it.
    #[error("no permission to connect to {}: run as the daemon's user, or as a member of its socket group (socket.group / SocketGroup=)", path.display())]
    PermissionDenied { path: PathBuf },
    /// The connection failed, broke or timed out mid-request.
    #[error("lost the connection to the daemon at {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// The reply was not a protocol v1 reply (another program on the socket?).
    #[error("the daemon at {} sent an unexpected reply: {reason}", path.display())]
    Protocol { path: PathBuf, reason: String },
    /// The daemon answered with an error (`code` as in docs/protocol.md).
    #[error("{message} ({code})")]
    Daemon {
        code: String,
        message: String,
        /// With `throttled`: when to retry, epoch ms.
        retry_at: Option<i64>,
    },
}

impl ClientError {
    /// Whether the daemon could not be reached at all (as opposed to answering an error).
    pub fn is_unreachable(&self) -> bool {
        !matches!(self, ClientError::Daemon { .. })
    }
}

/// Connects to the daemon's socket with `timeout` on every read and write, mapping a
/// failure to what the user should do about it. Shared by every client of the CLI.
pub fn open(path: &Path, timeout: Duration) -> Result<UnixStream, ClientError> {
    let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused | ErrorKind::NotADirectory => {
            ClientError::NotRunning {
                path: path.to_owned(),
            }
        }
        ErrorKind::PermissionDenied => ClientError::PermissionDenied {
            path: path.to_owned(),
        },
        _ => ClientError::Io {
            path: path.to_owned(),
            source: e,
        },
    })?;
    let io = |source| ClientError::Io {
        path: path.to_owned(),
        source,
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    Ok(stream)
}

pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_seq: u64,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = open(path, REPLY_TIMEOUT)?;
        let io = |source| ClientError::Io {
            path: path.to_owned(),
            source,
        };
        let writer = stream.try_clone().map_err(io)?;
        Ok(Client {
            path: path.to_owned(),
            reader: BufReader::new(stream),
            writer,
            next_seq: 1,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends `{"op": op, ...args}` and returns the reply's `result`.
    pub fn call(&mut self, op: &str, args: Value) -> Result<Value, ClientError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut request = match args {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        request.insert("op".into(), json!(op));
        request.insert("seq".into(), json!(seq));
        let mut line = Value::Object(request).to_string();
        line.push('\n');
        let io = |source| ClientError::Io {
            path: self.path.clone(),
            source,
        };
        self.writer.write_all(line.as_bytes()).map_err(io)?;
        let mut reply = String::new();
        let n = self
            .reader
            .read_line(&mut reply)
            .map_err(|source| ClientError::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 || !reply.ends_with('\n') {
            return Err(ClientError::Io {
                path: self.path.clone(),
                source: io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the daemon closed the connection (is it shutting down?)",
                ),
            });
        }
        let protocol = |reason: String| ClientError::Protocol {
            path: self.path.clone(),
            reason,
        };
        let reply: Value =
            serde_json::from_str(&reply).map_err(|e| protocol(format!("not JSON: {e}")))?;
        if reply["seq"] != json!(seq) {
            return Err(protocol("the reply does not echo the request's seq".into()));
        }
        match reply["ok"].as_bool() {
            Some(true) => Ok(reply["result"].clone()),
            Some(false) => {
                let error = &reply["error"];
                Err(ClientError::Daemon {
                    code: error["code"].as_str().unwrap_or("unknown").to_owned(),
                    message: error["message"].as_str().unwrap_or("").to_owned(),
                    retry_at: error["retry_at"].as_i64(),
                })
            }
            None => Err(protocol("no boolean `ok`".into())),
        }
    }
}
