//! The daemon's life: clean stops on SIGTERM and SIGINT, restarts that keep every token,
//! durability of acknowledged saves across SIGKILL, the socket file's permissions, a
//! stale socket left by a killed daemon, a second daemon refused on a live socket, and
//! socket directories others could tamper with refused.

use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::helpers::{fields, id_of, run_to_exit, token, Daemon, FIELDS};

/// Every stored token with its ten fields and the meta that must survive a restart.
fn full_snapshot(daemon: &Daemon) -> Vec<Value> {
    let mut c = daemon.client();
    let mut all: Vec<Value> = c
        .all()
        .into_iter()
        .map(|t| {
            let mut kept = fields(&t);
            kept["created_at"] = t["meta"]["created_at"].clone();
            kept["updated_at"] = t["meta"]["updated_at"].clone();
            kept["state"] = t["meta"]["state"].clone();
            kept
        })
        .collect();
    all.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    all
}

#[test]
fn sigterm_exits_zero_removes_the_socket_and_a_restart_keeps_every_token() {
    let mut daemon = Daemon::start();
    let mut c = daemon.client();
    for n in 0..15 {
        c.save(token("restart", n));
    }
    // Some tokens updated, one deleted, so the restart must keep the latest state.
    c.save(json!({"user_name": "restart-user-3@example.com:20063", "access_token": "1000.restart.new"}));
    let gone = c.find(json!({"user_name": "restart-user-7@example.com:20067"}));
    assert!(c.delete(&id_of(&gone)));
    drop(c);
    let before = full_snapshot(&daemon);
    assert_eq!(before.len(), 14);

    let status = daemon.stop();
    assert_eq!(status.code(), Some(0), "exit status on SIGTERM: {status}");
    assert!(
        !daemon.socket().exists(),
        "the socket file is removed on the way out"
    );
    daemon.launch();
    assert_eq!(full_snapshot(&daemon), before);
    let mut c = daemon.client();
    assert_eq!(c.count(), 14);
    assert_eq!(
        c.find(json!({"user_name": "restart-user-3@example.com:20063"}))["access_token"],
        "1000.restart.new"
    );
    // And again: a second restart is as good as the first.
    drop(c);
    daemon.restart();
    assert_eq!(full_snapshot(&daemon), before);
}

#[test]
fn sigint_also_exits_zero() {
    let mut daemon = Daemon::start();
    daemon.client().save(token("sigint", 1));
    daemon.signal(Signal::SIGINT);
    let status = daemon.wait_exit();
    assert_eq!(status.code(), Some(0), "exit status on SIGINT: {status}");
    assert!(!daemon.socket().exists());
    daemon.launch();
    assert_eq!(daemon.client().count(), 1);
}

#[test]
fn sigterm_answers_requests_in_flight_and_keeps_what_it_acknowledged() {
    let mut daemon = Daemon::start();
    let mut c = daemon.client();
    let n = 200;
    let mut bytes = Vec::new();
    for i in 0..n {
        let request = json!({"op": "save_token", "seq": i, "token": token("inflight", i)});
        bytes.extend_from_slice(request.to_string().as_bytes());
        bytes.push(b'\n');
    }
    c.send(&bytes).unwrap();
    // The first reply proves the daemon is reading this connection.
    let first = c.read_reply();
    assert_eq!(first["seq"], 0, "{first}");
    assert_eq!(first["ok"], true, "{first}");
    daemon.signal(Signal::SIGTERM);
    // Replies keep coming in order until the daemon closes the connection. Each is a
    // success or a refusal to take new work; no reply is lost in the middle.
    let mut acknowledged = vec![first["result"]["token"].clone()];
    let mut expected_seq = 1;
    let mut refused = false;
    while let Some(line) = c.read_line() {
        let reply: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(reply["seq"], expected_seq, "replies in order: {reply}");
        expected_seq += 1;
        if reply["ok"] == true {
            assert!(
                !refused,
                "a save succeeded after an earlier one was refused: {reply}"
            );
            acknowledged.push(reply["result"]["token"].clone());
        } else {
            assert_eq!(reply["error"]["code"], "shutting_down", "{reply}");
            refused = true;
        }
    }
    let status = daemon.wait_exit();
    assert_eq!(status.code(), Some(0), "exit status on SIGTERM: {status}");
    daemon.launch();
    let mut c = daemon.client();
    for stored in &acknowledged {
        assert_eq!(
            fields(&c.find_by_id(&id_of(stored))),
            fields(stored),
            "an acknowledged save was lost"
        );
    }
    assert!(c.count() >= acknowledged.len() as u64);
}

