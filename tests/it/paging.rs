//! `get_tokens` paging: `limit` and `after` visit every token exactly once, in id order,
//! including while other clients save and delete tokens between (or during) pages; and
//! pages pipelined by a client that does not read cost one page of memory, not all.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use serde_json::{json, Value};

use crate::helpers::{id_of, token, Client, Daemon};

/// The ids of one page and the `next` cursor, checked against the page's shape.
fn page(c: &mut Client, limit: u32, after: Option<&str>) -> (Vec<String>, Option<String>) {
    let mut request = json!({"op": "get_tokens", "limit": limit});
    if let Some(after) = after {
        request["after"] = json!(after);
    }
    let result = c.ok(request.clone());
    let ids: Vec<String> = result["tokens"]
        .as_array()
        .unwrap_or_else(|| panic!("`tokens` is an array: {result}"))
        .iter()
        .map(id_of)
        .collect();
    assert!(
        ids.len() <= limit as usize,
        "{request} returned {} tokens",
        ids.len()
    );
    let next = match &result["next"] {
        Value::Null => None,
        Value::String(next) => {
            assert_eq!(
                Some(next),
                ids.last(),
                "`next` is the last id of the page: {result}"
            );
            Some(next.clone())
        }
        other => panic!("`next` is a string or null, got {other}"),
    };
    (ids, next)
}

/// Generated ids compare as numbers.
fn num(id: &str) -> u64 {
    id.parse()
        .unwrap_or_else(|_| panic!("generated id {id:?} is a number"))
}

/// Pages through everything with `limit`, calling `between` after each page; returns the
/// ids in the order visited.
fn visit_all(c: &mut Client, limit: u32, mut between: impl FnMut(&[String])) -> Vec<String> {
    let mut visited = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10_000 {
        let (ids, next) = page(c, limit, after.as_deref());
        visited.extend(ids.iter().cloned());
        between(&ids);
        match next {
            Some(next) => after = Some(next),
            None => return visited,
        }
    }
    panic!("paging did not end after 10000 pages");
}

fn assert_exactly_once(visited: &[String], expected: &HashSet<String>) {
    let mut seen = HashSet::new();
    for id in visited {
        assert!(
            seen.insert(id.clone()),
            "id {id} visited twice: {visited:?}"
        );
    }
    for id in expected {
        assert!(seen.contains(id), "id {id} never visited: {visited:?}");
    }
}

#[test]
fn every_limit_visits_every_token_exactly_once_in_order() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let ids: Vec<String> = (0..23)
        .map(|n| id_of(&c.save(token("paging", n))))
        .collect();
    let expected: HashSet<String> = ids.iter().cloned().collect();
    for limit in [1, 2, 3, 5, 7, 22, 23, 24, 1000] {
        let visited = visit_all(&mut c, limit, |_| {});
        assert_eq!(visited, ids, "limit {limit}");
        assert_exactly_once(&visited, &expected);
    }
}

#[test]
fn paging_while_tokens_are_saved_and_deleted_between_pages() {
    let daemon = Daemon::start();
    let mut pager = daemon.client();
    let mut writer = daemon.client();
    // Tokens that exist throughout, interleaved (by id) with tokens deleted during paging.
    let mut stay = HashSet::new();
    let mut doomed = Vec::new();
    for n in 0..30 {
        let id = id_of(&writer.save(token("interleave", n)));
        if n % 3 == 2 {
            doomed.push(id);
        } else {
            stay.insert(id);
        }
    }
    let mut added = 100;
    let visited = visit_all(&mut pager, 3, |page| {
        // The page's cursor itself may vanish before it is used.
        let last = page.last().cloned();
        let victim = match last.filter(|id| doomed.contains(id)) {
            Some(cursor) => Some(cursor),
            // Otherwise a doomed token not yet visited, from the far end.
            None => doomed.last().cloned(),
        };
        if let Some(victim) = victim {
            assert!(writer.delete(&victim));
            doomed.retain(|d| d != &victim);
        }
        for _ in 0..2 {
            writer.save(token("interleave", added));
            added += 1;
        }
    });
    assert_exactly_once(&visited, &stay);
    let numbers: Vec<u64> = visited.iter().map(|id| num(id)).collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "visited in id order: {visited:?}"
    );
}

