//! Bad input: every kind the issue names is answered with an error (or, at a disconnect,
//! dropped), never crashes the daemon, never sticks a connection, never writes to the
//! store. After each, a valid request succeeds on the same connection (where it stays
//! open) and on a new one, and the stored tokens are exactly what they were.

use serde_json::{json, Value};

use crate::helpers::{fields, token, Client, Daemon};

/// The request-line limit the daemon runs with by default (64 KiB).
const MAX_LINE: usize = 64 * 1024;

/// A daemon holding a few tokens, and their snapshot.
fn seeded() -> (Daemon, Vec<Value>) {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    for n in 0..3 {
        c.save(token("seed", n));
    }
    let before = c.snapshot();
    (daemon, before)
}

/// A valid request succeeds on `same` (if it is still open) and on a new connection, and
/// the stored tokens are unchanged.
fn assert_unharmed(daemon: &Daemon, same: Option<&mut Client>, before: &[Value]) {
    if let Some(c) = same {
        let reply = c.request(json!({"op": "ping", "seq": "after-bad-input"}));
        assert_eq!(reply["ok"], true, "same connection: {reply}");
        assert_eq!(c.snapshot(), before, "stored data changed");
    }
    let mut fresh = daemon.client();
    fresh.ping();
    let found = fresh.find(json!({"user_name": before[0]["user_name"]}));
    assert_eq!(fields(&found), before[0]);
    assert_eq!(fresh.snapshot(), before, "stored data changed");
}

/// For clients that left without waiting for their effect: a clean stop (which waits for
/// every connection) proves the daemon outlived them, and the store after a restart that
/// nothing they sent was written late.
fn assert_unharmed_to_the_end(daemon: &mut Daemon, before: &[Value]) {
    let status = daemon.stop();
    assert_eq!(status.code(), Some(0), "{status}");
    daemon.launch();
    assert_eq!(daemon.client().snapshot(), before, "stored data changed");
}

/// Sends `line` (a newline is added) and expects one error reply with `code`, echoing
/// `seq`, whose message mentions `names` when given.
fn expect_error(c: &mut Client, line: &[u8], code: &str, seq: &Value, names: Option<&str>) {
    let mut bytes = line.to_vec();
    bytes.push(b'\n');
    c.send(&bytes).expect("write a bad request");
    let reply = c.read_reply();
    let shown = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
    assert_eq!(reply["ok"], false, "{shown} was accepted: {reply}");
    assert_eq!(reply["error"]["code"], code, "{shown}: {reply}");
    assert_eq!(&reply["seq"], seq, "{shown}: {reply}");
    if let Some(name) = names {
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(name),
            "the message for {shown} should name `{name}`: {message}"
        );
    }
}

fn bad(c: &mut Client, line: &str, seq: &Value, names: Option<&str>) {
    expect_error(c, line.as_bytes(), "bad_request", seq, names);
}

#[test]
fn not_json() {
    let (daemon, before) = seeded();
    let mut c = daemon.client();
    for line in [
        "hello",
        "{",
        "}",
        r#"{"op":"ping""#,
        r#"{"op":"ping"}}"#,
        r#"{"op":"ping"} {"op":"ping"}"#,
        r#"{op:"ping"}"#,
        r#"{'op':'ping'}"#,
        r#"{"op":"ping",}"#,
        r#"{"op":"save_token","token":{"user_name":"nj@example.com:1","refresh_token":"1000.nj"}"#,
        "NaN",
    ] {
        bad(&mut c, line, &Value::Null, None);
    }
    assert_unharmed(&daemon, Some(&mut c), &before);
}

#[test]
fn not_an_object() {
    let (daemon, before) = seeded();
    let mut c = daemon.client();
    for line in [
        "[]",
        r#"[{"op":"ping"}]"#,
        r#""ping""#,
        "42",
        "null",
        "true",
    ] {
        bad(&mut c, line, &Value::Null, None);
    }
    assert_unharmed(&daemon, Some(&mut c), &before);
}

