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

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::error::StoreError;
use crate::model::{StoredToken, Token};
use crate::refresher::RefreshError;

/// The protocol version `ping` reports; bumped on an incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// The most tokens one `get_tokens` reply carries (~0.6 MB of JSON); a larger or absent
/// `limit` gets this many and the cursor to go on. One reply of every token blocked every
/// other client while it was read and encoded, and held it all in memory at once: at 1M
/// tokens, seconds and hundreds of MB.
pub const MAX_PAGE: u32 = 1000;

/// A parsed request. Each variant's JSON is shown on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `{"op": "save_token", "token": {...}}` → `{"token": T}`
    SaveToken { token: Token },
    /// `{"op": "find_token", "token": {...partial...}}` → `{"token": T | null}`
    FindToken { token: Token },
    /// `{"op": "find_token_by_id", "token_id": "1", "peek"?: true}` → `{"token": T | null}`
    /// `peek`: an operator looking, not a use of the token's session (`tokend token show`).
    FindTokenById { token_id: String, peek: bool },
    /// `{"op": "delete_token", "token_id": "1"}` → `{"deleted": bool}`
    DeleteToken { token_id: String },
    /// `{"op": "get_tokens", "limit"?: 100, "after"?: "41"}` → `{"tokens": [T], "next": id | null}`
    /// `limit` is at most `MAX_PAGE`, which is also what an absent one means.
    GetTokens { limit: u32, after: Option<String> },
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
    /// A found token as JSON already encoded (kept by the store's cache,
    /// `store::Shared`): `encode` writes it as it writes `Token`, without serialising
    /// the token again.
    #[serde(skip)]
    Found(TokenJson),
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
            StoreError::Gone { what, .. } => {
                let message = format!("the token database file was {what} while tokend ran; nothing was changed, nor will be until tokend is restarted");
                return WireError::new(Code::StoreFailure, message);
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
            RefreshError::Failed {
                provider_error,
                retry_at,
                ..
            } => WireError {
                provider_error: Some(provider_error),
                retry_at,
                ..WireError::new(Code::RefreshFailed, message)
            },
        }
    }
}

/// A token's JSON, secrets and all: its `Debug` shows only the length, as `Token`'s
/// shows no secret.
#[derive(Clone)]
pub struct TokenJson(pub Arc<[u8]>);

impl std::fmt::Debug for TokenJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenJson({} bytes)", self.0.len())
    }
}

/// Appends one reply line for `result` to `out`.
pub fn encode(seq: &Value, result: &Result<Answer, WireError>, out: &mut Vec<u8>) {
    if let Ok(Answer::Found(TokenJson(token))) = result {
        out.extend_from_slice(b"{\"seq\":");
        // A `Value` serialises without fail: every map key is a string.
        let _ = serde_json::to_writer(&mut *out, seq);
        out.extend_from_slice(b",\"ok\":true,\"result\":{\"token\":");
        out.extend_from_slice(token);
        out.extend_from_slice(b"}}\n");
        return;
    }
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

mod parse;

pub use parse::{parse, token};

#[cfg(test)]
mod tests;
