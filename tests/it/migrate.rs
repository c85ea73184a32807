//! `tokend import` and `tokend export` against a live daemon: each source format in,
//! idempotence down to tokend's metadata, all-or-nothing on a malformed row, and an
//! export that imports back into another daemon unchanged.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

use crate::helpers::{fields, token, Daemon, FIELDS};

/// `tokend --config C --socket S <args>` for this daemon, as a user would run it.
fn tokend(d: &Daemon, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokend"))
        .arg("--config")
        .arg(d.dir().join("tokend.toml"))
        .arg("--socket")
        .arg(d.socket())
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .expect("run tokend")
}

/// Runs a command that must succeed; returns its stdout.
fn ok(d: &Daemon, args: &[&str]) -> String {
    let out = tokend(d, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tokend {args:?} failed: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// Three users' tokens with the source's ids; one value holds CSV's special characters.
fn old_tokens(tag: &str) -> Vec<Value> {
    [1, 2, 7]
        .into_iter()
        .map(|n| {
            let mut t = fields(&token(tag, n));
            t["id"] = json!(n.to_string());
            if n == 2 {
                t["redirect_url"] = json!("https://example.com/cb?a=1,b=\"2\"\nx");
                t["access_token"] = Value::Null;
            }
            t
        })
        .collect()
}

fn value(t: &Value, field: &str) -> String {
    t[field].as_str().unwrap_or_default().to_owned()
}

fn write_filestore(path: &Path, tokens: &[Value]) {
    let mut w = csv::Writer::from_path(path).unwrap();
    let header = FIELDS.map(|f| {
        if f == "redirect_url" {
            "redirect_uri"
        } else {
            f
        }
    });
    w.write_record(header).unwrap();
    for t in tokens {
        w.write_record(FIELDS.map(|f| value(t, f))).unwrap();
    }
    w.flush().unwrap();
}

/// Columns in another order, `\N` for NULL, an extra column: as a MySQL export may be.
fn write_mysql_csv(path: &Path, tokens: &[Value]) {
    let mut columns: Vec<&str> = FIELDS.iter().rev().copied().collect();
    columns.push("comment");
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record(&columns).unwrap();
    for t in tokens {
        let row = columns.iter().map(|c| match t.get(*c) {
            Some(Value::String(s)) => s.clone(),
            Some(_) => "\\N".to_owned(),
            None => "anything".to_owned(),
        });
        w.write_record(row).unwrap();
    }
    w.flush().unwrap();
}

/// The Kaizen #192 sample's `zohooauth.db`.
fn write_sqlite(path: &Path, tokens: &[Value]) {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(
        "CREATE TABLE oauthtoken (id varchar(10) NOT NULL, user_name varchar(255), \
         client_id varchar(255), client_secret varchar(255), refresh_token varchar(255), \
         access_token varchar(255), grant_token varchar(255), expiry_time varchar(20), \
         redirect_url varchar(255), api_domain varchar(255), primary key (id))",
    )
    .unwrap();
    for t in tokens {
        let values: Vec<Option<String>> = FIELDS
            .iter()
            .map(|f| t[*f].as_str().map(str::to_owned))
            .collect();
        db.execute(
            "INSERT INTO oauthtoken VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            rusqlite::params_from_iter(values),
        )
        .unwrap();
    }
}

fn source(d: &Daemon, format: &str, tokens: &[Value]) -> PathBuf {
    let path = d.dir().join(format!("old-store.{format}"));
    match format {
        "filestore" => write_filestore(&path, tokens),
        "mysql-csv" => write_mysql_csv(&path, tokens),
        "sqlite" => write_sqlite(&path, tokens),
        other => panic!("no writer for {other}"),
    }
    path
}

#[test]
fn each_format_imports_with_its_ids_and_a_second_import_changes_nothing() {
    for format in ["filestore", "sqlite", "mysql-csv"] {
        let d = Daemon::start();
        let tokens = old_tokens(format);
        let file = source(&d, format, &tokens);
        let file = file.to_str().unwrap();

        let out = ok(&d, &["import", "--format", format, file]);
        assert!(
            out.contains("read 3, inserted 3, updated 0, unchanged 0"),
            "{format}: {out}"
        );
        let mut c = d.client();
        assert_eq!(c.snapshot(), tokens, "{format}");
        // Everything, tokend's metadata included: the second import sends no save.
        let before = c.all();
        let out = ok(&d, &["import", "--format", format, file]);
        assert!(
            out.contains("read 3, inserted 0, updated 0, unchanged 3"),
            "{format}: {out}"
        );
        assert_eq!(c.all(), before, "{format}");
        // New tokens get ids after the imported ones.
        let new = c.save(token(format, 9));
        assert_eq!(new["id"], "8", "{format}");
    }
}

#[test]
fn a_changed_source_updates_only_what_changed() {
    let d = Daemon::start();
    let mut tokens = old_tokens("change");
    let file = source(&d, "filestore", &tokens);
    ok(
        &d,
        &["import", "--format", "filestore", file.to_str().unwrap()],
    );
    tokens[0]["access_token"] = json!("1000.change.access.new");
    let file = source(&d, "filestore", &tokens);
    let file = file.to_str().unwrap();
    let out = ok(&d, &["import", "--dry-run", "--format", "filestore", file]);
    assert!(
        out.contains("would insert 0, update 1, leave 2 unchanged"),
        "{out}"
    );
    assert_ne!(d.client().snapshot(), tokens, "a dry run saves nothing");
    let out = ok(&d, &["import", "--format", "filestore", file]);
    assert!(out.contains("inserted 0, updated 1, unchanged 2"), "{out}");
    assert_eq!(d.client().snapshot(), tokens);
}

#[test]
fn a_malformed_row_imports_nothing_and_is_named_by_its_line() {
    let d = Daemon::start();
    let mut tokens = old_tokens("bad");
    tokens[1]["expiry_time"] = json!("SECRET-not-a-time");
    let file = source(&d, "mysql-csv", &tokens);
    let out = tokend(
        &d,
        &["import", "--format", "mysql-csv", file.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    // Line 3: the header, the first token, then the bad one.
    assert!(stderr.contains("line 3: `expiry_time`"), "{stderr}");
    assert!(stderr.contains("nothing was imported"), "{stderr}");
    for t in &tokens {
        for f in ["client_secret", "refresh_token", "access_token"] {
            let v = value(t, f);
            assert!(v.is_empty() || !stderr.contains(&v), "{stderr}");
        }
    }
    assert!(!stderr.contains("SECRET"), "{stderr}");
    assert_eq!(d.client().count(), 0);
}

#[test]
fn a_user_stored_under_another_id_is_a_conflict_and_imports_nothing() {
    let d = Daemon::start();
    let mut c = d.client();
    let mut first = fields(&token("clash", 1));
    first["id"] = json!("1");
    let mut second = fields(&token("clash", 2));
    second["id"] = json!("2");
    c.save(first);
    c.save(second.clone());
    let before = c.all();
    // The file says token 1 is user 2, whom tokend keeps as token 2.
    let mut clash = second.clone();
    clash["id"] = json!("1");
    clash["access_token"] = json!("1000.clash.other");
    let mut fresh = fields(&token("clash", 3));
    fresh["id"] = json!("3");
    let file = source(&d, "filestore", &[fresh, clash]);
    let out = tokend(
        &d,
        &["import", "--format", "filestore", file.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(stderr.contains("belongs to stored token 2"), "{stderr}");
    assert_eq!(c.all(), before);
}

#[test]
fn a_second_applications_store_with_the_same_ids_overwrites_nobody() {
    // Application A's users are stored as 1, 2 and 7; application B's FileStore numbers
    // its own, different users the same way.
    let d = Daemon::start();
    let mut c = d.client();
    for t in old_tokens("app-a") {
        c.save(t);
    }
    let before = c.all();
    let file = source(&d, "filestore", &old_tokens("app-b"));
    let out = tokend(
        &d,
        &["import", "--format", "filestore", file.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("id 1 is stored for another user"),
        "{stderr}"
    );
    assert_eq!(c.all(), before, "application A's tokens changed");
}

#[test]
fn export_is_private_refuses_to_overwrite_and_imports_back_unchanged() {
    let d = Daemon::start();
    let mut c = d.client();
    let mut tokens = old_tokens("export");
    tokens[0]["grant_token"] = json!("1000.export.grant");
    for t in &tokens {
        c.save(t.clone());
    }
    // More than one page of `get_tokens`.
    for n in 10..1012 {
        c.save(token("export", n));
    }
    let out_file = d.dir().join("tokens.csv");
    let out_str = out_file.to_str().unwrap();
    let out = ok(&d, &["export", "--format", "filestore", out_str]);
    assert!(out.contains("exported 1005 tokens"), "{out}");
    let mode = std::fs::metadata(&out_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert!(text.starts_with("id,user_name,client_id,client_secret,refresh_token,access_token,grant_token,expiry_time,redirect_uri,api_domain\r\n"));

    let again = tokend(&d, &["export", "--format", "filestore", out_str]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), text);
    ok(&d, &["export", "--force", out_str]);
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), text);
    let leftovers: Vec<_> = std::fs::read_dir(d.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tokend-export"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let other = Daemon::start();
    let out = ok(&other, &["import", "--format", "filestore", out_str]);
    assert!(out.contains("read 1005, inserted 1005"), "{out}");
    assert_eq!(other.client().snapshot(), c.snapshot());
}

#[test]
fn a_save_refused_mid_way_is_reported_and_a_second_run_finishes() {
    // A request limit small enough that one token's save is refused (`too_large`);
    // the records before and after it are valid and saved.
    let config = format!(
        "{}[socket]\nmax_request_bytes = 2048\n",
        crate::helpers::QUIET
    );
    let d = Daemon::start_with(&config, &[]);
    let mut tokens = old_tokens("partial");
    tokens[1]["redirect_url"] = json!(format!("https://example.com/{}", "x".repeat(3000)));
    let file = source(&d, "filestore", &tokens);
    let out = tokend(
        &d,
        &["import", "--format", "filestore", file.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("line 3: the import stopped"), "{stderr}");
    assert!(stderr.contains("too_large"), "{stderr}");
    assert!(
        stderr.contains("2 of 3 tokens to save were saved"),
        "{stderr}"
    );
    assert_eq!(d.client().count(), 2);

    tokens[1]["redirect_url"] = json!("https://example.com/short");
    let file = source(&d, "filestore", &tokens);
    let out = ok(
        &d,
        &["import", "--format", "filestore", file.to_str().unwrap()],
    );
    assert!(out.contains("inserted 1, updated 0, unchanged 2"), "{out}");
    assert_eq!(d.client().snapshot(), tokens);
}
