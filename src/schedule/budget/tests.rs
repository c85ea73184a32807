use std::collections::HashMap;

use super::*;
use crate::config::Config;

/// The built-in defaults: a budget of 10 per 10 minutes, throttle waits from 15 minutes.
fn cfg() -> RefreshConfig {
    Config::builtin(&HashMap::new()).unwrap().refresh
}

const MINUTE: i64 = 60_000;

/// What `take` returns when it refuses until `until`, whatever the reason.
fn refused_until(until: i64) -> Result<(), i64> {
    Err(until)
}

/// `take`, with only the time of a refusal.
fn take(b: &mut RateBudget, rt: &str, now: i64, c: &RefreshConfig) -> Result<(), i64> {
    b.take(rt, now, c).map(drop).map_err(|r| r.until)
}

/// `take`, which must allow the request.
fn ticket(b: &mut RateBudget, rt: &str, now: i64, c: &RefreshConfig) -> Ticket {
    b.take(rt, now, c).expect("allowed")
}

#[test]
fn the_budget_allows_ten_per_window_per_refresh_token() {
    let c = cfg();
    let mut b = RateBudget::default();
    for i in 0..10 {
        assert_eq!(take(&mut b, "r1", i * 1000, &c), Ok(()));
    }
    let window = c.budget_window.as_millis() as i64;
    assert_eq!(
        take(&mut b, "r1", 20_000, &c),
        refused_until(window),
        "the oldest leaves the window at 0 + window"
    );
    assert_eq!(
        take(&mut b, "r2", 20_000, &c),
        Ok(()),
        "another refresh token has its own budget"
    );
    assert_eq!(take(&mut b, "r1", window, &c), Ok(()));
    b.prune(10 * window, &c);
    assert!(b.spent.is_empty());
}

#[test]
fn a_spend_dated_ahead_of_the_clock_counts_as_now_and_leaves_the_window() {
    let c = cfg();
    let mut b = RateBudget::default();
    let hour = 3_600_000;
    // Read back from a run whose clock was a day ahead.
    b.record(RateBudget::key("r1"), 24 * hour);
    for i in 0..12 {
        assert_eq!(
            take(&mut b, "r1", i * hour, &c),
            Ok(()),
            "hourly refresh {i}"
        );
    }
}

#[test]
fn a_refund_gives_back_the_last_spend_and_a_closed_budget_refuses_until_it_opens() {
    let c = cfg();
    let mut b = RateBudget::default();
    for i in 0..10 {
        let t = ticket(&mut b, "r1", i, &c);
        b.refund("r1", i, t);
    }
    assert_eq!(
        take(&mut b, "r1", 10, &c),
        Ok(()),
        "the refunded ones count for nothing"
    );
    b.close_until(5_000);
    b.close_until(3_000); // a second read that failed, with a shorter wait
    assert_eq!(take(&mut b, "r2", 4_999, &c), refused_until(5_000));
    assert_eq!(take(&mut b, "r2", 5_000, &c), Ok(()));
}

#[test]
fn a_throttled_refresh_token_waits_and_then_one_request_finds_out_if_the_block_lifted() {
    let c = cfg();
    let mut b = RateBudget::default();
    let first = ticket(&mut b, "r1", 0, &c);
    assert_eq!(b.throttled("r1", 0, first, 0, &c), (15 * MINUTE, 1));
    assert_eq!(
        take(&mut b, "r1", 15 * MINUTE - 1, &c),
        refused_until(15 * MINUTE)
    );
    assert_eq!(
        take(&mut b, "r2", 1, &c),
        Ok(()),
        "another refresh token is not held"
    );
    // The wait is over: one request, and the others wait for its answer.
    let probe = ticket(&mut b, "r1", 15 * MINUTE, &c);
    let retry = 15 * MINUTE + c.backoff_initial.as_millis() as i64;
    assert_eq!(take(&mut b, "r1", 15 * MINUTE, &c), refused_until(retry));
    // Throttled again, through a row that had counted none: still the second in a row.
    assert_eq!(
        b.throttled("r1", 0, probe, 15 * MINUTE, &c),
        (45 * MINUTE, 2)
    );
    assert_eq!(
        take(&mut b, "r1", 45 * MINUTE - 1, &c),
        refused_until(45 * MINUTE)
    );
    // A row that counted more wins; the wait doubles up to four times.
    let probe = ticket(&mut b, "r1", 45 * MINUTE, &c);
    assert_eq!(
        b.throttled("r1", 5, probe, 45 * MINUTE, &c),
        (105 * MINUTE, 6)
    );
    // No answer (a 5xx, a timeout) says nothing of the block: the next request finds out.
    let probe = ticket(&mut b, "r1", 105 * MINUTE, &c);
    b.unanswered("r1", probe);
    let probe = ticket(&mut b, "r1", 105 * MINUTE, &c);
    assert_eq!(
        take(&mut b, "r1", 105 * MINUTE, &c),
        refused_until(105 * MINUTE + c.backoff_initial.as_millis() as i64)
    );
    // A token, or a refusal of the refresh token, ends the block for every row.
    b.answered("r1", probe);
    assert_eq!(take(&mut b, "r1", 105 * MINUTE, &c), Ok(()));
    assert!(b.throttled.is_empty());
}

