//! The refresher, against a loopback accounts server, with time moved by a manual clock.

use std::time::Duration;

use serde_json::{json, Value};

use crate::fake_zoho::{grant, throttled, FakeZoho};
use crate::helpers::{id_of, Client};
use crate::inproc::{eventually, InProcess, HOUR, MINUTE, T0};

/// A token tokend can refresh by itself, with an api_domain outside Zoho's table so the
/// configured (loopback) accounts server is used.
pub(crate) fn refreshable(user: &str, expiry: i64) -> Value {
    json!({
        "user_name": user,
        "client_id": "1000.CLIENT",
        "client_secret": "SECRET-cs",
        "refresh_token": format!("SECRET-rt-{user}"),
        "access_token": format!("SECRET-at-{user}"),
        "expiry_time": expiry.to_string(),
        "api_domain": "http://127.0.0.1:1",
    })
}

pub(crate) fn advance_to(d: &InProcess, at: i64) {
    let now = d.clock.now_ms();
    assert!(at >= now, "time only moves forward");
    d.clock.advance(Duration::from_millis((at - now) as u64));
}

pub(crate) fn meta(c: &mut Client, id: &str) -> Value {
    c.find_by_id(id)["meta"].clone()
}

#[test]
fn a_token_is_refreshed_ahead_of_expiry_and_the_new_token_is_stored_and_served() {
    let zoho = FakeZoho::granting();
    let d = InProcess::start(&zoho.url, |_| {});
    let mut c = d.client();
    let id = id_of(&c.save(refreshable("u", T0 + HOUR)));

    // A one-hour token: lead 6 min, jitter up to a quarter of that earlier.
    let due = c.ok(json!({"op": "status"}))["next_refresh_at"]
        .as_i64()
        .unwrap();
    assert!(
        (T0 + HOUR - 6 * MINUTE - 90_000..=T0 + HOUR - 6 * MINUTE).contains(&due),
        "{due}"
    );
    // (When the deadline falls is `schedule`'s unit tests; here, that it is kept.)
    advance_to(&d, due);
    zoho.wait_for_count(1);
    eventually("the refreshed token to be stored", || {
        c.find_by_id(&id)["access_token"] == "SECRET-new-1"
    });

    let (path, form) = &zoho.requests()[0];
    assert_eq!(path, "/oauth/v2/token");
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["client_id"], "1000.CLIENT");
    assert_eq!(form["client_secret"], "SECRET-cs");
    assert_eq!(form["refresh_token"], "SECRET-rt-u");
    let stored = c.find_by_id(&id);
    assert_eq!(
        stored["expiry_time"],
        (due + HOUR).to_string(),
        "now + expires_in, in ms"
    );
    assert_eq!(
        stored["refresh_token"], "SECRET-rt-u",
        "kept: the answer carried none"
    );
    let served = c.ok(json!({"op": "access_token", "user_name": "u"}));
    assert_eq!(served["access_token"], "SECRET-new-1");
    assert_eq!(served["token_id"], id.as_str());
    assert_eq!(
        zoho.count(),
        1,
        "a fresh token is served without asking again"
    );
    let next = c.ok(json!({"op": "status"}))["next_refresh_at"]
        .as_i64()
        .unwrap();
    assert!(
        next > due + HOUR - 8 * MINUTE,
        "rescheduled from the new expiry: {next}"
    );
}

#[test]
fn fifty_concurrent_requests_for_an_expired_token_cause_one_refresh() {
    let zoho = FakeZoho::granting();
    zoho.close_gate();
    let d = InProcess::start(&zoho.url, |c| c.refresh.enabled = false);
    let id = id_of(&d.client().save(refreshable("u", T0 - 1000)));
    let callers: Vec<_> = (0..50)
        .map(|_| {
            let socket = d.socket();
            let id = id.clone();
            std::thread::spawn(move || {
                Client::connect(&socket).ok(json!({"op": "access_token", "token_id": id}))
            })
        })
        .collect();
    // Every caller waits on the one refresh before the provider answers it.
    let mut c = d.client();
    eventually("all fifty callers to wait on the refresh", || {
        c.ok(json!({"op": "status"}))["waiting"] == 50
    });
    zoho.release(1);
    for caller in callers {
        assert_eq!(caller.join().unwrap()["access_token"], "SECRET-new-1");
    }
    assert_eq!(zoho.count(), 1);
}

