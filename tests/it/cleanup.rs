//! The cleanup actor: session-timeout policies, judged on a manual clock.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use tokend::config::CleanupAction;
use tokend::policy::Limits;
use tokend::Config;

use crate::fake_zoho::FakeZoho;
use crate::helpers::{id_of, Client};
use crate::inproc::{eventually, InProcess, HOUR, T0};

const DAY: i64 = 24 * HOUR;

fn days(n: u64) -> Option<Duration> {
    Some(Duration::from_secs(n * 86_400))
}

/// Cleanup on request only, the refresher off, and these default limits.
fn configure(c: &mut Config, limits: Limits) {
    c.refresh.enabled = false;
    c.cleanup.enabled = false;
    c.cleanup.policies.default = limits;
}

fn token(user: &str, client: &str) -> Value {
    json!({
        "user_name": user,
        "client_id": client,
        "client_secret": "SECRET-cs",
        "refresh_token": format!("SECRET-rt-{user}"),
        "access_token": format!("SECRET-at-{user}"),
        // Far ahead: these tests are about sessions, not refreshes.
        "expiry_time": (T0 + 1000 * DAY).to_string(),
        "api_domain": "http://127.0.0.1:1",
    })
}

fn advance_to(d: &InProcess, at: i64) {
    d.clock
        .advance(Duration::from_millis((at - d.clock.now_ms()) as u64));
}

/// Runs a pass and returns the user names it reported.
fn pass(c: &mut Client, dry_run: bool) -> BTreeSet<String> {
    let reply = c.ok(json!({"op": "cleanup", "dry_run": dry_run}));
    assert_eq!(reply["dry_run"], dry_run);
    reply["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user_name"].as_str().unwrap().to_owned())
        .collect()
}

