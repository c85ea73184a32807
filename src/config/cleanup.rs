//! The `[cleanup]` section as written, and its validation into `CleanupConfig`.

use std::time::Duration;

use serde::Deserialize;

use super::*;
use crate::policy::{Limits, Policies};

/// A policy duration as written: absent (inherit the default), "off", or a duration.
type Switch = Option<Option<Duration>>;

fn switch<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Switch, D::Error> {
    let text = String::deserialize(d)?;
    match text.trim() {
        "" | "off" => Ok(Some(None)),
        t => humantime_serde::re::humantime::parse_duration(t)
            .map(|d| Some(Some(d)))
            .map_err(|e| {
                serde::de::Error::custom(format!("{t:?} is not a duration or \"off\": {e}"))
            }),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    #[serde(deserialize_with = "switch")]
    idle_timeout: Switch,
    #[serde(deserialize_with = "switch")]
    max_session_age: Switch,
    #[serde(deserialize_with = "switch")]
    needs_reauth_grace: Switch,
    #[serde(deserialize_with = "switch")]
    expired_unrefreshable_grace: Switch,
}

impl RawLimits {
    fn over(&self, base: &Limits) -> Limits {
        Limits {
            idle_timeout: self.idle_timeout.unwrap_or(base.idle_timeout),
            max_session_age: self.max_session_age.unwrap_or(base.max_session_age),
            needs_reauth_grace: self.needs_reauth_grace.unwrap_or(base.needs_reauth_grace),
            expired_unrefreshable_grace: self
                .expired_unrefreshable_grace
                .unwrap_or(base.expired_unrefreshable_grace),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCleanup {
    enabled: Option<bool>,
    schedule: Option<String>,
    dry_run: Option<bool>,
    action: Option<String>,
    #[serde(with = "humantime_serde")]
    last_used_flush: Option<Duration>,
    #[serde(flatten)]
    limits: RawLimits,
    client: Vec<RawClientLimits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientLimits {
    client_id: String,
    #[serde(flatten)]
    limits: RawLimits,
}

pub(super) fn validate_cleanup(raw: RawCleanup) -> Result<CleanupConfig, ConfigError> {
    let builtin = Limits {
        idle_timeout: DEFAULT_IDLE_TIMEOUT,
        max_session_age: DEFAULT_MAX_SESSION_AGE,
        needs_reauth_grace: DEFAULT_NEEDS_REAUTH_GRACE,
        expired_unrefreshable_grace: DEFAULT_EXPIRED_UNREFRESHABLE_GRACE,
    };
    let default = raw.limits.over(&builtin);
    let mut per_client = std::collections::BTreeMap::new();
    for c in raw.client {
        if per_client
            .insert(c.client_id.clone(), c.limits.over(&default))
            .is_some()
        {
            return Err(invalid(
                "cleanup.client.client_id",
                format!("{:?} appears twice", c.client_id),
            ));
        }
    }
    let schedule = raw
        .schedule
        .unwrap_or_else(|| DEFAULT_CLEANUP_SCHEDULE.to_owned());
    if let Err(e) =
        tokio_cron_scheduler::Job::new_async(schedule.as_str(), |_, _| Box::pin(async {}))
    {
        return Err(invalid(
            "cleanup.schedule",
            format!("{schedule:?} is not a cron expression with seconds: {e}"),
        ));
    }
    let action = match raw.action.as_deref() {
        None | Some("delete") => CleanupAction::Delete,
        Some("revoke_and_delete") => CleanupAction::RevokeAndDelete,
        Some(other) => {
            return Err(invalid(
                "cleanup.action",
                format!("{other:?} is not `delete` or `revoke_and_delete`"),
            ))
        }
    };
    let last_used_flush = raw.last_used_flush.unwrap_or(DEFAULT_LAST_USED_FLUSH);
    if last_used_flush.is_zero() {
        return Err(invalid("cleanup.last_used_flush", "must be above zero"));
    }
    Ok(CleanupConfig {
        enabled: raw.enabled.unwrap_or(true),
        schedule,
        dry_run: raw.dry_run.unwrap_or(false),
        action,
        policies: Policies {
            default,
            per_client,
        },
        last_used_flush,
    })
}
