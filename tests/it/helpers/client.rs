//! A blocking test client on one connection: requests by JSON value, replies matched
//! by `seq`, and a read timeout on every reply.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde_json::{json, Value};

use super::tokens::{check_reply_shape, error_of, fields};
use super::READ_TIMEOUT;

/// A blocking client on one connection.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_seq: u64,
}

impl Client {
    pub fn connect(path: &Path) -> Client {
        let stream = UnixStream::connect(path)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
        Client::from_stream(stream)
    }

    pub fn try_connect(path: &Path) -> Option<Client> {
        UnixStream::connect(path).ok().map(Client::from_stream)
    }

    fn from_stream(stream: UnixStream) -> Client {
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("set a read timeout");
        stream
            .set_write_timeout(Some(READ_TIMEOUT))
            .expect("set a write timeout");
        let writer = stream.try_clone().expect("clone the stream");
        Client {
            reader: BufReader::new(stream),
            writer,
            next_seq: 1,
        }
    }

    /// A ping that tolerates a daemon not yet (or no longer) serving.
    pub(super) fn try_ping(&mut self) -> Option<Value> {
        self.send(b"{\"op\":\"ping\",\"seq\":\"ready?\"}\n").ok()?;
        let line = self.try_read_line().ok()??;
        serde_json::from_str(&line).ok()
    }

    /// Writes raw bytes, exactly as given.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)?;
        self.writer.flush()
    }

    /// Writes `value` as one request line.
    pub fn send_json(&mut self, value: &Value) {
        let mut line = serde_json::to_vec(value).expect("encode a request");
        line.push(b'\n');
        self.send(&line).expect("write a request");
    }

    /// Another handle on this connection's socket, for a thread that writes while this
    /// client reads.
    pub fn writer_clone(&self) -> UnixStream {
        self.writer.try_clone().expect("clone the stream")
    }

    /// Closes the writing half: the daemon sees end of input.
    pub fn shutdown_write(&self) {
        self.writer
            .shutdown(std::net::Shutdown::Write)
            .expect("shut down the write half");
    }

    fn try_read_line(&mut self) -> std::io::Result<Option<String>> {
        let mut line = Vec::new();
        let n = self.reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(None);
        }
        assert_eq!(
            line.last(),
            Some(&b'\n'),
            "the daemon closed the connection mid-line: {}",
            String::from_utf8_lossy(&line)
        );
        line.pop();
        Ok(Some(
            String::from_utf8(line).expect("a reply line is UTF-8"),
        ))
    }

    /// The next reply line without its newline, or `None` when the daemon closed the
    /// connection. A timeout fails the test.
    pub fn read_line(&mut self) -> Option<String> {
        match self.try_read_line() {
            Ok(line) => line,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("no reply from tokend within {READ_TIMEOUT:?}")
            }
            // A reset after the daemon closed its end is a close too.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => None,
            Err(e) => panic!("read a reply: {e}"),
        }
    }

    /// The next reply, parsed and checked for the reply shape of protocol v1.
    pub fn read_reply(&mut self) -> Value {
        let line = self.read_line().expect("a reply, not a closed connection");
        let reply: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {line}"));
        check_reply_shape(&reply);
        reply
    }

    /// Sends one request and reads its reply. A `seq` is added when the request has none,
    /// and the reply must echo it.
    pub fn request(&mut self, request: Value) -> Value {
        let mut request = request;
        let object = request.as_object_mut().expect("a request is an object");
        let seq = object
            .entry("seq")
            .or_insert_with(|| {
                self.next_seq += 1;
                json!(self.next_seq)
            })
            .clone();
        self.send_json(&request);
        let reply = self.read_reply();
        assert_eq!(
            reply["seq"], seq,
            "reply to {request} carries the wrong seq: {reply}"
        );
        reply
    }

    /// A request that must succeed; returns its `result`.
    pub fn ok(&mut self, request: Value) -> Value {
        let reply = self.request(request.clone());
        assert_eq!(reply["ok"], true, "request {request} failed: {reply}");
        reply["result"].clone()
    }

    /// A request that must fail; returns its error code and message.
    pub fn err(&mut self, request: Value) -> (String, String) {
        let reply = self.request(request.clone());
        assert_eq!(
            reply["ok"], false,
            "request {request} should have failed: {reply}"
        );
        error_of(&reply)
    }

    pub fn ping(&mut self) -> Value {
        let result = self.ok(json!({"op": "ping"}));
        assert_eq!(result["version"], env!("CARGO_PKG_VERSION"), "{result}");
        assert_eq!(result["protocol"], 1, "{result}");
        result
    }

    /// The number of stored tokens, as `ping` reports it.
    pub fn count(&mut self) -> u64 {
        self.ping()["tokens"]
            .as_u64()
            .expect("ping reports a count")
    }

    /// Saves `token`; returns the token as stored (checked to carry a string id).
    pub fn save(&mut self, token: Value) -> Value {
        let result = self.ok(json!({"op": "save_token", "token": token}));
        let stored = result["token"].clone();
        assert!(
            stored["id"].is_string(),
            "a saved token has an id: {result}"
        );
        stored
    }

    /// `find_token`; `Value::Null` when nothing matches.
    pub fn find(&mut self, token: Value) -> Value {
        self.ok(json!({"op": "find_token", "token": token}))["token"].clone()
    }

    pub fn find_by_id(&mut self, id: &str) -> Value {
        self.ok(json!({"op": "find_token_by_id", "token_id": id}))["token"].clone()
    }

    pub fn delete(&mut self, id: &str) -> bool {
        self.ok(json!({"op": "delete_token", "token_id": id}))["deleted"]
            .as_bool()
            .expect("`deleted` is a bool")
    }

    /// Every stored token, following `get_tokens`' cursor from page to page.
    pub fn all(&mut self) -> Vec<Value> {
        let (mut all, mut after) = (Vec::new(), Value::Null);
        loop {
            let result = self.ok(json!({"op": "get_tokens", "after": after}));
            let page = result["tokens"].as_array().expect("`tokens` is an array");
            all.extend(page.iter().cloned());
            match &result["next"] {
                Value::Null => return all,
                next => after = next.clone(),
            }
        }
    }

    /// Every stored token's ten fields, sorted by id: what "the stored data" means when a
    /// test checks that something changed nothing.
    pub fn snapshot(&mut self) -> Vec<Value> {
        let mut all: Vec<Value> = self.all().iter().map(fields).collect();
        all.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        all
    }
}
