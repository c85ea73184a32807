//! Test fixtures: the real `tokend` binary on a private temp dir, and a blocking client.
//!
//! Every test starts its own daemon (`Daemon::start`), so tests share nothing and run in
//! parallel. The daemon's socket lives in `<tmp>/run/` (a directory the daemon creates
//! itself, so its mode can be checked), its database in `<tmp>/state/`, and everything it
//! writes on stderr is appended to `<tmp>/daemon.log` across restarts.
//!
//! Nothing here waits for time to pass: readiness and exit are conditions polled up to a
//! deadline, and every socket read has a timeout, so a stuck daemon fails a test with a
//! message instead of hanging the suite. The deadlines are generous upper bounds for a
//! loaded machine, never expectations about speed.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Map, Value};
use tempfile::TempDir;

/// How long a daemon may take to answer its first ping, or to exit after a signal.
const PROCESS_DEADLINE: Duration = Duration::from_secs(20);
/// How long a client waits for one reply before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// The pause between two checks of a polled condition.
const POLL_INTERVAL: Duration = Duration::from_millis(2);

/// The configuration these tests run the daemon with: the built-in defaults, except that
/// the refresher is off. Test tokens name Zoho's real domains and carry past expiry
/// times; a refresher would send them to Zoho's accounts server and change their state
/// under the assertions. The refresher has its own tests (`refresh.rs`).
pub const NO_REFRESH: &str = "[refresh]\nenabled = false\n";

/// The ten fields of a token record, in the SDK's order.
pub const FIELDS: [&str; 10] = [
    "id",
    "user_name",
    "client_id",
    "client_secret",
    "refresh_token",
    "access_token",
    "grant_token",
    "expiry_time",
    "redirect_url",
    "api_domain",
];

/// The real daemon, on a temp dir of its own. Dropping it kills the process and removes
/// the directory.
pub struct Daemon {
    dir: TempDir,
    child: Option<Child>,
    /// Extra environment for the daemon; `RUST_LOG=trace` unless a test sets it.
    env: Vec<(String, String)>,
}

impl Daemon {
    /// Starts a daemon logging at trace level and waits until it answers a ping.
    pub fn start() -> Daemon {
        Daemon::start_with(NO_REFRESH, &[])
    }

    /// Like `start`, with extra environment variables (e.g. another `RUST_LOG`).
    pub fn start_with_env(env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with(NO_REFRESH, env)
    }

    /// Starts a daemon with `config` as its configuration file and extra environment.
    pub fn start_with(config: &str, env: &[(&str, &str)]) -> Daemon {
        let mut daemon = Daemon::prepare(config, env);
        daemon.launch();
        daemon
    }

