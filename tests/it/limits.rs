//! Connection limits: a client past `max_connections`, or past its user's share
//! (`max_connections_per_user`), is answered `busy` and disconnected, and everyone
//! already connected goes on being served.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{Client, Daemon, QUIET};

/// Checks that a new client is answered `busy` and hung up on; returns the message. It
/// asks for a ping, so a client wrongly let in fails at once rather than on a timeout.
fn turned_away(mut c: Client) -> String {
    // The daemon may have hung up already: its reply is waiting all the same.
    let _ = c.send(b"{\"op\":\"ping\"}\n");
    let reply = c.read_reply();
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "busy", "{reply}");
    assert_eq!(c.read_line(), None, "the daemon hangs up after `busy`");
    reply["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Connects until a client is let in (the daemon frees a place only once it has seen a
/// client leave), up to a generous deadline.
fn let_in_again(daemon: &Daemon) -> Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut c = daemon.client();
        // Not `request`: a `busy` reply carries no seq.
        let _ = c.send(b"{\"op\":\"ping\"}\n");
        let reply = c.read_reply();
        if reply["ok"] == Value::Bool(true) {
            return c;
        }
        assert_eq!(reply["error"]["code"], "busy", "{reply}");
        assert!(
            Instant::now() < deadline,
            "the freed place was never given back"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn past_the_connection_limit_a_client_is_told_busy_and_a_freed_place_is_used_again() {
    let config = format!("{QUIET}[socket]\nmax_connections = 2\nmax_connections_per_user = 2\n");
    let daemon = Daemon::start_with(&config, &[]);
    let mut first = daemon.client();
    let mut second = daemon.client();
    first.ping();
    second.ping();
    let message = turned_away(daemon.client());
    assert!(message.contains("connection limit"), "{message}");
    assert!(
        !message.contains("user"),
        "not the per-user limit: {message}"
    );
    second.ping();
    drop(first);
    let mut third = let_in_again(&daemon);
    third.ping();
    second.ping();
}

#[test]
fn a_user_at_its_share_is_told_busy_and_another_user_still_gets_in() {
    // Another user needs root to play, and a socket group to be let in at all.
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: connecting as another user needs root");
        return;
    }
    let config = format!(
        "{QUIET}[socket]\ngroup = \"root\"\nmax_connections = 4\nmax_connections_per_user = 2\n"
    );
    let daemon = Daemon::prepare(&config, &[]);
    std::fs::set_permissions(daemon.dir(), std::fs::Permissions::from_mode(0o750)).unwrap();
    let mut daemon = daemon;
    daemon.launch();
    let mut held = [daemon.client(), daemon.client()];
    for c in &mut held {
        c.ping();
    }
    let message = turned_away(daemon.client());
    assert!(message.contains("for your user"), "{message}");
    // `nobody`, in the socket's group, asks for the daemon's status: let in.
    let status = Command::new(env!("CARGO_BIN_EXE_tokend"))
        .arg("status")
        .arg("--config")
        .arg(daemon.dir().join("tokend.toml"))
        .arg("--socket")
        .arg(daemon.socket())
        .env_clear()
        .uid(65534)
        .gid(0)
        .output()
        .expect("run tokend status as nobody");
    assert!(
        status.status.success(),
        "another user was not let in: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    for c in &mut held {
        c.ping();
    }
    assert!(
        daemon.log().contains("the user is at its connection limit"),
        "the refusal is logged"
    );
}
