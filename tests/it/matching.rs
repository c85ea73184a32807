//! Which stored token a request means (docs/protocol.md, "How a token is matched"; ZOHO.md,
//! "How the SDK uses a TokenStore"), and what `save_token` does with it: update in place,
//! one row per user, ids that are never reused.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::helpers::{fields, id_of, token, Client, Daemon};

/// Two tokens under the same client credentials: A has a user name and a grant token,
/// B has neither (as the SDK stores a token created from a refresh token alone).
fn two_tokens(c: &mut Client) -> (Value, Value) {
    let a = c.save(json!({
        "user_name": "a@example.com:1",
        "client_id": "1000.CID",
        "client_secret": "csec",
        "refresh_token": "1000.rA",
        "access_token": "1000.aA",
        "grant_token": "1000.gA",
    }));
    let b = c.save(json!({
        "client_id": "1000.CID",
        "client_secret": "csec",
        "refresh_token": "1000.rB",
        "access_token": "1000.aB",
    }));
    assert_ne!(a["id"], b["id"]);
    (a, b)
}

/// `find_token` must find exactly `expected` (by id), or nothing when it is null.
fn assert_finds(c: &mut Client, query: Value, expected: &Value) {
    let found = c.find(query.clone());
    if expected.is_null() {
        assert_eq!(
            found,
            Value::Null,
            "find_token {query} should match nothing"
        );
    } else {
        assert_eq!(
            found["id"], expected["id"],
            "find_token {query} matched the wrong token: {found}"
        );
        assert_eq!(fields(&found), fields(expected));
    }
}

#[test]
fn user_name_matches_first_and_alone() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let (a, b) = two_tokens(&mut c);
    assert_finds(&mut c, json!({"user_name": "a@example.com:1"}), &a);
    // user_name wins over every other key...
    assert_finds(
        &mut c,
        json!({"user_name": "a@example.com:1", "access_token": "1000.aB"}),
        &a,
    );
    assert_finds(
        &mut c,
        json!({"user_name": "a@example.com:1", "client_id": "1000.CID", "client_secret": "csec", "refresh_token": "1000.rB"}),
        &a,
    );
    // ...and when it names nobody, no other key is tried.
    assert_finds(
        &mut c,
        json!({"user_name": "nobody@example.com:1", "access_token": "1000.aB"}),
        &Value::Null,
    );
    assert_finds(
        &mut c,
        json!({"user_name": "nobody@example.com:1", "client_id": "1000.CID", "client_secret": "csec", "refresh_token": "1000.rB"}),
        &Value::Null,
    );
    // Matching is exact.
    assert_finds(
        &mut c,
        json!({"user_name": "A@example.com:1"}),
        &Value::Null,
    );
    assert_finds(&mut c, json!({"user_name": "a@example.com"}), &Value::Null);
    assert_finds(
        &mut c,
        json!({"user_name": "a@example.com:1 "}),
        &Value::Null,
    );
    let _ = b;
}

#[test]
fn access_token_matches_only_without_client_id_and_secret() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let (a, b) = two_tokens(&mut c);
    assert_finds(&mut c, json!({"access_token": "1000.aB"}), &b);
    assert_finds(&mut c, json!({"access_token": "1000.aA"}), &a);
    assert_finds(
        &mut c,
        json!({"access_token": "1000.aB", "client_id": null, "client_secret": ""}),
        &b,
    );
    // Either credential present: the access-token rule does not apply.
    assert_finds(
        &mut c,
        json!({"access_token": "1000.aB", "client_id": "1000.CID"}),
        &Value::Null,
    );
    assert_finds(
        &mut c,
        json!({"access_token": "1000.aB", "client_secret": "csec"}),
        &Value::Null,
    );
    // Both present, but neither grant nor refresh token: nothing to match on.
    assert_finds(
        &mut c,
        json!({"access_token": "1000.aB", "client_id": "1000.CID", "client_secret": "csec"}),
        &Value::Null,
    );
    // Both present with a refresh token: the credentials rule, not the access token.
    assert_finds(
        &mut c,
        json!({"access_token": "1000.aA", "client_id": "1000.CID", "client_secret": "csec", "refresh_token": "1000.rB"}),
        &b,
    );
    // Without credentials the access token decides, whatever refresh token comes along.
    assert_finds(
        &mut c,
        json!({"access_token": "1000.aB", "refresh_token": "1000.rA"}),
        &b,
    );
    assert_finds(
        &mut c,
        json!({"access_token": "1000.unknown"}),
        &Value::Null,
    );
    // An empty user_name is no user_name: the access token decides.
    assert_finds(
        &mut c,
        json!({"user_name": "", "access_token": "1000.aB"}),
        &b,
    );
}

