use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("tokend.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn builtin(e: &HashMap<String, String>) -> Config {
    Config::builtin(e).unwrap()
}

#[test]
fn the_built_in_defaults_are_what_an_empty_file_configures() {
    let dir = tempfile::tempdir().unwrap();
    let e = env(&[("HOME", "/home/u")]);
    let from_empty = Config::load(Some(&write(&dir, "")), &e).unwrap();
    assert_eq!(
        Config {
            source: None,
            ..from_empty
        },
        builtin(&e)
    );
}

/// The shipped file documents each default as a commented-out `#key = value` line.
/// Uncommented, it must configure exactly the built-in defaults.
#[test]
fn shipped_file_documents_the_built_in_defaults() {
    let shipped = include_str!("../../config/tokend.toml");
    let uncommented: String = shipped
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        uncommented.matches(" = ").count() >= 7,
        "keys were not uncommented"
    );
    let dir = tempfile::tempdir().unwrap();
    let e = env(&[("HOME", "/home/u"), ("XDG_RUNTIME_DIR", "/run/user/1")]);
    let from_file = Config::load(Some(&write(&dir, &uncommented)), &e).unwrap();
    let defaults = builtin(&e);
    assert_eq!(
        Config {
            source: None,
            ..from_file
        },
        defaults
    );
}

#[test]
fn defaults_follow_systemd_then_xdg_then_fallbacks() {
    let systemd = env(&[
        ("RUNTIME_DIRECTORY", "/run/tokend"),
        ("STATE_DIRECTORY", "/var/lib/tokend:/x"),
    ]);
    assert_eq!(
        default_socket_path(&systemd),
        PathBuf::from("/run/tokend/tokend.sock")
    );
    assert_eq!(
        default_db_path(&systemd),
        PathBuf::from("/var/lib/tokend/tokens.db")
    );
    let user = env(&[("XDG_RUNTIME_DIR", "/run/user/5"), ("HOME", "/home/u")]);
    assert_eq!(
        default_socket_path(&user),
        PathBuf::from("/run/user/5/tokend/tokend.sock")
    );
    assert_eq!(
        default_db_path(&user),
        PathBuf::from("/home/u/.local/state/tokend/tokens.db")
    );
    let bare = env(&[]);
    assert!(default_socket_path(&bare).starts_with("/tmp"));
}

#[test]
fn environment_overrides_the_file_and_tokend_socket_overrides_both() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "[socket]\nmax_connections = 5\npath = \"/a/file.sock\"\n",
    );
    let e = env(&[
        ("TOKEND_SOCKET__MAX_CONNECTIONS", "7"),
        ("TOKEND_STORE__BUSY_TIMEOUT", "2s"),
        ("TOKEND_CONFIG", "/does/not/matter/when/--config/is/given"),
    ]);
    let c = Config::load(Some(&file), &e).unwrap();
    assert_eq!(c.socket.max_connections, 7);
    assert_eq!(c.store.busy_timeout, Duration::from_secs(2));
    assert_eq!(c.socket.path, PathBuf::from("/a/file.sock"));
    let mut e = e;
    e.insert("TOKEND_SOCKET".into(), "/b/env.sock".into());
    assert_eq!(
        Config::load(Some(&file), &e).unwrap().socket.path,
        PathBuf::from("/b/env.sock")
    );
}

#[test]
fn tokend_config_names_the_file_when_no_flag_does() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "[socket]\nmax_connections = 3\n");
    let e = env(&[("TOKEND_CONFIG", file.to_str().unwrap())]);
    let c = Config::load(None, &e).unwrap();
    assert_eq!(c.socket.max_connections, 3);
    assert_eq!(c.source, Some(file));
}

