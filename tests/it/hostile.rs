//! Hostile strings in every field are stored and returned verbatim, work as lookup keys,
//! match only themselves, and survive a restart.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::helpers::{fields, Client, Daemon, FIELDS};

/// One value per token; each token carries its value in every field but `expiry_time`.
fn hostile_strings() -> Vec<String> {
    let mut v: Vec<String> = [
        r#"double "quotes" inside"#,
        "'single' quotes",
        "'; DROP TABLE tokens; --",
        "Robert'); DROP TABLE tokens;--",
        "\"; DELETE FROM tokens; --",
        "' OR '1'='1",
        "\" OR \"\"=\"",
        "1; UPDATE tokens SET refresh_token = NULL",
        "%",
        "_",
        "%s %d %n {} {0} $1 ?1 :name @p",
        r"C:\Users\back\slash\",
        r"\n is not a newline, \u0000 is not a NUL, \\ two",
        "line1\nline2\r\nline3\n",
        "tab\there\u{b}vertical\u{c}feed",
        "\u{1}\u{1f}\u{7f} control characters",
        "Zoë Ünïcödé — 日本語 — עברית — العربية — Ελληνικά",
        "🔑🦀👨‍👩‍👧‍👦🏳️‍🌈",
        "\u{2028}line separator\u{2029}paragraph separator",
        "\u{202e}right-to-left override",
        "combining e\u{301} vs \u{e9}",
        "noncharacters \u{fffe}\u{ffff}\u{10ffff}",
        "<script>alert('x')</script>&amp;",
        "   leading and trailing spaces   ",
        " ",
        "null",
        "NULL",
        "0",
        "{\"json\": [\"inside\", {\"a\": null}]}",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.push("long ✓ ".repeat(700));
    v
}

fn hostile_token(s: &str) -> Value {
    let mut t = json!({"expiry_time": "0001795330406683"});
    for field in FIELDS {
        if field != "expiry_time" {
            t[field] = json!(s);
        }
    }
    t
}

/// Every lookup rule finds the token that carries `s`, verbatim.
fn check_lookups(c: &mut Client, s: &str) {
    let expected = hostile_token(s);
    let show = s.escape_debug().to_string();
    assert_eq!(
        fields(&c.find_by_id(s)),
        expected,
        "find_token_by_id {show}"
    );
    for query in [
        json!({"user_name": s}),
        json!({"access_token": s}),
        json!({"client_id": s, "client_secret": s, "grant_token": s}),
        json!({"client_id": s, "client_secret": s, "refresh_token": s}),
    ] {
        assert_eq!(
            fields(&c.find(query.clone())),
            expected,
            "find_token {query}"
        );
    }
}

#[test]
fn hostile_strings_in_every_field_are_stored_and_returned_verbatim() {
    let mut daemon = Daemon::start();
    let mut c = daemon.client();
    let strings = hostile_strings();
    for s in &strings {
        let sent = hostile_token(s);
        let stored = c.save(sent.clone());
        assert_eq!(
            fields(&stored),
            sent,
            "save_token {} changed a value",
            s.escape_debug()
        );
    }
    for s in &strings {
        check_lookups(&mut c, s);
    }
    let expected: HashSet<String> = strings
        .iter()
        .map(|s| hostile_token(s).to_string())
        .collect();
    let listed: HashSet<String> = c.all().iter().map(|t| fields(t).to_string()).collect();
    assert_eq!(listed, expected, "get_tokens returns every value verbatim");
    assert_eq!(c.count(), strings.len() as u64, "the table is still there");

    // Lookalikes match nothing: values are compared, never interpreted.
    for probe in [
        "x' OR '1'='1",
        "' OR 1=1 --",
        "%%",
        "%a",
        "_x",
        "*",
        "'; DROP TABLE tokens; -- ",
        "zoë ünïcödé — 日本語 — עברית — العربية — ελληνικά",
        "combining \u{e9} vs \u{e9}",
        "line1\nline2\nline3\n",
        "",
    ] {
        assert_eq!(
            c.find(json!({"user_name": probe})),
            Value::Null,
            "user_name {} matched",
            probe.escape_debug()
        );
        assert_eq!(
            c.find(json!({"access_token": probe})),
            Value::Null,
            "access_token {} matched",
            probe.escape_debug()
        );
        assert_eq!(c.find_by_id(probe), Value::Null);
    }

    // Deleting by a hostile id deletes exactly that token.
    assert!(c.delete("'; DROP TABLE tokens; --"));
    assert!(c.delete("%"));
    let remaining: Vec<&String> = strings
        .iter()
        .filter(|s| s.as_str() != "'; DROP TABLE tokens; --" && s.as_str() != "%")
        .collect();
    assert_eq!(c.count(), remaining.len() as u64);

    // A restart keeps every value verbatim.
    drop(c);
    daemon.restart();
    let mut c = daemon.client();
    for s in remaining {
        check_lookups(&mut c, s);
    }
}

#[test]
fn hostile_values_update_in_place() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let user = "'; DROP TABLE tokens; --";
    let first = c.save(json!({"user_name": user, "refresh_token": "r\"1", "access_token": "a\\1"}));
    let second = c.save(json!({"user_name": user, "access_token": "🔑\n'2'"}));
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["refresh_token"], "r\"1");
    assert_eq!(second["access_token"], "🔑\n'2'");
    assert_eq!(c.count(), 1);
}