#[test]
fn an_acknowledged_save_survives_sigkill() {
    let mut daemon = Daemon::start();
    let mut c = daemon.client();
    let mut saved = Vec::new();
    for n in 0..5 {
        saved.push(c.save(token("durable", n)));
    }
    let updated = c.save(json!({"user_name": "durable-user-0@example.com:20060", "access_token": "1000.durable.new"}));
    saved[0] = updated;
    assert!(c.delete(&id_of(&saved[4])));
    let deleted = saved.pop().unwrap();
    daemon.kill();
    daemon.launch();
    let mut c = daemon.client();
    for stored in &saved {
        assert_eq!(fields(&c.find_by_id(&id_of(stored))), fields(stored));
        assert_eq!(
            fields(&c.find(json!({"user_name": stored["user_name"]}))),
            fields(stored)
        );
    }
    assert_eq!(
        c.find_by_id(&id_of(&deleted)),
        Value::Null,
        "the delete held"
    );
    assert_eq!(c.count(), 4);
}

#[test]
fn a_stale_socket_from_a_killed_daemon_does_not_stop_a_restart() {
    let mut daemon = Daemon::start();
    let stored = daemon.client().save(token("stale", 1));
    daemon.kill();
    let meta = std::fs::symlink_metadata(daemon.socket()).expect("SIGKILL leaves the socket file");
    assert!(meta.file_type().is_socket());
    daemon.launch();
    let mut c = daemon.client();
    assert_eq!(fields(&c.find_by_id(&id_of(&stored))), fields(&stored));
    // The new socket has the right mode too.
    let mode = std::fs::metadata(daemon.socket())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    // And it stops cleanly.
    drop(c);
    let status = daemon.stop();
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn a_second_daemon_on_a_live_socket_exits_non_zero_naming_the_socket() {
    let daemon = Daemon::start();
    let stored = daemon.client().save(token("second", 1));
    let before = daemon.client().snapshot();
    let (status, stderr) = run_to_exit(daemon.command(), &daemon.dir().join("second.log"));
    assert!(
        !status.success(),
        "a second daemon started: {status}\n{stderr}"
    );
    assert!(
        status.code().is_some(),
        "a second daemon died by signal: {status}"
    );
    let socket = daemon.socket().display().to_string();
    assert!(
        stderr.contains(&socket),
        "the second daemon's message names the socket {socket}:\n{stderr}"
    );
    // The first daemon still serves on its socket, with its data.
    assert!(daemon.socket().exists(), "the live socket was removed");
    let mut c = daemon.client();
    assert_eq!(fields(&c.find_by_id(&id_of(&stored))), fields(&stored));
    assert_eq!(c.snapshot(), before);
    // Also when the second daemon would use another database.
    let cmd = daemon.command_with_db(&daemon.dir().join("other").join("tokens.db"));
    let (status, stderr) = run_to_exit(cmd, &daemon.dir().join("third.log"));
    assert!(
        !status.success(),
        "a third daemon started: {status}\n{stderr}"
    );
    assert!(stderr.contains(&socket), "{stderr}");
    assert_eq!(daemon.client().snapshot(), before);
}

/// Runs a daemon whose database directory is a file, so it cannot start; returns its
/// stderr and the path it must name.
fn cannot_start(config: &str) -> (String, String) {
    // At the default level, as a person starting it by hand would see it.
    let daemon = Daemon::prepare(config, &[("RUST_LOG", "info")]);
    let file = daemon.dir().join("a-file");
    std::fs::write(&file, "").unwrap();
    let db = file.join("tokens.db");
    let (status, stderr) = run_to_exit(daemon.command_with_db(&db), &daemon.dir().join("e.log"));
    assert_eq!(status.code(), Some(1), "{stderr}");
    (stderr, file.display().to_string())
}

#[test]
fn a_daemon_that_cannot_start_says_why_once() {
    let (stderr, named) = cannot_start(crate::helpers::QUIET);
    assert_eq!(
        stderr.matches(&named).count(),
        1,
        "said more than once:\n{stderr}"
    );
    assert!(stderr.starts_with("tokend: "), "{stderr}");
    // A JSON log is read by programs: they get it as a record too.
    let json = format!("[log]\nformat = \"json\"\n{}", crate::helpers::QUIET);
    let (stderr, named) = cannot_start(&json);
    let record = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| r["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no JSON error record:\n{stderr}"));
    let message = record["fields"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&named), "{record}");
}