#[test]
fn paging_while_another_client_inserts_concurrently() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let existing: HashSet<String> = (0..40)
        .map(|n| id_of(&c.save(token("concurrent-page", n))))
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = mpsc::channel();
    let writer = {
        let mut w = daemon.client();
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut inserted = Vec::new();
            for n in 1000..1400 {
                inserted.push(id_of(&w.save(token("concurrent-page", n))));
                if n == 1000 {
                    started_tx.send(()).unwrap();
                }
                if done.load(Ordering::SeqCst) {
                    break;
                }
            }
            inserted
        })
    };
    // Paging starts once the writer is under way.
    started_rx.recv().unwrap();
    let visited = visit_all(&mut c, 2, |_| {});
    done.store(true, Ordering::SeqCst);
    let inserted = writer.join().unwrap();
    assert_exactly_once(&visited, &existing);
    let numbers: Vec<u64> = visited.iter().map(|id| num(id)).collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "visited in id order: {visited:?}"
    );
    // Whatever was inserted is stored once, and a fresh pass sees all of it.
    let all = visit_all(&mut c, 7, |_| {});
    let mut every: HashSet<String> = existing.clone();
    every.extend(inserted.iter().cloned());
    assert_eq!(all.len(), every.len(), "no token twice, none lost");
    assert_exactly_once(&all, &every);
}

#[test]
fn after_an_unknown_or_deleted_id_continues_from_its_place() {
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let ids: Vec<String> = (0..12)
        .map(|n| id_of(&c.save(token("cursor", n))))
        .collect();
    assert!(c.delete(&ids[4]));
    let (page_ids, _) = page(&mut c, 3, Some(&ids[4]));
    assert_eq!(page_ids, ids[5..8]);
    // Past the end: an empty last page.
    let (page_ids, next) = page(&mut c, 3, Some("99999"));
    assert!(page_ids.is_empty());
    assert_eq!(next, None);
}

/// The daemon's peak resident memory so far, in bytes.
fn peak_memory(daemon: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kb * 1024
}

#[test]
fn pages_pipelined_by_a_client_that_does_not_read_are_served_one_at_a_time() {
    // 1,000 tokens of ~1.5 KB: one full page is ~1.5 MB as JSON, more as tokens.
    let daemon = Daemon::start();
    let mut c = daemon.client();
    let mut writer = c.writer_clone();
    let saving = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for n in 0..1000 {
            let mut t = token("big", n);
            t["redirect_url"] = json!(format!("https://example.com/{n}/{}", "x".repeat(1400)));
            lines.extend(json!({"op": "save_token", "token": t}).to_string().bytes());
            lines.push(b'\n');
        }
        std::io::Write::write_all(&mut writer, &lines).unwrap();
    });
    for _ in 0..1000 {
        assert!(c.read_line().unwrap().contains(r#""ok":true"#));
    }
    saving.join().unwrap();
    let before = peak_memory(&daemon);

    // 60 pages asked for at once: served together, they would hold ~60 pages in memory
    // while the client has read none of them.
    let pages = 60;
    let mut asking = Vec::new();
    for seq in 0..pages {
        asking.extend(json!({"op": "get_tokens", "seq": seq}).to_string().bytes());
        asking.push(b'\n');
    }
    c.send(&asking).unwrap();
    for seq in 0..pages {
        let line = c.read_line().unwrap();
        assert!(
            line.starts_with(&format!(r#"{{"seq":{seq},"ok":true"#)),
            "{}",
            &line[..line.len().min(200)]
        );
    }
    let grew = peak_memory(&daemon).saturating_sub(before);
    assert!(
        grew < 40 << 20,
        "peak memory grew by {} MB while {pages} pages were pipelined",
        grew >> 20
    );
}
