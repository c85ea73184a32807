//! `tokend config check [FILE]`: load and validate the configuration as `tokend serve`
//! would, and print the effective result (every default filled in, environment overrides
//! applied) as TOML that loads back to the same configuration, or as JSON.
//!
//! The configuration holds no token secrets today, but any key named `*secret*` and the
//! password part of a URL are redacted anyway, so the output can be pasted in a ticket.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use humantime_serde::re::humantime;
use serde_json::{json, Map, Value};
use tokend::Config;

use super::output;

pub fn check(
    file: Option<&Path>,
    socket: Option<&Path>,
    env: &HashMap<String, String>,
    as_json: bool,
) -> anyhow::Result<String> {
    let config = super::load(file, socket, env)?;
    let mut effective = effective(&config);
    redact(&mut effective);
    if as_json {
        return Ok(output::json(&effective));
    }
    let source = config
        .source
        .as_ref()
        .map_or("built-in defaults".into(), |p| p.display().to_string());
    Ok(format!(
        "# The configuration is valid. Effective values (from {source}, with defaults and\n\
         # environment overrides applied):\n\n{}",
        toml(&effective)
    ))
}

/// A duration in its largest whole unit, as the shipped file writes them: `90days`,
/// `15m`, `10s`, `250ms`. (humantime's own format counts 30.44-day months.)
fn duration(d: Duration) -> Value {
    let (secs, ms) = (d.as_secs(), d.subsec_millis());
    let text = match secs {
        _ if ms != 0 || d.subsec_nanos() % 1_000_000 != 0 => {
            humantime::format_duration(d).to_string().replace(' ', "")
        }
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}days", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    };
    json!(text)
}

/// A policy: a duration, or "off".
fn switch(d: Option<Duration>) -> Value {
    d.map_or(json!("off"), duration)
}

fn limits(l: &tokend::policy::Limits) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("idle_timeout".into(), switch(l.idle_timeout));
    m.insert("max_session_age".into(), switch(l.max_session_age));
    m.insert("needs_reauth_grace".into(), switch(l.needs_reauth_grace));
    m.insert(
        "expired_unrefreshable_grace".into(),
        switch(l.expired_unrefreshable_grace),
    );
    m
}

/// The configuration as the keys of config/tokend.toml.
fn effective(c: &Config) -> Value {
    let (s, r, k) = (&c.socket, &c.refresh, &c.cleanup);
    let accounts: Vec<Value> = (r.endpoints.per_domain.iter())
        .map(|(domain, url)| json!({"api_domain": domain, "url": url}))
        .collect();
    let mut cleanup = json!({
        "enabled": k.enabled,
        "schedule": k.schedule,
        "dry_run": k.dry_run,
        "action": match k.action {
            tokend::config::CleanupAction::Delete => "delete",
            tokend::config::CleanupAction::RevokeAndDelete => "revoke_and_delete",
        },
        "last_used_flush": duration(k.last_used_flush),
    });
    if let Value::Object(m) = &mut cleanup {
        m.extend(limits(&k.policies.default));
        let clients: Vec<Value> = (k.policies.per_client.iter())
            .map(|(id, l)| {
                let mut m = Map::new();
                m.insert("client_id".into(), json!(id));
                m.extend(limits(l));
                Value::Object(m)
            })
            .collect();
        m.insert("client".into(), Value::Array(clients));
    }
    json!({
        "socket": {
            "path": s.path.display().to_string(),
            "group": s.group.clone().unwrap_or_default(),
            "max_request_bytes": s.max_request_bytes,
            "max_connections": s.max_connections,
            "max_connections_per_user": s.max_connections_per_user,
            "shutdown_timeout": duration(s.shutdown_timeout),
        },
        "store": {
            "path": c.store.path.display().to_string(),
            "busy_timeout": duration(c.store.busy_timeout),
        },
        "log": {"level": c.log.level, "format": c.log.format.as_str()},
        "refresh": {
            "enabled": r.enabled,
            "accounts_url": r.endpoints.accounts_url.clone().unwrap_or_default(),
            "accounts": accounts,
            "lead_fraction": r.lead_fraction,
            "min_lead": duration(r.min_lead),
            "max_lead": duration(r.max_lead),
            "jitter": r.jitter,
            "min_validity": duration(r.min_validity),
            "max_in_flight": r.max_in_flight,
            "budget": r.budget,
            "budget_window": duration(r.budget_window),
            "backoff_initial": duration(r.backoff_initial),
            "backoff_max": duration(r.backoff_max),
            "throttle_wait": duration(r.throttle_wait),
            "connect_timeout": duration(r.connect_timeout),
            "timeout": duration(r.timeout),
        },
        "cleanup": cleanup,
    })
}