#[test]
fn one_users_share_of_connections_is_half_unless_set() {
    let dir = tempfile::tempdir().unwrap();
    let per_user = |text: &str| {
        let c = Config::load(Some(&write(&dir, text)), &env(&[])).unwrap();
        c.socket.max_connections_per_user
    };
    assert_eq!(per_user(""), 512);
    assert_eq!(per_user("[socket]\nmax_connections = 5\n"), 3);
    assert_eq!(per_user("[socket]\nmax_connections = 1\n"), 1);
    let both = "[socket]\nmax_connections = 5\nmax_connections_per_user = 5\n";
    assert_eq!(per_user(both), 5);
    for bad in ["0", "6"] {
        let e = error_for(&format!(
            "[socket]\nmax_connections = 5\nmax_connections_per_user = {bad}\n"
        ));
        assert!(
            e.contains("socket.max_connections_per_user") && e.contains("(5)"),
            "{e}"
        );
    }
}

fn error_for(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    Config::load(Some(&write(&dir, text)), &env(&[]))
        .unwrap_err()
        .to_string()
}

#[test]
fn a_misspelt_log_level_is_refused_not_read_as_a_module_that_turns_logging_off() {
    let e = error_for("[log]\nlevel = \"warning\"\n");
    assert!(
        e.contains("log.level") && e.contains("\"warning\" is not a level"),
        "{e}"
    );
    assert!(error_for("[log]\nlevel = \"info,verbose\"\n").contains("\"verbose\""));
    for fine in [
        "info",
        "WARN",
        "off",
        "tokend=debug",
        "warn,tokend::store=trace",
        "tokend::db",
    ] {
        assert_eq!(crate::config::log_filter_problem(fine), None, "{fine}");
    }
}

#[test]
fn bad_keys_and_values_are_refused_with_the_key_named() {
    assert!(error_for("[socket]\nmax_conections = 5\n").contains("max_conections"));
    assert!(error_for("[sockets]\n").contains("sockets"));
    assert!(error_for("[socket]\nmax_request_bytes = 10\n").contains("socket.max_request_bytes"));
    assert!(error_for("[socket]\nmax_connections = 0\n").contains("socket.max_connections"));
    assert!(error_for("[store]\nbusy_timeout = \"soon\"\n").contains("busy_timeout"));
    assert!(error_for("[store]\npath = \"relative.db\"\n").contains("store.path"));
    assert!(error_for("[log]\nlevel = \"=bad=\"\n").contains("log.level"));
    let e = error_for("[cleanup]\nidle_timeout = \"forever\"\n");
    assert!(e.contains("cleanup.idle_timeout"), "{e}");
    let e = error_for("[[cleanup.client]]\nclient_id = \"x\"\nmax_session_age = \"soon\"\n");
    assert!(
        e.contains("cleanup.client.max_session_age") && e.contains("\"x\""),
        "{e}"
    );
    let e = error_for("[socket]\nmax_conections = 5\n");
    assert!(e.contains("tokend.toml"), "names the file: {e}");
    assert!(error_for("[refresh]\nbudget_window = \"0s\"\n").contains("refresh.budget_window"));
    for key in ["backoff_max", "throttle_wait", "max_lead", "timeout"] {
        let e = error_for(&format!("[refresh]\n{key} = \"100000000days\"\n"));
        assert!(e.contains(&format!("refresh.{key}")), "{key}: {e}");
    }
    // Refused here, as the daemon's OAuth client would refuse them at start: an
    // accounts URL needs a host.
    for url in ["https://", "ftp://accounts.zoho.com", "accounts.zoho.com"] {
        let e = error_for(&format!("[refresh]\naccounts_url = \"{url}\"\n"));
        assert!(e.contains("refresh.accounts_url"), "{url}: {e}");
        let e = error_for(&format!(
            "[[refresh.accounts]]\napi_domain = \"https://x\"\nurl = \"{url}\"\n"
        ));
        assert!(e.contains("refresh.accounts.url"), "{url}: {e}");
    }
}

#[test]
fn a_missing_file_is_an_error_that_names_it() {
    let e = Config::load(Some(Path::new("/nonexistent/tokend.toml")), &env(&[])).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/tokend.toml"), "{e}");
}