#[test]
fn a_permanent_error_marks_needs_reauth_and_stops_all_calls_but_the_old_token_is_served_until_expiry(
) {
    let zoho = FakeZoho::start(|_, _, _| (200, json!({"error": "invalid_code"}).to_string()));
    let d = InProcess::start(&zoho.url, |_| {});
    let mut c = d.client();
    let id = id_of(&c.save(refreshable("u", T0 + 30 * MINUTE)));
    advance_to(&d, T0 + 30 * MINUTE - 3 * MINUTE);
    zoho.wait_for_count(1);
    eventually("needs_reauth", || {
        meta(&mut c, &id)["state"] == "needs_reauth"
    });
    assert_eq!(meta(&mut c, &id)["last_error"], "invalid_code");

    // Three minutes left: still served.
    let served = c.ok(json!({"op": "access_token", "token_id": id}));
    assert_eq!(served["access_token"], "SECRET-at-u");
    advance_to(&d, T0 + 31 * MINUTE);
    let reply = c.request(json!({"op": "access_token", "token_id": id}));
    assert_eq!(reply["error"]["code"], "needs_reauth");
    assert_eq!(reply["error"]["provider_error"], "invalid_code");
    assert_eq!(
        c.request(json!({"op": "refresh", "token_id": id}))["error"]["code"],
        "needs_reauth"
    );
    advance_to(&d, T0 + 48 * HOUR);
    assert_eq!(c.ok(json!({"op": "status"}))["tokens"]["needs_reauth"], 1);
    assert_eq!(zoho.count(), 1, "no call after a permanent error");

    // The user authorises again: a client save brings the token back to life.
    c.save(json!({"user_name": "u", "refresh_token": "SECRET-rt-again", "client_id": "1000.CLIENT", "client_secret": "SECRET-cs"}));
    assert_eq!(meta(&mut c, &id)["state"], "active");
}

#[test]
fn a_corrected_client_secret_brings_back_a_token_the_old_one_had_marked_needs_reauth() {
    // The operator rotated the client secret at Zoho: the stored one is refused.
    let zoho = FakeZoho::start(|_, form, n| match form["client_secret"].as_str() {
        "SECRET-cs" => (200, json!({"error": "invalid_client_secret"}).to_string()),
        _ => grant(&format!("SECRET-new-{n}"), None),
    });
    let d = InProcess::start(&zoho.url, |c| c.refresh.enabled = false);
    let mut c = d.client();
    let id = id_of(&c.save(refreshable("u", T0 - 1)));
    let reply = c.request(json!({"op": "refresh", "token_id": id}));
    assert_eq!(reply["error"]["code"], "needs_reauth", "{reply}");
    // The application saves the token again with the new secret; the refresh token
    // itself was never the problem.
    let mut fixed = refreshable("u", T0 - 1);
    fixed["client_secret"] = json!("SECRET-cs-rotated");
    c.save(fixed);
    assert_eq!(meta(&mut c, &id)["state"], "active");
    let served = c.ok(json!({"op": "access_token", "token_id": id}));
    assert_eq!(served["access_token"], "SECRET-new-2");
}