    /// A daemon's temp dir, config file and environment, not started yet: `launch` or
    /// `spawn` starts it.
    pub fn prepare(config: &str, env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("tokend-it-")
            .tempdir()
            .expect("create a temp dir");
        // Our own config file, so /etc/tokend on the test machine plays no part.
        std::fs::write(dir.path().join("tokend.toml"), config).expect("write the config file");
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        if !env.iter().any(|(k, _)| k == "RUST_LOG") {
            env.push(("RUST_LOG".into(), "trace".into()));
        }
        Daemon {
            dir,
            child: None,
            env,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir().join("run").join("tokend.sock")
    }

    pub fn db(&self) -> PathBuf {
        self.dir().join("state").join("tokens.db")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir().join("daemon.log")
    }

    /// Everything the daemon (every run of it on this dir) wrote on stderr so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    /// The command line that serves this dir: the same one `launch` runs, for tests that
    /// start a second daemon on it.
    pub fn command(&self) -> Command {
        self.command_with_db(&self.db())
    }

    /// This dir's command line with another database.
    pub fn command_with_db(&self, db: &Path) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokend"));
        cmd.arg("serve")
            .arg("--config")
            .arg(self.dir().join("tokend.toml"))
            .arg("--socket")
            .arg(self.socket())
            .arg("--db")
            .arg(db)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts the daemon on this dir (again) and waits until it answers a ping.
    pub fn launch(&mut self) {
        self.spawn();
        self.wait_ready();
    }

    /// Starts the daemon on this dir without waiting for it to be ready.
    pub fn spawn(&mut self) {
        let cmd = self.command();
        self.spawn_command(cmd);
    }

    /// Runs `cmd` as this dir's daemon (its stderr appended to the log), for tests that
    /// start it another way (a wrapper that passes a socket, say).
    pub fn spawn_command(&mut self, mut cmd: Command) {
        assert!(self.child.is_none(), "the daemon is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the daemon log");
        let child = cmd.stderr(Stdio::from(log)).spawn().expect("spawn tokend");
        self.child = Some(child);
    }

    /// Adds (or replaces) a variable in the daemon's environment for its next start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Whether the daemon process is still running (it has not exited).
    pub fn is_running(&mut self) -> bool {
        let child = self.child.as_mut().expect("a started daemon");
        child.try_wait().expect("poll the daemon").is_none()
    }

    /// Polls connect + ping until the daemon answers, failing fast if it exits.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + PROCESS_DEADLINE;
        loop {
            if let Some(mut client) = Client::try_connect(&self.socket()) {
                if let Some(reply) = client.try_ping() {
                    assert_eq!(reply["ok"], true, "first ping failed: {reply}");
                    return;
                }
            }
            let child = self.child.as_mut().expect("a running daemon");
            if let Some(status) = child.try_wait().expect("poll the daemon") {
                self.child = None;
                panic!(
                    "tokend exited with {status} before it was ready; its log:\n{}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "tokend did not answer a ping within {PROCESS_DEADLINE:?}; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    pub fn pid(&self) -> Pid {
        let child = self.child.as_ref().expect("a running daemon");
        Pid::from_raw(i32::try_from(child.id()).expect("a pid fits in i32"))
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal the daemon");
    }

    /// SIGTERM, then waits for the exit and returns its status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait_exit()
    }

    /// Waits for the daemon to exit (after a signal sent by the test) and returns the status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("a running daemon");
        match wait_with_deadline(&mut child) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "tokend did not exit within {PROCESS_DEADLINE:?}; its log:\n{}",
                    self.log()
                );
            }
        }
    }

    /// SIGKILL: the daemon gets no chance to clean up (the socket file stays behind).
    pub fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
        let status = self.wait_exit();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "expected death by SIGKILL, got {status}"
        );
    }

    /// SIGTERM, asserting a clean exit, then starts again on the same dir.
    pub fn restart(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "tokend exited with {status} on SIGTERM; log:\n{}",
            self.log()
        );
        self.launch();
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `child` until it exits or the deadline passes (`None`).
fn wait_with_deadline(child: &mut Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + PROCESS_DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("poll a child process") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Runs `cmd` to its end (killing it past the deadline, which fails the test) and returns
/// its exit status and stderr.
pub fn run_to_exit(mut cmd: Command, stderr_file: &Path) -> (ExitStatus, String) {
    let err = File::create(stderr_file).expect("create a stderr file");
    let mut child = cmd.stderr(Stdio::from(err)).spawn().expect("spawn tokend");
    let status = wait_with_deadline(&mut child);
    let stderr = std::fs::read_to_string(stderr_file).unwrap_or_default();
    match status {
        Some(status) => (status, stderr),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tokend kept running past {PROCESS_DEADLINE:?}; stderr:\n{stderr}");
        }
    }
}

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

    fn try_connect(path: &Path) -> Option<Client> {
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
    fn try_ping(&mut self) -> Option<Value> {
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

/// Checks a reply has the shape protocol v1 promises: `seq`, `ok`, and `result` or a
/// string `error.code` and `error.message`.
pub fn check_reply_shape(reply: &Value) {
    let object = reply
        .as_object()
        .unwrap_or_else(|| panic!("reply is not an object: {reply}"));
    assert!(object.contains_key("seq"), "reply has no seq: {reply}");
    match object.get("ok") {
        Some(Value::Bool(true)) => {
            assert!(
                object.contains_key("result"),
                "success without result: {reply}"
            );
            assert!(
                !object.contains_key("error"),
                "success with an error: {reply}"
            );
        }
        Some(Value::Bool(false)) => {
            assert!(
                reply["error"]["code"].is_string(),
                "error without code: {reply}"
            );
            assert!(
                reply["error"]["message"].is_string(),
                "error without message: {reply}"
            );
            assert!(
                !object.contains_key("result"),
                "failure with a result: {reply}"
            );
        }
        _ => panic!("reply has no boolean `ok`: {reply}"),
    }
}

/// A failed reply's code and message.
pub fn error_of(reply: &Value) -> (String, String) {
    assert_eq!(reply["ok"], false, "expected a failure: {reply}");
    (
        reply["error"]["code"]
            .as_str()
            .expect("error code")
            .to_owned(),
        reply["error"]["message"]
            .as_str()
            .expect("error message")
            .to_owned(),
    )
}

/// A token's ten fields, with absent ones as null and `meta` left out.
pub fn fields(token: &Value) -> Value {
    assert!(token.is_object(), "not a token: {token}");
    let mut out = Map::new();
    for field in FIELDS {
        out.insert(
            field.to_owned(),
            token.get(field).cloned().unwrap_or(Value::Null),
        );
    }
    Value::Object(out)
}

/// The id of a stored token.
pub fn id_of(token: &Value) -> String {
    token["id"]
        .as_str()
        .unwrap_or_else(|| panic!("token without a string id: {token}"))
        .to_owned()
}

/// Asserts that `stored` holds every non-null field of `expected` verbatim.
pub fn assert_has(stored: &Value, expected: &Value) {
    assert!(
        stored.is_object(),
        "expected a token like {expected}, got {stored}"
    );
    for (k, v) in expected.as_object().expect("expected fields are an object") {
        if !v.is_null() {
            assert_eq!(&stored[k], v, "field `{k}` of {stored}");
        }
    }
}

/// A complete, distinct token for user `n` of a test (`tag` keeps tests' values apart).
pub fn token(tag: &str, n: usize) -> Value {
    json!({
        "user_name": format!("{tag}-user-{n}@example.com:2006{n}"),
        "client_id": format!("1000.{tag}CLIENT{n}"),
        "client_secret": format!("{tag}-client-secret-{n}"),
        "refresh_token": format!("1000.{tag}.refresh.{n}"),
        "access_token": format!("1000.{tag}.access.{n}"),
        "expiry_time": format!("{}", 1_795_330_406_683_u64 + n as u64),
        "redirect_url": format!("https://example.com/{tag}/callback"),
        "api_domain": "https://www.zohoapis.com",
    })
}
