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
    b.take(rt, now, c).map_err(|r| r.until)
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
        assert_eq!(take(&mut b, "r1", i, &c), Ok(()));
        b.refund("r1", i);
    }
    assert_eq!(
        take(&mut b, "r1", 10, &c),
        Ok(()),
        "the refunded ones count for nothing"
    );
    b.close_until(5_000);
    assert_eq!(take(&mut b, "r2", 4_999, &c), refused_until(5_000));
    assert_eq!(take(&mut b, "r2", 5_000, &c), Ok(()));
}

#[test]
fn a_throttled_refresh_token_waits_and_then_one_request_finds_out_if_the_block_lifted() {
    let c = cfg();
    let mut b = RateBudget::default();
    assert_eq!(take(&mut b, "r1", 0, &c), Ok(()));
    assert_eq!(b.throttled("r1", 0, 0, &c), (15 * MINUTE, 1));
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
    assert_eq!(take(&mut b, "r1", 15 * MINUTE, &c), Ok(()));
    let retry = 15 * MINUTE + c.backoff_initial.as_millis() as i64;
    assert_eq!(take(&mut b, "r1", 15 * MINUTE, &c), refused_until(retry));
    // Throttled again, through a row that had counted none: still the second in a row.
    assert_eq!(b.throttled("r1", 0, 15 * MINUTE, &c), (45 * MINUTE, 2));
    assert_eq!(
        take(&mut b, "r1", 45 * MINUTE - 1, &c),
        refused_until(45 * MINUTE)
    );
    // A row that counted more wins; the wait doubles up to four times.
    assert_eq!(take(&mut b, "r1", 45 * MINUTE, &c), Ok(()));
    assert_eq!(b.throttled("r1", 5, 45 * MINUTE, &c), (105 * MINUTE, 6));
    // Any other answer ends the block for every row.
    assert_eq!(take(&mut b, "r1", 105 * MINUTE, &c), Ok(()));
    b.answered("r1");
    assert_eq!(take(&mut b, "r1", 105 * MINUTE, &c), Ok(()));
    assert!(b.throttled.is_empty());
}

#[test]
fn a_refunded_probe_lets_the_next_request_find_out() {
    let c = cfg();
    let mut b = RateBudget::default();
    b.throttled("r1", 0, 0, &c);
    assert_eq!(take(&mut b, "r1", 15 * MINUTE, &c), Ok(()));
    b.refund("r1", 15 * MINUTE);
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
    assert_eq!(b.throttled("r1", 0, 89 * MINUTE, &c), (149 * MINUTE, 3));
    b.prune(209 * MINUTE, &c);
    assert!(b.throttled.is_empty(), "an ended throttle is kept forever");
    // A probe's entry stays until its answer, however long that takes.
    b.throttled("r1", 0, 0, &c);
    assert_eq!(take(&mut b, "r1", 15 * MINUTE, &c), Ok(()));
    b.prune(1_000 * MINUTE, &c);
    assert_eq!(
        take(&mut b, "r1", 1_000 * MINUTE, &c),
        refused_until(1_000 * MINUTE + c.backoff_initial.as_millis() as i64)
    );
}
