//! A small blocking client for the command line (`tokend status`, `tokend token ...`,
//! `tokend import` and `export`) over std's `UnixStream`: one request at a time, or
//! many pipelined with a bounded number unanswered, which an import of many tokens
//! needs. The daemon speaks newline-delimited JSON (`docs/protocol.md`); this adds a
//! `seq` to each request, checks the reply echoes it, and turns an error reply into
//! [`ClientError::Daemon`].
//!
//! Errors say what to do next: a missing daemon names the path tried and how to start
//! one, a refused connection names the socket group.

use std::io::{self, BufRead, BufReader, BufWriter, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::model::Token;

/// How long one reply may take. Generous: a `refresh` waits for the provider (15 s by
/// default, and single flight may queue it behind another), a save for its fsync, which
/// a busy disk can take seconds over; a daemon that answers nothing for this long is
/// stuck.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

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

/// One connection to the daemon.
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: BufWriter<UnixStream>,
    /// The `seq` of the next request; replies are checked against it.
    next_seq: u64,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = open(path, REPLY_TIMEOUT)?;
        let io = |source| ClientError::Io {
            path: path.to_owned(),
            source,
        };
        let writer = BufWriter::new(stream.try_clone().map_err(io)?);
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
        let mut request = match args {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        request.insert("op".into(), json!(op));
        let mut answer = None;
        self.pipeline([Value::Object(request)], 1, |_, reply| {
            answer = Some(reply);
            Ok::<(), ClientError>(())
        })?;
        answer.unwrap_or_else(|| Err(self.protocol("no reply")))
    }

    /// Sends `requests` in order, keeping at most `window` unanswered, and hands each
    /// reply to `on_reply` with the request's index. After the first `Err` from
    /// `on_reply` nothing more is sent; the replies already due are still read (and
    /// handed over), then that first error is returned.
    ///
    /// The window bounds what is in flight, so neither side's socket buffer fills while
    /// the other waits on it.
    pub fn pipeline<E: From<ClientError>>(
        &mut self,
        requests: impl IntoIterator<Item = Value>,
        window: usize,
        mut on_reply: impl FnMut(usize, Result<Value, ClientError>) -> Result<(), E>,
    ) -> Result<(), E> {
        let window = window.max(1);
        let mut requests = requests.into_iter();
        let (mut sent, mut answered) = (0usize, 0usize);
        let mut first_error = None;
        let first_seq = self.next_seq;
        loop {
            while first_error.is_none() && sent - answered < window {
                let Some(mut request) = requests.next() else {
                    break;
                };
                if let Value::Object(fields) = &mut request {
                    fields.insert("seq".into(), json!(self.next_seq));
                }
                self.next_seq += 1;
                self.send(&request)?;
                sent += 1;
            }
            self.writer.flush().map_err(|e| self.io(e))?;
            if answered == sent {
                break;
            }
            let reply = self.receive(first_seq + answered as u64)?;
            if let Err(e) = on_reply(answered, reply) {
                first_error.get_or_insert(e);
            }
            answered += 1;
        }
        first_error.map_or(Ok(()), Err)
    }

    fn send(&mut self, request: &Value) -> Result<(), ClientError> {
        let mut line = serde_json::to_vec(request)
            .map_err(|e| self.protocol(&format!("cannot encode a request: {e}")))?;
        line.push(b'\n');
        self.writer.write_all(&line).map_err(|e| self.io(e))
    }

    /// Reads one reply line: `Ok(result)`, `Err(Daemon)`, or a connection failure as
    /// the outer error (nothing more will come on this connection).
    fn receive(&mut self, seq: u64) -> Result<Result<Value, ClientError>, ClientError> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).map_err(|e| self.io(e))?;
        if n == 0 || !line.ends_with('\n') {
            return Err(self.io(io::Error::new(
                ErrorKind::UnexpectedEof,
                "the daemon closed the connection (is it shutting down?)",
            )));
        }
        let mut reply: Value =
            serde_json::from_str(&line).map_err(|e| self.protocol(&format!("not JSON: {e}")))?;
        // Replies come in request order; `seq` is a check. A request the daemon could
        // not read (`too_large`) is refused with a null `seq`: it is still this one.
        let unread = reply["seq"].is_null() && reply["ok"] == json!(false);
        if reply["seq"] != json!(seq) && !unread {
            return Err(self.protocol("the reply does not echo the request's seq"));
        }
        match reply["ok"] {
            Value::Bool(true) => Ok(Ok(take(&mut reply, "result"))),
            Value::Bool(false) => {
                let error = &reply["error"];
                Ok(Err(ClientError::Daemon {
                    code: error["code"].as_str().unwrap_or("unknown").to_owned(),
                    message: error["message"].as_str().unwrap_or("").to_owned(),
                    retry_at: error["retry_at"].as_i64(),
                }))
            }
            _ => Err(self.protocol("no boolean `ok`")),
        }
    }

    fn protocol(&self, reason: &str) -> ClientError {
        ClientError::Protocol {
            path: self.path.clone(),
            reason: reason.to_owned(),
        }
    }

    fn io(&self, source: std::io::Error) -> ClientError {
        ClientError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

/// Hands every stored token to `each`, paging through `get_tokens` `page` at a time.
/// Paging visits every token that exists throughout exactly once, even while others
/// are saved or deleted (docs/protocol.md).
pub fn for_each_token<E: From<ClientError>>(
    client: &mut Client,
    page: u32,
    mut each: impl FnMut(Token) -> Result<(), E>,
) -> Result<(), E> {
    let mut after: Option<String> = None;
    loop {
        let mut result = client.call("get_tokens", json!({"limit": page, "after": after}))?;
        let Value::Array(tokens) = take(&mut result, "tokens") else {
            return Err(client.protocol("`get_tokens` without `tokens`").into());
        };
        for t in tokens {
            let token = crate::protocol::token(t).map_err(|e| {
                client.protocol(&format!("a stored token is unreadable: {}", e.message))
            })?;
            each(token)?;
        }
        match take(&mut result, "next") {
            Value::String(next) => after = Some(next),
            _ => return Ok(()),
        }
    }
}

/// Takes `key` out of a reply object; `Null` when absent or when the reply is no object
/// (which indexing with `[]` would panic on).
fn take(v: &mut Value, key: &str) -> Value {
    v.get_mut(key).map(Value::take).unwrap_or(Value::Null)
}
