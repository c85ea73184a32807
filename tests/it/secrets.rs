//! No token value or client secret ever reaches the daemon's log (at trace level, the most
//! it can say) or an error message, whatever the client sends; and no value a client
//! chose can forge a log line.

use serde_json::{json, Value};

use crate::fake_zoho::{grant, FakeZoho};
use crate::helpers::{id_of, Client, Daemon};

/// The refresher on, against an accounts server that refuses every connection, so that
/// its failure paths log too.
const UNREACHABLE_ACCOUNTS: &str = "[refresh]\naccounts_url = \"http://127.0.0.1:1\"\n";

/// Every secret value in this file starts with this, so one search finds any leak.
const MARK: &str = "SECRET-";

fn secret_token(n: usize) -> Value {
    json!({
        "user_name": format!("secrets-{n}@example.com:1"),
        "client_id": format!("1000.SECRETSCLIENT{n}"),
        "client_secret": format!("SECRET-client-secret-{n}"),
        "refresh_token": format!("SECRET-refresh-{n}"),
        "access_token": format!("SECRET-access-{n}"),
        "grant_token": format!("SECRET-grant-{n}"),
        "expiry_time": "1795330406683",
        "redirect_url": "https://example.com/callback",
        // Not one of Zoho's domains: with the refresher on, only the configured (loopback)
        // accounts server is ever asked.
        "api_domain": "https://crm.example.test",
    })
}

/// Sends raw bytes and checks the error reply says nothing secret.
fn bad_raw(c: &mut Client, line: &[u8]) {
    let mut bytes = line.to_vec();
    bytes.push(b'\n');
    c.send(&bytes).unwrap();
    let reply = c.read_reply();
    assert_eq!(reply["ok"], false, "{reply}");
    assert_clean(&reply);
}

/// A reply must not repeat a secret the client sent, except inside a returned token.
fn assert_clean(reply: &Value) {
    if reply["ok"] == false {
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(
            !message.contains(MARK),
            "an error message holds a secret: {reply}"
        );
    }
}

