//! `tokend status` and `tokend cleanup`: the daemon's state, and a cleanup pass.

use serde_json::{json, Value};
use tokend::client::Client;

use super::answer;
use super::output::{json, table, text, when};

/// `ping` and `status` together: version, counts, schedule.
pub fn status(c: &mut Client, as_json: bool) -> anyhow::Result<String> {
    let ping = answer(c.call("ping", json!({})))?;
    let status = answer(c.call("status", json!({})))?;
    if as_json {
        let mut all = status.clone();
        all["socket"] = json!(c.path().display().to_string());
        all["version"] = ping["version"].clone();
        all["protocol"] = ping["protocol"].clone();
        return Ok(json(&all));
    }
    let tokens = status["tokens"].as_object().cloned().unwrap_or_default();
    let total: u64 = tokens.values().filter_map(Value::as_u64).sum();
    let by_state: Vec<String> = tokens.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let count = |k: &str| status[k].as_u64().unwrap_or(0);
    Ok(format!(
        "tokend {} (protocol {}) on {}\n\
         tokens:   {total}{}\n\
         refresh:  {} scheduled, {} in flight, next {}\n\
         provider: {} refreshed, {} failed since start\n",
        text(&ping["version"]),
        ping["protocol"],
        c.path().display(),
        if by_state.is_empty() {
            String::new()
        } else {
            format!(" ({})", by_state.join(", "))
        },
        count("scheduled"),
        count("in_flight"),
        when(&status["next_refresh_at"]),
        count("refreshed"),
        count("failed"),
    ))
}

/// A cleanup pass now; `dry_run` only reports. Without it the daemon's `cleanup.dry_run`
/// decides: an operator trialling the policies with it set must not lose (and revoke)
/// tokens by running the command to look.
pub fn cleanup(c: &mut Client, dry_run: bool, as_json: bool) -> anyhow::Result<String> {
    let args = if dry_run {
        json!({"dry_run": true})
    } else {
        json!({})
    };
    let result = answer(c.call("cleanup", args))?;
    if as_json {
        return Ok(json(&result));
    }
    let removed = result["removed"].as_array().cloned().unwrap_or_default();
    let dry = result["dry_run"].as_bool().unwrap_or(dry_run);
    let verb = if dry { "would remove" } else { "removed" };
    if removed.is_empty() {
        return Ok(format!(
            "no session has ended: {verb} nothing{}\n",
            if dry { " (dry run)" } else { "" }
        ));
    }
    let rows: Vec<Vec<String>> = removed
        .iter()
        .map(|r| {
            vec![
                text(&r["token_id"]),
                text(&r["user_name"]),
                text(&r["policy"]),
            ]
        })
        .collect();
    Ok(format!(
        "{verb} {} session(s){}:\n{}",
        removed.len(),
        if dry { " (dry run)" } else { "" },
        table(&["ID", "USER", "POLICY"], &rows)
    ))
}
