//! Wire protocol v1: newline-delimited JSON requests and replies. No I/O here.
//!
//! User documentation with an example per operation: `docs/protocol.md`. In brief:
//!
//! ```text
//! → {"op": "find_token_by_id", "seq": 3, "token_id": "1"}
//! ← {"seq": 3, "ok": true, "result": {"token": {"id": "1", ..., "meta": {...}}}}
//! → {"op": "nope"}
//! ← {"seq": null, "ok": false, "error": {"code": "bad_request", "message": "unknown op `nope`"}}
//! ```
//!
//! Requests are parsed by hand from a JSON object rather than derived with serde, so that
//! every error message is ours: serde's messages quote the offending value, and that
//! value may be a secret.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::StoreError;
use crate::model::{StoredToken, Token};
use crate::refresher::RefreshError;

/// The protocol version `ping` reports; bumped on an incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// A parsed request. Each variant's JSON is shown on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `{"op": "save_token", "token": {...}}` → `{"token": T}`
    SaveToken { token: Token },
    /// `{"op": "find_token", "token": {...partial...}}` → `{"token": T | null}`
    FindToken { token: Token },
    /// `{"op": "find_token_by_id", "token_id": "1"}` → `{"token": T | null}`
    FindTokenById { token_id: String },
    /// `{"op": "delete_token", "token_id": "1"}` → `{"deleted": bool}`
    DeleteToken { token_id: String },
    /// `{"op": "get_tokens", "limit"?: 100, "after"?: "41"}` → `{"tokens": [T], "next": id | null}`
    GetTokens {
        limit: Option<u32>,
        after: Option<String>,
    },
    /// `{"op": "delete_tokens"}` → `{"deleted": n}`
    DeleteTokens,
    /// `{"op": "ping"}` → `{"version": "0.1.0", "protocol": 1, "tokens": n}`
    Ping,
    /// `{"op": "access_token", "token_id": "1"}` or `{"op": "access_token", "user_name": "u"}`
    /// → `{"token_id", "access_token", "expiry_time", "api_domain"}`, with at least
    /// `refresh.min_validity` left, refreshing first if needed.
    AccessToken { key: TokenKey },
    /// `{"op": "refresh", "token_id": "1"}` → `{"token": T}`: refresh now.
    Refresh { token_id: String },
    /// `{"op": "status"}` → `{"tokens": {"active": n, "needs_reauth": m}, "scheduled", "in_flight",
    /// "refreshed", "failed", "next_refresh_at"}`
    Status,
    /// `{"op": "cleanup", "dry_run"?: true}` → `{"dry_run": bool, "removed": [{"token_id",
    /// "user_name", "policy"}]}`: a cleanup pass now. `dry_run` defaults to `cleanup.dry_run`.
    Cleanup { dry_run: Option<bool> },
}

/// How `access_token` names its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKey {
    Id(String),
    UserName(String),
}

/// A successful reply's `result`.
#[allow(clippy::large_enum_variant)] // built once per reply and serialised at once
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Token {
        token: Option<StoredToken>,
    },
    Tokens {
        tokens: Vec<StoredToken>,
        next: Option<String>,
    },
    Deleted {
        deleted: bool,
    },
    DeletedCount {
        deleted: u64,
    },
    Pong {
        version: &'static str,
        protocol: u32,
        tokens: u64,
    },
    Access {
        token_id: String,
        access_token: Option<String>,
        expiry_time: Option<String>,
        api_domain: Option<String>,
    },
    Cleanup {
        dry_run: bool,
        removed: Vec<crate::cleanup::Removal>,
    },
    Status {
        tokens: std::collections::BTreeMap<&'static str, u64>,
        #[serde(flatten)]
        refresher: crate::refresher::Status,
    },
}

/// Error codes: stable, for programs. See docs/protocol.md for what a client does on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    BadRequest,
    TooLarge,
    IncompleteToken,
    Conflict,
    StoreFailure,
    Busy,
    ShuttingDown,
    NotFound,
    NeedsReauth,
    Throttled,
    RefreshFailed,
}

/// A failed reply's `error`. The message is for people and never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WireError {
    pub code: Code,
    pub message: String,
    /// With `throttled`: when a retry may succeed, in epoch ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<i64>,
    /// With `refresh_failed` and `needs_reauth`: the provider's error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_error: Option<String>,
}

impl WireError {
    pub fn new(code: Code, message: impl Into<String>) -> WireError {
        WireError {
            code,
            message: message.into(),
            retry_at: None,
            provider_error: None,
        }
    }

    fn bad(message: impl Into<String>) -> WireError {
        WireError::new(Code::BadRequest, message)
    }
}

/// The one place internal errors become wire errors.
impl From<StoreError> for WireError {
    fn from(e: StoreError) -> WireError {
        let code = match e {
            StoreError::IncompleteToken => Code::IncompleteToken,
            StoreError::Conflict => Code::Conflict,
            StoreError::Unavailable => Code::ShuttingDown,
            StoreError::Sqlite(_) | StoreError::Open { .. } | StoreError::CreateDir { .. } => {
                // The details (file paths, SQLite's words) are in the daemon's log.
                return WireError::new(
                    Code::StoreFailure,
                    "the token database failed; nothing was changed",
                );
            }
        };
        WireError::new(code, e.to_string())
    }
}