#[test]
fn a_new_api_domain_ends_a_failure_state_but_not_a_throttle() {
    // A token saved without an api_domain (from the SDK's older CSV) has no accounts
    // server; the SDK store then saves its environment's: that deserves a try at once.
    let zoho = FakeZoho::start(|_, _, n| match n {
        2 => throttled(),
        _ => grant(&format!("SECRET-new-{n}"), None),
    });
    let d = InProcess::start(&zoho.url, |c| {
        c.refresh.enabled = false;
        c.refresh.endpoints.accounts_url = None;
        let url = zoho.url.clone();
        let granted = "http://127.0.0.1:1".to_owned();
        c.refresh.endpoints.per_domain = [(url.clone(), url.clone()), (granted, url)].into();
    });
    let mut c = d.client();
    let mut t = refreshable("u", T0 - 1);
    t["api_domain"] = Value::Null;
    let id = id_of(&c.save(t));
    let reply = c.request(json!({"op": "access_token", "token_id": id}));
    assert_eq!(
        reply["error"]["provider_error"], "no_accounts_server",
        "{reply}"
    );
    c.save(json!({"id": id, "api_domain": zoho.url}));
    assert!(meta(&mut c, &id)["next_refresh_at"].is_null());
    c.ok(json!({"op": "access_token", "token_id": id}));
    assert_eq!(zoho.count(), 1);
    // A throttle is the refresh token's, wherever the request goes.
    // (The grant moved the token to the api_domain it named, http://127.0.0.1:1.)
    let r = c.request(json!({"op": "refresh", "token_id": id}));
    assert_eq!(r["error"]["code"], "throttled", "{r}");
    c.save(json!({"id": id, "api_domain": zoho.url}));
    // Kept on the row too, so that a restart reads it back.
    assert!(!meta(&mut c, &id)["next_refresh_at"].is_null());
    let r = c.request(json!({"op": "refresh", "token_id": id}));
    assert_eq!(r["error"]["code"], "throttled", "{r}");
    assert_eq!(zoho.count(), 2);
}

#[test]
fn transient_errors_retry_with_growing_jittered_delays() {
    let zoho = FakeZoho::start(|_, _, _| (500, "oops".into()));
    let d = InProcess::start(&zoho.url, |_| {});
    let mut c = d.client();
    let id = id_of(&c.save(refreshable("u", T0 - 1)));
    // Backoff from 10 s doubling, each ±50%: the k-th wait is within [5·2^(k-1), 15·2^(k-1)] s.
    let mut at = T0;
    for k in 1..=4u32 {
        zoho.wait_for_count(k as usize);
        eventually("the failure to be recorded", || {
            meta(&mut c, &id)["failures"] == k
        });
        let m = meta(&mut c, &id);
        assert_eq!(m["last_error"], "transient");
        assert_eq!(m["state"], "active");
        let next = m["next_refresh_at"].as_i64().unwrap();
        let wait = next - at;
        let base = 10_000 * (1 << (k - 1));
        assert!(
            (base / 2..=base * 3 / 2).contains(&wait),
            "retry {k} after {wait} ms"
        );
        let reply = c.request(json!({"op": "access_token", "token_id": id}));
        assert_eq!(reply["error"]["code"], "refresh_failed", "{reply}");
        assert_eq!(reply["error"]["retry_at"], next, "{reply}");
        assert_eq!(
            zoho.count(),
            k as usize,
            "a caller does not cut the backoff short"
        );
        advance_to(&d, next);
        at = next;
    }
}

#[test]
fn the_rate_budget_is_never_exceeded_even_by_forced_refreshes() {
    let zoho = FakeZoho::granting();
    let d = InProcess::start(&zoho.url, |c| c.refresh.enabled = false);
    let mut c = d.client();
    let id = id_of(&c.save(refreshable("u", T0 + HOUR)));
    for n in 1..=10 {
        let t = c.ok(json!({"op": "refresh", "token_id": id}));
        assert_eq!(t["token"]["access_token"], format!("SECRET-new-{n}"));
        d.clock.advance(Duration::from_secs(1));
    }
    let reply = c.request(json!({"op": "refresh", "token_id": id}));
    assert_eq!(reply["error"]["code"], "throttled");
    assert_eq!(
        reply["error"]["retry_at"],
        T0 + 10 * MINUTE,
        "when the first leaves the window"
    );
    assert_eq!(zoho.count(), 10);
    advance_to(&d, T0 + 10 * MINUTE);
    assert_eq!(
        c.ok(json!({"op": "refresh", "token_id": id}))["token"]["access_token"],
        "SECRET-new-11"
    );
}

