//! `tokend tokens list` and `tokend token show|delete|refresh`.

use serde_json::{json, Value};
use tokend::client::{Client, ClientError};

use super::answer;
use super::output::{json, mask, masked_token, table, text, time, when};

/// `get_tokens` page size: bounds one reply, whatever the number of tokens.
const PAGE: u32 = 500;

/// The fields `token show` prints, in this order.
const FIELDS: [&str; 10] = [
    "id",
    "user_name",
    "client_id",
    "client_secret",
    "refresh_token",
    "access_token",
    "grant_token",
    "expiry_time",
    "redirect_url",
    "api_domain",
];

/// Every token, a page at a time, as a table with secrets masked.
pub fn list(c: &mut Client, as_json: bool) -> anyhow::Result<String> {
    let mut tokens = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = answer(c.call("get_tokens", json!({"limit": PAGE, "after": after})))?;
        tokens.extend(page["tokens"].as_array().cloned().unwrap_or_default());
        match &page["next"] {
            Value::Null => break,
            next => after = next.clone(),
        }
    }
    if as_json {
        let masked: Vec<Value> = tokens.iter().map(masked_token).collect();
        return Ok(json(&Value::Array(masked)));
    }
    if tokens.is_empty() {
        return Ok("no tokens stored\n".to_owned());
    }
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            let expires = match t["expiry_time"].as_str().and_then(|s| s.parse().ok()) {
                Some(ms) => super::output::relative(ms),
                None => "-".to_owned(),
            };
            vec![
                text(&t["id"]),
                text(&t["user_name"]),
                text(&t["client_id"]),
                text(&t["meta"]["state"]),
                expires,
                t["meta"]["last_used_at"]
                    .as_i64()
                    .map_or("never".to_owned(), super::output::relative),
                t["refresh_token"].as_str().map_or("-".to_owned(), mask),
            ]
        })
        .collect();
    let header = [
        "ID",
        "USER",
        "CLIENT",
        "STATE",
        "EXPIRES",
        "LAST USED",
        "REFRESH",
    ];
    Ok(table(&header, &rows))
}

/// One token's fields and state; secrets masked unless `reveal`.
pub fn show(c: &mut Client, id: &str, reveal: bool, as_json: bool) -> anyhow::Result<String> {
    // A look, not a use: it must not keep the session alive for the idle timeout. A
    // daemon from before `peek` (upgraded, not yet restarted) refuses it: then a lookup.
    let found = match c.call("find_token_by_id", json!({"token_id": id, "peek": true})) {
        Err(ClientError::Daemon { code, message, .. })
            if code == "bad_request" && message.contains("`peek`") =>
        {
            c.call("find_token_by_id", json!({"token_id": id}))
        }
        other => other,
    };
    let found = answer(found)?;
    let token = match &found["token"] {
        Value::Null => anyhow::bail!("no token with id {id}; see `tokend tokens list` for the ids"),
        t if reveal => t.clone(),
        t => masked_token(t),
    };
    if as_json {
        return Ok(json(&token));
    }
    let mut out = String::new();
    for field in FIELDS {
        let value = match field {
            "expiry_time" => when(&token[field]),
            _ => text(&token[field]),
        };
        out.push_str(&format!("{field:<15} {value}\n"));
    }
    let meta = &token["meta"];
    out.push_str(&format!("{:<15} {}\n", "state", text(&meta["state"])));
    for (label, key) in [
        ("created", "created_at"),
        ("updated", "updated_at"),
        ("last used", "last_used_at"),
        // Set only after a failure: the retry. The regular refresh is not stored.
        ("retry at", "next_refresh_at"),
    ] {
        out.push_str(&format!("{label:<15} {}\n", when(&meta[key])));
    }
    out.push_str(&format!("{:<15} {}\n", "failures", meta["failures"]));
    out.push_str(&format!(
        "{:<15} {}\n",
        "last error",
        text(&meta["last_error"])
    ));
    Ok(out)
}

/// Deletes one token; an unknown id is a failure (exit 1), so a typo does not pass.
pub fn delete(c: &mut Client, id: &str, as_json: bool) -> anyhow::Result<String> {
    let result = answer(c.call("delete_token", json!({"token_id": id})))?;
    let deleted = result["deleted"].as_bool().unwrap_or(false);
    if !deleted {
        anyhow::bail!("no token with id {id}; nothing was deleted");
    }
    Ok(if as_json {
        json(&result)
    } else {
        format!("deleted token {id}\n")
    })
}

/// Refreshes one token now and shows the new expiry.
pub fn refresh(c: &mut Client, id: &str, as_json: bool) -> anyhow::Result<String> {
    let result = match c.call("refresh", json!({"token_id": id})) {
        Err(ClientError::Daemon {
            code,
            retry_at: Some(at),
            ..
        }) if code == "throttled" => anyhow::bail!(
            "refreshing token {id} is paused by the rate limit until {} (throttled); retry then, \
             the stored access token works until it expires",
            time(at)
        ),
        other => answer(other)?,
    };
    let token = &result["token"];
    Ok(if as_json {
        json(&masked_token(token))
    } else {
        format!(
            "refreshed token {id}: the access token expires {}\n",
            when(&token["expiry_time"])
        )
    })
}
