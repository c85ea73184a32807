//! The command line against a live daemon: every command, as text and as `--json`, the
//! exit statuses, masked secrets, and `token add` exchanging a grant code at a loopback
//! accounts server (never a real Zoho host: the API domain is not one of Zoho's).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::fake_zoho::FakeZoho;
use crate::helpers::{id_of, token, Daemon, QUIET};

/// Not one of Zoho's data centres, so no accounts server is built in for it.
const API_DOMAIN: &str = "https://crm.example.test";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }

    fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

/// `tokend ARGS` with this daemon's socket and config, `stdin` on standard input, and
/// only the environment given.
fn tokend_with(daemon: &Daemon, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokend"));
    cmd.arg("--socket")
        .arg(daemon.socket())
        .arg("--config")
        .arg(daemon.dir().join("tokend.toml"))
        .args(args);
    run(cmd, stdin, env)
}

fn tokend(daemon: &Daemon, args: &[&str]) -> Run {
    tokend_with(daemon, args, "", &[])
}

fn run(mut cmd: Command, stdin: &str, env: &[(&str, &str)]) -> Run {
    cmd.env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // A command may exit before it reads its input (a usage error, a daemon that is not
    // there): what some tests check. Its closed pipe is then no failure of the test.
    let written = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn secrets_of(t: &Value) -> Vec<String> {
    ["client_secret", "refresh_token", "access_token"]
        .iter()
        .filter_map(|f| t[f].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn status_reports_counts_as_text_and_json() {
    let daemon = Daemon::start();
    daemon.client().save(token("status", 1));
    let text = tokend(&daemon, &["status"]).ok().stdout;
    assert!(text.contains("tokens:   1 (1 active)"), "{text}");
    assert!(
        text.contains(&daemon.socket().display().to_string()),
        "{text}"
    );
    let j = tokend(&daemon, &["status", "--json"]).ok().json();
    assert_eq!(j["tokens"]["active"], 1, "{j}");
    assert_eq!(j["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(j["scheduled"], 0);
}

#[test]
fn control_characters_a_client_stored_reach_the_terminal_escaped() {
    // Any client of the socket can store a user_name that would clear the admin's
    // terminal, retitle it, or forge a row of the table.
    let daemon = Daemon::start();
    let hostile = "evil\u{1b}[2J\u{1b}]0;PWNED\u{7}\r\nfake row\u{9b}31m@x:1";
    let saved = daemon
        .client()
        .save(json!({"user_name": hostile, "client_id": "1000.C", "refresh_token": "1000.r"}));
    let id = id_of(&saved);
    let shown = tokend(&daemon, &["token", "show", &id]).ok().stdout;
    let outputs = [
        tokend(&daemon, &["tokens", "list"]).ok().stdout,
        shown.clone(),
        tokend(&daemon, &["tokens", "list", "--json"]).ok().stdout,
    ];
    for out in &outputs {
        let raw: Vec<char> = out
            .chars()
            .filter(|c| c.is_control() && *c != '\n')
            .collect();
        assert!(raw.is_empty(), "raw {raw:?} in:\n{out}");
    }
    assert!(shown.contains("evil\\u001b[2J"), "escaped visibly: {shown}");
    // The newline inside the value forged no row.
    assert_eq!(
        outputs[0].lines().count(),
        2,
        "a header and one row:\n{}",
        outputs[0]
    );
    // Scripts still get the stored value.
    let listed: Value = serde_json::from_str(&outputs[2]).unwrap();
    assert_eq!(listed[0]["user_name"], hostile);
}

#[test]
fn tokens_list_and_token_show_mask_secrets_unless_revealed() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let saved: Vec<Value> = (0..3).map(|n| c.save(token("list", n))).collect();
    let secrets: Vec<String> = saved.iter().flat_map(secrets_of).collect();

    let table = tokend(&daemon, &["tokens", "list"]).ok().stdout;
    let listed = tokend(&daemon, &["tokens", "list", "--json"]).ok();
    let shown = tokend(&daemon, &["token", "show", &id_of(&saved[1])])
        .ok()
        .stdout;
    let shown_json = tokend(&daemon, &["token", "show", &id_of(&saved[1]), "--json"]).ok();
    for out in [&table, &listed.stdout, &shown, &shown_json.stdout] {
        for secret in &secrets {
            assert!(
                !out.contains(secret.as_str()),
                "{secret} unmasked in:\n{out}"
            );
        }
    }
    assert_eq!(
        table.lines().count(),
        4,
        "a header and a row per token:\n{table}"
    );
    assert!(table.contains("list-user-2@example.com:20062"), "{table}");
    // "1000.list.refresh.0" is 19 characters: a quarter, 4, are shown.
    assert!(table.contains("1000…(19)"), "{table}");
    assert_eq!(listed.json().as_array().unwrap().len(), 3);
    assert!(shown.contains("…(20)"), "{shown}");
    assert_eq!(shown_json.json()["user_name"], saved[1]["user_name"]);

    let revealed = tokend(
        &daemon,
        &["token", "show", &id_of(&saved[1]), "--reveal", "--json"],
    )
    .ok()
    .json();
    for field in ["client_secret", "refresh_token", "access_token"] {
        assert_eq!(revealed[field], saved[1][field]);
    }
    let missing = tokend(&daemon, &["token", "show", "999"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("no token with id 999"),
        "{}",
        missing.stderr
    );
}

#[test]
fn token_delete_removes_one_and_an_unknown_id_fails() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let id = id_of(&c.save(token("delete", 1)));
    c.save(token("delete", 2));
    let out = tokend(&daemon, &["token", "delete", &id]).ok();
    assert_eq!(out.stdout, format!("deleted token {id}\n"));
    assert_eq!(c.count(), 1);
    let again = tokend(&daemon, &["token", "delete", &id, "--json"]);
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(
        again.stderr.contains("nothing was deleted"),
        "{}",
        again.stderr
    );
    let other = id_of(&c.find(json!({"user_name": "delete-user-2@example.com:20062"})));
    let j = tokend(&daemon, &["token", "delete", &other, "--json"])
        .ok()
        .json();
    assert_eq!(j["deleted"], true);
    assert_eq!(c.count(), 0);
}

#[test]
fn token_refresh_gets_a_new_access_token_from_the_accounts_server() {
    let zoho = FakeZoho::granting();
    let config = format!(
        "[refresh]\nenabled = false\naccounts_url = \"{}\"\n",
        zoho.url
    );
    let daemon = Daemon::start_with(&config, &[]);
    let mut t = token("refresh", 1);
    t["api_domain"] = json!(API_DOMAIN);
    let id = id_of(&daemon.client().save(t));
    let out = tokend(&daemon, &["token", "refresh", &id]).ok();
    assert!(
        out.stdout.starts_with(&format!(
            "refreshed token {id}: the access token expires in "
        )),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("SECRET-new-1"), "{}", out.stdout);
    assert_eq!(zoho.count(), 1);
    assert_eq!(
        daemon.client().find_by_id(&id)["access_token"],
        "SECRET-new-1"
    );
    let j = tokend(&daemon, &["token", "refresh", &id, "--json"])
        .ok()
        .json();
    assert_eq!(j["id"], id.as_str());
    assert!(
        j["access_token"].as_str().unwrap().ends_with("…(12)"),
        "{j}"
    );
    let unknown = tokend(&daemon, &["token", "refresh", "999"]);
    assert_eq!(unknown.code, 1);
    assert!(unknown.stderr.contains("not_found"), "{}", unknown.stderr);
}

/// Zoho's answer to a code exchange: both tokens, and the user's API domain.
fn exchanged(path: &str) -> (u16, String) {
    assert_eq!(path, "/oauth/v2/token");
    let body = json!({"access_token": "1000.EXCHANGED.access", "refresh_token": "1000.EXCHANGED.refresh",
        "api_domain": API_DOMAIN, "token_type": "Bearer", "expires_in": 3600});
    (200, body.to_string())
}

#[test]
fn token_add_exchanges_a_grant_code_read_from_stdin_and_stores_the_tokens() {
    let daemon = Daemon::start();
    let zoho = FakeZoho::start(|path, _, _| exchanged(path));
    let accounts = format!("TOKEND_REFRESH__ACCOUNTS_URL={}", zoho.url);
    let (key, url) = accounts.split_once('=').unwrap();
    let env = [
        (key, url),
        ("TOKEND_CLIENT_ID", "1000.ADDCLIENT"),
        ("TOKEND_CLIENT_SECRET", "add-client-secret"),
    ];
    let args = [
        "token",
        "add",
        "--user-name",
        "added@example.com",
        "--api-domain",
        API_DOMAIN,
    ];
    let out = tokend_with(&daemon, &args, "1000.GRANT-CODE-SECRET\n", &env).ok();
    assert!(
        out.stdout
            .starts_with("stored token 1 for added@example.com"),
        "{}",
        out.stdout
    );

    let requests = zoho.requests();
    assert_eq!(requests.len(), 1);
    let form = &requests[0].1;
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["code"], "1000.GRANT-CODE-SECRET");
    assert_eq!(form["client_id"], "1000.ADDCLIENT");
    assert_eq!(form["client_secret"], "add-client-secret");
    assert!(!form.contains_key("redirect_uri"));

    let stored = daemon
        .client()
        .find(json!({"user_name": "added@example.com"}));
    assert_eq!(stored["refresh_token"], "1000.EXCHANGED.refresh");
    assert_eq!(stored["access_token"], "1000.EXCHANGED.access");
    assert_eq!(stored["client_secret"], "add-client-secret");
    assert_eq!(stored["api_domain"], API_DOMAIN);
    assert_eq!(
        stored["grant_token"],
        Value::Null,
        "the used code is not kept"
    );
    let expiry: i64 = stored["expiry_time"].as_str().unwrap().parse().unwrap();
    let created = stored["meta"]["created_at"].as_i64().unwrap();
    assert!(
        (expiry - created - 3_600_000).abs() < 60_000,
        "expires an hour after it was stored"
    );
    for secret in [
        "1000.GRANT-CODE-SECRET",
        "add-client-secret",
        "1000.EXCHANGED",
    ] {
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "{secret} printed"
        );
        assert!(
            !daemon.log().contains(secret),
            "{secret} logged by the daemon"
        );
    }

    // --accounts-url and --json, with the code piped the same way.
    let second = FakeZoho::start(|path, _, _| exchanged(path));
    let args = [
        "token",
        "add",
        "--json",
        "--user-name",
        "second@example.com",
        "--api-domain",
        API_DOMAIN,
        "--accounts-url",
        &second.url,
        "--redirect-uri",
        "https://app.example.test/cb",
    ];
    let j = tokend_with(&daemon, &args, "1000.SECOND-CODE\n", &env[1..])
        .ok()
        .json();
    assert_eq!(j["user_name"], "second@example.com");
    assert_eq!(j["redirect_url"], "https://app.example.test/cb");
    assert!(
        j["refresh_token"].as_str().unwrap().contains('…'),
        "masked: {j}"
    );
    assert_eq!(
        second.requests()[0].1["redirect_uri"],
        "https://app.example.test/cb"
    );
    assert_eq!(zoho.count(), 1, "the flag wins over the configured server");
}

#[test]
fn token_add_saves_what_the_spent_code_bought_even_if_the_daemon_restarts_meanwhile() {
    let mut daemon = Daemon::start();
    let zoho = FakeZoho::start(|path, _, _| exchanged(path));
    zoho.close_gate();
    let socket = daemon.socket();
    let config = daemon.dir().join("tokend.toml");
    let url = zoho.url.clone();
    let adding = std::thread::spawn(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokend"));
        cmd.arg("--socket")
            .arg(socket)
            .arg("--config")
            .arg(config)
            .args([
                "token",
                "add",
                "--user-name",
                "restarted@example.com",
                "--api-domain",
                API_DOMAIN,
            ]);
        let env = [
            ("TOKEND_REFRESH__ACCOUNTS_URL", url.as_str()),
            ("TOKEND_CLIENT_ID", "1000.X"),
            ("TOKEND_CLIENT_SECRET", "s"),
        ];
        run(cmd, "1000.CODE\n", &env)
    });
    // The code is with the accounts server when the daemon restarts.
    zoho.wait_for_count(1);
    daemon.restart();
    zoho.release(1);
    let out = adding.join().unwrap().ok();
    assert!(out.stdout.starts_with("stored token"), "{}", out.stdout);
    let stored = daemon
        .client()
        .find(json!({"user_name": "restarted@example.com"}));
    assert_eq!(stored["refresh_token"], "1000.EXCHANGED.refresh");
}

#[test]
fn token_add_checks_for_the_daemon_before_spending_the_grant_code() {
    let mut daemon = Daemon::start();
    assert!(daemon.stop().success());
    let zoho = FakeZoho::start(|path, _, _| exchanged(path));
    let env = [
        ("TOKEND_CLIENT_ID", "1000.X"),
        ("TOKEND_CLIENT_SECRET", "s"),
    ];
    let args = [
        "token",
        "add",
        "--api-domain",
        API_DOMAIN,
        "--accounts-url",
        &zoho.url,
    ];
    let out = tokend_with(&daemon, &args, "1000.UNSPENT\n", &env);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(zoho.count(), 0, "the code was not exchanged");

    let daemon = Daemon::start();
    let no_code = tokend_with(&daemon, &args, "", &env);
    assert_eq!(no_code.code, 1);
    assert!(
        no_code.stderr.contains("no grant code"),
        "{}",
        no_code.stderr
    );
    let rejected = FakeZoho::start(|_, _, _| (200, json!({"error": "invalid_code"}).to_string()));
    let args = [
        "token",
        "add",
        "--api-domain",
        API_DOMAIN,
        "--accounts-url",
        &rejected.url,
    ];
    let out = tokend_with(&daemon, &args, "1000.USED-CODE\n", &env);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("invalid_code") && out.stderr.contains("generate a new one"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("1000.USED-CODE"));
    assert_eq!(daemon.client().count(), 0);
    let missing = tokend_with(&daemon, &["token", "add"], "", &[]);
    assert_eq!(
        missing.code, 2,
        "no client id is a usage error: {}",
        missing.stderr
    );
    // A URL flag that is no URL is refused before the (single-use) code is read.
    for flag in ["--api-domain", "--accounts-url"] {
        let args = ["token", "add", flag, "notaurl"];
        let bad = tokend_with(&daemon, &args, "1000.UNSPENT\n", &env);
        assert_eq!(bad.code, 2, "{flag}: {}", bad.stderr);
        assert!(bad.stderr.contains(flag), "{}", bad.stderr);
    }
    assert_eq!(
        rejected.count(),
        1,
        "asked the accounts server with a bad URL"
    );
}

#[test]
fn cleanup_dry_run_reports_and_cleanup_removes() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    c.save(
        json!({"user_name": "ended@example.com", "access_token": "1000.a", "expiry_time": "1000"}),
    );
    c.save(token("kept", 1));
    let dry = tokend(&daemon, &["cleanup", "--dry-run"]).ok().stdout;
    assert!(
        dry.starts_with("would remove 1 session(s) (dry run):"),
        "{dry}"
    );
    assert!(
        dry.contains("ended@example.com") && dry.contains("expired_unrefreshable_grace"),
        "{dry}"
    );
    assert_eq!(c.count(), 2);
    let j = tokend(&daemon, &["cleanup", "--json"]).ok().json();
    assert_eq!(j["dry_run"], false);
    assert_eq!(j["removed"][0]["user_name"], "ended@example.com");
    assert_eq!(c.count(), 1);
    let again = tokend(&daemon, &["cleanup"]).ok().stdout;
    assert_eq!(again, "no session has ended: removed nothing\n");
}