#[test]
fn a_rotated_refresh_token_is_stored_and_an_answer_without_one_keeps_it() {
    let zoho = FakeZoho::start(|_, _, n| {
        grant(
            &format!("SECRET-new-{n}"),
            (n == 1).then_some("SECRET-rt-rotated"),
        )
    });
    let d = InProcess::start(&zoho.url, |c| c.refresh.enabled = false);
    let mut c = d.client();
    let id = id_of(&c.save(refreshable("u", T0 + HOUR)));
    c.ok(json!({"op": "refresh", "token_id": id}));
    assert_eq!(c.find_by_id(&id)["refresh_token"], "SECRET-rt-rotated");
    c.ok(json!({"op": "refresh", "token_id": id}));
    assert_eq!(
        zoho.requests()[1].1["refresh_token"],
        "SECRET-rt-rotated",
        "the rotated one is used"
    );
    let stored = c.find_by_id(&id);
    assert_eq!(stored["refresh_token"], "SECRET-rt-rotated");
    assert_eq!(stored["access_token"], "SECRET-new-2");
}

#[test]
fn after_a_restart_overdue_tokens_are_refreshed_earliest_first_within_the_cap() {
    let zoho = FakeZoho::granting();
    let d = InProcess::start(&zoho.url, |c| {
        c.refresh.max_in_flight = 2;
        c.refresh.jitter = 0.0;
    });
    let mut c = d.client();
    // Saved out of expiry order, so the order of refreshes is not the order of saves.
    for (user, minutes) in [
        ("e", 65),
        ("a", 61),
        ("f", 66),
        ("c", 63),
        ("b", 62),
        ("d", 64),
    ] {
        c.save(refreshable(user, T0 + minutes * MINUTE));
    }
    drop(c);
    let (dir, config) = d.stop();
    assert_eq!(zoho.count(), 0);

    zoho.close_gate();
    let d = InProcess::start_in(dir, config, tokend::clock::Clock::manual(T0 + 3 * HOUR));
    for done in 0..6 {
        zoho.wait_for_count((done + 2).min(6));
        assert!(zoho.in_flight() <= 2);
        zoho.release(1);
        eventually("one more answered", || zoho.completed() > done);
    }
    assert!(
        zoho.max_in_flight() <= 2,
        "{} at once",
        zoho.max_in_flight()
    );
    let order: Vec<String> = zoho
        .requests()
        .iter()
        .map(|(_, f)| f["refresh_token"].clone())
        .collect();
    let rt = |u: &str| format!("SECRET-rt-{u}");
    // The first two start together and may reach the server in either order; each later
    // one starts only when a slot frees, so from there the order is the deadlines'.
    let mut first_two = order[..2].to_vec();
    first_two.sort();
    assert_eq!(first_two, vec![rt("a"), rt("b")]);
    assert_eq!(order[2..], ["c", "d", "e", "f"].map(rt));
    let mut c = d.client();
    eventually("all six stored", || {
        c.all().iter().all(|t| {
            t["access_token"]
                .as_str()
                .unwrap()
                .starts_with("SECRET-new")
        })
    });
}

#[test]
fn a_save_that_leaves_the_expiry_alone_leaves_the_refresh_lead_alone() {
    let zoho = FakeZoho::granting();
    let d = InProcess::start(&zoho.url, |_| {});
    let mut c = d.client();
    c.save(refreshable("u", T0 + HOUR));
    let due = |c: &mut Client| {
        c.ok(json!({"op": "status"}))["next_refresh_at"]
            .as_i64()
            .unwrap()
    };
    let planned = due(&mut c);
    // 50 minutes on, a client saves the token again with only its redirect_url changed:
    // the access token is as old as it was, so its refresh is as early as it was (6 to
    // 7.5 minutes ahead for an hour-long token), not squeezed to the one-minute floor as
    // if the token had been issued 10 minutes before its expiry.
    advance_to(&d, T0 + 50 * MINUTE);
    let mut resaved = refreshable("u", T0 + HOUR);
    resaved["redirect_url"] = json!("https://example.com/moved");
    c.save(resaved);
    let replanned = due(&mut c);
    assert!(
        replanned <= T0 + HOUR - 6 * MINUTE,
        "planned at {planned}, after the save at {replanned}"
    );
}

