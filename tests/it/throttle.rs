//! The provider's throttle: Zoho blocks a refresh token that minted too many access
//! tokens, and lifts the block only after quiet minutes that every request re-arms.

use serde_json::json;

use crate::fake_zoho::{grant, throttled, FakeZoho};
use crate::helpers::{id_of, Client};
use crate::inproc::{eventually, InProcess, MINUTE, T0};
use crate::refresh::{advance_to, meta, refreshable};

#[test]
fn the_provider_throttle_pauses_refreshes_and_callers_learn_when_to_retry() {
    let zoho = FakeZoho::throttling();
    let d = InProcess::start(&zoho.url, |c| c.refresh.enabled = false);
    let mut c = d.client();
    let id = id_of(&c.save(refreshable("u", T0 - 1)));
    let reply = c.request(json!({"op": "refresh", "token_id": id}));
    assert_eq!(reply["error"]["code"], "throttled");
    assert_eq!(reply["error"]["retry_at"], T0 + 15 * MINUTE);
    assert_eq!(meta(&mut c, &id)["next_refresh_at"], T0 + 15 * MINUTE);
    // Zoho lifts the block only after quiet minutes, and every call re-arms it: not even
    // a forced refresh, nor the same token saved again, asks before the wait is over.
    advance_to(&d, T0 + 5 * MINUTE);
    let again = c.request(json!({"op": "refresh", "token_id": id}));
    assert_eq!(again["error"]["code"], "throttled", "{again}");
    c.save(refreshable("u", T0 - 1));
    let asked = c.request(json!({"op": "access_token", "token_id": id}));
    assert_eq!(asked["error"]["code"], "throttled", "{asked}");
    assert_eq!(zoho.count(), 1, "asked the provider during its block");
    // New credentials (the user authorised again) deserve a try at once.
    let mut renewed = refreshable("u", T0 - 1);
    renewed["refresh_token"] = json!("SECRET-rt-u-2");
    c.save(renewed);
    c.request(json!({"op": "access_token", "token_id": id}));
    assert_eq!(zoho.count(), 2);
}

/// A token holding the same refresh token as every other saved by this: the same grant
/// saved under a second user name.
fn sharing(c: &mut Client, user: &str, expiry: i64) -> String {
    let mut t = refreshable(user, expiry);
    t["refresh_token"] = json!("SECRET-rt-shared");
    id_of(&c.save(t))
}

/// A daemon (its refresher off) holding tokens for `users` that share one refresh
/// token, the first of which `zoho` has just throttled, at T0.
fn throttled_rows(zoho: &FakeZoho, users: &[&str]) -> (InProcess, Client, Vec<String>) {
    let d = InProcess::start(&zoho.url, |c| c.refresh.enabled = false);
    let mut c = d.client();
    let ids: Vec<String> = users.iter().map(|u| sharing(&mut c, u, T0 - 1)).collect();
    let r = c.request(json!({"op": "refresh", "token_id": ids[0]}));
    assert_eq!(r["error"]["retry_at"], T0 + 15 * MINUTE, "{r}");
    (d, c, ids)
}

#[test]
fn a_throttle_pauses_every_token_holding_that_refresh_token() {
    // Zoho throttles the refresh token, not our row: another row holding the same one
    // asking during the block re-arms it.
    let zoho = FakeZoho::throttling();
    let (d, mut c, ids) = throttled_rows(&zoho, &["a", "b"]);
    let [a, b] = [&ids[0], &ids[1]];
    assert_ne!(a, b);
    advance_to(&d, T0 + 5 * MINUTE);
    let other = c.request(json!({"op": "access_token", "token_id": b}));
    assert_eq!(other["error"]["code"], "throttled", "{other}");
    assert_eq!(other["error"]["retry_at"], T0 + 15 * MINUTE, "{other}");
    assert_eq!(zoho.count(), 1, "asked the provider during its block");
    // Throttled again through the other row: the second throttle in a row all the same.
    advance_to(&d, T0 + 15 * MINUTE);
    let other = c.request(json!({"op": "access_token", "token_id": b}));
    assert_eq!(zoho.count(), 2, "asked again once the wait is over");
    assert_eq!(other["error"]["retry_at"], T0 + 45 * MINUTE, "{other}");
    let first = c.request(json!({"op": "refresh", "token_id": a}));
    assert_eq!(first["error"]["retry_at"], T0 + 45 * MINUTE, "{first}");
    assert_eq!(zoho.count(), 2);
}

