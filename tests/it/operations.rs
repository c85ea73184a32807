//! Every operation of protocol v1, with the reply shapes `docs/protocol.md` documents.

use std::io::Write;

use serde_json::{json, Value};

use crate::helpers::{assert_has, fields, id_of, token, Daemon, FIELDS};

#[test]
fn ping_reports_version_protocol_and_count() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let pong = c.ping();
    assert_eq!(pong["tokens"], 0, "{pong}");
    c.save(token("ping", 1));
    c.save(token("ping", 2));
    assert_eq!(c.count(), 2);
}

#[test]
fn save_token_returns_the_stored_token_with_a_decimal_id_and_meta() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let mut sent = token("save", 1);
    sent["grant_token"] = json!("1000.save.grant");
    let stored = c.save(sent.clone());
    assert_has(&stored, &sent);
    let id = id_of(&stored);
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
        "a generated id is a decimal string: {stored}"
    );
    for field in FIELDS {
        assert!(
            stored[field].is_string() || stored[field].is_null(),
            "field `{field}` is a string or null: {stored}"
        );
    }
    let meta = &stored["meta"];
    assert!(meta.is_object(), "a stored token carries meta: {stored}");
    assert_eq!(meta["state"], "active", "{stored}");
    assert_eq!(meta["failures"], 0, "{stored}");
    assert!(meta["created_at"].is_i64(), "{stored}");
    assert!(meta["updated_at"].is_i64(), "{stored}");
    // What was acknowledged is what is stored.
    assert_eq!(fields(&c.find_by_id(&id)), fields(&stored));
}

#[test]
fn expiry_time_given_as_an_integer_is_returned_as_a_string() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let mut sent = token("expiry", 1);
    sent["expiry_time"] = json!(1_795_330_406_683_u64);
    let stored = c.save(sent);
    assert_eq!(stored["expiry_time"], "1795330406683", "{stored}");
    assert_eq!(
        c.find_by_id(&id_of(&stored))["expiry_time"],
        "1795330406683"
    );
}

#[test]
fn find_token_returns_the_whole_stored_token_or_null() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let stored = c.save(token("find", 1));
    let found = c.find(json!({"user_name": stored["user_name"]}));
    assert_eq!(fields(&found), fields(&stored));
    assert!(found["meta"].is_object(), "{found}");
    assert_eq!(
        c.find(json!({"user_name": "nobody@example.com:1"})),
        Value::Null
    );
}

#[test]
fn find_token_by_id_returns_the_token_or_null() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let stored = c.save(token("byid", 1));
    let found = c.find_by_id(&id_of(&stored));
    assert_eq!(fields(&found), fields(&stored));
    assert!(found["meta"].is_object(), "{found}");
    assert_eq!(c.find_by_id("424242"), Value::Null);
    assert_eq!(c.find_by_id("not-an-id"), Value::Null);
}

#[test]
fn delete_token_says_whether_the_token_existed() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let kept = c.save(token("del", 1));
    let gone = c.save(token("del", 2));
    assert!(c.delete(&id_of(&gone)));
    assert_eq!(c.find_by_id(&id_of(&gone)), Value::Null);
    assert_eq!(c.find(json!({"user_name": gone["user_name"]})), Value::Null);
    assert!(!c.delete(&id_of(&gone)), "a second delete finds nothing");
    assert!(!c.delete("424242"));
    assert_eq!(c.snapshot(), vec![fields(&kept)]);
    // Logged, with the client's user: what an operator asks about afterwards.
    let uid = nix::unistd::getuid();
    let logged = format!("uid={uid} token_id={}", id_of(&gone));
    let log = daemon.log();
    assert!(
        log.contains("a client deleted a token") && log.contains(&logged),
        "{log}"
    );
    assert!(
        !log.contains("token_id=424242"),
        "a delete that found nothing is logged"
    );
}

#[test]
fn get_tokens_without_arguments_returns_a_small_store_whole() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let empty = c.ok(json!({"op": "get_tokens"}));
    assert_eq!(empty, json!({"tokens": [], "next": null}));
    let mut saved: Vec<Value> = (0..5).map(|n| fields(&c.save(token("list", n)))).collect();
    saved.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    assert_eq!(c.snapshot(), saved);
    for t in c.all() {
        assert!(t["meta"].is_object(), "listed tokens carry meta: {t}");
    }
}

#[test]
fn one_get_tokens_reply_carries_at_most_a_thousand_tokens() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    // Written from another thread while this one reads the replies, so neither side's
    // socket buffer has to hold all of them.
    let mut writer = c.writer_clone();
    let sender = std::thread::spawn(move || {
        for n in 0..1001 {
            let save = json!({"op": "save_token", "token": token("cap", n)});
            writeln!(writer, "{save}").unwrap();
        }
    });
    for _ in 0..1001 {
        let reply = c.read_reply();
        assert_eq!(reply["ok"], true, "{reply}");
    }
    sender.join().unwrap();
    for limit in [Value::Null, json!(5000)] {
        let first = c.ok(json!({"op": "get_tokens", "limit": limit}));
        let page = first["tokens"].as_array().unwrap();
        assert_eq!(page.len(), 1000, "limit {limit}");
        assert_eq!(first["next"], json!(id_of(&page[999])), "limit {limit}");
        let rest = c.ok(json!({"op": "get_tokens", "limit": limit, "after": first["next"]}));
        assert_eq!(rest["tokens"].as_array().unwrap().len(), 1, "limit {limit}");
        assert_eq!(rest["next"], Value::Null, "limit {limit}: {rest}");
    }
    assert_eq!(c.all().len(), 1001);
}