#[test]
fn with_client_credentials_grant_token_then_refresh_token() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let (a, b) = two_tokens(&mut c);
    let creds = |extra: Value| {
        let mut q = json!({"client_id": "1000.CID", "client_secret": "csec"});
        for (k, v) in extra.as_object().unwrap() {
            q[k] = v.clone();
        }
        q
    };
    assert_finds(&mut c, creds(json!({"grant_token": "1000.gA"})), &a);
    assert_finds(&mut c, creds(json!({"refresh_token": "1000.rB"})), &b);
    assert_finds(&mut c, creds(json!({"refresh_token": "1000.rA"})), &a);
    // The grant token is tried first...
    assert_finds(
        &mut c,
        creds(json!({"grant_token": "1000.gA", "refresh_token": "1000.rB"})),
        &a,
    );
    // ...and a grant token that matches nothing falls back to the refresh token
    // (docs/protocol.md: "or else whose refresh_token equals the given one").
    assert_finds(
        &mut c,
        creds(json!({"grant_token": "1000.gUnknown", "refresh_token": "1000.rB"})),
        &b,
    );
    assert_finds(
        &mut c,
        creds(json!({"grant_token": "1000.gUnknown"})),
        &Value::Null,
    );
    assert_finds(
        &mut c,
        creds(json!({"refresh_token": "1000.rUnknown"})),
        &Value::Null,
    );
    // A grant token is not looked up among refresh tokens, nor the reverse.
    assert_finds(
        &mut c,
        creds(json!({"grant_token": "1000.rB"})),
        &Value::Null,
    );
    assert_finds(
        &mut c,
        creds(json!({"refresh_token": "1000.gA"})),
        &Value::Null,
    );
}

#[test]
fn refresh_or_grant_token_without_both_client_credentials_matches_nothing() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let _ = two_tokens(&mut c);
    for query in [
        json!({"refresh_token": "1000.rA"}),
        json!({"refresh_token": "1000.rA", "client_id": "1000.CID"}),
        json!({"refresh_token": "1000.rA", "client_secret": "csec"}),
        json!({"grant_token": "1000.gA"}),
        json!({"grant_token": "1000.gA", "client_id": "1000.CID"}),
        json!({"grant_token": "1000.gA", "client_secret": "csec"}),
        json!({"refresh_token": "1000.rB", "grant_token": "1000.gA", "client_id": "1000.CID"}),
        json!({"refresh_token": "1000.rA", "client_id": "1000.CID", "client_secret": ""}),
    ] {
        assert_finds(&mut c, query, &Value::Null);
    }
}

#[test]
fn an_id_alone_matches_nothing_in_find_token() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let (a, b) = two_tokens(&mut c);
    assert_finds(&mut c, json!({"id": a["id"]}), &Value::Null);
    assert_finds(&mut c, json!({"id": b["id"]}), &Value::Null);
    // An id adds nothing to the rules either: the other keys decide.
    assert_finds(
        &mut c,
        json!({"id": a["id"], "refresh_token": "1000.rA"}),
        &Value::Null,
    );
    assert_finds(
        &mut c,
        json!({"id": a["id"], "access_token": "1000.aB"}),
        &b,
    );
    assert_finds(&mut c, json!({}), &Value::Null);
    assert_finds(
        &mut c,
        json!({"client_id": "1000.CID", "client_secret": "csec"}),
        &Value::Null,
    );
}

#[test]
fn save_matches_by_id_before_the_other_rules() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let (a, b) = two_tokens(&mut c);
    // By the rules this would be A (its refresh token); the id says B.
    let saved = c.save(json!({
        "id": b["id"],
        "client_id": "1000.CID",
        "client_secret": "csec",
        "refresh_token": "1000.rA",
        "expiry_time": "1795330406683",
    }));
    assert_eq!(saved["id"], b["id"], "{saved}");
    assert_eq!(saved["refresh_token"], "1000.rA", "{saved}");
    assert_eq!(
        saved["access_token"], "1000.aB",
        "unset fields kept: {saved}"
    );
    assert_eq!(fields(&c.find_by_id(&id_of(&a))), fields(&a), "A untouched");
    assert_eq!(c.count(), 2);
    // An id with nothing else updates nothing and still finds its token.
    let same = c.save(json!({"id": a["id"]}));
    assert_eq!(fields(&same), fields(&a));
    // An access token alone, by id, is a refresh written back by the SDK.
    let refreshed = c.save(
        json!({"id": a["id"], "access_token": "1000.aA2", "expiry_time": 1_795_330_999_999_u64}),
    );
    assert_eq!(refreshed["access_token"], "1000.aA2");
    assert_eq!(refreshed["expiry_time"], "1795330999999");
    assert_eq!(refreshed["refresh_token"], "1000.rA");
    assert_eq!(c.count(), 2);
}

