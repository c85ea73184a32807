//! The `[refresh]` section as written, and its validation into `RefreshConfig`.

use std::time::Duration;

use serde::Deserialize;

use super::*;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRefresh {
    enabled: Option<bool>,
    accounts_url: Option<String>,
    accounts: Vec<RawAccounts>,
    lead_fraction: Option<f64>,
    #[serde(with = "humantime_serde")]
    min_lead: Option<Duration>,
    #[serde(with = "humantime_serde")]
    max_lead: Option<Duration>,
    jitter: Option<f64>,
    #[serde(with = "humantime_serde")]
    min_validity: Option<Duration>,
    max_in_flight: Option<usize>,
    budget: Option<u32>,
    #[serde(with = "humantime_serde")]
    budget_window: Option<Duration>,
    #[serde(with = "humantime_serde")]
    backoff_initial: Option<Duration>,
    #[serde(with = "humantime_serde")]
    backoff_max: Option<Duration>,
    #[serde(with = "humantime_serde")]
    throttle_wait: Option<Duration>,
    #[serde(with = "humantime_serde")]
    connect_timeout: Option<Duration>,
    #[serde(with = "humantime_serde")]
    timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccounts {
    api_domain: String,
    url: String,
}

const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

pub(super) fn validate_refresh(raw: RawRefresh) -> Result<RefreshConfig, ConfigError> {
    let url = |key: &'static str, u: String| {
        crate::oauth::accounts_base(&u)
            .ok_or_else(|| invalid(key, "must be an http:// or https:// URL with a host"))
    };
    let accounts_url = raw
        .accounts_url
        .filter(|u| !u.is_empty())
        .map(|u| url("refresh.accounts_url", u))
        .transpose()?;
    let mut per_domain = std::collections::BTreeMap::new();
    for a in raw.accounts {
        let domain = a.api_domain.trim_end_matches('/').to_owned();
        per_domain.insert(domain, url("refresh.accounts.url", a.url)?);
    }
    let c = RefreshConfig {
        enabled: raw.enabled.unwrap_or(true),
        endpoints: Endpoints {
            accounts_url,
            per_domain,
        },
        lead_fraction: raw.lead_fraction.unwrap_or(DEFAULT_LEAD_FRACTION),
        min_lead: raw.min_lead.unwrap_or(DEFAULT_MIN_LEAD),
        max_lead: raw.max_lead.unwrap_or(DEFAULT_MAX_LEAD),
        jitter: raw.jitter.unwrap_or(DEFAULT_JITTER),
        min_validity: raw.min_validity.unwrap_or(DEFAULT_MIN_VALIDITY),
        max_in_flight: raw.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT),
        budget: raw.budget.unwrap_or(DEFAULT_BUDGET),
        budget_window: raw.budget_window.unwrap_or(DEFAULT_BUDGET_WINDOW),
        backoff_initial: raw.backoff_initial.unwrap_or(DEFAULT_BACKOFF_INITIAL),
        backoff_max: raw.backoff_max.unwrap_or(DEFAULT_BACKOFF_MAX),
        throttle_wait: raw.throttle_wait.unwrap_or(DEFAULT_THROTTLE_WAIT),
        connect_timeout: raw.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        timeout: raw.timeout.unwrap_or(DEFAULT_TIMEOUT),
    };
    if !(c.lead_fraction > 0.0 && c.lead_fraction < 1.0) {
        return Err(invalid("refresh.lead_fraction", "must be between 0 and 1"));
    }
    if c.min_lead > c.max_lead {
        return Err(invalid(
            "refresh.min_lead",
            "must not exceed refresh.max_lead",
        ));
    }
    if !(0.0..=1.0).contains(&c.jitter) {
        return Err(invalid("refresh.jitter", "must be from 0 to 1"));
    }
    if c.max_in_flight == 0 {
        return Err(invalid("refresh.max_in_flight", "must be at least 1"));
    }
    if c.budget == 0 {
        return Err(invalid("refresh.budget", "must be at least 1"));
    }
    if c.backoff_initial.is_zero() || c.backoff_initial > c.backoff_max {
        return Err(invalid(
            "refresh.backoff_initial",
            "must be above zero and not exceed refresh.backoff_max",
        ));
    }
    if c.timeout.is_zero() || c.connect_timeout.is_zero() {
        return Err(invalid("refresh.timeout", "timeouts must be above zero"));
    }
    if c.budget_window.is_zero() {
        return Err(invalid(
            "refresh.budget_window",
            "must be above zero (a zero window would lift the rate budget)",
        ));
    }
    // Past a week none of these means anything, and far past it the schedule's
    // arithmetic on them would overflow.
    for (key, d) in [
        ("refresh.min_lead", c.min_lead),
        ("refresh.max_lead", c.max_lead),
        ("refresh.min_validity", c.min_validity),
        ("refresh.budget_window", c.budget_window),
        ("refresh.backoff_max", c.backoff_max),
        ("refresh.throttle_wait", c.throttle_wait),
        ("refresh.connect_timeout", c.connect_timeout),
        ("refresh.timeout", c.timeout),
    ] {
        if d > MAX_DURATION {
            return Err(invalid(key, "must be at most 7 days"));
        }
    }
    Ok(c)
}