#[test]
fn cleanup_without_dry_run_leaves_it_to_the_daemons_config() {
    let daemon = Daemon::start_with(&format!("{QUIET}dry_run = true\n"), &[]);
    let mut c = daemon.client();
    c.save(
        json!({"user_name": "ended@example.com", "access_token": "1000.a", "expiry_time": "1000"}),
    );
    let out = tokend(&daemon, &["cleanup"]).ok().stdout;
    assert!(
        out.starts_with("would remove 1 session(s) (dry run):"),
        "{out}"
    );
    assert_eq!(c.count(), 1, "a trial run removed a token");
}

#[test]
fn config_check_prints_a_loadable_effective_config_and_names_a_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.toml");
    std::fs::write(
        &file,
        "[cleanup]\nidle_timeout = \"2days\"\n[refresh]\nbudget = 5\n",
    )
    .unwrap();
    let check = |file: &Path, json: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokend"));
        cmd.args(["config", "check"]).arg(file);
        if json {
            cmd.arg("--json");
        }
        run(
            cmd,
            "",
            &[("HOME", "/home/u"), ("XDG_RUNTIME_DIR", "/run/user/1")],
        )
    };
    let text = check(&file, false).ok().stdout;
    assert!(text.starts_with("# The configuration is valid."), "{text}");
    assert!(
        text.contains("idle_timeout = \"2days\"") && text.contains("budget = 5"),
        "{text}"
    );
    assert!(
        text.contains("path = \"/run/user/1/tokend/tokend.sock\""),
        "{text}"
    );
    let printed = dir.path().join("printed.toml");
    std::fs::write(&printed, &text).unwrap();
    let (a, b) = (
        check(&file, true).ok().json(),
        check(&printed, true).ok().json(),
    );
    assert_eq!(a, b, "the printed configuration loads back the same");
    assert_eq!(a["refresh"]["budget"], 5);

    std::fs::write(&file, "[refresh]\nbudget = 0\n").unwrap();
    let bad = check(&file, false);
    assert_eq!(bad.code, 78, "{}", bad.stderr);
    assert!(bad.stderr.contains("refresh.budget"), "{}", bad.stderr);
    std::fs::write(&file, "[refresh]\nbudgett = 1\n").unwrap();
    let typo = check(&file, false);
    assert_eq!(typo.code, 78);
    assert!(typo.stderr.contains("budgett"), "{}", typo.stderr);
}