#[test]
fn saving_the_same_user_twice_keeps_one_row_with_newer_values_and_unset_fields_kept() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let first = c.save(json!({
        "user_name": "twice@example.com:7",
        "client_id": "1000.TWICE",
        "client_secret": "twice-secret",
        "refresh_token": "1000.twice.r1",
        "access_token": "1000.twice.a1",
        "grant_token": "1000.twice.g1",
        "expiry_time": "1000",
        "redirect_url": "https://example.com/cb",
        "api_domain": "https://www.zohoapis.eu",
    }));
    let second = c.save(json!({
        "user_name": "twice@example.com:7",
        "access_token": "1000.twice.a2",
        "expiry_time": "2000",
        "refresh_token": null,
        "grant_token": "",
    }));
    assert_eq!(second["id"], first["id"], "the same row: {second}");
    let expected = json!({
        "id": first["id"],
        "user_name": "twice@example.com:7",
        "client_id": "1000.TWICE",
        "client_secret": "twice-secret",
        "refresh_token": "1000.twice.r1",
        "access_token": "1000.twice.a2",
        "grant_token": "1000.twice.g1",
        "expiry_time": "2000",
        "redirect_url": "https://example.com/cb",
        "api_domain": "https://www.zohoapis.eu",
    });
    assert_eq!(fields(&second), expected);
    assert_eq!(c.snapshot(), vec![expected.clone()], "one row");
    assert_eq!(c.count(), 1);
    assert_eq!(
        second["meta"]["created_at"], first["meta"]["created_at"],
        "still the first save's row: {second}"
    );
    // The same user saved again with every field new: one row, every field replaced.
    let mut all_new = token("twice", 9);
    all_new["user_name"] = json!("twice@example.com:7");
    all_new["grant_token"] = json!("1000.twice.g9");
    let third = c.save(all_new.clone());
    assert_eq!(third["id"], first["id"]);
    all_new["id"] = first["id"].clone();
    assert_eq!(fields(&third), fields(&all_new));
    assert_eq!(c.count(), 1);
}

#[test]
fn a_save_without_user_name_updates_the_token_its_credentials_match() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let (a, b) = two_tokens(&mut c);
    // The SDK writing back a refreshed access token for a token it found by refresh token.
    let saved = c.save(json!({
        "client_id": "1000.CID",
        "client_secret": "csec",
        "refresh_token": "1000.rB",
        "access_token": "1000.aB2",
    }));
    assert_eq!(saved["id"], b["id"], "{saved}");
    assert_eq!(saved["access_token"], "1000.aB2");
    // By access token alone.
    let saved = c.save(json!({"access_token": "1000.aA", "expiry_time": "42"}));
    assert_eq!(saved["id"], a["id"], "{saved}");
    assert_eq!(saved["expiry_time"], "42");
    assert_eq!(saved["user_name"], "a@example.com:1");
    assert_eq!(c.count(), 2);
}

#[test]
fn a_refresh_token_without_credentials_inserts_rather_than_overwrites() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let (a, b) = two_tokens(&mut c);
    // Without client credentials the refresh token matches nothing, so this is new.
    let other =
        c.save(json!({"refresh_token": "1000.rA", "api_domain": "https://www.zohoapis.in"}));
    assert_ne!(other["id"], a["id"]);
    assert_ne!(other["id"], b["id"]);
    assert_eq!(fields(&c.find_by_id(&id_of(&a))), fields(&a), "A untouched");
    assert_eq!(c.count(), 3);
}

#[test]
fn incomplete_token_when_a_save_only_identifies_and_matches_nothing() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let (a, _b) = two_tokens(&mut c);
    let before = c.snapshot();
    for token in [
        json!({"user_name": "ghost@example.com:1"}),
        json!({"id": "4242"}),
        json!({"id": "4242", "user_name": "ghost@example.com:1"}),
        json!({"user_name": "ghost@example.com:1", "client_id": "1000.CID", "client_secret": "csec",
               "expiry_time": "1795330406683", "redirect_url": "https://example.com/cb",
               "api_domain": "https://www.zohoapis.com"}),
        json!({"user_name": "ghost@example.com:1", "refresh_token": "", "access_token": null}),
    ] {
        let (code, message) = c.err(json!({"op": "save_token", "token": token}));
        assert_eq!(code, "incomplete_token", "{token}: {message}");
        assert!(!message.is_empty());
    }
    assert_eq!(c.snapshot(), before, "nothing stored");
    // The same save on a user that exists matches it and is fine.
    let same = c.save(json!({"user_name": "a@example.com:1"}));
    assert_eq!(fields(&same), fields(&a));
    // With any one of refresh, grant or access token, it is stored.
    for (n, key) in ["refresh_token", "grant_token", "access_token"]
        .iter()
        .enumerate()
    {
        let mut t = json!({"user_name": format!("new{n}@example.com:1")});
        t[*key] = json!(format!("1000.new.{n}"));
        let saved = c.save(t);
        assert_eq!(saved[*key], format!("1000.new.{n}"));
    }
    assert_eq!(c.count(), 5);
}

