//! tokend as a systemd service: readiness and stopping notifications on a stand-in
//! notify socket, the watchdog, a listening socket passed by the service manager, a
//! SIGTERM in the middle of a burst, SIGHUP reloads (applied, refused, broken), and
//! `systemd-analyze verify` on the units in `systemd/`.

use std::collections::HashSet;
use std::io::{ErrorKind, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::fake_zoho::FakeZoho;
use crate::helpers::{check_reply_shape, token, Client, Daemon, NO_REFRESH, READ_TIMEOUT};
use crate::inproc::eventually;

/// A stand-in for systemd's notify socket: a datagram socket in the test's dir.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    /// Every message received so far, in order.
    seen: Vec<String>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        NotifySocket {
            socket,
            path,
            seen: Vec::new(),
        }
    }

    fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Receives until a message has the line `line` (like `READY=1`); returns it.
    fn wait_for(&mut self, line: &str) -> String {
        loop {
            let mut buf = [0; 4096];
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e) => panic!(
                    "no {line} within {READ_TIMEOUT:?} ({e}); received so far: {:?}",
                    self.seen
                ),
            };
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.seen.push(message.clone());
            if message.lines().any(|l| l == line) {
                return message;
            }
        }
    }

    /// The messages already queued, without waiting for more.
    fn drain(&mut self) -> Vec<String> {
        self.socket.set_nonblocking(true).unwrap();
        let mut buf = [0; 4096];
        while let Ok(n) = self.socket.recv(&mut buf) {
            self.seen
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        self.socket.set_nonblocking(false).unwrap();
        self.seen.clone()
    }
}

fn count_lines(messages: &[String], line: &str) -> usize {
    messages
        .iter()
        .filter(|m| m.lines().any(|l| l == line))
        .count()
}

#[test]
fn ready_comes_once_the_socket_accepts_and_stopping_comes_on_sigterm() {
    let mut daemon = Daemon::prepare(NO_REFRESH, &[]);
    let mut notify = NotifySocket::bind(daemon.dir());
    daemon.set_env("NOTIFY_SOCKET", notify.path());
    daemon.spawn();
    let ready = notify.wait_for("READY=1");
    // The moment READY=1 arrives, a client gets in and is answered.
    let mut c = Client::connect(&daemon.socket());
    assert_eq!(c.count(), 0);
    assert!(
        ready.contains("STATUS=serving 0 tokens"),
        "READY=1 carries a status line: {ready:?}"
    );
    c.save(token("notify", 1));
    drop(c);

    daemon.signal(Signal::SIGTERM);
    notify.wait_for("STOPPING=1");
    let status = daemon.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    let seen = notify.drain();
    assert_eq!(count_lines(&seen, "READY=1"), 1, "{seen:?}");
    let stopping = seen.iter().position(|m| m.contains("STOPPING=1")).unwrap();
    assert_eq!(
        stopping,
        seen.len() - 1,
        "STOPPING=1 is the last word: {seen:?}"
    );
}

#[test]
fn a_daemon_that_cannot_start_never_says_ready() {
    let mut daemon = Daemon::prepare(NO_REFRESH, &[]);
    let mut notify = NotifySocket::bind(daemon.dir());
    daemon.set_env("NOTIFY_SOCKET", notify.path());
    // A plain file where the socket should go: tokend refuses to delete it.
    std::fs::create_dir_all(daemon.socket().parent().unwrap()).unwrap();
    std::fs::write(daemon.socket(), "not a socket").unwrap();
    daemon.spawn();
    let status = daemon.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", daemon.log());
    assert_eq!(notify.drain(), Vec::<String>::new(), "{}", daemon.log());
}

#[test]
fn the_watchdog_is_fed_when_systemd_asks_for_it() {
    let mut daemon = Daemon::prepare(NO_REFRESH, &[]);
    let mut notify = NotifySocket::bind(daemon.dir());
    daemon.set_env("NOTIFY_SOCKET", notify.path());
    // 200 ms: a ping every 100 ms. WATCHDOG_PID unset means "this process".
    daemon.set_env("WATCHDOG_USEC", "200000");
    daemon.spawn();
    notify.wait_for("READY=1");
    notify.wait_for("WATCHDOG=1");
    notify.wait_for("WATCHDOG=1");
    assert!(daemon.stop().success());
}

/// `sh` moves the socket from stdin to fd 3 and sets LISTEN_PID to its own pid, which
/// `exec` hands on to tokend: what systemd does for a socket unit.
const ACTIVATE: &str = r#"exec 3<&0 0</dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@""#;

