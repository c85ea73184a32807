//! Connection limits: a client past `max_connections`, or past its user's share
//! (`max_connections_per_user`), is answered `busy` and disconnected, and everyone
//! already connected goes on being served.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
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
/// client leave, the readiness check's included), up to a generous deadline.
fn let_in(daemon: &Daemon) -> Client {
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
    // No socket group: the daemon's own user (this test's) is limited by
    // max_connections only, not by its share.
    let config = format!("{QUIET}[socket]\nmax_connections = 3\nmax_connections_per_user = 1\n");
    let daemon = Daemon::start_with(&config, &[]);
    let first = let_in(&daemon);
    let mut second = let_in(&daemon);
    let _also = let_in(&daemon);
    let message = turned_away(daemon.client());
    assert!(message.contains("connection limit"), "{message}");
    assert!(
        !message.contains("user"),
        "not the per-user limit: {message}"
    );
    second.ping();
    drop(first);
    let mut third = let_in(&daemon);
    third.ping();
    second.ping();
}

/// Python that opens `n` connections to the socket, asks each for a ping, prints each
/// reply line, and holds the connections until its stdin closes.
const HOLD: &str = r#"
import socket, sys
path, n = sys.argv[1], int(sys.argv[2])
held = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(path)
    try:
        s.sendall(b'{"op":"ping"}\n')
    except BrokenPipeError:
        pass  # turned away: the daemon's reply is waiting all the same
    print(s.makefile().readline().strip(), flush=True)
    held.append(s)
sys.stdin.read()
"#;

/// A process of user `uid`, in the socket's group (root), holding `n` connections; and
/// the reply each got to a ping. `None` if python3 cannot be run.
fn hold_as(uid: u32, daemon: &Daemon, n: usize) -> Option<(Child, Vec<Value>)> {
    let mut child = Command::new("python3")
        .args(["-c", HOLD])
        .arg(daemon.socket())
        .arg(n.to_string())
        .uid(uid)
        .gid(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let replies = (0..n)
        .map(|_| {
            let line = lines.next().expect("a reply line").unwrap();
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
        })
        .collect();
    Some((child, replies))
}

#[test]
fn a_user_at_its_share_is_told_busy_and_other_users_still_get_in() {
    // Other users need root to play, and a socket group to be let in at all.
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: connecting as other users needs root");
        return;
    }
    let config = format!(
        "{QUIET}[socket]\ngroup = \"root\"\nmax_connections = 8\nmax_connections_per_user = 2\n"
    );
    let mut daemon = Daemon::prepare(&config, &[]);
    std::fs::set_permissions(daemon.dir(), std::fs::Permissions::from_mode(0o750)).unwrap();
    daemon.launch();
    let Some((_nobody, replies)) = hold_as(65534, &daemon, 2) else {
        eprintln!("skipped: python3 cannot be run to connect as another user");
        return;
    };
    assert!(replies.iter().all(|r| r["ok"] == true), "{replies:?}");
    let (_third, replies) = hold_as(65534, &daemon, 1).unwrap();
    assert_eq!(replies[0]["error"]["code"], "busy", "{replies:?}");
    let message = replies[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("for your user"), "{message}");
    let (_other, replies) = hold_as(65533, &daemon, 1).unwrap();
    assert_eq!(replies[0]["ok"], true, "another user gets in: {replies:?}");
    // With a socket group, the daemon's own user (root here) has its share too.
    let _own = [let_in(&daemon), let_in(&daemon)];
    let message = turned_away(daemon.client());
    assert!(message.contains("for your user"), "{message}");
    assert!(
        daemon.log().contains("the user is at its connection limit"),
        "the refusal is logged"
    );
}