#[test]
fn the_socket_is_0600_in_a_0700_directory_the_daemon_creates() {
    let daemon = Daemon::start();
    let dir = daemon.socket().parent().unwrap().to_owned();
    let dir_mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(
        dir_mode & 0o7777,
        0o700,
        "socket directory mode {dir_mode:o}"
    );
    let meta = std::fs::symlink_metadata(daemon.socket()).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o600,
        "socket mode {:o}",
        meta.permissions().mode()
    );
    // The database is private too: it holds refresh tokens.
    let db_dir_mode = std::fs::metadata(daemon.db().parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        db_dir_mode & 0o077,
        0,
        "database directory mode {db_dir_mode:o}"
    );
}

/// Runs a daemon whose socket directory was made by someone else, as `make_dir` leaves
/// it; it must refuse to start, name the directory and say why, and bind nothing there.
fn refused_socket_dir(make_dir: impl FnOnce(&Path), why: &str) {
    let daemon = Daemon::prepare(crate::helpers::QUIET, &[]);
    let dir = daemon.socket().parent().unwrap().to_owned();
    std::fs::create_dir(&dir).unwrap();
    make_dir(&dir);
    let (status, stderr) = run_to_exit(daemon.command(), &daemon.dir().join("refused.log"));
    assert!(!status.success(), "started in {}: {stderr}", dir.display());
    assert!(stderr.contains(&dir.display().to_string()), "{stderr}");
    assert!(stderr.contains(why), "{stderr}");
    assert!(!daemon.socket().exists(), "bound a socket there");
}

#[test]
fn a_socket_directory_others_can_write_into_is_refused() {
    refused_socket_dir(
        |dir| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap(),
        "writable by other users",
    );
}

#[test]
fn a_sticky_socket_directory_others_can_write_into_is_refused() {
    // As /tmp: nobody else can remove the live socket, but while tokend is down anyone
    // can bind the free path and receive what clients send.
    refused_socket_dir(
        |dir| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777)).unwrap(),
        "writable by other users",
    );
}

#[test]
fn a_socket_directory_owned_by_another_user_is_refused_even_if_sticky() {
    // Another user who made `/tmp/tokend-<uid>` first (the fallback path) could replace
    // the socket, or read what clients send: the sticky bit does not stop a directory's
    // owner. Making a directory someone else's takes root.
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: chown to another user needs root");
        return;
    }
    refused_socket_dir(
        |dir| {
            std::os::unix::fs::chown(dir, Some(65534), Some(65534)).unwrap();
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        },
        "owned by another user",
    );
}

#[test]
fn every_field_survives_a_restart_verbatim() {
    let mut daemon = Daemon::start();
    let mut c = daemon.client();
    let mut full = token("verbatim", 1);
    full["grant_token"] = json!("1000.verbatim.grant");
    let stored = c.save(full);
    for field in FIELDS {
        assert!(stored[field].is_string(), "every field set: {stored}");
    }
    drop(c);
    daemon.restart();
    assert_eq!(
        fields(&daemon.client().find_by_id(&id_of(&stored))),
        fields(&stored)
    );
}