#[test]
fn a_passed_listening_socket_is_served_and_left_in_place() {
    let mut daemon = Daemon::prepare(NO_REFRESH, &[]);
    let passed = daemon.dir().join("passed.sock");
    let listener = UnixListener::bind(&passed).unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(ACTIVATE)
        .arg(env!("CARGO_BIN_EXE_tokend"))
        .arg("serve")
        .arg("--config")
        .arg(daemon.dir().join("tokend.toml"))
        .arg("--db")
        .arg(daemon.db())
        .env_clear()
        .env("RUST_LOG", "debug")
        // The configured socket, which a daemon given one must not create.
        .env("TOKEND_SOCKET", daemon.socket())
        .stdin(Stdio::from(OwnedFd::from(listener)))
        .stdout(Stdio::null());
    daemon.spawn_command(cmd);

    let mut c = Client::connect(&passed);
    assert_eq!(c.count(), 0);
    c.save(token("activated", 1));
    assert_eq!(c.count(), 1);
    drop(c);
    let status = daemon.stop();
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    assert!(daemon.log().contains("activated=true"), "{}", daemon.log());
    assert!(
        passed.exists(),
        "the socket belongs to the service manager and stays"
    );
    assert!(
        !daemon.socket().exists(),
        "no socket of its own was created"
    );
}

