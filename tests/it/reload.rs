//! SIGHUP reloads, as systemd's `ExecReload` sends them: what a new file changes without a
//! restart (policies, refresh tuning, log level, provider endpoints), and what is refused
//! (a broken file, new socket or database paths) with the running configuration kept.

use std::path::Path;
use std::process::{Command, Stdio};

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::fake_zoho::FakeZoho;
use crate::helpers::{token, Client, Daemon, NotifySocket, QUIET};

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
    let before = format!("{QUIET}expired_unrefreshable_grace = \"off\"\n[log]\nlevel = \"info\"\n");
    // RUST_LOG empty: the level comes from the file.
    let mut daemon = Daemon::prepare(&before, &[("RUST_LOG", "")]);
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
         [cleanup]\nenabled = false\nexpired_unrefreshable_grace = \"1h\"\n[log]\nlevel = \"debug\"\n",
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
        format!("{QUIET}expired_unrefreshable_grace = \"1h\"\ndry_run = {dry_run}\n")
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
    let policy = |grace: &str| format!("{QUIET}expired_unrefreshable_grace = \"{grace}\"\n");
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
            "[socket]\npath = {socket:?}\n[store]\npath = {db:?}\n{QUIET}\
             expired_unrefreshable_grace = \"{grace}\"\n"
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

#[test]
fn a_rust_log_that_names_no_level_is_ignored_with_a_warning_not_obeyed_into_silence() {
    // Read as a filter, "warning" names a module and turns every other line off.
    let config = format!("{QUIET}[log]\nlevel = \"info\"\n");
    let daemon = Daemon::start_with(&config, &[("RUST_LOG", "warning")]);
    let log = daemon.log();
    assert!(log.contains("RUST_LOG ignored"), "{log}");
    assert!(log.contains("\\\"warning\\\" is not a level"), "{log}");
    assert!(log.contains("tokend ready"), "{log}");
}