#[test]
fn a_new_token_without_any_credential_is_refused_even_when_it_names_nothing() {
    // Stricter than the SDK's stores, which would insert a row no one can use: tokend
    // refuses every new token that carries no refresh, grant or access token
    // (docs/protocol.md, "How a token is matched").
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let sent = json!({
        "client_id": "1000.ONLY",
        "client_secret": "only-secret",
        "redirect_url": "https://example.com/cb",
        "expiry_time": "1795330406683",
    });
    let reply = c.request(json!({"op": "save_token", "token": sent}));
    assert_eq!(reply["error"]["code"], "incomplete_token", "{reply}");
    assert_eq!(c.count(), 0);
}

#[test]
fn a_save_naming_a_new_id_keeps_it_and_generated_ids_avoid_it() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let mut imported = token("import", 1);
    imported["id"] = json!("3");
    let saved = c.save(imported);
    assert_eq!(saved["id"], "3", "{saved}");
    let mut imported = token("import", 2);
    imported["id"] = json!("imported-abc");
    assert_eq!(c.save(imported)["id"], "imported-abc");
    let mut ids = HashSet::from(["3".to_owned(), "imported-abc".to_owned()]);
    for n in 3..10 {
        let id = id_of(&c.save(token("import", n)));
        assert!(ids.insert(id.clone()), "id {id} handed out twice");
    }
    assert_eq!(c.count(), 9);
}

#[test]
fn a_deleted_imported_id_is_never_handed_out_again() {
    // An SDK process that saved with id "7" keeps asking for "7" after the token is gone;
    // it must never be given another user's token under that id.
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let mut imported = token("reimport", 0);
    imported["id"] = json!("7");
    assert_eq!(c.save(imported)["id"], "7");
    assert!(c.delete("7"));
    for n in 1..=12 {
        let saved = c.save(token("reimport", n));
        assert_ne!(
            saved["id"], "7",
            "the deleted id 7 was handed out again, to {}",
            saved["user_name"]
        );
    }
    assert_eq!(c.find_by_id("7"), Value::Null);
}

#[test]
fn an_id_never_lets_a_save_duplicate_a_user() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let (a, b) = two_tokens(&mut c);
    // An unknown id with A's user name: still A's row (one row per user).
    let saved =
        c.save(json!({"id": "999", "user_name": "a@example.com:1", "access_token": "1000.aA3"}));
    assert_eq!(saved["id"], a["id"], "{saved}");
    assert_eq!(saved["access_token"], "1000.aA3");
    assert_eq!(c.count(), 2);
    // B's id with A's user name would make two rows for one user: refused, nothing changed.
    let before = c.snapshot();
    let reply = c.request(
        json!({"op": "save_token", "token": {"id": b["id"], "user_name": "a@example.com:1"}}),
    );
    assert_eq!(reply["ok"], false, "a second row for user a: {reply}");
    assert_eq!(c.snapshot(), before);
}

#[test]
fn ids_are_unique_past_ten_rows_and_never_reused_after_delete() {
    let mut daemon = Daemon::start();
    let mut c = daemon.client();
    let mut seen = HashSet::new();
    let mut ids = Vec::new();
    for n in 0..12 {
        let id = id_of(&c.save(token("ids", n)));
        assert!(seen.insert(id.clone()), "id {id} handed out twice");
        ids.push(id);
    }
    // Ten and more: the "max(id)+1 over text" bug hands out "10" twice.
    assert_eq!(c.count(), 12);
    let last = ids.last().unwrap().clone();
    assert!(c.delete(&last));
    let next = id_of(&c.save(token("ids", 12)));
    assert!(
        seen.insert(next.clone()),
        "id {next} reused after deleting {last}"
    );
    // Deleting everything does not reset the ids either.
    c.ok(json!({"op": "delete_tokens"}));
    let after_all = id_of(&c.save(token("ids", 13)));
    assert!(
        seen.insert(after_all.clone()),
        "id {after_all} reused after delete_tokens"
    );
    // Nor does a restart.
    assert!(c.delete(&after_all));
    drop(c);
    daemon.restart();
    let mut c = daemon.client();
    let after_restart = id_of(&c.save(token("ids", 14)));
    assert!(
        seen.insert(after_restart.clone()),
        "id {after_restart} reused after a restart"
    );
}

#[test]
fn ids_page_in_numeric_order() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let ids: Vec<String> = (0..12).map(|n| id_of(&c.save(token("order", n)))).collect();
    let listed: Vec<String> = c.all().iter().map(id_of).collect();
    assert_eq!(listed, ids, "shorter ids first: \"9\" before \"10\"");
}