#[test]
fn config_check_json_with_a_path_that_is_not_utf8_prints_it_instead_of_panicking() {
    use std::os::unix::ffi::OsStrExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokend"));
    let empty = tempfile::NamedTempFile::new().unwrap();
    cmd.arg("--socket")
        .arg(std::ffi::OsStr::from_bytes(b"/tmp/tok\xffend.sock"))
        .args(["config", "check", "--json"])
        .arg(empty.path());
    let j = run(cmd, "", &[("HOME", "/home/u")]).ok().json();
    assert_eq!(j["socket"]["path"], "/tmp/tok\u{fffd}end.sock");
}

#[test]
fn relative_path_flags_mean_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokend"));
    cmd.current_dir(dir.path())
        .args(["--socket", "run/tokend.sock", "config", "check", "--json"])
        .arg(empty.path());
    let j = run(cmd, "", &[("HOME", "/home/u")]).ok().json();
    let expected = dir.path().join("run/tokend.sock");
    assert_eq!(j["socket"]["path"], expected.to_str().unwrap());
}

#[test]
fn serve_with_a_socket_group_that_does_not_exist_is_a_configuration_error() {
    let daemon = Daemon::prepare("[socket]\ngroup = \"no-such-group-tokend\"\n", &[]);
    let (status, stderr) =
        crate::helpers::run_to_exit(daemon.command(), &daemon.dir().join("group.log"));
    assert_eq!(status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("no-such-group-tokend"), "{stderr}");
}