#[test]
fn unrelated_tokend_variables_are_ignored_but_bad_sections_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write(&dir, "");
    assert!(Config::load(
        Some(&empty),
        &env(&[("TOKEND_BIN", "/x"), ("TOKEND_SOCKET", "/s")])
    )
    .is_ok());
    let e = Config::load(Some(&empty), &env(&[("TOKEND_SOKET__PATH", "/x")])).unwrap_err();
    assert!(e.to_string().contains("soket"), "{e}");
}

#[test]
fn cleanup_policies_parse_with_off_overrides_and_typos_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[cleanup]\nidle_timeout = \"10d\"\nmax_session_age = \"off\"\naction = \"revoke_and_delete\"\n\
                [[cleanup.client]]\nclient_id = \"strict\"\nidle_timeout = \"1h\"\n\
                [[cleanup.client]]\nclient_id = \"lax\"\nidle_timeout = \"off\"\n";
    let c = Config::load(Some(&write(&dir, text)), &env(&[]))
        .unwrap()
        .cleanup;
    let day = Duration::from_secs(86_400);
    assert_eq!(c.policies.default.idle_timeout, Some(10 * day));
    assert_eq!(c.policies.default.max_session_age, None);
    assert_eq!(
        c.policies.default.needs_reauth_grace,
        Some(30 * day),
        "untouched rules keep their defaults"
    );
    assert_eq!(
        c.policies.for_client(Some("strict")).idle_timeout,
        Some(Duration::from_secs(3600))
    );
    assert_eq!(
        c.policies.for_client(Some("strict")).needs_reauth_grace,
        Some(30 * day),
        "inherits"
    );
    assert_eq!(c.policies.for_client(Some("lax")).idle_timeout, None);
    assert_eq!(c.action, CleanupAction::RevokeAndDelete);
    assert!(error_for("[cleanup]\nidle_timeot = \"1d\"\n").contains("idle_timeot"));
    assert!(error_for("[[cleanup.client]]\nclient_id = \"x\"\nidle = \"1d\"\n").contains("idle"));
    assert!(error_for("[cleanup]\nidle_timeout = \"soon\"\n").contains("soon"));
    assert!(error_for("[cleanup]\nschedule = \"every day\"\n").contains("cleanup.schedule"));
    assert!(error_for("[cleanup]\naction = \"burn\"\n").contains("cleanup.action"));
}

#[test]
fn log_format_is_auto_text_or_json() {
    let dir = tempfile::tempdir().unwrap();
    let load = |text: &str| Config::load(Some(&write(&dir, text)), &env(&[]));
    assert_eq!(load("").unwrap().log.format, LogFormat::Auto);
    assert_eq!(
        load("[log]\nformat = \"json\"\n").unwrap().log.format,
        LogFormat::Json
    );
    assert_eq!(
        load("[log]\nformat = \"text\"\n").unwrap().log.format,
        LogFormat::Text
    );
    assert!(error_for("[log]\nformat = \"xml\"\n").contains("log.format"));
}

#[test]
fn a_reload_may_change_tuning_but_not_paths_or_what_is_set_up_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let e = env(&[("HOME", "/home/u"), ("XDG_RUNTIME_DIR", "/run/user/1")]);
    let load = |text: &str| Config::load(Some(&write(&dir, text)), &e).unwrap();
    let running = load("");
    let tuned = load(
        "[refresh]\nbudget = 3\nenabled = false\n[cleanup]\nidle_timeout = \"1h\"\n\
         schedule = \"0 0 * * * *\"\n[log]\nlevel = \"debug\"\n",
    );
    assert_eq!(restart_only_changes(&running, &tuned), Vec::<&str>::new());
    let moved = load(
        "[socket]\npath = \"/srv/t.sock\"\nmax_connections = 5\n[store]\npath = \"/srv/t.db\"\n\
         [log]\nformat = \"json\"\n[cleanup]\nlast_used_flush = \"5s\"\nidle_timeout = \"1h\"\n",
    );
    assert_eq!(
        restart_only_changes(&running, &moved),
        [
            "socket.path",
            "socket.max_connections",
            "socket.max_connections_per_user",
            "store.path",
            "log.format",
            "cleanup.last_used_flush"
        ]
    );
}