#[test]
fn systemd_socket_activate_starts_it_on_the_first_connection() {
    let Some(tool) = find_program("systemd-socket-activate") else {
        eprintln!(
            "skipped: systemd-socket-activate is not installed (Debian: apt-get install systemd)"
        );
        return;
    };
    let mut daemon = Daemon::prepare(NO_REFRESH, &[]);
    let passed = daemon.dir().join("activate.sock");
    let mut cmd = Command::new(tool);
    // It passes no environment but what -E names.
    cmd.arg("-l")
        .arg(&passed)
        .arg("-E")
        .arg("RUST_LOG=debug")
        .arg(env!("CARGO_BIN_EXE_tokend"))
        .arg("serve")
        .arg("--config")
        .arg(daemon.dir().join("tokend.toml"))
        .arg("--db")
        .arg(daemon.db())
        .env_clear()
        .stdout(Stdio::null());
    daemon.spawn_command(cmd);
    eventually("the activation socket", || passed.exists());
    let mut c = Client::connect(&passed);
    c.save(token("socket-activate", 1));
    assert_eq!(c.count(), 1);
    drop(c);
    assert_eq!(daemon.stop().code(), Some(0), "{}", daemon.log());
    assert!(daemon.log().contains("activated=true"), "{}", daemon.log());
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/bin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Replies on one pipelined connection during a SIGTERM: each a complete reply, `ok` or
/// `shutting_down`, in request order; returns the user names of acknowledged saves.
fn pipeline_until_closed(socket: &Path, tag: String, acked: Arc<AtomicUsize>) -> Vec<String> {
    let mut c = Client::connect(socket);
    let mut writer = c.writer_clone();
    let sender_tag = tag.clone();
    // At most this many requests; the daemon's close ends it much sooner.
    let sender = std::thread::spawn(move || {
        for n in 0..20_000 {
            let request = json!({"op": "save_token", "seq": n, "token": token(&sender_tag, n)});
            let mut line = serde_json::to_vec(&request).unwrap();
            line.push(b'\n');
            if writer.write_all(&line).is_err() {
                return;
            }
        }
    });
    let mut saved = Vec::new();
    let mut expected_seq = 0;
    while let Some(line) = c.read_line() {
        let reply: Value = serde_json::from_str(&line).unwrap();
        check_reply_shape(&reply);
        assert_eq!(reply["seq"], expected_seq, "replies come in request order");
        expected_seq += 1;
        if reply["ok"] == true {
            saved.push(
                reply["result"]["token"]["user_name"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
            acked.fetch_add(1, Ordering::SeqCst);
        } else {
            assert_eq!(reply["error"]["code"], "shutting_down", "{reply}");
        }
    }
    sender.join().unwrap();
    saved
}

/// New clients during the shutdown: each is answered, or refused by the closed socket.
fn connect_until_refused(socket: PathBuf, stop: Arc<AtomicBool>) -> usize {
    let mut answered = 0;
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut stream) = UnixStream::connect(&socket) else {
            return answered;
        };
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        if stream.write_all(b"{\"op\":\"ping\"}\n").is_err() {
            continue;
        }
        let mut reply = String::new();
        match std::io::BufRead::read_line(&mut std::io::BufReader::new(stream), &mut reply) {
            Ok(0) => {}
            Ok(_) => {
                let reply: Value = serde_json::from_str(&reply).unwrap();
                check_reply_shape(&reply);
                if reply["ok"] == true {
                    answered += 1;
                } else {
                    assert_eq!(reply["error"]["code"], "shutting_down", "{reply}");
                }
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("a new client got neither a reply nor a close: {e}"),
        }
    }
    answered
}

#[test]
fn sigterm_in_a_burst_answers_or_refuses_each_request_and_leaves_a_sound_database() {
    let mut daemon = Daemon::start_with_env(&[("RUST_LOG", "info")]);
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let pipelines: Vec<_> = (0..6)
        .map(|t| {
            let (socket, acked) = (daemon.socket(), acked.clone());
            std::thread::spawn(move || pipeline_until_closed(&socket, format!("burst{t}"), acked))
        })
        .collect();
    let newcomers = {
        let (socket, stop) = (daemon.socket(), stop.clone());
        std::thread::spawn(move || connect_until_refused(socket, stop))
    };
    eventually("300 saves acknowledged", || {
        acked.load(Ordering::SeqCst) >= 300
    });
    daemon.signal(Signal::SIGTERM);
    let status = daemon.wait_exit();
    stop.store(true, Ordering::SeqCst);
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    let saved: Vec<String> = pipelines
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    newcomers.join().unwrap();
    assert!(saved.len() >= 300);

    let db = rusqlite::Connection::open(daemon.db()).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let mut names = db.prepare("SELECT user_name FROM tokens").unwrap();
    let stored: HashSet<String> = names
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    drop(names);
    drop(db);
    for name in &saved {
        assert!(
            stored.contains(name),
            "acknowledged save of {name} was lost"
        );
    }
    daemon.launch();
    assert_eq!(daemon.client().count(), stored.len() as u64);
}

/// A token with only an access token, expired in 1970: `expired_unrefreshable_grace`
/// decides whether cleanup ends it, whatever the time is now.
fn unrefreshable() -> Value {
    json!({"user_name": "unrefreshable@example.com", "access_token": "1000.only.access", "expiry_time": "1000"})
}

fn dry_run(c: &mut Client) -> Vec<String> {
    let result = c.ok(json!({"op": "cleanup", "dry_run": true}));
    (result["removed"].as_array().unwrap().iter())
        .map(|r| r["user_name"].as_str().unwrap().to_owned())
        .collect()
}

fn write_config(daemon: &Daemon, text: &str) {
    std::fs::write(daemon.dir().join("tokend.toml"), text).unwrap();
}

/// SIGHUP, then the whole reload: RELOADING=1 and the READY=1 after it.
fn reload(daemon: &Daemon, notify: &mut NotifySocket) -> String {
    daemon.signal(Signal::SIGHUP);
    notify.wait_for("RELOADING=1");
    notify.wait_for("READY=1")
}

#[test]
fn sighup_applies_policies_refresh_tuning_and_log_level_without_a_restart() {
    let before = "[refresh]\nenabled = false\n[cleanup]\nexpired_unrefreshable_grace = \"off\"\n[log]\nlevel = \"info\"\n";
    // RUST_LOG empty: the level comes from the file.
    let mut daemon = Daemon::prepare(before, &[("RUST_LOG", "")]);
    let mut notify = NotifySocket::bind(daemon.dir());
    daemon.set_env("NOTIFY_SOCKET", notify.path());
    daemon.launch();
    let pid = daemon.pid();
    let mut c = daemon.client();
    c.save(unrefreshable());
    let mut refreshable = token("reload", 1);
    refreshable["api_domain"] = json!("https://crm.example.test");
    refreshable["expiry_time"] = json!("4102444800000"); // 2100: never due here
    c.save(refreshable);
    assert_eq!(dry_run(&mut c), Vec::<String>::new());
    assert_eq!(c.ok(json!({"op": "status"}))["scheduled"], 0);
    assert!(!daemon.log().contains("client connected"), "info level");

    write_config(
        &daemon,
        "[refresh]\nenabled = true\naccounts_url = \"http://127.0.0.1:9\"\n\
         [cleanup]\nexpired_unrefreshable_grace = \"1h\"\n[log]\nlevel = \"debug\"\n",
    );
    let ready = reload(&daemon, &mut notify);
    assert!(ready.contains("1 refreshes scheduled"), "{ready:?}");
    assert!(!ready.contains("failed"), "{ready:?}");
    assert_eq!(dry_run(&mut c), vec!["unrefreshable@example.com"]);
    assert_eq!(c.ok(json!({"op": "status"}))["scheduled"], 1);
    // A new client is logged at debug level now.
    daemon.client().ping();
    let log = daemon.log();
    assert!(log.contains("client connected"), "{log}");
    assert!(log.contains("configuration reloaded"), "{log}");
    assert_eq!(log.matches("tokend ready").count(), 1, "no restart: {log}");
    assert!(daemon.is_running());
    assert_eq!(daemon.pid(), pid);
    assert!(daemon.stop().success());
}

#[test]
fn sighup_carries_cleanup_dry_run_to_the_cleanup_actor() {
    let config = |dry_run: bool| {
        format!(
            "[refresh]\nenabled = false\n[cleanup]\nexpired_unrefreshable_grace = \"1h\"\ndry_run = {dry_run}\n"
        )
    };
    let mut daemon = Daemon::prepare(&config(false), &[]);
    let mut notify = NotifySocket::bind(daemon.dir());
    daemon.set_env("NOTIFY_SOCKET", notify.path());
    daemon.launch();
    let mut c = daemon.client();
    c.save(unrefreshable());
    let find = json!({"op": "find_token", "token": {"user_name": "unrefreshable@example.com"}});

    // A `cleanup` without `dry_run` follows the configuration, as reloaded.
    write_config(&daemon, &config(true));
    reload(&daemon, &mut notify);
    let pass = c.ok(json!({"op": "cleanup"}));
    assert_eq!(pass["dry_run"], true, "{pass}");
    assert_eq!(pass["removed"].as_array().unwrap().len(), 1, "{pass}");
    assert!(
        c.ok(find.clone())["token"].is_object(),
        "a dry run removed it"
    );

    write_config(&daemon, &config(false));
    reload(&daemon, &mut notify);
    let pass = c.ok(json!({"op": "cleanup"}));
    assert_eq!(pass["dry_run"], false, "{pass}");
    assert!(c.ok(find)["token"].is_null(), "the real pass kept it");
    assert!(daemon.stop().success());
}

#[test]
fn sighup_with_new_provider_endpoints_reaches_the_cleanup_actors_revoke() {
    let revoker = || {
        FakeZoho::start(|path, _, _| {
            assert_eq!(path, "/oauth/v2/token/revoke");
            (200, json!({"status": "success"}).to_string())
        })
    };
    let (old, new) = (revoker(), revoker());
    // Every session ends 1 ms after its save: the reload takes longer than that.
    let config = |accounts: &str| {
        format!(
            "[refresh]\nenabled = false\naccounts_url = \"{accounts}\"\n\
             [cleanup]\nenabled = false\naction = \"revoke_and_delete\"\nmax_session_age = \"1ms\"\n"
        )
    };
    let mut daemon = Daemon::prepare(&config(&old.url), &[]);
    let mut notify = NotifySocket::bind(daemon.dir());
    daemon.set_env("NOTIFY_SOCKET", notify.path());
    daemon.launch();
    let mut c = daemon.client();
    c.save(
        json!({"user_name": "revoked@example.com", "client_id": "1000.app",
        "client_secret": "SECRET-cs", "refresh_token": "SECRET-rt-revoked"}),
    );

    write_config(&daemon, &config(&new.url));
    let ready = reload(&daemon, &mut notify);
    assert!(!ready.contains("failed"), "{ready:?}");
    let pass = c.ok(json!({"op": "cleanup", "dry_run": false}));
    assert_eq!(pass["removed"].as_array().unwrap().len(), 1, "{pass}");
    assert_eq!(
        old.count(),
        0,
        "revoked at the endpoint the reload replaced"
    );
    assert_eq!(new.count(), 1);
    assert_eq!(new.requests()[0].1["token"], "SECRET-rt-revoked");
    assert!(daemon.stop().success());
}

#[test]
fn sighup_with_a_broken_file_keeps_the_running_configuration_and_says_why() {
    let policy =
        |grace: &str| format!("{NO_REFRESH}[cleanup]\nexpired_unrefreshable_grace = \"{grace}\"\n");
    let mut daemon = Daemon::prepare(&policy("1h"), &[]);
    let mut notify = NotifySocket::bind(daemon.dir());
    daemon.set_env("NOTIFY_SOCKET", notify.path());
    daemon.launch();
    let mut c = daemon.client();
    c.save(unrefreshable());
    assert_eq!(dry_run(&mut c).len(), 1);

    // Not TOML at all.
    write_config(&daemon, "[cleanup\nexpired_unrefreshable_grace = \"off\"\n");
    let ready = reload(&daemon, &mut notify);
    assert!(ready.contains("last reload failed"), "{ready:?}");
    assert_eq!(dry_run(&mut c).len(), 1, "the running policy stays");
    // TOML, with a bad value among good ones: none of it applies.
    write_config(
        &daemon,
        "[cleanup]\nexpired_unrefreshable_grace = \"off\"\n[refresh]\nbudget = 0\n",
    );
    let ready = reload(&daemon, &mut notify);
    assert!(ready.contains("refresh.budget"), "{ready:?}");
    assert_eq!(dry_run(&mut c).len(), 1, "the running policy stays");
    let log = daemon.log();
    assert!(log.contains("configuration reload refused"), "{log}");
    assert!(log.contains("TOML parse error"), "{log}");
    assert!(log.contains("refresh.budget"), "{log}");

    // Fixed: it applies, and the status line forgets the failure.
    write_config(&daemon, &policy("off"));
    let ready = reload(&daemon, &mut notify);
    assert!(!ready.contains("failed"), "{ready:?}");
    assert_eq!(dry_run(&mut c), Vec::<String>::new());
    assert!(daemon.stop().success());
}

#[test]
fn sighup_refuses_new_socket_and_database_paths_and_applies_nothing() {
    let mut daemon = Daemon::prepare("", &[]);
    let config = |socket: &Path, db: &Path, grace: &str| {
        format!(
            "[socket]\npath = {socket:?}\n[store]\npath = {db:?}\n{NO_REFRESH}\
             [cleanup]\nexpired_unrefreshable_grace = \"{grace}\"\n"
        )
    };
    write_config(&daemon, &config(&daemon.socket(), &daemon.db(), "off"));
    let mut notify = NotifySocket::bind(daemon.dir());
    // Without --socket and --db, which would win over the file.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokend"));
    cmd.arg("serve")
        .arg("--config")
        .arg(daemon.dir().join("tokend.toml"))
        .env_clear()
        .env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", notify.path())
        .stdout(Stdio::null());
    daemon.spawn_command(cmd);
    daemon.wait_ready();
    let mut c = daemon.client();
    c.save(unrefreshable());

    let elsewhere = daemon.dir().join("elsewhere");
    let moved = config(&elsewhere.join("s.sock"), &elsewhere.join("t.db"), "1h");
    write_config(&daemon, &moved);
    let ready = reload(&daemon, &mut notify);
    assert!(ready.contains("socket.path, store.path"), "{ready:?}");
    assert_eq!(
        dry_run(&mut c),
        Vec::<String>::new(),
        "the policy did not apply either"
    );
    let log = daemon.log();
    assert!(log.contains("can only change at a restart"), "{log}");
    assert!(!elsewhere.exists());
    assert!(daemon.stop().success());
}

/// The units as shipped, with ExecStart pointing at the built binary (verify checks it
/// exists), must verify without a single warning.
#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let Some(analyze) = find_program("systemd-analyze") else {
        eprintln!(
            "skipped: systemd-analyze is not installed (Debian: apt-get install systemd; .ci/run installs it)"
        );
        return;
    };
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_tokend");
    let copy = |from: &str, to: &Path, exec: &str| {
        let text = std::fs::read_to_string(units.join(from)).unwrap();
        assert!(
            text.contains(exec) || !from.ends_with(".service"),
            "{from} runs {exec}"
        );
        std::fs::write(to, text.replace(exec, bin)).unwrap();
    };
    std::fs::create_dir(dir.path().join("user")).unwrap();
    let runtime = dir.path().join("xdg-runtime");
    std::fs::create_dir(&runtime).unwrap();
    for (mode, files, exec) in [
        (
            "--system",
            ["tokend.service", "tokend.socket"],
            "/usr/local/bin/tokend",
        ),
        (
            "--user",
            ["user/tokend.service", "user/tokend.socket"],
            "%h/.cargo/bin/tokend",
        ),
    ] {
        let paths: Vec<PathBuf> = files.iter().map(|f| dir.path().join(f)).collect();
        for (file, path) in files.iter().zip(&paths) {
            copy(file, path, exec);
        }
        let out = Command::new(&analyze)
            .arg(mode)
            .arg("verify")
            .args(&paths)
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("HOME", dir.path())
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "systemd-analyze {mode} verify failed:\n{said}"
        );
        assert_eq!(said.trim(), "", "systemd-analyze {mode} verify warned");
    }
    let sysusers = std::fs::read_to_string(units.join("sysusers.d/tokend.conf")).unwrap();
    assert!(
        sysusers.lines().any(|l| l.trim() == "g tokend -"),
        "{sysusers}"
    );
}