impl From<RefreshError> for WireError {
    fn from(e: RefreshError) -> WireError {
        let message = e.to_string();
        match e {
            RefreshError::Store(e) => e.into(),
            RefreshError::NotFound => WireError::new(Code::NotFound, message),
            RefreshError::ShuttingDown => WireError::new(Code::ShuttingDown, message),
            RefreshError::NeedsReauth { provider_error } => WireError {
                provider_error,
                ..WireError::new(Code::NeedsReauth, message)
            },
            RefreshError::Throttled { retry_at } => WireError {
                retry_at: Some(retry_at),
                ..WireError::new(Code::Throttled, message)
            },
            RefreshError::Failed { provider_error, .. } => WireError {
                provider_error: Some(provider_error),
                ..WireError::new(Code::RefreshFailed, message)
            },
        }
    }
}

/// Parses one request line. The `seq` is returned even when the rest is bad, so the
/// error reply can still be matched to its request.
pub fn parse(line: &[u8]) -> (Value, Result<Request, WireError>) {
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        // serde_json's syntax errors name a position, never the input's content.
        Err(e) => {
            return (
                Value::Null,
                Err(WireError::bad(format!("not valid JSON: {e}"))),
            )
        }
    };
    let Value::Object(mut map) = value else {
        return (
            Value::Null,
            Err(WireError::bad("a request must be a JSON object")),
        );
    };
    let seq = map.remove("seq").unwrap_or(Value::Null);
    (seq, request(map))
}

fn request(mut args: Map<String, Value>) -> Result<Request, WireError> {
    let op = match args.remove("op") {
        Some(Value::String(op)) => op,
        Some(_) => return Err(WireError::bad("`op` must be a string")),
        None => return Err(WireError::bad("missing `op`")),
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
        },
        "delete_token" => Request::DeleteToken {
            token_id: string(required(&mut args, "token_id")?, "token_id")?,
        },
        "get_tokens" => Request::GetTokens {
            limit: optional(&mut args, "limit")
                .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
                .map(|n| {
                    n.ok_or_else(|| {
                        WireError::bad("`limit` must be a whole number from 0 to 4294967295")
                    })
                })
                .transpose()?,
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
                _ => {
                    return Err(WireError::bad(
                        "give exactly one of `token_id` and `user_name`",
                    ))
                }
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
                Some(_) => return Err(WireError::bad("`dry_run` must be true or false")),
            },
        },
        other => return Err(WireError::bad(format!("unknown op `{}`", clip(other)))),
    };
    match args.keys().next() {
        Some(extra) => Err(WireError::bad(format!(
            "unknown argument `{}` for op `{op}`",
            clip(extra)
        ))),
        None => Ok(request),
    }
}

/// A present, non-null argument.
fn required(args: &mut Map<String, Value>, name: &str) -> Result<Value, WireError> {
    optional(args, name).ok_or_else(|| WireError::bad(format!("missing `{name}`")))
}

/// An argument, with `null` meaning absent.
fn optional(args: &mut Map<String, Value>, name: &str) -> Option<Value> {
    args.remove(name).filter(|v| !v.is_null())
}

fn string(v: Value, name: &str) -> Result<String, WireError> {
    match v {
        Value::String(s) => Ok(s),
        _ => Err(WireError::bad(format!("`{name}` must be a string"))),
    }
}

/// Parses a token object: the ten fields, each a string or null (`expiry_time` may also
/// be an integer), empty strings meaning null. `meta` is read-only and ignored.
pub fn token(v: Value) -> Result<Token, WireError> {
    let Value::Object(map) = v else {
        return Err(WireError::bad("`token` must be an object"));
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
            other => {
                return Err(WireError::bad(format!(
                    "unknown token field `{}`",
                    clip(other)
                )))
            }
        };
        *slot = match value {
            Value::Null => None,
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s),
            Value::Number(n) if key == "expiry_time" && n.is_u64() => Some(n.to_string()),
            _ if key == "expiry_time" => {
                return Err(WireError::bad("token field `expiry_time` must be epoch milliseconds, as a string of digits or an integer"))
            }
            _ => return Err(WireError::bad(format!("token field `{key}` must be a string or null"))),
        };
    }
    if let Some(e) = &t.expiry_time {
        if e.len() > 19 || !e.bytes().all(|b| b.is_ascii_digit()) {
            return Err(WireError::bad("token field `expiry_time` must be epoch milliseconds, as a string of digits or an integer"));
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

/// Appends one reply line for `result` to `out`.
pub fn encode(seq: &Value, result: &Result<Answer, WireError>, out: &mut Vec<u8>) {
    #[derive(Serialize)]
    struct Reply<'a> {
        seq: &'a Value,
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<&'a Answer>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a WireError>,
    }
    let reply = Reply {
        seq,
        ok: result.is_ok(),
        result: result.as_ref().ok(),
        error: result.as_ref().err(),
    };
    // Serialising these types to memory cannot fail: every map key is a string.
    if serde_json::to_writer(&mut *out, &reply).is_err() {
        out.extend_from_slice(br#"{"seq":null,"ok":false,"error":{"code":"store_failure","message":"reply could not be encoded"}}"#);
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests;