#[test]
fn a_delete_cancels_the_deadline_and_a_client_save_moves_it() {
    let zoho = FakeZoho::granting();
    let d = InProcess::start(&zoho.url, |_| {});
    let mut c = d.client();
    let gone = id_of(&c.save(refreshable("gone", T0 + HOUR)));
    let kept = id_of(&c.save(refreshable("kept", T0 + HOUR)));
    assert_eq!(c.ok(json!({"op": "status"}))["scheduled"], 2);
    assert!(c.delete(&gone));
    // The SDK refreshed by itself and saved: the deadline follows the new expiry.
    c.save(json!({"user_name": "kept", "access_token": "SECRET-sdk", "expiry_time": (T0 + 2 * HOUR).to_string()}));
    let status = c.ok(json!({"op": "status"}));
    assert_eq!(status["scheduled"], 1);
    assert!(
        status["next_refresh_at"].as_i64().unwrap() > T0 + HOUR,
        "{status}"
    );
    advance_to(&d, T0 + 2 * HOUR - 5 * MINUTE);
    zoho.wait_for_count(1);
    assert_eq!(zoho.requests()[0].1["refresh_token"], "SECRET-rt-kept");
    eventually("kept refreshed", || {
        c.find_by_id(&kept)["access_token"] == "SECRET-new-1"
    });
    assert_eq!(zoho.count(), 1, "no call for the deleted token");
}

#[test]
fn shutdown_waits_for_a_refresh_under_way_to_be_stored() {
    let zoho = FakeZoho::granting();
    zoho.close_gate();
    let d = InProcess::start(&zoho.url, |_| {});
    let id = id_of(&d.client().save(refreshable("u", T0 - 1)));
    zoho.wait_for_count(1);
    let socket = d.socket();
    let stopping = std::thread::spawn(move || d.stop());
    // Answer only once the daemon is stopping: its socket is gone just before it waits
    // for the refreshes under way.
    eventually("the daemon to stop listening", || !socket.exists());
    zoho.release(1);
    let (dir, config) = stopping.join().unwrap();
    zoho.open_gate();
    let d = InProcess::start_in(dir, config, tokend::clock::Clock::manual(T0));
    assert_eq!(d.client().find_by_id(&id)["access_token"], "SECRET-new-1");
}

#[test]
fn a_lookup_pipelined_after_a_refresh_or_cleanup_sees_what_it_did() {
    // The refresher writes through the store only once the provider has answered; a
    // lookup sent right behind must not overtake it (nor one behind a cleanup pass).
    let zoho = FakeZoho::granting();
    let d = InProcess::start(&zoho.url, |c| {
        c.cleanup.policies.default.idle_timeout = Some(Duration::from_millis(HOUR as u64));
    });
    let mut c = d.client();
    let id = id_of(&c.save(refreshable("u", T0 + 10 * HOUR)));
    let find = json!({"op": "find_token_by_id", "token_id": id, "seq": 2});
    c.find_by_id(&id);
    c.send_json(&json!({"op": "refresh", "token_id": id, "seq": 1}));
    c.send_json(&find);
    assert_eq!(
        c.read_reply()["result"]["token"]["access_token"],
        "SECRET-new-1"
    );
    let found = c.read_reply();
    assert_eq!(found["seq"], 2);
    assert_eq!(found["result"]["token"]["access_token"], "SECRET-new-1");
    advance_to(&d, T0 + 2 * HOUR);
    c.send_json(&json!({"op": "cleanup", "dry_run": false, "seq": 3}));
    c.send_json(&find);
    let pass = c.read_reply();
    assert_eq!(
        pass["result"]["removed"].as_array().unwrap().len(),
        1,
        "{pass}"
    );
    assert_eq!(c.read_reply()["result"]["token"], Value::Null);
}