/// Exercises every operation and every kind of error with secret-bearing tokens.
fn session(daemon: &Daemon) {
    let mut c = daemon.client();
    // Every operation.
    let a = c.save(secret_token(1));
    let b = c.save(secret_token(2));
    assert_eq!(
        a["refresh_token"], "SECRET-refresh-1",
        "the reply does carry the token"
    );
    c.save(json!({"id": a["id"], "access_token": "SECRET-access-1b", "expiry_time": 1_795_330_999_999_u64}));
    c.save(json!({"client_id": "1000.SECRETSCLIENT2", "client_secret": "SECRET-client-secret-2", "refresh_token": "SECRET-refresh-2", "access_token": "SECRET-access-2b"}));
    c.save(json!({"client_id": "1000.X", "client_secret": "SECRET-client-secret-new", "grant_token": "SECRET-grant-new"}));
    c.find(json!({"user_name": "secrets-1@example.com:1"}));
    c.find(json!({"access_token": "SECRET-access-1b"}));
    c.find(json!({"access_token": "SECRET-access-nomatch"}));
    c.find(json!({"client_id": "1000.SECRETSCLIENT1", "client_secret": "SECRET-client-secret-1", "grant_token": "SECRET-grant-1"}));
    c.find(json!({"client_id": "1000.SECRETSCLIENT1", "client_secret": "SECRET-client-secret-1", "grant_token": "SECRET-grant-nomatch", "refresh_token": "SECRET-refresh-2"}));
    c.find(json!({"refresh_token": "SECRET-refresh-1"}));
    c.find_by_id(&id_of(&a));
    c.find_by_id("SECRET-not-an-id-but-who-knows");
    c.ok(json!({"op": "get_tokens"}));
    c.ok(json!({"op": "get_tokens", "limit": 1}));
    c.ok(json!({"op": "get_tokens", "limit": 1, "after": id_of(&a)}));
    c.ping();
    assert!(c.delete(&id_of(&b)));

    // Every kind of error, each carrying secrets.
    let errors = [
        // incomplete_token
        json!({"op": "save_token", "token": {"user_name": "ghost@example.com:1", "client_id": "1000.G", "client_secret": "SECRET-client-secret-ghost"}}),
        // a second row for user A (token 3's id with A's user name)
        json!({"op": "save_token", "token": {"id": id_of(&c.save(secret_token(3))), "user_name": "secrets-1@example.com:1", "refresh_token": "SECRET-refresh-conflict", "client_secret": "SECRET-client-secret-conflict"}}),
        // ill-typed fields next to secrets
        json!({"op": "save_token", "token": {"refresh_token": "SECRET-refresh-typed", "access_token": 5}}),
        json!({"op": "save_token", "token": {"refresh_token": "SECRET-refresh-expiry", "expiry_time": "SECRET-expiry"}}),
        json!({"op": "save_token", "token": {"refresh_token": ["SECRET-refresh-in-array"]}}),
        json!({"op": "save_token", "token": {"client_secret": {"SECRET-client-secret-key": "SECRET-client-secret-value"}}}),
        // unknown fields and arguments holding secrets
        json!({"op": "save_token", "token": {"refresh_tokn": "SECRET-refresh-typo"}}),
        json!({"op": "save_token", "token": secret_token(4), "force": "SECRET-refresh-as-value"}),
        json!({"op": "find_token", "token": "SECRET-access-as-token"}),
        json!({"op": "find_token_by_id", "token_id": {"SECRET-refresh-id": 1}}),
        json!({"op": "get_tokens", "after": ["SECRET-access-after"]}),
        json!({"op": "get_tokens", "limit": "SECRET-access-limit"}),
        json!({"op": "ping", "grant_token": "SECRET-grant-stray"}),
    ];
    for request in errors {
        let reply = c.request(request);
        assert_eq!(reply["ok"], false, "{reply}");
        assert_clean(&reply);
    }
    // Unparseable lines full of secrets.
    bad_raw(
        &mut c,
        br#"{"op":"save_token","token":{"refresh_token":"SECRET-refresh-badjson","#,
    );
    bad_raw(&mut c, br#"{"op":"save_token","token":{"refresh_token":"SECRET-refresh-trailing"}} SECRET-access-trailing"#);
    bad_raw(
        &mut c,
        br#"{"op":"save_token","token":{"access_token":SECRET-access-bare}}"#,
    );
    bad_raw(
        &mut c,
        b"{\"op\":\"save_token\",\"token\":{\"refresh_token\":\"SECRET-refresh-utf8\xff\"}}",
    );
    bad_raw(
        &mut c,
        b"{\"op\":\"save_token\",\"token\":{\"refresh_token\":\"SECRET-refresh-nul\0\"}}",
    );
    bad_raw(
        &mut c,
        br#"{"op":"save_token","token":{"refresh_token":"SECRET-refresh-surrogate\ud800"}}"#,
    );
    let deep = format!(
        r#"{{"op":"save_token","token":{{"refresh_token":"SECRET-refresh-deep","grant_token":{}{}}}}}"#,
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    bad_raw(&mut c, deep.as_bytes());
    let huge = format!(
        r#"{{"op":"save_token","token":{{"refresh_token":"SECRET-refresh-huge{}"}}}}"#,
        "SECRET-access-huge".repeat(10_000)
    );
    bad_raw(&mut c, huge.as_bytes());
    // A half line with secrets, then gone.
    let mut gone = daemon.client();
    gone.send(br#"{"op":"save_token","token":{"refresh_token":"SECRET-refresh-half","client_secret":"SECRET-client-secret-half"#)
        .unwrap();
    drop(gone);
    c.ok(json!({"op": "delete_tokens"}));
    c.ping();
}

#[test]
fn no_secret_in_the_trace_log_after_every_op_and_error() {
    let mut daemon = Daemon::start();
    session(&daemon);
    daemon.restart();
    daemon.client().save(secret_token(9));
    daemon
        .client()
        .find(json!({"access_token": "SECRET-access-9"}));
    let status = daemon.stop();
    assert!(status.success(), "{status}");
    let log = daemon.log();
    assert!(
        log.contains("DEBUG") || log.contains("TRACE"),
        "the daemon logged at trace level (else this test proves nothing):\n{log}"
    );
    let leaks: Vec<&str> = log.lines().filter(|l| l.contains(MARK)).collect();
    assert!(
        leaks.is_empty(),
        "secrets in the daemon's log:\n{}",
        leaks.join("\n")
    );
}

#[test]
fn no_secret_in_the_log_at_the_default_level_either() {
    let mut daemon = Daemon::start_with_env(&[("RUST_LOG", "info")]);
    session(&daemon);
    let status = daemon.stop();
    assert!(status.success(), "{status}");
    let log = daemon.log();
    assert!(!log.contains(MARK), "secrets in the daemon's log:\n{log}");
}

#[test]
fn no_secret_in_the_log_when_refreshes_fail() {
    let mut daemon = Daemon::start_with(UNREACHABLE_ACCOUNTS, &[]);
    session(&daemon);
    let mut c = daemon.client();
    // Past expiry: the refresher tries at once, and so do these operations.
    let mut due = secret_token(7);
    due["expiry_time"] = json!("1");
    let id = id_of(&c.save(due));
    for request in [
        json!({"op": "refresh", "token_id": id}),
        json!({"op": "access_token", "token_id": id}),
        json!({"op": "access_token", "user_name": "secrets-7@example.com:1"}),
        json!({"op": "status"}),
    ] {
        let reply = c.request(request);
        assert_clean(&reply);
    }
    drop(c);
    let status = daemon.stop();
    assert!(status.success(), "{status}");
    let log = daemon.log();
    let leaks: Vec<&str> = log.lines().filter(|l| l.contains(MARK)).collect();
    assert!(
        leaks.is_empty(),
        "secrets in the daemon's log:\n{}",
        leaks.join("\n")
    );
}

#[test]
fn no_secret_in_the_log_when_refreshes_succeed_or_are_refused() {
    // Rotates the refresh token on success; declares a refresh token ending in `-dead` dead.
    let zoho = FakeZoho::start(|_, form, n| {
        let refresh = form.get("refresh_token").cloned().unwrap_or_default();
        if refresh.ends_with("-dead") {
            (200, json!({"error": "invalid_code"}).to_string())
        } else {
            grant(
                &format!("SECRET-access-refreshed-{n}"),
                Some(&format!("SECRET-refresh-rotated-{n}")),
            )
        }
    });
    // A URL may carry a password (for a proxy, say): it must not be logged either.
    let url = zoho
        .url
        .replace("http://", "http://tokend:SECRET-password@");
    let config = format!("[refresh]\naccounts_url = \"{url}\"\n");
    let mut daemon = Daemon::start_with(&config, &[]);
    let mut c = daemon.client();
    let mut live = secret_token(5);
    live["expiry_time"] = json!("1");
    let live = id_of(&c.save(live));
    let mut dead = secret_token(6);
    dead["expiry_time"] = json!("1");
    dead["refresh_token"] = json!("SECRET-refresh-6-dead");
    let dead = id_of(&c.save(dead));
    for request in [
        json!({"op": "refresh", "token_id": live}),
        json!({"op": "access_token", "token_id": live}),
        json!({"op": "refresh", "token_id": dead}),
        json!({"op": "access_token", "token_id": dead}),
        json!({"op": "status"}),
    ] {
        let reply = c.request(request);
        assert_clean(&reply);
    }
    assert!(zoho.count() >= 2, "the accounts server was asked");
    drop(c);
    let status = daemon.stop();
    assert!(status.success(), "{status}");
    let log = daemon.log();
    let leaks: Vec<&str> = log.lines().filter(|l| l.contains(MARK)).collect();
    assert!(
        leaks.is_empty(),
        "secrets in the daemon's log:\n{}",
        leaks.join("\n")
    );
}

#[test]
fn a_value_a_client_chose_cannot_forge_a_log_line() {
    // The refresher fails (nothing listens) and logs the token id; a dry-run cleanup writes
    // its audit line with the user name and client id. Each carries a newline.
    let config = "[refresh]\naccounts_url = \"http://127.0.0.1:1\"\n\
                  [cleanup]\nenabled = false\nmax_session_age = \"1ms\"\n";
    let mut daemon = Daemon::start_with(config, &[("RUST_LOG", "info")]);
    let mut c = daemon.client();
    let mut t = secret_token(1);
    t["id"] = json!("id\nFORGED token refreshed");
    t["user_name"] = json!("user\nFORGED session ended");
    t["client_id"] = json!("client\nFORGED session ended");
    t["expiry_time"] = json!("1");
    c.save(t);
    c.request(json!({"op": "refresh", "token_id": "id\nFORGED token refreshed"}));
    crate::inproc::eventually("the session's age to pass 1 ms", || {
        let pass = c.ok(json!({"op": "cleanup", "dry_run": true}));
        !pass["removed"].as_array().unwrap().is_empty()
    });
    drop(c);
    assert!(daemon.stop().success());
    let log = daemon.log();
    for logged in [
        r"id\nFORGED token refreshed",
        r"user\nFORGED session ended",
        r"client\nFORGED session ended",
    ] {
        assert!(log.contains(logged), "{logged} not logged, escaped:\n{log}");
    }
    // The audit line is marked, as text logs show no targets.
    let audit = log.lines().find(|l| l.contains("session would be ended"));
    assert!(audit.is_some_and(|l| l.contains("audit=true")), "{log}");
    let forged: Vec<&str> = log.lines().filter(|l| l.starts_with("FORGED")).collect();
    assert!(
        forged.is_empty(),
        "forged log lines:\n{}",
        forged.join("\n")
    );
}
