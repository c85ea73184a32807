//! `find_token_by_id` answered from the store's cache (`store::Shared`) is never older
//! than what the store holds: not after a write that was acknowledged, not after one
//! pipelined ahead of it on the same connection, not after the last uses are written;
//! and a lookup it answers counts as a use of the session.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use tokend::policy::Limits;

use crate::helpers::{id_of, token, Client, Daemon};
use crate::inproc::{eventually, InProcess, HOUR, T0};

/// Looks `id` up twice, so the second answer comes from the cache if anything does.
fn cached(c: &mut Client, id: &str) -> Value {
    c.find_by_id(id);
    c.find_by_id(id)
}

/// Sends `requests` in one write and returns their replies in order.
fn pipelined(c: &mut Client, requests: &[Value]) -> Vec<Value> {
    pipelined_while(c, requests, || {})
}

/// `pipelined`, calling `between` after the write and before reading the replies.
fn pipelined_while(c: &mut Client, requests: &[Value], between: impl FnOnce()) -> Vec<Value> {
    let mut bytes = Vec::new();
    for (seq, r) in requests.iter().enumerate() {
        let mut r = r.clone();
        r["seq"] = json!(seq);
        bytes.extend_from_slice(r.to_string().as_bytes());
        bytes.push(b'\n');
    }
    c.send(&bytes).unwrap();
    between();
    (0..requests.len())
        .map(|seq| {
            let reply = c.read_reply();
            assert_eq!(reply["seq"], seq, "{reply}");
            assert_eq!(reply["ok"], true, "{reply}");
            reply["result"].clone()
        })
        .collect()
}

#[test]
fn after_each_acknowledged_write_a_lookup_by_id_answers_what_is_stored() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let id = id_of(&c.save(token("cached", 1)));
    assert_eq!(cached(&mut c, &id)["access_token"], "1000.cached.access.1");
    let mut changed = token("cached", 1);
    changed["access_token"] = json!("1000.cached.access.2");
    c.save(changed);
    assert_eq!(c.find_by_id(&id)["access_token"], "1000.cached.access.2");
    cached(&mut c, &id);
    assert!(c.delete(&id));
    assert_eq!(c.find_by_id(&id), Value::Null);
    let id = id_of(&c.save(token("cached", 1)));
    cached(&mut c, &id);
    c.ok(json!({"op": "delete_tokens"}));
    assert_eq!(c.find_by_id(&id), Value::Null);
}

#[test]
fn a_lookup_by_id_pipelined_after_a_write_sees_that_write() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    for n in 0..20 {
        let id = id_of(&c.save(token("piped", n)));
        cached(&mut c, &id);
        let mut changed = token("piped", n);
        changed["access_token"] = json!(format!("changed-{n}"));
        let find = json!({"op": "find_token_by_id", "token_id": id});
        let replies = pipelined(
            &mut c,
            &[json!({"op": "save_token", "token": changed}), find.clone()],
        );
        assert_eq!(replies[1]["token"]["access_token"], format!("changed-{n}"));
        cached(&mut c, &id);
        let delete = json!({"op": "delete_token", "token_id": id});
        let replies = pipelined(&mut c, &[delete, find.clone()]);
        assert_eq!(replies[1]["token"], Value::Null, "deleted, then looked up");
    }
    let id = id_of(&c.save(token("piped", 99)));
    cached(&mut c, &id);
    let find = json!({"op": "find_token_by_id", "token_id": id});
    let replies = pipelined(&mut c, &[json!({"op": "delete_tokens"}), find]);
    assert_eq!(replies[1]["token"], Value::Null);
}

#[test]
fn a_lookup_by_id_never_answers_older_than_an_earlier_reply_on_its_connection() {
    // A writer's save reaches the store just before a reader's pipeline of a lookup the
    // store answers and a lookup by id the cache could answer: the second reply must
    // not show an older token than the first. The daemon is stopped while both are sent,
    // so that it reads them in one go, as it would under load.
    let daemon = Daemon::start();
    let (mut writer, mut reader) = (daemon.client(), daemon.client());
    let id = id_of(&writer.save(token("order", 1)));
    // Which of the two connections the daemon reads first after the stop is up to the
    // kernel and the runtime: go on until the save came first in ten rounds.
    let mut newer_first = 0;
    for n in 0..500 {
        if newer_first == 10 {
            break;
        }
        cached(&mut reader, &id);
        let mut changed = token("order", 1);
        changed["access_token"] = json!(format!("v{n}"));
        let user = json!({"user_name": changed["user_name"]});
        daemon.signal(Signal::SIGSTOP);
        writer.send_json(&json!({"op": "save_token", "token": changed}));
        let replies = pipelined_while(
            &mut reader,
            &[
                json!({"op": "find_token", "token": user}),
                json!({"op": "find_token_by_id", "token_id": id}),
            ],
            || daemon.signal(Signal::SIGCONT),
        );
        if replies[0]["token"]["access_token"] == format!("v{n}") {
            newer_first += 1;
            assert_eq!(
                replies[1]["token"]["access_token"],
                format!("v{n}"),
                "round {n}: a lookup by id went back to an older token"
            );
        }
        assert_eq!(writer.read_reply()["ok"], true);
        // Acknowledged: from now on every connection sees it.
        assert_eq!(reader.find_by_id(&id)["access_token"], format!("v{n}"));
    }
    assert!(
        newer_first > 0,
        "the save never came first: the test saw nothing"
    );
}

/// The refresher and scheduled cleanup off, sessions idle after 10 hours, and uses
/// written every `flush`.
fn idle_after_10_hours(flush: Duration) -> InProcess {
    InProcess::start("http://127.0.0.1:9", |c| {
        c.refresh.enabled = false;
        c.cleanup.enabled = false;
        c.cleanup.policies.default = Limits {
            idle_timeout: Some(Duration::from_millis(10 * HOUR as u64)),
            ..Limits::default()
        };
        c.cleanup.last_used_flush = flush;
    })
}

fn advance(d: &InProcess, ms: i64) {
    d.clock.advance(Duration::from_millis(ms as u64));
}

#[test]
fn a_lookup_answered_from_the_cache_keeps_its_session_alive() {
    // Uses stay in memory, so the cache is never forgotten for them.
    let d = idle_after_10_hours(Duration::from_secs(365 * 86_400));
    let mut c = d.client();
    let id = id_of(&c.save(token("used", 1)));
    c.find_by_id(&id);
    advance(&d, 9 * HOUR);
    c.find_by_id(&id);
    advance(&d, HOUR + 1);
    let pass = c.ok(json!({"op": "cleanup", "dry_run": true}));
    assert_eq!(pass["removed"], json!([]), "used an hour ago: {pass}");
    advance(&d, 9 * HOUR);
    let pass = c.ok(json!({"op": "cleanup", "dry_run": true}));
    assert_eq!(pass["removed"].as_array().unwrap().len(), 1, "{pass}");
}

#[test]
fn a_lookup_by_id_shows_the_last_use_once_it_is_written() {
    // Uses written every millisecond of the daemon's own timer (not the test's clock).
    let d = idle_after_10_hours(Duration::from_millis(1));
    let mut c = d.client();
    let id = id_of(&c.save(token("used", 1)));
    assert_eq!(cached(&mut c, &id)["meta"]["last_used_at"], T0);
    advance(&d, HOUR);
    c.find_by_id(&id);
    eventually("the use an hour later to be written and shown", || {
        c.find_by_id(&id)["meta"]["last_used_at"] == T0 + HOUR
    });
}
