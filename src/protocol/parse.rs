//! Request parsing, by hand from a JSON object rather than derived with serde, so that
//! every error message is ours: serde's messages quote the offending value, and that
//! value may be a secret.

use serde_json::{Map, Value};

use super::{Request, TokenKey, WireError, MAX_PAGE};
use crate::model::Token;

/// Parses one request line. The `seq` is returned even when the rest is bad, so the
/// error reply can still be matched to its request.
pub fn parse(line: &[u8]) -> (Value, Result<Request, WireError>) {
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        // serde_json's syntax errors name a position, never the input's content.
        Err(e) => return (Value::Null, Err(bad(format!("not valid JSON: {e}")))),
    };
    let Value::Object(mut map) = value else {
        return (Value::Null, Err(bad("a request must be a JSON object")));
    };
    let seq = map.remove("seq").unwrap_or(Value::Null);
    (seq, request(map))
}

fn request(mut args: Map<String, Value>) -> Result<Request, WireError> {
    let op = match args.remove("op") {
        Some(Value::String(op)) => op,
        Some(_) => return Err(bad("`op` must be a string")),
        None => return Err(bad("missing `op`")),
    };
    let request = match op.as_str() {
        "save_token" => Request::SaveToken {
            token: token(required(&mut args, "token")?)?,
        },
        "find_token" => Request::FindToken {
            token: token(required(&mut args, "token")?)?,
        },
        "find_token_by_id" => Request::FindTokenById {
            token_id: string(required(&mut args, "token_id")?, "token_id")?,
            peek: match optional(&mut args, "peek") {
                None => false,
                Some(Value::Bool(b)) => b,
                Some(_) => return Err(bad("`peek` must be true or false")),
            },
        },
        "delete_token" => Request::DeleteToken {
            token_id: string(required(&mut args, "token_id")?, "token_id")?,
        },
        "get_tokens" => Request::GetTokens {
            limit: optional(&mut args, "limit")
                .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
                .map(|n| {
                    n.ok_or_else(|| bad("`limit` must be a whole number from 0 to 4294967295"))
                })
                .transpose()?
                .map_or(MAX_PAGE, |n| n.min(MAX_PAGE)),
            after: optional(&mut args, "after")
                .map(|v| string(v, "after"))
                .transpose()?,
        },
        "delete_tokens" => Request::DeleteTokens,
        "ping" => Request::Ping,
        "access_token" => {
            let id = optional(&mut args, "token_id")
                .map(|v| string(v, "token_id"))
                .transpose()?;
            let name = optional(&mut args, "user_name")
                .map(|v| string(v, "user_name"))
                .transpose()?;
            let key = match (id, name) {
                (Some(id), None) => TokenKey::Id(id),
                (None, Some(name)) => TokenKey::UserName(name),
                _ => return Err(bad("give exactly one of `token_id` and `user_name`")),
            };
            Request::AccessToken { key }
        }
        "refresh" => Request::Refresh {
            token_id: string(required(&mut args, "token_id")?, "token_id")?,
        },
        "status" => Request::Status,
        "cleanup" => Request::Cleanup {
            dry_run: match optional(&mut args, "dry_run") {
                None => None,
                Some(Value::Bool(b)) => Some(b),
                Some(_) => return Err(bad("`dry_run` must be true or false")),
            },
        },
        other => return Err(bad(format!("unknown op `{}`", clip(other)))),
    };
    match args.keys().next() {
        Some(extra) => Err(bad(format!(
            "unknown argument `{}` for op `{op}`",
            clip(extra)
        ))),
        None => Ok(request),
    }
}

/// A present, non-null argument.
fn required(args: &mut Map<String, Value>, name: &str) -> Result<Value, WireError> {
    optional(args, name).ok_or_else(|| bad(format!("missing `{name}`")))
}

/// An argument, with `null` meaning absent.
fn optional(args: &mut Map<String, Value>, name: &str) -> Option<Value> {
    args.remove(name).filter(|v| !v.is_null())
}

fn string(v: Value, name: &str) -> Result<String, WireError> {
    match v {
        Value::String(s) => Ok(s),
        _ => Err(bad(format!("`{name}` must be a string"))),
    }
}

/// Parses a token object: the ten fields, each a string or null (`expiry_time` may also
/// be an integer), empty strings meaning null. `meta` is read-only and ignored.
pub fn token(v: Value) -> Result<Token, WireError> {
    let Value::Object(map) = v else {
        return Err(bad("`token` must be an object"));
    };
    let mut t = Token::default();
    for (key, value) in map {
        let slot = match key.as_str() {
            "id" => &mut t.id,
            "user_name" => &mut t.user_name,
            "client_id" => &mut t.client_id,
            "client_secret" => &mut t.client_secret,
            "refresh_token" => &mut t.refresh_token,
            "access_token" => &mut t.access_token,
            "grant_token" => &mut t.grant_token,
            "expiry_time" => &mut t.expiry_time,
            "redirect_url" => &mut t.redirect_url,
            "api_domain" => &mut t.api_domain,
            "meta" => continue,
            other => return Err(bad(format!("unknown token field `{}`", clip(other)))),
        };
        *slot = match value {
            Value::Null => None,
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s),
            Value::Number(n) if key == "expiry_time" && n.is_u64() => Some(n.to_string()),
            _ if key == "expiry_time" => {
                return Err(bad("token field `expiry_time` must be epoch milliseconds, as a string of digits or an integer"))
            }
            _ => return Err(bad(format!("token field `{key}` must be a string or null"))),
        };
    }
    if let Some(e) = &t.expiry_time {
        if !crate::model::is_epoch_ms(e) {
            return Err(bad("token field `expiry_time` must be epoch milliseconds, as a string of digits or an integer"));
        }
    }
    Ok(t)
}

/// A client-chosen name echoed in an error, cut short so a hostile client cannot make
/// the reply (or a log line quoting it) huge.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn bad(message: impl Into<String>) -> WireError {
    WireError::new(super::Code::BadRequest, message)
}
