//! Session-timeout policies: which stored sessions have ended, and why. Pure: "now" is a
//! parameter, so each rule is tested exactly; the store applies them while it scans.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::model::TokenState;

/// The four rules, each off (`None`) or a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// No lookup, save or `access_token` by any client for this long.
    pub idle_timeout: Option<Duration>,
    /// Absolute lifetime since the token was first saved.
    pub max_session_age: Option<Duration>,
    /// How long a token marked `needs_reauth` is kept (for the user to authorise again).
    pub needs_reauth_grace: Option<Duration>,
    /// How long after its access token expired a token without a refresh token is kept.
    pub expired_unrefreshable_grace: Option<Duration>,
}

/// The limits in force: the defaults, and per-client_id overrides of single rules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policies {
    pub default: Limits,
    pub per_client: BTreeMap<String, Limits>,
}

impl Policies {
    pub fn for_client(&self, client_id: Option<&str>) -> &Limits {
        client_id
            .and_then(|c| self.per_client.get(c))
            .unwrap_or(&self.default)
    }
}

/// Why a session ended. The name is what the audit log and the wire show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    NeedsReauthGrace,
    ExpiredUnrefreshableGrace,
    MaxSessionAge,
    IdleTimeout,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::NeedsReauthGrace => "needs_reauth_grace",
            Policy::ExpiredUnrefreshableGrace => "expired_unrefreshable_grace",
            Policy::MaxSessionAge => "max_session_age",
            Policy::IdleTimeout => "idle_timeout",
        }
    }
}

/// What the rules look at, for one stored token. All times epoch ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub created_at: i64,
    /// The last use by a client, including uses not yet flushed to disk.
    pub last_used_at: Option<i64>,
    /// When the token last changed; for a `needs_reauth` token, when it was marked.
    pub updated_at: i64,
    pub state: TokenState,
    pub expiry_ms: Option<i64>,
    pub has_refresh_token: bool,
}

/// The first rule that ends this session at `now`, with how long the condition has held
/// (for the audit log). Rules about dead credentials come before rules about time, so
/// the reason given is the most useful one.
pub fn verdict(s: &Session, limits: &Limits, now: i64) -> Option<(Policy, Duration)> {
    let past = |since: i64, limit: Option<Duration>| {
        let elapsed = now.saturating_sub(since);
        let limit = limit?;
        (elapsed >= 0 && elapsed as u128 >= limit.as_millis())
            .then(|| Duration::from_millis(elapsed as u64))
    };
    if s.state == TokenState::NeedsReauth {
        if let Some(age) = past(s.updated_at, limits.needs_reauth_grace) {
            return Some((Policy::NeedsReauthGrace, age));
        }
    }
    if !s.has_refresh_token {
        if let Some(age) = s
            .expiry_ms
            .and_then(|e| past(e, limits.expired_unrefreshable_grace))
        {
            return Some((Policy::ExpiredUnrefreshableGrace, age));
        }
    }
    if let Some(age) = past(s.created_at, limits.max_session_age) {
        return Some((Policy::MaxSessionAge, age));
    }
    let last_use = s.last_used_at.unwrap_or(s.created_at).max(s.created_at);
    past(last_use, limits.idle_timeout).map(|age| (Policy::IdleTimeout, age))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn days(n: u64) -> Option<Duration> {
        Some(Duration::from_secs(n * 86_400))
    }

    fn session() -> Session {
        Session {
            created_at: 0,
            last_used_at: Some(10 * DAY),
            updated_at: 10 * DAY,
            state: TokenState::Active,
            expiry_ms: Some(10 * DAY),
            has_refresh_token: true,
        }
    }

    #[test]
    fn idle_counts_from_the_last_use_and_includes_the_limit_itself() {
        let limits = Limits {
            idle_timeout: days(30),
            ..Limits::default()
        };
        assert_eq!(verdict(&session(), &limits, 40 * DAY - 1), None);
        assert_eq!(
            verdict(&session(), &limits, 40 * DAY),
            Some((Policy::IdleTimeout, Duration::from_secs(30 * 86_400)))
        );
        let never_used = Session {
            last_used_at: None,
            ..session()
        };
        assert!(
            verdict(&never_used, &limits, 30 * DAY).is_some(),
            "counts from creation"
        );
    }

    #[test]
    fn max_age_ignores_use() {
        let limits = Limits {
            max_session_age: days(5),
            ..Limits::default()
        };
        assert_eq!(
            verdict(&session(), &limits, 5 * DAY).map(|v| v.0),
            Some(Policy::MaxSessionAge)
        );
        assert_eq!(verdict(&session(), &limits, 5 * DAY - 1), None);
    }

    #[test]
    fn needs_reauth_grace_applies_only_to_needs_reauth_tokens() {
        let limits = Limits {
            needs_reauth_grace: days(7),
            ..Limits::default()
        };
        assert_eq!(verdict(&session(), &limits, 100 * DAY), None);
        let dead = Session {
            state: TokenState::NeedsReauth,
            ..session()
        };
        assert_eq!(verdict(&dead, &limits, 17 * DAY - 1), None);
        assert_eq!(
            verdict(&dead, &limits, 17 * DAY).map(|v| v.0),
            Some(Policy::NeedsReauthGrace)
        );
    }

    #[test]
    fn expired_unrefreshable_needs_no_refresh_token_and_a_known_expiry() {
        let limits = Limits {
            expired_unrefreshable_grace: days(1),
            ..Limits::default()
        };
        assert_eq!(verdict(&session(), &limits, 100 * DAY), None, "refreshable");
        let bare = Session {
            has_refresh_token: false,
            ..session()
        };
        assert_eq!(
            verdict(&bare, &limits, 11 * DAY).map(|v| v.0),
            Some(Policy::ExpiredUnrefreshableGrace)
        );
        let unknown = Session {
            expiry_ms: None,
            ..bare
        };
        assert_eq!(verdict(&unknown, &limits, 100 * DAY), None);
    }

    #[test]
    fn every_rule_off_removes_nothing() {
        let dead = Session {
            state: TokenState::NeedsReauth,
            has_refresh_token: false,
            ..session()
        };
        assert_eq!(verdict(&dead, &Limits::default(), i64::MAX), None);
    }

    #[test]
    fn a_client_override_replaces_the_default() {
        let mut p = Policies {
            default: Limits {
                idle_timeout: days(30),
                ..Limits::default()
            },
            ..Policies::default()
        };
        p.per_client.insert(
            "strict".into(),
            Limits {
                idle_timeout: days(1),
                ..Limits::default()
            },
        );
        assert_eq!(p.for_client(Some("strict")).idle_timeout, days(1));
        assert_eq!(p.for_client(Some("other")).idle_timeout, days(30));
        assert_eq!(p.for_client(None).idle_timeout, days(30));
    }
}
