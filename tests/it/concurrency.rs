//! Many clients at once, and many requests on one connection at once: every reply is
//! correct, replies come in request order with their seq, concurrent saves of one user
//! never make two rows, and a stuck or clogged client delays nobody else.

use std::collections::HashSet;
use std::io::{ErrorKind, Write};
use std::sync::{Arc, Barrier};

use serde_json::{json, Value};

use crate::helpers::{assert_has, fields, id_of, token, Client, Daemon};

const CLIENTS: usize = 64;
const ROUNDS: usize = 6;

/// One client's work: saves, updates and every kind of lookup of its own tokens,
/// checking each reply. Odd clients pipeline each save with the lookups that follow it.
fn client_session(c: &mut Client, who: usize) -> Vec<Value> {
    let tag = format!("conc{who}");
    let mut mine = Vec::new();
    for round in 0..ROUNDS {
        let sent = token(&tag, round);
        let stored = if who % 2 == 1 {
            // save, find by user_name and find by id of "the last id" written at once.
            let user = sent["user_name"].clone();
            let mut bytes = Vec::new();
            for request in [
                json!({"op": "save_token", "seq": [who, round, 0], "token": sent}),
                json!({"op": "find_token", "seq": [who, round, 1], "token": {"user_name": user}}),
                json!({"op": "ping", "seq": [who, round, 2]}),
            ] {
                bytes.extend_from_slice(request.to_string().as_bytes());
                bytes.push(b'\n');
            }
            c.send(&bytes).unwrap();
            let saved = c.read_reply();
            assert_eq!(saved["seq"], json!([who, round, 0]), "{saved}");
            assert_eq!(saved["ok"], true, "{saved}");
            let stored = saved["result"]["token"].clone();
            let found = c.read_reply();
            assert_eq!(found["seq"], json!([who, round, 1]), "{found}");
            assert_eq!(
                fields(&found["result"]["token"]),
                fields(&stored),
                "{found}"
            );
            let pong = c.read_reply();
            assert_eq!(pong["seq"], json!([who, round, 2]), "{pong}");
            assert_eq!(pong["ok"], true, "{pong}");
            stored
        } else {
            let stored = c.save(sent.clone());
            let found = c.find(json!({"user_name": sent["user_name"]}));
            assert_eq!(fields(&found), fields(&stored));
            stored
        };
        assert_has(&stored, &sent);
        let id = id_of(&stored);
        assert_eq!(fields(&c.find_by_id(&id)), fields(&stored));
        // The SDK's refresh write-back, then each lookup rule finds the same row.
        let access = format!("1000.{tag}.access.{round}.new");
        let updated = c.save(json!({"id": id, "access_token": access}));
        assert_eq!(updated["id"], stored["id"], "{updated}");
        assert_eq!(updated["access_token"], access.as_str());
        assert_eq!(updated["refresh_token"], stored["refresh_token"]);
        assert_eq!(c.find(json!({"access_token": access}))["id"], stored["id"]);
        let by_refresh = c.find(json!({
            "client_id": stored["client_id"],
            "client_secret": stored["client_secret"],
            "refresh_token": stored["refresh_token"],
        }));
        assert_eq!(fields(&by_refresh), fields(&updated));
        if round % 3 == 0 {
            let page = c.ok(json!({"op": "get_tokens", "limit": 5}));
            for t in page["tokens"].as_array().unwrap() {
                assert!(t["id"].is_string() && t["meta"].is_object(), "{t}");
            }
        }
        mine.push(updated);
    }
    mine
}

#[test]
fn sixty_four_clients_saving_and_looking_up_at_once() {
    let daemon = Daemon::start();
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|who| {
            let mut c = daemon.client();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                client_session(&mut c, who)
            })
        })
        .collect();
    let mut expected: Vec<Value> = Vec::new();
    for t in threads {
        expected.extend(t.join().expect("a client thread failed").iter().map(fields));
    }
    expected.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    let ids: HashSet<&str> = expected.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), CLIENTS * ROUNDS, "every save got its own id");
    let mut c = daemon.client();
    assert_eq!(c.count(), (CLIENTS * ROUNDS) as u64);
    assert_eq!(c.snapshot(), expected);
}

#[test]
fn concurrent_saves_of_one_user_make_one_row() {
    let daemon = Daemon::start();
    let threads = 16;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|n| {
            let mut c = daemon.client();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let by_name = c.save(json!({
                    "user_name": "shared@example.com:1",
                    "refresh_token": "1000.shared.r",
                    "access_token": format!("1000.shared.a{n}"),
                }));
                // No user name: matched by client credentials and refresh token.
                let by_refresh = c.save(json!({
                    "client_id": "1000.SHARED",
                    "client_secret": "shared-secret",
                    "refresh_token": "1000.shared-nameless.r",
                    "access_token": format!("1000.nameless.a{n}"),
                }));
                (id_of(&by_name), id_of(&by_refresh))
            })
        })
        .collect();
    let ids: Vec<(String, String)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let named: HashSet<&String> = ids.iter().map(|(a, _)| a).collect();
    let nameless: HashSet<&String> = ids.iter().map(|(_, b)| b).collect();
    assert_eq!(named.len(), 1, "one user, one id: {ids:?}");
    assert_eq!(nameless.len(), 1, "one refresh token, one id: {ids:?}");
    let mut c = daemon.client();
    assert_eq!(c.count(), 2, "{:?}", c.snapshot());
}