#[test]
fn when_the_wait_ends_one_request_asks_for_every_token_holding_the_refresh_token() {
    // Both rows fall due when the wait ends; asking once each would re-arm the block
    // twice.
    let zoho = FakeZoho::throttling();
    let d = InProcess::start(&zoho.url, |_| {});
    let mut c = d.client();
    let a = sharing(&mut c, "a", T0 - 1);
    zoho.wait_for_count(1);
    eventually("the throttle recorded", || {
        meta(&mut c, &a)["failures"] == 1
    });
    let b = sharing(&mut c, "b", T0 + 10 * MINUTE);
    advance_to(&d, T0 + 10 * MINUTE);
    advance_to(&d, T0 + 15 * MINUTE);
    zoho.wait_for_count(2);
    let failures = |c: &mut Client, id: &str| meta(c, id)["failures"].as_u64().unwrap();
    eventually("the second throttle recorded", || {
        failures(&mut c, &a) + failures(&mut c, &b) >= 2
    });
    for id in [&a, &b] {
        let r = c.request(json!({"op": "access_token", "token_id": id}));
        assert_eq!(r["error"]["retry_at"], T0 + 45 * MINUTE, "{r}");
    }
    assert_eq!(zoho.count(), 2, "one request when the wait ended");
}

#[test]
fn a_throttle_holds_every_token_holding_the_refresh_token_across_a_restart() {
    let zoho = FakeZoho::throttling();
    let (d, c, ids) = throttled_rows(&zoho, &["a", "b"]);
    drop(c);
    let d = d.restart_at(T0 + 5 * MINUTE);
    let r = d
        .client()
        .request(json!({"op": "access_token", "token_id": ids[1]}));
    assert_eq!(r["error"]["retry_at"], T0 + 15 * MINUTE, "{r}");
    assert_eq!(zoho.count(), 1, "asked the provider during its block");
}

#[test]
fn each_throttle_in_a_row_doubles_the_wait_up_to_four_times() {
    // Zoho's block lifts only after 15-30 quiet minutes and every request re-arms it: at
    // a fixed 15 minutes, a 30-minute block would never be seen lifted.
    let zoho = FakeZoho::throttling();
    let d = InProcess::start(&zoho.url, |_| {});
    let mut c = d.client();
    let id = id_of(&c.save(refreshable("u", T0 - 1)));
    let mut at = T0;
    for (n, wait) in [15, 30, 60, 60].into_iter().enumerate() {
        zoho.wait_for_count(n + 1);
        eventually("the throttle recorded", || {
            meta(&mut c, &id)["failures"] == n + 1
        });
        assert_eq!(
            meta(&mut c, &id)["next_refresh_at"],
            at + wait * MINUTE,
            "throttle {}",
            n + 1
        );
        at += wait * MINUTE;
        advance_to(&d, at);
    }
}

#[test]
fn a_save_during_a_throttle_does_not_start_the_doubling_over() {
    // The SDK saving what it read (the same credentials) mid-throttle: the next throttle
    // is still the second in a row.
    let zoho = FakeZoho::throttling();
    let d = InProcess::start(&zoho.url, |_| {});
    let mut c = d.client();
    let id = id_of(&c.save(refreshable("u", T0 - 1)));
    zoho.wait_for_count(1);
    eventually("the throttle recorded", || {
        meta(&mut c, &id)["failures"] == 1
    });
    advance_to(&d, T0 + 10 * MINUTE);
    c.save(json!({"user_name": "u", "redirect_url": "https://example.com/moved"}));
    advance_to(&d, T0 + 15 * MINUTE);
    zoho.wait_for_count(2);
    eventually("the second throttle recorded", || {
        meta(&mut c, &id)["failures"] == 2
    });
    assert_eq!(meta(&mut c, &id)["next_refresh_at"], T0 + 45 * MINUTE);
}

#[test]
fn a_success_or_new_credentials_end_a_run_of_throttles_and_a_503_does_not() {
    let zoho = FakeZoho::start(|_, _, n| match n {
        2 => grant("SECRET-new-2", None),
        4 => (503, "unavailable".to_owned()),
        _ => throttled(),
    });
    let d = InProcess::start(&zoho.url, |c| c.refresh.enabled = false);
    let mut c = d.client();
    let id = id_of(&c.save(refreshable("u", T0 - 1)));
    let r = c.request(json!({"op": "refresh", "token_id": id}));
    assert_eq!(r["error"]["retry_at"], T0 + 15 * MINUTE, "{r}");
    advance_to(&d, T0 + 15 * MINUTE);
    c.ok(json!({"op": "refresh", "token_id": id}));
    let r = c.request(json!({"op": "refresh", "token_id": id}));
    assert_eq!(
        r["error"]["retry_at"],
        T0 + 30 * MINUTE,
        "after a success: {r}"
    );
    advance_to(&d, T0 + 30 * MINUTE);
    let r = c.request(json!({"op": "refresh", "token_id": id}));
    assert_eq!(r["error"]["code"], "refresh_failed", "{r}");
    advance_to(&d, T0 + 60 * MINUTE);
    let r = c.request(json!({"op": "refresh", "token_id": id}));
    // A 503 says nothing of Zoho's block: this is the second throttle in a row.
    assert_eq!(r["error"]["retry_at"], T0 + 90 * MINUTE, "after a 503: {r}");
    // New credentials end a run too.
    let mut renewed = refreshable("u", T0 - 1);
    renewed["refresh_token"] = json!("SECRET-rt-u-2");
    c.save(renewed);
    let r = c.request(json!({"op": "refresh", "token_id": id}));
    assert_eq!(
        r["error"]["retry_at"],
        T0 + 75 * MINUTE,
        "after new credentials: {r}"
    );
}