/// Replaces the value of every key named `*secret*`, and a URL's password.
fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if k.to_ascii_lowercase().contains("secret") && !v.is_null() {
                    *v = json!("<redacted>");
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        Value::String(s) => {
            // scheme://user:password@host... → scheme://user:<redacted>@host...
            if let Some((scheme, rest)) = s.split_once("://") {
                let authority = rest.split('/').next().unwrap_or("");
                if let Some((userinfo, _)) = authority.rsplit_once('@') {
                    if let Some((user, _)) = userinfo.split_once(':') {
                        let host_on = &rest[userinfo.len()..];
                        *s = format!("{scheme}://{user}:<redacted>{host_on}");
                    }
                }
            }
        }
        _ => {}
    }
}

/// Sections of scalars and arrays of tables, as TOML. Strings are written as JSON
/// strings, whose escapes TOML's basic strings share.
fn toml(v: &Value) -> String {
    let mut out = String::new();
    let Value::Object(sections) = v else {
        return out;
    };
    for (name, section) in sections {
        let Value::Object(keys) = section else {
            continue;
        };
        out.push_str(&format!("[{name}]\n"));
        let mut tables = Vec::new();
        for (key, value) in keys {
            match value {
                Value::Array(items) if items.iter().all(Value::is_object) => {
                    if items.is_empty() {
                        out.push_str(&format!("{key} = []\n"));
                    }
                    tables.extend(items.iter().map(|item| (key, item)));
                }
                other => out.push_str(&format!("{key} = {other}\n")),
            }
        }
        for (key, table) in tables {
            out.push_str(&format!("\n[[{name}.{key}]]\n"));
            if let Value::Object(fields) = table {
                for (k, v) in fields {
                    out.push_str(&format!("{k} = {v}\n"));
                }
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_their_largest_whole_unit() {
        let d = |s| duration(Duration::from_secs(s));
        assert_eq!(d(90 * 86_400), "90days");
        assert_eq!(d(7200), "2h");
        assert_eq!(d(900), "15m");
        assert_eq!(d(61), "61s");
        assert_eq!(d(0), "0s");
        assert_eq!(duration(Duration::from_millis(1500)), "1s500ms");
    }

    #[test]
    fn secrets_and_url_passwords_are_redacted() {
        let mut v = json!({"a": {"client_secret": "s", "url": "https://u:pw@h.example/x", "plain": "https://h.example/a@b"}});
        redact(&mut v);
        assert_eq!(v["a"]["client_secret"], "<redacted>");
        assert_eq!(v["a"]["url"], "https://u:<redacted>@h.example/x");
        assert_eq!(v["a"]["plain"], "https://h.example/a@b");
    }

    #[test]
    fn printed_defaults_load_back_to_the_same_configuration() {
        let env: HashMap<String, String> =
            [("HOME", "/home/u"), ("XDG_RUNTIME_DIR", "/run/user/1")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("in.toml");
        std::fs::write(
            &file,
            "[cleanup]\nidle_timeout = \"2days\"\n[[cleanup.client]]\nclient_id = \"1000.X\"\nmax_session_age = \"1h\"\n\
             [refresh]\naccounts = [{ api_domain = \"https://crm.example.test\", url = \"http://127.0.0.1:9\" }]\n",
        )
        .unwrap();
        let first = Config::load(Some(&file), &env).unwrap();
        let printed = dir.path().join("out.toml");
        std::fs::write(&printed, toml(&effective(&first))).unwrap();
        let second = Config::load(Some(&printed), &env).unwrap();
        assert_eq!(
            Config {
                source: None,
                ..second
            },
            Config {
                source: None,
                ..first
            }
        );
    }
}