#[test]
fn pipelined_requests_are_answered_in_order_with_their_seq() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let n = 120;
    let mut bytes = Vec::new();
    for k in 0..n {
        let request = match k % 4 {
            0 => json!({"op": "save_token", "seq": k, "token": token("pipe", k)}),
            // Finds the token saved just before, in the same write.
            1 => {
                json!({"op": "find_token", "seq": format!("s{k}"), "token": {"user_name": token("pipe", k - 1)["user_name"]}})
            }
            2 => json!({"op": "find_token_by_id", "seq": [k], "token_id": "no-such-id"}),
            _ => json!({"op": "bogus", "seq": {"k": k}}),
        };
        bytes.extend_from_slice(request.to_string().as_bytes());
        bytes.push(b'\n');
    }
    // Every request is written before any reply is read.
    c.send(&bytes).unwrap();
    let mut last_saved = Value::Null;
    for k in 0..n {
        let reply = c.read_reply();
        match k % 4 {
            0 => {
                assert_eq!(reply["seq"], k, "{reply}");
                assert_eq!(reply["ok"], true, "{reply}");
                assert_has(&reply["result"]["token"], &token("pipe", k));
                last_saved = reply["result"]["token"].clone();
            }
            1 => {
                assert_eq!(reply["seq"], format!("s{k}"), "{reply}");
                assert_eq!(fields(&reply["result"]["token"]), fields(&last_saved));
            }
            2 => {
                assert_eq!(reply["seq"], json!([k]), "{reply}");
                assert_eq!(reply["result"], json!({"token": null}), "{reply}");
            }
            _ => {
                assert_eq!(reply["seq"], json!({"k": k}), "{reply}");
                assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
            }
        }
    }
    assert_eq!(c.count(), (n / 4) as u64);
}

#[test]
fn thousands_of_pipelined_requests_on_one_connection() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    // Blocks of 8 saves then 8 finds of them: a find commits the saves queued before it,
    // so blocks keep group commit (and this test) fast.
    let block = 8;
    let n = 2048;
    let user =
        |k: usize| token("flood", (k / (2 * block)) * block + k % block)["user_name"].clone();
    let mut writer = c.writer_clone();
    // A writer thread keeps sending while this thread reads: far more requests in flight
    // than the daemon takes at once, so its backpressure is exercised.
    let sender = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        for k in 0..n {
            let n_user = (k / (2 * block)) * block + k % block;
            let request = if k % (2 * block) < block {
                json!({"op": "save_token", "seq": k, "token": token("flood", n_user)})
            } else {
                json!({"op": "find_token", "seq": k, "token": {"user_name": token("flood", n_user)["user_name"]}})
            };
            bytes.extend_from_slice(request.to_string().as_bytes());
            bytes.push(b'\n');
        }
        writer.write_all(&bytes).unwrap();
    });
    let mut saved_ids = vec![Value::Null; block];
    for k in 0..n {
        let reply = c.read_reply();
        assert_eq!(reply["seq"], k, "replies in request order: {reply}");
        assert_eq!(reply["ok"], true, "{reply}");
        let t = &reply["result"]["token"];
        assert_eq!(t["user_name"], user(k), "{reply}");
        if k % (2 * block) < block {
            saved_ids[k % block] = t["id"].clone();
        } else {
            assert_eq!(t["id"], saved_ids[k % block], "{reply}");
        }
    }
    sender.join().unwrap();
    assert_eq!(c.count(), (n / 2) as u64);
}

#[test]
fn a_stuck_or_clogged_client_delays_nobody_else() {
    let daemon = Daemon::start();
    // Stuck: half a request line, then silence.
    let mut stuck = daemon.client();
    stuck.send(br#"{"op":"ping","seq":"stuck""#).unwrap();
    // Clogged: writes requests and never reads, until the daemon stops reading it.
    let clogged = daemon.client();
    let mut raw = clogged.writer_clone();
    raw.set_nonblocking(true).unwrap();
    let line = br#"{"op":"find_token","token":{"user_name":"clog@example.com:1"}}
"#;
    let flood: Vec<u8> = line
        .iter()
        .copied()
        .cycle()
        .take(line.len() * 200_000)
        .collect();
    let mut written = 0;
    loop {
        match raw.write(&flood[written..]) {
            Ok(0) => panic!("the clogged connection closed"),
            Ok(k) => written += k,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("write: {e}"),
        }
        assert!(
            written < flood.len(),
            "the daemon read {written} bytes without any reply being read"
        );
    }
    // Everyone else is served normally.
    let mut other = daemon.client();
    let stored = other.save(token("unclogged", 1));
    assert_eq!(
        fields(&other.find(json!({"user_name": stored["user_name"]}))),
        fields(&stored)
    );
    let threads: Vec<_> = (0..8)
        .map(|n| {
            let mut c = daemon.client();
            std::thread::spawn(move || {
                let s = c.save(token("unclogged-many", n));
                assert_eq!(fields(&c.find_by_id(&id_of(&s))), fields(&s));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // The stuck client finishes its line and is answered.
    stuck.send(b"}\n").unwrap();
    let reply = stuck.read_reply();
    assert_eq!(reply["seq"], "stuck", "{reply}");
    assert_eq!(reply["ok"], true, "{reply}");
    drop(clogged);
    assert_eq!(daemon.client().count(), 9);
}