#[test]
fn answers_to_requests_sent_before_a_throttle_was_known_change_nothing() {
    let c = cfg();
    let mut b = RateBudget::default();
    // Two requests in flight together; the first answer is a throttle.
    let (one, two) = (ticket(&mut b, "r1", 0, &c), ticket(&mut b, "r1", 0, &c));
    assert_eq!(b.throttled("r1", 0, one, 0, &c), (15 * MINUTE, 1));
    // The other, throttled too, is of the same burst: not a second in a row.
    assert_eq!(b.throttled("r1", 0, two, MINUTE, &c), (15 * MINUTE, 1));
    // Nor does a token or a failure for it lift the block.
    b.answered("r1", two);
    b.unanswered("r1", two);
    assert_eq!(take(&mut b, "r1", MINUTE, &c), refused_until(15 * MINUTE));
}

#[test]
fn a_failed_request_from_before_the_throttle_does_not_let_a_second_probe_out() {
    let c = cfg();
    let mut b = RateBudget::default();
    let (stale, first) = (ticket(&mut b, "r1", 0, &c), ticket(&mut b, "r1", 0, &c));
    b.throttled("r1", 0, first, 0, &c);
    ticket(&mut b, "r1", 15 * MINUTE, &c); // the probe, under way
    b.unanswered("r1", stale);
    let backoff = c.backoff_initial.as_millis() as i64;
    assert_eq!(
        take(&mut b, "r1", 15 * MINUTE, &c),
        refused_until(15 * MINUTE + backoff)
    );
}

#[test]
fn a_refunded_probe_lets_the_next_request_find_out() {
    let c = cfg();
    let mut b = RateBudget::default();
    let first = ticket(&mut b, "r1", 0, &c);
    b.throttled("r1", 0, first, 0, &c);
    let probe = ticket(&mut b, "r1", 15 * MINUTE, &c);
    b.refund("r1", 15 * MINUTE, probe);
    assert_eq!(take(&mut b, "r1", 15 * MINUTE, &c), Ok(()));
}

#[test]
fn a_throttle_is_kept_while_it_matters_and_read_back_at_start() {
    let c = cfg();
    let mut b = RateBudget::default();
    b.record_throttle(RateBudget::key("r1"), 30 * MINUTE, 2);
    assert_eq!(
        take(&mut b, "r1", 29 * MINUTE, &c),
        refused_until(30 * MINUTE)
    );
    // Nobody asked when the wait ended: the run of throttles is remembered for the
    // longest wait (60 minutes) after it, then forgotten.
    b.prune(89 * MINUTE, &c);
    let probe = ticket(&mut b, "r1", 89 * MINUTE, &c);
    assert_eq!(
        b.throttled("r1", 0, probe, 89 * MINUTE, &c),
        (149 * MINUTE, 3)
    );
    b.prune(209 * MINUTE, &c);
    assert!(b.throttled.is_empty(), "an ended throttle is kept forever");
    // A probe's entry stays until its answer, however long that takes.
    let first = ticket(&mut b, "r2", 0, &c);
    b.throttled("r2", 0, first, 0, &c);
    ticket(&mut b, "r2", 15 * MINUTE, &c);
    b.prune(1_000 * MINUTE, &c);
    let backoff = c.backoff_initial.as_millis() as i64;
    assert_eq!(
        take(&mut b, "r2", 1_000 * MINUTE, &c),
        refused_until(1_000 * MINUTE + backoff)
    );
}