fn remaining(c: &mut Client) -> BTreeSet<String> {
    c.all()
        .iter()
        .map(|t| t["user_name"].as_str().unwrap().to_owned())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn each_policy_removes_exactly_its_sessions_and_a_dry_run_reports_the_same_set_first() {
    let zoho = FakeZoho::start(|_, _, _| (200, json!({"error": "invalid_code"}).to_string()));
    let limits = Limits {
        idle_timeout: days(10),
        max_session_age: days(30),
        needs_reauth_grace: days(2),
        expired_unrefreshable_grace: days(1),
    };
    let d = InProcess::start(&zoho.url, |c| configure(c, limits));
    let mut c = d.client();
    for user in ["idle", "old", "dead"] {
        c.save(token(user, "app"));
    }
    c.save(json!({"user_name": "bare", "access_token": "SECRET-at-bare", "expiry_time": (T0 + HOUR).to_string()}));
    let dead = c.find(json!({"user_name": "dead"}));
    assert_eq!(
        c.request(json!({"op": "refresh", "token_id": id_of(&dead)}))["error"]["code"],
        "needs_reauth"
    );
    let touch = |c: &mut Client, user: &str| {
        c.find(json!({"user_name": user}));
    };
    // Saved an hour later than the rest, so it is not yet at the maximum age with "old".
    advance_to(&d, T0 + HOUR);
    c.save(token("busy", "app"));

    let steps: [(i64, &[&str], &str); 4] = [
        (DAY + HOUR, &["bare"], "expired_unrefreshable_grace"),
        (2 * DAY, &["dead"], "needs_reauth_grace"),
        (10 * DAY, &["idle"], "idle_timeout"),
        (30 * DAY, &["old"], "max_session_age"),
    ];
    let mut left = set(&["idle", "busy", "old", "dead", "bare"]);
    for (at, ended, policy) in steps {
        advance_to(&d, T0 + at - 1);
        touch(&mut c, "busy");
        touch(&mut c, "old");
        assert!(
            pass(&mut c, true).is_empty(),
            "nothing ends a millisecond early ({policy})"
        );
        advance_to(&d, T0 + at);
        assert_eq!(pass(&mut c, true), set(ended), "dry run at {policy}");
        assert_eq!(remaining(&mut c), left, "a dry run removes nothing");
        let reply = c.ok(json!({"op": "cleanup", "dry_run": false}));
        assert_eq!(reply["removed"][0]["policy"], policy);
        assert_eq!(reply["removed"].as_array().unwrap().len(), ended.len());
        for e in ended {
            left.remove(*e);
        }
        assert_eq!(remaining(&mut c), left, "after {policy}");
    }
    assert_eq!(left, set(&["busy"]));
    assert_eq!(zoho.count(), 1, "delete never calls the provider");
}

#[test]
fn a_per_client_override_wins_over_the_default() {
    let d = InProcess::start("http://127.0.0.1:9", |c| {
        configure(
            c,
            Limits {
                idle_timeout: days(10),
                ..Limits::default()
            },
        );
        let strict = Limits {
            idle_timeout: Some(Duration::from_secs(3600)),
            ..Limits::default()
        };
        c.cleanup
            .policies
            .per_client
            .insert("strict-app".into(), strict);
    });
    let mut c = d.client();
    c.save(token("lenient", "other-app"));
    c.save(token("strict", "strict-app"));
    advance_to(&d, T0 + 2 * HOUR);
    assert_eq!(pass(&mut c, false), set(&["strict"]));
    assert_eq!(remaining(&mut c), set(&["lenient"]));
}

#[test]
fn a_session_in_use_is_kept_even_when_its_uses_are_not_yet_written() {
    let d = InProcess::start("http://127.0.0.1:9", |c| {
        configure(
            c,
            Limits {
                idle_timeout: days(10),
                ..Limits::default()
            },
        );
        c.cleanup.last_used_flush = Duration::from_secs(365 * 86_400);
    });
    let mut c = d.client();
    let used = id_of(&c.save(token("used", "app")));
    c.save(token("unused", "app"));
    advance_to(&d, T0 + 9 * DAY);
    c.find_by_id(&used);
    c.ok(json!({"op": "access_token", "user_name": "used"}));
    advance_to(&d, T0 + 12 * DAY);
    assert_eq!(pass(&mut c, false), set(&["unused"]));
    assert_eq!(remaining(&mut c), set(&["used"]));
    // The use was kept in memory only: on disk the last use is still the save.
    assert_eq!(c.find_by_id(&used)["meta"]["last_used_at"], T0);
}

#[test]
fn an_operator_peeking_at_a_token_does_not_keep_its_session_alive() {
    let d = InProcess::start("http://127.0.0.1:9", |c| {
        configure(
            c,
            Limits {
                idle_timeout: days(10),
                ..Limits::default()
            },
        );
    });
    let mut c = d.client();
    let id = id_of(&c.save(token("idle", "app")));
    // An application's lookup, at once: the token is in the lookup cache from now on,
    // whose hits count as uses.
    c.find_by_id(&id);
    advance_to(&d, T0 + 9 * DAY);
    // `tokend token show`'s lookups.
    for _ in 0..2 {
        let peeked = c.ok(json!({"op": "find_token_by_id", "token_id": id, "peek": true}));
        assert_eq!(peeked["token"]["id"], id.as_str());
    }
    advance_to(&d, T0 + 12 * DAY);
    assert_eq!(pass(&mut c, false), set(&["idle"]));
}

#[test]
fn revoke_and_delete_revokes_each_token_once_and_keeps_it_when_revoke_fails() {
    let zoho = FakeZoho::start(|path, form, _| {
        assert_eq!(path, "/oauth/v2/token/revoke");
        if form["token"] == "SECRET-rt-stuck" {
            (500, "unavailable".into())
        } else {
            (200, json!({"status": "success"}).to_string())
        }
    });
    let d = InProcess::start(&zoho.url, revoke_after_a_day_idle);
    let mut c = d.client();
    c.save(token("gone", "app"));
    c.save(token("stuck", "app"));
    advance_to(&d, T0 + 2 * DAY);
    assert_eq!(pass(&mut c, false), set(&["gone"]));
    assert_eq!(remaining(&mut c), set(&["stuck"]));
    let revoked: BTreeSet<String> = zoho
        .requests()
        .iter()
        .map(|(_, f)| f["token"].clone())
        .collect();
    assert_eq!(revoked, set(&["SECRET-rt-gone", "SECRET-rt-stuck"]));
    assert_eq!(zoho.count(), 2, "one revoke per token");
    // The failed one is tried again on the next run, not silently dropped.
    assert!(pass(&mut c, false).is_empty());
    assert_eq!(zoho.count(), 3);
    assert_eq!(zoho.requests()[2].1["token"], "SECRET-rt-stuck");
}

/// Sessions end after a day idle, by revoke_and_delete.
fn revoke_after_a_day_idle(c: &mut Config) {
    configure(
        c,
        Limits {
            idle_timeout: days(1),
            ..Limits::default()
        },
    );
    c.cleanup.action = CleanupAction::RevokeAndDelete;
}

/// A daemon whose sessions end after a day idle, by revoke_and_delete, at an accounts
/// server whose gate is closed (each revoke waits until the test releases it); `users`
/// saved, in that order, and then left idle two days.
fn revoking(users: [&str; 2], tweak: impl FnOnce(&mut Config)) -> (FakeZoho, InProcess) {
    let zoho = FakeZoho::start(|_, _, _| (200, json!({"status": "success"}).to_string()));
    zoho.close_gate();
    let d = InProcess::start(&zoho.url, |c| {
        revoke_after_a_day_idle(c);
        tweak(c);
    });
    let mut c = d.client();
    for user in users {
        c.save(token(user, "app"));
    }
    advance_to(&d, T0 + 2 * DAY);
    (zoho, d)
}

/// A real pass on a connection of its own; joined, the user names it removed.
fn pass_in_background(d: &InProcess) -> std::thread::JoinHandle<BTreeSet<String>> {
    let socket = d.socket();
    std::thread::spawn(move || pass(&mut Client::connect(&socket), false))
}

#[test]
fn revoke_and_delete_keeps_a_session_given_new_credentials_while_its_revoke_was_in_the_air() {
    let (zoho, d) = revoking(["again", "used"], |_| {});
    let mut c = d.client();
    let cleanup = pass_in_background(&d);
    // The pass revokes one session at a time, in the order they were saved.
    zoho.wait_for_count(1);
    let mut signed_in_again = token("again", "app");
    signed_in_again["refresh_token"] = json!("SECRET-rt-again-2");
    c.save(signed_in_again);
    zoho.release(1);
    zoho.wait_for_count(2);
    // A use does not save a session whose credentials are already revoked.
    c.find(json!({"user_name": "used"}));
    zoho.release(1);
    assert_eq!(cleanup.join().unwrap(), set(&["used"]));
    assert_eq!(remaining(&mut c), set(&["again"]));
    assert_eq!(
        c.find(json!({"user_name": "again"}))["refresh_token"],
        "SECRET-rt-again-2"
    );
}

#[test]
fn revoke_and_delete_never_revokes_an_idle_session_used_after_the_pass_judged_it() {
    let (zoho, d) = revoking(["first", "back"], |_| {});
    let mut c = d.client();
    let cleanup = pass_in_background(&d);
    // Both were judged idle; while the first one's revoke is in the air, the other
    // comes back (the use is in memory only, not yet on disk).
    zoho.wait_for_count(1);
    c.find(json!({"user_name": "back"}));
    zoho.open_gate();
    assert_eq!(cleanup.join().unwrap(), set(&["first"]));
    assert_eq!(remaining(&mut c), set(&["back"]));
    assert_eq!(zoho.count(), 1, "only the first session was revoked");
}

#[test]
fn a_stop_during_a_revoke_the_provider_never_answers_ends_the_pass_and_keeps_the_token() {
    // Far past any stop timeout: only the stop itself can end this revoke.
    let (zoho, d) = revoking(["stuck", "next"], |c| {
        c.refresh.timeout = Duration::from_secs(3600)
    });
    let socket = d.socket();
    let cleanup =
        std::thread::spawn(move || Client::connect(&socket).request(json!({"op": "cleanup"})));
    zoho.wait_for_count(1);
    let (stopped_tx, stopped) = std::sync::mpsc::channel();
    std::thread::spawn(move || stopped_tx.send(d.stop()).unwrap());
    let (dir, config) = stopped
        .recv_timeout(Duration::from_secs(20))
        .expect("the daemon did not stop within 20 s while a revoke was in the air");
    // The pass ended at once: the second session was not even tried.
    let reply = cleanup.join().unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["result"]["removed"], json!([]), "{reply}");
    assert_eq!(zoho.count(), 1);
    zoho.open_gate();
    let d = InProcess::start_in(dir, config, tokend::clock::Clock::manual(T0 + 2 * DAY));
    assert_eq!(remaining(&mut d.client()), set(&["next", "stuck"]));
}