#[test]
fn a_daemon_that_is_not_running_is_exit_3_with_what_to_do() {
    let mut daemon = Daemon::start();
    assert!(daemon.stop().success());
    for args in [
        &["status"][..],
        &["tokens", "list"],
        &["token", "show", "1"],
        &["token", "delete", "1"],
        &["token", "refresh", "1"],
        &["cleanup", "--dry-run"],
    ] {
        let out = tokend(&daemon, args);
        assert_eq!(out.code, 3, "{args:?}: {}", out.stderr);
        let expected = format!(
            "daemon not running at {}: start it with `tokend serve`",
            daemon.socket().display()
        );
        assert!(out.stderr.contains(&expected), "{args:?}: {}", out.stderr);
        assert_eq!(out.stdout, "");
    }
    let usage = tokend(&daemon, &["token", "frobnicate"]);
    assert_eq!(usage.code, 2, "{}", usage.stderr);
}

#[test]
fn the_socket_comes_from_tokend_socket_when_no_flag_names_it() {
    let daemon = Daemon::start_with(QUIET, &[]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokend"));
    cmd.args(["status", "--json", "--config"])
        .arg(daemon.dir().join("tokend.toml"));
    let socket = daemon.socket();
    let out = run(cmd, "", &[("TOKEND_SOCKET", socket.to_str().unwrap())]).ok();
    assert_eq!(out.json()["socket"], socket.to_str().unwrap());
}