#[test]
fn a_throttle_after_other_failures_waits_the_first_throttle_wait() {
    // Only throttles in a row double the wait: two 503s before do not make it an hour.
    let zoho = FakeZoho::start(|_, _, n| match n {
        1 | 2 => (503, "unavailable".to_owned()),
        _ => throttled(),
    });
    let d = InProcess::start(&zoho.url, |c| c.refresh.enabled = false);
    let mut c = d.client();
    let id = id_of(&c.save(refreshable("u", T0 - 1)));
    for _ in 0..2 {
        let reply = c.request(json!({"op": "refresh", "token_id": id}));
        assert_eq!(reply["error"]["code"], "refresh_failed", "{reply}");
    }
    let reply = c.request(json!({"op": "refresh", "token_id": id}));
    assert_eq!(reply["error"]["retry_at"], T0 + 15 * MINUTE, "{reply}");
    assert_eq!(meta(&mut c, &id)["failures"], 3);
}

#[test]
fn a_probe_without_an_answer_leaves_the_block_for_every_row() {
    // A 503 or a timeout says nothing of Zoho's block: the rows still wait for a real
    // answer, one request at a time, and the run of throttles goes on.
    let zoho = FakeZoho::start(|_, _, n| match n {
        2 => (503, "unavailable".to_owned()),
        _ => throttled(),
    });
    let (d, mut c, ids) = throttled_rows(&zoho, &["a", "b", "x"]);
    advance_to(&d, T0 + 15 * MINUTE);
    let r = c.request(json!({"op": "refresh", "token_id": ids[1]}));
    assert_eq!(r["error"]["code"], "refresh_failed", "{r}");
    let r = c.request(json!({"op": "refresh", "token_id": ids[2]}));
    assert_eq!(zoho.count(), 3, "one request after the 503: {r}");
    assert_eq!(
        r["error"]["retry_at"],
        T0 + 45 * MINUTE,
        "the second throttle in a row: {r}"
    );
}

#[test]
fn after_a_restart_past_the_wait_one_request_finds_out_for_every_row() {
    let zoho = FakeZoho::throttling();
    let (d, c, ids) = throttled_rows(&zoho, &["a", "b", "x"]);
    drop(c);
    let d = d.restart_at(T0 + 20 * MINUTE);
    let mut c = d.client();
    let r = c.request(json!({"op": "refresh", "token_id": ids[1]}));
    assert_eq!(
        r["error"]["retry_at"],
        T0 + 50 * MINUTE,
        "the second in a row: {r}"
    );
    let r = c.request(json!({"op": "refresh", "token_id": ids[2]}));
    assert_eq!(r["error"]["retry_at"], T0 + 50 * MINUTE, "{r}");
    assert_eq!(zoho.count(), 2);
}

#[test]
fn once_another_row_got_a_token_a_row_whose_probe_failed_is_not_held_as_throttled() {
    // a throttled; a's probe at the end of the wait gets a 503; b then gets a token: the
    // block is over. a's own wait is a backoff now, which `refresh` may force, and no
    // restart brings the block back.
    let zoho = FakeZoho::start(|_, _, n| match n {
        2 => (503, "unavailable".to_owned()),
        3..=5 => grant(&format!("SECRET-new-{n}"), None),
        _ => throttled(),
    });
    let (d, mut c, ids) = throttled_rows(&zoho, &["a", "b"]);
    advance_to(&d, T0 + 15 * MINUTE);
    let r = c.request(json!({"op": "refresh", "token_id": ids[0]}));
    assert_eq!(r["error"]["code"], "refresh_failed", "{r}");
    c.ok(json!({"op": "refresh", "token_id": ids[1]}));
    drop(c);
    let d = d.restart_at(T0 + 15 * MINUTE);
    let mut c = d.client();
    c.ok(json!({"op": "refresh", "token_id": ids[1]}));
    c.ok(json!({"op": "refresh", "token_id": ids[0]}));
    assert_eq!(zoho.count(), 5);
}