#[test]
fn the_cron_schedule_from_config_runs_passes() {
    let d = InProcess::start("http://127.0.0.1:9", |c| {
        configure(
            c,
            Limits {
                idle_timeout: days(1),
                ..Limits::default()
            },
        );
        c.cleanup.enabled = true;
        c.cleanup.schedule = "* * * * * *".into();
    });
    let mut c = d.client();
    c.save(token("idle", "app"));
    advance_to(&d, T0 + 2 * DAY);
    eventually("a scheduled pass to remove the idle session", || {
        c.count() == 0
    });
}

#[test]
fn a_pass_under_the_configured_dry_run_reports_and_removes_nothing() {
    let d = InProcess::start("http://127.0.0.1:9", |c| {
        configure(
            c,
            Limits {
                idle_timeout: days(1),
                ..Limits::default()
            },
        );
        c.cleanup.dry_run = true;
    });
    let mut c = d.client();
    c.save(token("idle", "app"));
    advance_to(&d, T0 + 2 * DAY);
    // Without dry_run in the request, the configured dry run applies.
    let reply = c.ok(json!({"op": "cleanup"}));
    assert_eq!(reply["dry_run"], true);
    assert_eq!(reply["removed"][0]["user_name"], "idle");
    assert_eq!(c.count(), 1);
}

