//! The `[cleanup]` section as written, and its validation into `CleanupConfig`.

use std::time::Duration;

use serde::Deserialize;

use super::*;
use crate::policy::{Limits, Policies};

/// The policy durations of a section as written: absent (inherit), "off", or a
/// duration. Read as text and parsed in `over`, where the key is known: the section is
/// `#[serde(flatten)]`ed, and serde would name only `cleanup` in an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    idle_timeout: Option<String>,
    max_session_age: Option<String>,
    needs_reauth_grace: Option<String>,
    expired_unrefreshable_grace: Option<String>,
}

impl RawLimits {
    /// `section` names the keys in errors (`cleanup`, `cleanup.client`); `whose` says
    /// which client's they are ("" for the defaults).
    fn over(&self, base: &Limits, section: &str, whose: &str) -> Result<Limits, ConfigError> {
        let switch = |text: &Option<String>, base, name| match text.as_deref().map(str::trim) {
            None => Ok(base),
            Some("" | "off") => Ok(None),
            Some(t) => humantime_serde::re::humantime::parse_duration(t)
                .map(Some)
                .map_err(|e| {
                    let problem = format!("{whose}{t:?} is not a duration or \"off\": {e}");
                    invalid(format!("{section}.{name}"), problem)
                }),
        };
        Ok(Limits {
            idle_timeout: switch(&self.idle_timeout, base.idle_timeout, "idle_timeout")?,
            max_session_age: switch(
                &self.max_session_age,
                base.max_session_age,
                "max_session_age",
            )?,
            needs_reauth_grace: switch(
                &self.needs_reauth_grace,
                base.needs_reauth_grace,
                "needs_reauth_grace",
            )?,
            expired_unrefreshable_grace: switch(
                &self.expired_unrefreshable_grace,
                base.expired_unrefreshable_grace,
                "expired_unrefreshable_grace",
            )?,
        })
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
    let default = raw.limits.over(&builtin, "cleanup", "")?;
    let mut per_client = std::collections::BTreeMap::new();
    for c in raw.client {
        if per_client
            .insert(c.client_id.clone(), {
                let whose = format!("for client_id {:?}, ", c.client_id);
                c.limits.over(&default, "cleanup.client", &whose)?
            })
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