#[test]
fn get_tokens_pages_with_limit_and_after() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let ids: Vec<String> = (0..5).map(|n| id_of(&c.save(token("page", n)))).collect();
    let first = c.ok(json!({"op": "get_tokens", "limit": 2}));
    let page: Vec<String> = first["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(page, ids[..2], "{first}");
    assert_eq!(first["next"], json!(ids[1]), "{first}");
    let second = c.ok(json!({"op": "get_tokens", "limit": 2, "after": ids[1]}));
    let page: Vec<String> = second["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(page, ids[2..4], "{second}");
    let last = c.ok(json!({"op": "get_tokens", "limit": 100, "after": ids[3]}));
    let page: Vec<String> = last["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(page, ids[4..], "{last}");
    assert_eq!(
        last["next"],
        Value::Null,
        "a short page is the last: {last}"
    );
    // Without a limit, `after` alone still pages.
    let rest = c.ok(json!({"op": "get_tokens", "after": ids[2]}));
    assert_eq!(rest["tokens"].as_array().unwrap().len(), 2, "{rest}");
    assert_eq!(rest["next"], Value::Null, "{rest}");
}

#[test]
fn delete_tokens_removes_every_token_and_counts_them() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    for n in 0..7 {
        c.save(token("delall", n));
    }
    let result = c.ok(json!({"op": "delete_tokens"}));
    assert_eq!(result, json!({"deleted": 7}));
    let log = daemon.log();
    assert!(
        log.contains("a client deleted every token") && log.contains("deleted=7"),
        "{log}"
    );
    assert_eq!(c.count(), 0);
    assert!(c.all().is_empty());
    assert_eq!(c.ok(json!({"op": "delete_tokens"})), json!({"deleted": 0}));
    // The store still works after emptying it.
    let again = c.save(token("delall", 1));
    assert_eq!(c.snapshot(), vec![fields(&again)]);
}

#[test]
fn seq_of_any_json_type_is_echoed_back_and_defaults_to_null() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    for seq in [
        json!(0),
        json!(-5),
        json!(1.5),
        json!(u64::MAX),
        json!("a string \"with quotes\" and ünïcödé 🔑"),
        json!(true),
        json!([1, "two", {"three": 3}]),
        json!({"nested": {"deep": [null]}}),
    ] {
        let reply = c.request(json!({"op": "ping", "seq": seq}));
        assert_eq!(reply["seq"], seq, "{reply}");
        // Errors echo the seq as well.
        let reply = c.request(json!({"op": "no_such_op", "seq": seq}));
        assert_eq!(reply["seq"], seq, "{reply}");
        assert_eq!(reply["ok"], false, "{reply}");
    }
    c.send(b"{\"op\":\"ping\"}\n").unwrap();
    let reply = c.read_reply();
    assert_eq!(reply["seq"], Value::Null, "{reply}");
    assert_eq!(reply["ok"], true, "{reply}");
    c.send(b"{\"op\":\"ping\",\"seq\":null}\n").unwrap();
    assert_eq!(c.read_reply()["seq"], Value::Null);
}

#[test]
fn meta_sent_back_with_a_token_is_ignored() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let stored = c.save(token("meta", 1));
    let mut back = stored.clone();
    back["access_token"] = json!("1000.meta.access.new");
    back["meta"] = json!({"state": "needs_reauth", "failures": 99, "created_at": 1});
    let updated = c.save(back);
    assert_eq!(updated["id"], stored["id"]);
    assert_eq!(updated["access_token"], "1000.meta.access.new");
    assert_eq!(updated["meta"]["state"], "active", "{updated}");
    assert_eq!(updated["meta"]["failures"], 0, "{updated}");
    assert_eq!(
        updated["meta"]["created_at"], stored["meta"]["created_at"],
        "{updated}"
    );
    assert_eq!(c.count(), 1);
}

#[test]
fn optional_arguments_may_be_null() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    c.save(token("nullargs", 1));
    let result = c.ok(json!({"op": "get_tokens", "limit": null, "after": null}));
    assert_eq!(result["tokens"].as_array().unwrap().len(), 1, "{result}");
    assert_eq!(result["next"], Value::Null, "{result}");
}

#[test]
fn a_delete_is_logged_even_when_its_client_hangs_up_before_the_reply() {
    let daemon = Daemon::start();
    daemon.client().save(token("hangup", 1));
    // A save whose reply outgrows the socket's buffer, a delete behind it, and gone
    // without reading: writing the first reply fails, and the connection ends.
    let mut s = std::os::unix::net::UnixStream::connect(daemon.socket()).unwrap();
    let big = json!({"op": "save_token", "token": {"user_name": "big", "refresh_token": "1000.r",
        "redirect_url": "x".repeat(60_000)}});
    let lines = format!("{big}\n{}\n", json!({"op": "delete_tokens"}));
    s.write_all(lines.as_bytes()).unwrap();
    drop(s);
    crate::inproc::eventually("the delete to commit", || daemon.client().count() == 0);
    // The store logs it once the commit's outcome reaches the delete's reply, which
    // runs on its own just after the commit.
    crate::inproc::eventually("the delete to be logged", || {
        daemon.log().contains("a client deleted every token")
    });
}
