//! tokend as a systemd service: readiness and stopping notifications on a stand-in
//! notify socket, the watchdog, a listening socket passed by the service manager, a
//! SIGTERM in the middle of a burst, and `systemd-analyze verify` on the units in
//! `systemd/`. SIGHUP reloads have their own file, `reload.rs`.

use std::collections::{BTreeSet, HashSet};
use std::io::{ErrorKind, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::helpers::{check_reply_shape, token, Client, Daemon, NotifySocket, QUIET, READ_TIMEOUT};
use crate::inproc::eventually;

fn count_lines(messages: &[String], line: &str) -> usize {
    messages
        .iter()
        .filter(|m| m.lines().any(|l| l == line))
        .count()
}

#[test]
fn ready_comes_once_the_socket_accepts_and_stopping_comes_on_sigterm() {
    let mut daemon = Daemon::prepare(QUIET, &[]);
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
    let mut daemon = Daemon::prepare(QUIET, &[]);
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
    let mut daemon = Daemon::prepare(QUIET, &[]);
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
    let mut daemon = Daemon::prepare(QUIET, &[]);
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
    let mut daemon = Daemon::prepare(QUIET, &[]);
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
    // The socket file appears at bind(), before listen(): poll the connect itself.
    let mut c = None;
    eventually("the activation socket listening", || {
        c = Client::try_connect(&passed);
        c.is_some()
    });
    let mut c = c.expect("connected");
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

/// The system calls in a `systemd-analyze syscall-filter` set, nested sets expanded.
fn syscalls_in(analyze: &Path, set: &str) -> BTreeSet<String> {
    let out = Command::new(analyze)
        .args(["syscall-filter", set])
        .output()
        .unwrap();
    assert!(out.status.success(), "systemd-analyze syscall-filter {set}");
    let mut calls = BTreeSet::new();
    for line in String::from_utf8(out.stdout).unwrap().lines().skip(1) {
        match line.trim() {
            "" => {}
            l if l.starts_with('#') => {}
            l if l.starts_with('@') => calls.extend(syscalls_in(analyze, l)),
            l => {
                calls.insert(l.to_owned());
            }
        }
    }
    calls
}

/// The system unit's `SystemCallFilter=` lines, applied in order as systemd does when
/// the first is an allow list: later lines add, `~` lines take away. With
/// `TOKEND_SOCKET__GROUP` set, the daemon gives its socket that group (`chown`): a
/// filter without it fails every start that is not socket-activated.
#[test]
fn the_system_units_syscall_filter_lets_the_daemon_give_its_socket_a_group() {
    let Some(analyze) = find_program("systemd-analyze") else {
        eprintln!("skipped: systemd-analyze is not installed (.ci/run installs it)");
        return;
    };
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/tokend.service"),
    )
    .unwrap();
    assert!(
        unit.contains("TOKEND_SOCKET__GROUP="),
        "the unit no longer sets a group"
    );
    let mut allowed = BTreeSet::new();
    for (n, filter) in unit
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
        .enumerate()
    {
        let (deny, sets) = match filter.strip_prefix('~') {
            Some(sets) => (true, sets),
            None => (false, filter),
        };
        assert!(n > 0 || !deny, "the first filter is an allow list");
        for set in sets.split_whitespace() {
            let calls = syscalls_in(&analyze, set);
            if deny {
                allowed.retain(|c| !calls.contains(c));
            } else {
                allowed.extend(calls);
            }
        }
    }
    let chown = syscalls_in(&analyze, "@chown");
    let missing: Vec<&String> = chown.iter().filter(|c| !allowed.contains(*c)).collect();
    assert!(missing.is_empty(), "the unit's filter denies {missing:?}");
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