#[test]
fn lookups_do_not_write_to_the_database() {
    let d = InProcess::start("http://127.0.0.1:9", |c| {
        configure(c, Limits::default());
        c.cleanup.last_used_flush = Duration::from_secs(365 * 86_400);
    });
    let mut c = d.client();
    let ids: Vec<String> = (0..10)
        .map(|n| id_of(&c.save(token(&format!("u{n}"), "app"))))
        .collect();
    advance_to(&d, T0 + HOUR);
    let wal = d.config.store.path.with_extension("db-wal");
    let before = std::fs::metadata(&wal).unwrap().len();
    // 100,000 lookups, pipelined 100 at a time (their replies fit the socket's buffer).
    for round in 0..1000 {
        for n in 0..100 {
            c.send_json(&json!({"op": "find_token_by_id", "token_id": ids[(round + n) % 10]}));
        }
        for _ in 0..100 {
            assert_eq!(c.read_reply()["ok"], true);
        }
    }
    assert_eq!(
        std::fs::metadata(&wal).unwrap().len(),
        before,
        "the WAL did not grow"
    );
    drop(c);
    let (_dir, config) = d.stop();
    // At shutdown the uses are written, in one batch.
    let db = rusqlite::Connection::open(&config.store.path).unwrap();
    let used: i64 = db
        .query_row(
            "SELECT count(*) FROM tokens WHERE last_used_at = ?1",
            [T0 + HOUR],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(used, 10);
}

#[test]
fn an_ended_session_leaves_the_refresh_schedule() {
    let d = InProcess::start("http://127.0.0.1:9", |c| {
        configure(
            c,
            Limits {
                idle_timeout: days(1),
                ..Limits::default()
            },
        );
        c.refresh.enabled = true;
    });
    let mut c = d.client();
    c.save(token("idle", "app"));
    c.save(token("fresh", "app"));
    assert_eq!(c.ok(json!({"op": "status"}))["scheduled"], 2);
    advance_to(&d, T0 + 2 * DAY);
    c.find(json!({"user_name": "fresh"}));
    assert_eq!(pass(&mut c, false), set(&["idle"]));
    eventually("the deadline to be cancelled", || {
        c.ok(json!({"op": "status"}))["scheduled"] == 1
    });
}
