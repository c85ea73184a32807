use std::collections::HashMap;

use super::*;
use crate::config::Config;

/// The built-in defaults.
fn cfg() -> RefreshConfig {
    Config::builtin(&HashMap::new()).unwrap().refresh
}

const HOUR: i64 = 3_600_000;

#[test]
fn a_one_hour_token_is_refreshed_six_minutes_early_and_jitter_only_moves_earlier() {
    let c = cfg();
    let input = ScheduleInput {
        expiry_ms: Some(HOUR),
        saved_at: 0,
        next_refresh_at: None,
    };
    assert_eq!(deadline(input, &c, 0.0), HOUR - 6 * 60_000);
    let earliest = HOUR - 6 * 60_000 - (6 * 60_000) / 4;
    for draw in [0.0, 0.3, 0.999_999, 1.0] {
        let at = deadline(input, &c, draw);
        assert!(at <= HOUR - 6 * 60_000 && at >= earliest, "{draw}: {at}");
    }
}

#[test]
fn lead_is_clamped_to_its_bounds() {
    let c = cfg();
    assert_eq!(
        lead(10_000, &c),
        c.min_lead,
        "a 10 s token still gets a minute"
    );
    assert_eq!(lead(24 * HOUR, &c), c.max_lead);
    assert_eq!(lead(-5, &c), c.min_lead);
}

#[test]
fn a_retry_time_wins_and_a_token_without_expiry_is_due_at_once() {
    let c = cfg();
    let retry = ScheduleInput {
        expiry_ms: Some(HOUR),
        saved_at: 0,
        next_refresh_at: Some(42),
    };
    assert_eq!(deadline(retry, &c, 0.5), 42);
    let unknown = ScheduleInput {
        expiry_ms: None,
        saved_at: 7,
        next_refresh_at: None,
    };
    assert_eq!(deadline(unknown, &c, 0.5), 7);
}

#[test]
fn backoff_doubles_from_ten_seconds_within_half_either_way_and_is_capped() {
    let c = cfg();
    assert_eq!(backoff(1, &c, 0.5), Duration::from_secs(10));
    assert_eq!(backoff(2, &c, 0.5), Duration::from_secs(20));
    assert_eq!(backoff(3, &c, 0.0), Duration::from_secs(20), "-50%");
    assert_eq!(backoff(3, &c, 1.0), Duration::from_secs(60), "+50%");
    assert_eq!(backoff(40, &c, 1.0), c.backoff_max);
    assert_eq!(backoff(u32::MAX, &c, 0.5), c.backoff_max);
}

#[test]
fn deadlines_pop_in_order_and_moves_and_cancels_take_effect() {
    let mut d = Deadlines::default();
    d.set("a", 30);
    d.set("b", 10);
    d.set("c", 20);
    d.set("a", 5);
    d.cancel("c");
    assert_eq!(d.len(), 2);
    assert_eq!(d.next(), Some(5));
    assert_eq!(d.pop_due(4), None);
    assert_eq!(d.pop_due(100).as_deref(), Some("a"));
    assert_eq!(d.pop_due(100).as_deref(), Some("b"));
    assert_eq!(d.pop_due(100), None);
    assert!(d.is_empty());
}

#[test]
fn ids_that_are_not_numbers_written_one_way_keep_their_own_name() {
    let mut d = Deadlines::default();
    // "007" and "7" are different ids; so are "+7" and "7"; past 2^63 is no number.
    for (id, at) in [
        ("7", 1),
        ("007", 2),
        ("+7", 3),
        ("abc", 4),
        ("9223372036854775808", 5),
    ] {
        d.set(id, at);
    }
    d.set("abc", 6);
    assert_eq!((d.get("007"), d.get("abc")), (Some(2), Some(6)));
    let popped: Vec<String> = std::iter::from_fn(|| d.pop_due(100)).collect();
    assert_eq!(popped, ["7", "007", "+7", "9223372036854775808", "abc"]);
    // Names are dropped with their deadlines: nothing is left behind.
    assert!(d.is_empty() && d.get("abc").is_none());
    d.set("abc", 1);
    d.cancel("abc");
    assert!(d.is_empty() && d.get("abc").is_none());
}

#[test]
fn only_active_tokens_with_refresh_token_and_credentials_are_scheduled() {
    use crate::model::{Meta, Token};
    let s = |v: &str| Some(v.to_owned());
    let mut t = StoredToken {
        token: Token {
            id: s("1"),
            client_id: s("c"),
            client_secret: s("x"),
            refresh_token: s("r"),
            access_token: s("a"),
            expiry_time: s("5000"),
            ..Token::default()
        },
        meta: Meta {
            updated_at: 1000,
            ..Meta::default()
        },
    };
    assert_eq!(ScheduleInput::of(&t).and_then(|i| i.expiry_ms), Some(5000));
    t.token.access_token = None;
    assert_eq!(
        ScheduleInput::of(&t).map(|i| i.expiry_ms),
        Some(None),
        "no access token: due now"
    );
    t.meta.state = TokenState::NeedsReauth;
    assert_eq!(ScheduleInput::of(&t), None);
    t.meta.state = TokenState::Active;
    t.token.client_secret = None;
    assert_eq!(ScheduleInput::of(&t), None);
}