#[test]
fn sigterm_with_idle_and_half_written_clients_closes_them_and_exits_zero() {
    let mut daemon = Daemon::start();
    let mut idle = daemon.client();
    idle.ping();
    let mut half = daemon.client();
    half.send(br#"{"op":"save_token","token":{"user_name":"half-at-stop@example.com:1","refresh_token":"1000.h""#)
        .unwrap();
    daemon.signal(Signal::SIGTERM);
    // Both connections are closed by the daemon, with nothing or an error for the half line.
    assert_eq!(idle.read_line(), None, "the idle connection is closed");
    if let Some(line) = half.read_line() {
        let reply: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(reply["ok"], false, "a half line was executed: {reply}");
    }
    let status = daemon.wait_exit();
    assert_eq!(status.code(), Some(0), "exit status on SIGTERM: {status}");
    daemon.launch();
    let mut c = daemon.client();
    assert_eq!(
        c.find(json!({"user_name": "half-at-stop@example.com:1"})),
        Value::Null
    );
    assert_eq!(c.count(), 0);
}

#[test]
fn a_client_that_never_reads_does_not_keep_the_daemon_from_stopping() {
    // A short shutdown timeout, so the test need not wait out the default 10 s.
    let config = format!(
        "[socket]\nshutdown_timeout = \"200ms\"\n{}",
        crate::helpers::QUIET
    );
    let mut daemon = Daemon::start_with(&config, &[]);
    let stored = daemon.client().save(token("unread", 1));
    // Requests until the daemon stops reading: its replies to this client have nowhere to go.
    let clogged = daemon.client();
    let mut raw = clogged.writer_clone();
    raw.set_nonblocking(true).unwrap();
    let line = format!(
        "{}\n",
        json!({"op": "find_token_by_id", "token_id": id_of(&stored)})
    );
    let flood = line.repeat(100_000).into_bytes();
    let mut written = 0;
    loop {
        match raw.write(&flood[written..]) {
            Ok(k) => written += k,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("write: {e}"),
        }
        assert!(written < flood.len(), "the daemon never pushed back");
    }
    let status = daemon.stop();
    assert_eq!(status.code(), Some(0), "exit status on SIGTERM: {status}");
    drop(clogged);
    daemon.launch();
    assert_eq!(
        fields(&daemon.client().find_by_id(&id_of(&stored))),
        fields(&stored)
    );
}

#[test]
fn refreshes_spent_before_a_crash_still_count_against_the_budget() {
    // Zoho counts every access token it minted, whatever happened to tokend after.
    let zoho = crate::fake_zoho::FakeZoho::granting();
    zoho.close_gate();
    let config = format!(
        "[refresh]\nenabled = false\nbudget = 1\naccounts_url = \"{}\"\n[cleanup]\nenabled = false\n",
        zoho.url
    );
    let mut daemon = Daemon::start_with(&config, &[]);
    let mut c = daemon.client();
    let id = id_of(&c.save(crate::refresh::refreshable("u", 1)));
    let (socket, asked) = (daemon.socket(), id.clone());
    let asking = std::thread::spawn(move || {
        let mut c = crate::helpers::Client::connect(&socket);
        c.send_json(&json!({"op": "refresh", "token_id": asked}));
        c.read_line()
    });
    // The provider has the request; tokend dies before it can record the answer.
    zoho.wait_for_count(1);
    daemon.kill();
    let _ = asking.join();
    zoho.open_gate();
    daemon.launch();
    let reply = daemon
        .client()
        .request(json!({"op": "refresh", "token_id": id}));
    assert_eq!(reply["error"]["code"], "throttled", "{reply}");
    assert_eq!(zoho.count(), 1, "asked the provider past the budget");
}

#[test]
fn saves_are_refused_once_the_database_file_is_deleted_or_replaced() {
    // SQLite would go on writing to the file it holds open, which nobody can open again:
    // every save acknowledged from then on would be gone at the next start.
    for what in ["deleted", "replaced"] {
        let daemon = Daemon::start();
        let mut c = daemon.client();
        let kept = c.save(token(what, 1));
        let db = daemon.db();
        if what == "replaced" {
            // A backup restored over it while tokend runs.
            let copy = daemon.dir().join("copy.db");
            std::fs::copy(&db, &copy).unwrap();
            std::fs::rename(&copy, &db).unwrap();
        } else {
            std::fs::remove_file(&db).unwrap();
        }
        let r = c.request(json!({"op": "save_token", "token": token(what, 2)}));
        assert_eq!(r["error"]["code"], "store_failure", "{r}");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(message.contains(what), "{message}");
        let log = daemon.log();
        let named = format!("{} was {what}", db.display());
        assert!(log.contains(&named), "the log names the file: {log}");
        // What it holds is still served.
        assert_eq!(c.find_by_id(&id_of(&kept))["id"], kept["id"]);
    }
}