#[test]
fn unknown_missing_or_ill_typed_op() {
    let (daemon, before) = seeded();
    let mut c = daemon.client();
    bad(&mut c, r#"{"op":"nope","seq":1}"#, &json!(1), Some("nope"));
    bad(&mut c, r#"{"op":"PING","seq":2}"#, &json!(2), Some("PING"));
    bad(
        &mut c,
        r#"{"op":"save_tokens","seq":3}"#,
        &json!(3),
        Some("save_tokens"),
    );
    bad(
        &mut c,
        r#"{"op":"пинг 🔑","seq":4}"#,
        &json!(4),
        Some("пинг"),
    );
    bad(&mut c, r#"{"op":"","seq":5}"#, &json!(5), Some("op"));
    bad(&mut c, r#"{"seq":6}"#, &json!(6), Some("op"));
    bad(&mut c, r#"{"op":5,"seq":7}"#, &json!(7), Some("op"));
    bad(&mut c, r#"{"op":["ping"],"seq":8}"#, &json!(8), Some("op"));
    bad(&mut c, r#"{"OP":"ping","seq":9}"#, &json!(9), None);
    bad(&mut c, r#"{"op":null,"seq":10}"#, &json!(10), Some("op"));
    // A long op name is answered without echoing all of it.
    let long = "x".repeat(20_000);
    c.send_json(&json!({"op": long, "seq": 11}));
    let reply = c.read_reply();
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
    assert!(
        reply["error"]["message"].as_str().unwrap().len() < 1000,
        "the message echoes a 20000-byte op name: {reply}"
    );
    assert_unharmed(&daemon, Some(&mut c), &before);
}

#[test]
fn missing_argument_is_named() {
    let (daemon, before) = seeded();
    let mut c = daemon.client();
    for (n, (line, name)) in [
        (r#"{"op":"save_token"}"#, "token"),
        (r#"{"op":"save_token","token":null}"#, "token"),
        (r#"{"op":"find_token"}"#, "token"),
        (r#"{"op":"find_token_by_id"}"#, "token_id"),
        (r#"{"op":"find_token_by_id","token_id":null}"#, "token_id"),
        (r#"{"op":"delete_token"}"#, "token_id"),
        (r#"{"op":"delete_token","id":"1"}"#, "token_id"),
    ]
    .into_iter()
    .enumerate()
    {
        let with_seq = line.replacen('{', &format!("{{\"seq\":{n},"), 1);
        bad(&mut c, &with_seq, &json!(n), Some(name));
    }
    assert_unharmed(&daemon, Some(&mut c), &before);
}

#[test]
fn ill_typed_argument_is_named() {
    let (daemon, before) = seeded();
    let mut c = daemon.client();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"op": "find_token_by_id", "token_id": 1}), "token_id"),
        (
            json!({"op": "find_token_by_id", "token_id": ["1"]}),
            "token_id",
        ),
        (
            json!({"op": "delete_token", "token_id": {"id": "1"}}),
            "token_id",
        ),
        (json!({"op": "delete_token", "token_id": true}), "token_id"),
        (json!({"op": "save_token", "token": "a token"}), "token"),
        (json!({"op": "save_token", "token": []}), "token"),
        (json!({"op": "find_token", "token": 42}), "token"),
        (json!({"op": "get_tokens", "limit": -1}), "limit"),
        (json!({"op": "get_tokens", "limit": "10"}), "limit"),
        (json!({"op": "get_tokens", "limit": 1.5}), "limit"),
        (
            json!({"op": "get_tokens", "limit": 4_294_967_296_u64}),
            "limit",
        ),
        (json!({"op": "get_tokens", "after": 5}), "after"),
        (json!({"op": "get_tokens", "after": ["1"]}), "after"),
    ];
    let mut all = cases;
    // Every token field refuses numbers, booleans, arrays and objects (an integer is fine
    // for expiry_time only), and a save carrying one stores nothing.
    for field in [
        "id",
        "user_name",
        "client_id",
        "client_secret",
        "refresh_token",
        "access_token",
        "grant_token",
        "redirect_url",
        "api_domain",
    ] {
        for value in [json!(7), json!(true), json!(["x"]), json!({"x": "y"})] {
            let mut t = token("typed", 9);
            t[field] = value;
            all.push((json!({"op": "save_token", "token": t.clone()}), field));
            all.push((json!({"op": "find_token", "token": t}), field));
        }
    }
    for value in [
        json!("soon"),
        json!("-5"),
        json!(-5),
        json!(1.5),
        json!("1e12"),
        json!(" 1795330406683"),
        json!("12345678901234567890"),
        json!(true),
        json!(["1795330406683"]),
    ] {
        let mut t = token("typed", 9);
        t["expiry_time"] = value;
        all.push((json!({"op": "save_token", "token": t}), "expiry_time"));
    }
    for (n, (mut request, name)) in all.into_iter().enumerate() {
        request["seq"] = json!(n);
        let line = serde_json::to_string(&request).unwrap();
        bad(&mut c, &line, &json!(n), Some(name));
    }
    assert_unharmed(&daemon, Some(&mut c), &before);
}

#[test]
fn unknown_argument_is_named_and_nothing_is_stored() {
    let (daemon, before) = seeded();
    let mut c = daemon.client();
    let mut with_token_field = token("unknown-arg", 1);
    with_token_field["password"] = json!("hunter2");
    let mut upper = token("unknown-arg", 2);
    upper["USER_NAME"] = json!("shouting@example.com:1");
    for (n, (request, name)) in [
        (json!({"op": "ping", "extra": 1}), "extra"),
        (json!({"op": "delete_tokens", "all": true}), "all"),
        (
            json!({"op": "save_token", "token": token("unknown-arg", 3), "force": true}),
            "force",
        ),
        (
            json!({"op": "find_token_by_id", "token_id": "1", "token": {}}),
            "token",
        ),
        (
            json!({"op": "get_tokens", "limit": 1, "offset": 2}),
            "offset",
        ),
        (
            json!({"op": "save_token", "token": with_token_field}),
            "password",
        ),
        (json!({"op": "save_token", "token": upper}), "USER_NAME"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut request = request;
        request["seq"] = json!(n);
        bad(&mut c, &request.to_string(), &json!(n), Some(name));
    }
    assert_unharmed(&daemon, Some(&mut c), &before);
}

/// A save_token line padded with spaces to exactly `len` bytes.
fn save_line_of_len(user: &str, len: usize) -> Vec<u8> {
    let request = json!({"op": "save_token", "seq": user, "token": {"user_name": user, "refresh_token": "1000.pad"}});
    let mut line = serde_json::to_vec(&request).unwrap();
    assert!(line.len() <= len);
    line.resize(len, b' ');
    line
}

#[test]
fn a_line_over_64_kib_is_too_large_and_the_connection_goes_on() {
    let (daemon, before) = seeded();
    let mut c = daemon.client();
    let user = "too-large@example.com:1";
    let mut bytes = save_line_of_len(user, MAX_LINE + 1);
    // The next request in the same write is answered, in order.
    bytes.extend_from_slice(b"\n{\"op\":\"ping\",\"seq\":\"next\"}\n");
    c.send(&bytes).unwrap();
    let reply = c.read_reply();
    assert_eq!(reply["error"]["code"], "too_large", "{reply}");
    let reply = c.read_reply();
    assert_eq!(reply["seq"], "next", "{reply}");
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(
        c.find(json!({"user_name": user})),
        Value::Null,
        "nothing stored"
    );
    assert_unharmed(&daemon, Some(&mut c), &before);
}

#[test]
fn a_line_of_exactly_64_kib_is_accepted() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let user = "exactly-64k@example.com:1";
    let mut line = save_line_of_len(user, MAX_LINE);
    line.push(b'\n');
    c.send(&line).unwrap();
    let reply = c.read_reply();
    assert_eq!(reply["ok"], true, "a {MAX_LINE}-byte line: {reply}");
    assert_eq!(c.find(json!({"user_name": user}))["user_name"], user);
}

#[test]
fn a_multi_megabyte_line_is_too_large_and_the_connection_goes_on() {
    let (daemon, before) = seeded();
    let mut c = daemon.client();
    let user = "huge@example.com:1";
    let huge = "A".repeat(4 * 1024 * 1024);
    let request = json!({"op": "save_token", "token": {"user_name": user, "refresh_token": huge}});
    c.send_json(&request);
    let reply = c.read_reply();
    assert_eq!(reply["error"]["code"], "too_large", "{reply}");
    assert_eq!(
        c.find(json!({"user_name": user})),
        Value::Null,
        "nothing stored"
    );
    // Megabytes of garbage without JSON structure, too.
    let mut garbage = vec![b'['; 3 * 1024 * 1024];
    garbage.push(b'\n');
    c.send(&garbage).unwrap();
    assert_eq!(c.read_reply()["error"]["code"], "too_large");
    assert_unharmed(&daemon, Some(&mut c), &before);
}

#[test]
fn deep_nesting_is_refused() {
    let (daemon, before) = seeded();
    let mut c = daemon.client();
    // 100k-deep is also over the line limit...
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    expect_error(&mut c, deep.as_bytes(), "too_large", &Value::Null, None);
    let deep_open = "[".repeat(100_000);
    expect_error(
        &mut c,
        deep_open.as_bytes(),
        "too_large",
        &Value::Null,
        None,
    );
    // ...so nesting that fits in the limit reaches the parser.
    let depth = 30_000;
    for line in [
        format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
        "[".repeat(60_000),
        format!("{}{}", "{\"a\":".repeat(depth / 6), "}".repeat(depth / 6)),
        format!(
            "{{\"op\":\"ping\",\"seq\":{}{}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        ),
        format!(
            "{{\"op\":\"save_token\",\"token\":{{\"user_name\":\"deep@example.com:1\",\"refresh_token\":\"1000.deep\",\"api_domain\":{}{}}}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        ),
    ] {
        assert!(line.len() <= MAX_LINE);
        expect_error(&mut c, line.as_bytes(), "bad_request", &Value::Null, None);
    }
    assert_eq!(
        c.find(json!({"user_name": "deep@example.com:1"})),
        Value::Null
    );
    assert_unharmed(&daemon, Some(&mut c), &before);
}

#[test]
fn invalid_utf8_is_refused() {
    let (daemon, before) = seeded();
    let mut c = daemon.client();
    let cases: Vec<Vec<u8>> = vec![
        b"\xff\xfe".to_vec(),
        b"\xff{\"op\":\"ping\"}".to_vec(),
        b"{\"op\":\"ping\",\"seq\":\"\xff\"}".to_vec(),
        b"{\"op\":\"pi\xc3\x28ng\"}".to_vec(),
        // Invalid sequences inside a token: overlong, a UTF-8-encoded surrogate,
        // truncated, a stray continuation byte.
        b"{\"op\":\"save_token\",\"token\":{\"user_name\":\"utf8-1\xc0\xaf\",\"refresh_token\":\"1000.u\"}}".to_vec(),
        b"{\"op\":\"save_token\",\"token\":{\"user_name\":\"utf8-2\xed\xa0\x80\",\"refresh_token\":\"1000.u\"}}".to_vec(),
        b"{\"op\":\"save_token\",\"token\":{\"user_name\":\"utf8-3\",\"refresh_token\":\"1000.u\xe2\x82\"}}".to_vec(),
        b"{\"op\":\"save_token\",\"token\":{\"user_name\":\"utf8-4\x80\",\"refresh_token\":\"1000.u\"}}".to_vec(),
    ];
    for line in cases {
        expect_error(&mut c, &line, "bad_request", &Value::Null, None);
    }
    // Escaped lone surrogates are not Unicode either.
    bad(
        &mut c,
        r#"{"op":"save_token","token":{"user_name":"utf8-5\ud800","refresh_token":"1000.u"}}"#,
        &Value::Null,
        None,
    );
    bad(
        &mut c,
        r#"{"op":"save_token","token":{"user_name":"utf8-6\udc00x","refresh_token":"1000.u"}}"#,
        &Value::Null,
        None,
    );
    assert_unharmed(&daemon, Some(&mut c), &before);
}

#[test]
fn nul_bytes_are_refused() {
    let (daemon, before) = seeded();
    let mut c = daemon.client();
    let cases: Vec<&[u8]> = vec![
        b"\0",
        b"\0\0\0\0",
        b"\0{\"op\":\"ping\"}",
        b"{\"op\":\"ping\"}\0",
        b"{\"op\":\"pi\0ng\"}",
        b"{\"op\":\"save_token\",\"token\":{\"user_name\":\"nul\0user\",\"refresh_token\":\"1000.nul\"}}",
    ];
    for line in cases {
        expect_error(&mut c, line, "bad_request", &Value::Null, None);
    }
    assert_unharmed(&daemon, Some(&mut c), &before);
}

#[test]
fn an_escaped_nul_in_a_value_is_kept_whole_or_refused() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let user = "nul\u{0}user@example.com:1";
    let reply = c.request(
        json!({"op": "save_token", "token": {"user_name": user, "refresh_token": "1000.nul\u{0}tail"}}),
    );
    if reply["ok"] == true {
        // Stored: then verbatim, never cut at the NUL.
        let found = c.find(json!({"user_name": user}));
        assert_eq!(found["user_name"], user, "{found}");
        assert_eq!(found["refresh_token"], "1000.nul\u{0}tail", "{found}");
        assert_eq!(
            c.find(json!({"user_name": "nul"})),
            Value::Null,
            "a prefix up to the NUL is a different user"
        );
    } else {
        assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
        assert_eq!(c.count(), 0);
    }
    c.ping();
}

#[test]
fn a_half_written_line_then_disconnect_stores_nothing() {
    let (mut daemon, before) = seeded();
    let partial = br#"{"op":"save_token","token":{"user_name":"half@example.com:1","client_id":"1000.H","client_secret":"h","refresh_token":"1000.half""#;
    // Dropped outright.
    {
        let mut c = daemon.client();
        c.send(partial).unwrap();
    }
    // Half-closed: the daemon may answer with an error, then must close its end.
    {
        let mut c = daemon.client();
        c.send(partial).unwrap();
        c.shutdown_write();
        while let Some(line) = c.read_line() {
            let reply: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(reply["ok"], false, "a half line was executed: {reply}");
        }
    }
    // Complete requests before the half line are all answered, then the connection ends.
    {
        let mut c = daemon.client();
        let mut bytes = Vec::new();
        for n in 0..20 {
            bytes.extend_from_slice(format!("{{\"op\":\"ping\",\"seq\":{n}}}\n").as_bytes());
        }
        bytes.extend_from_slice(partial);
        c.send(&bytes).unwrap();
        c.shutdown_write();
        for n in 0..20 {
            let reply = c.read_reply();
            assert_eq!(reply["seq"], n, "{reply}");
            assert_eq!(reply["ok"], true, "{reply}");
        }
        while let Some(line) = c.read_line() {
            let reply: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(reply["ok"], false, "a half line was executed: {reply}");
        }
    }
    // Megabytes without a newline, then gone.
    {
        let mut c = daemon.client();
        c.send(&vec![b'x'; 2 * 1024 * 1024]).unwrap();
    }
    let mut fresh = daemon.client();
    assert_eq!(
        fresh.find(json!({"user_name": "half@example.com:1"})),
        Value::Null
    );
    assert_unharmed(&daemon, None, &before);
    drop(fresh);
    assert_unharmed_to_the_end(&mut daemon, &before);
}

#[test]
fn a_client_that_leaves_without_reading_its_replies_harms_nothing() {
    let (mut daemon, before) = seeded();
    {
        let mut c = daemon.client();
        let mut bytes = Vec::new();
        for n in 0..500 {
            bytes.extend_from_slice(
                format!(
                    "{{\"op\":\"find_token\",\"seq\":{n},\"token\":{{\"user_name\":{}}}}}\n",
                    before[0]["user_name"]
                )
                .as_bytes(),
            );
        }
        c.send(&bytes).unwrap();
    }
    assert_unharmed(&daemon, None, &before);
    assert_unharmed_to_the_end(&mut daemon, &before);
}

#[test]
fn bad_input_inside_a_pipeline_gets_its_own_reply_in_order() {
    let (daemon, before) = seeded();
    let mut c = daemon.client();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"{\"op\":\"ping\",\"seq\":1}\n");
    bytes.extend_from_slice(b"not json\n");
    bytes.extend_from_slice(b"{\"op\":\"nope\",\"seq\":3}\n");
    bytes.extend_from_slice(&[b'x'; MAX_LINE + 10]);
    bytes.extend_from_slice(b"\n\xff\xfe\n{\"op\":\"ping\",\"seq\":6}\n");
    c.send(&bytes).unwrap();
    let expected = [
        (json!(1), None),
        (Value::Null, Some("bad_request")),
        (json!(3), Some("bad_request")),
        (Value::Null, Some("too_large")),
        (Value::Null, Some("bad_request")),
        (json!(6), None),
    ];
    for (seq, code) in expected {
        let reply = c.read_reply();
        assert_eq!(reply["seq"], seq, "{reply}");
        match code {
            None => assert_eq!(reply["ok"], true, "{reply}"),
            Some(code) => assert_eq!(reply["error"]["code"], code, "{reply}"),
        }
    }
    assert_unharmed(&daemon, Some(&mut c), &before);
}
