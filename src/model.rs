//! The token record and the pure rules about it: which stored token a request means,
//! and how a save merges into what is stored. No I/O here, so every rule is unit-tested.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// The Zoho SDK's ten-field token record, as clients send it and as it is stored.
///
/// Every field is optional because the SDK itself sends partial tokens (a lookup by
/// `user_name` alone, a save that only refreshes the access token). Empty strings never
/// reach this type: the protocol turns them into `None`, as the SDK's own stores do.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
pub struct Token {
    pub id: Option<String>,
    pub user_name: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub refresh_token: Option<String>,
    pub access_token: Option<String>,
    pub grant_token: Option<String>,
    /// Epoch milliseconds as a string of digits: the SDK calls `len()` then `int()` on it.
    pub expiry_time: Option<String>,
    pub redirect_url: Option<String>,
    pub api_domain: Option<String>,
}

/// Secrets are shown only as present or absent, so a token can be logged or end up in a
/// panic message without leaking anything.
impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn secret(v: &Option<String>) -> &'static str {
            if v.is_some() {
                "<redacted>"
            } else {
                "None"
            }
        }
        f.debug_struct("Token")
            .field("id", &self.id)
            .field("user_name", &self.user_name)
            .field("client_id", &self.client_id)
            .field("client_secret", &secret(&self.client_secret))
            .field("refresh_token", &secret(&self.refresh_token))
            .field("access_token", &secret(&self.access_token))
            .field("grant_token", &secret(&self.grant_token))
            .field("expiry_time", &self.expiry_time)
            .field("redirect_url", &self.redirect_url)
            .field("api_domain", &self.api_domain)
            .finish()
    }
}

/// Which stored token a request means, by the Zoho SDK stores' rules (ZOHO.md, "How the
/// SDK uses a TokenStore"). The secret-valued variants are the only way the store looks a
/// token up by a secret, so hashing those values later changes one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    UserName(&'a str),
    AccessToken(&'a str),
    /// Client credentials were given: the grant token if it matches, else the refresh
    /// token. The SDK's FileStore tries both in that order, so a token carrying a fresh
    /// refresh token and its old grant code still finds its row.
    Credentials {
        grant_token: Option<&'a str>,
        refresh_token: Option<&'a str>,
    },
}

impl Token {
    /// The matching rule this token selects, or `None` when it identifies nothing (an
    /// `id` alone is deliberately not a `find_token` key: the SDK uses `find_token_by_id`).
    pub fn lookup(&self) -> Option<Lookup<'_>> {
        if let Some(name) = &self.user_name {
            return Some(Lookup::UserName(name));
        }
        let has_credentials = self.client_id.is_some() && self.client_secret.is_some();
        match (
            &self.access_token,
            self.client_id.is_none() && self.client_secret.is_none(),
        ) {
            (Some(access), true) => return Some(Lookup::AccessToken(access)),
            _ if !has_credentials => return None,
            _ => {}
        }
        if self.grant_token.is_none() && self.refresh_token.is_none() {
            return None;
        }
        Some(Lookup::Credentials {
            grant_token: self.grant_token.as_deref(),
            refresh_token: self.refresh_token.as_deref(),
        })
    }

    /// Whether `other` holds the same credentials: the tokens and the client that
    /// authenticate. A save that changes none of them is not a new sign-in: it keeps a
    /// failure state, and it does not make a refresh's result any less true.
    pub fn same_credentials(&self, other: &Token) -> bool {
        self.refresh_token == other.refresh_token
            && self.grant_token == other.grant_token
            && self.access_token == other.access_token
            && self.client_id == other.client_id
            && self.client_secret == other.client_secret
    }

    /// Whether the token carries anything that authenticates: without one of these a new
    /// row would be useless, so such a save that matches nothing is refused.
    pub fn has_credential(&self) -> bool {
        self.refresh_token.is_some() || self.grant_token.is_some() || self.access_token.is_some()
    }

    /// Applies a save onto the stored token: fields the save leaves `None` keep their
    /// stored values. The stored id always wins, so a save can never rename a token.
    pub fn merge_from(&mut self, update: Token) {
        fn take(into: &mut Option<String>, from: Option<String>) {
            if from.is_some() {
                *into = from;
            }
        }
        take(&mut self.user_name, update.user_name);
        take(&mut self.client_id, update.client_id);
        take(&mut self.client_secret, update.client_secret);
        take(&mut self.refresh_token, update.refresh_token);
        take(&mut self.access_token, update.access_token);
        take(&mut self.grant_token, update.grant_token);
        take(&mut self.expiry_time, update.expiry_time);
        take(&mut self.redirect_url, update.redirect_url);
        take(&mut self.api_domain, update.api_domain);
    }

    /// `expiry_time` as a number, when it is one. A malformed value (the SDK only ever
    /// writes digits) is treated as unknown rather than as an error.
    pub fn expiry_ms(&self) -> Option<i64> {
        self.expiry_time.as_deref()?.parse().ok()
    }
}

/// Whether `s` is an `expiry_time` tokend accepts: epoch milliseconds as digits only (no
/// sign), small enough for an i64. A 19-digit value past i64::MAX would be stored but
/// read back as no expiry at all, and the token taken for expired.
pub fn is_epoch_ms(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<i64>().is_ok()
}

/// Whether the refresher may renew a token on its own: it needs the refresh token and
/// the client credentials to send with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    #[default]
    Active,
    /// The provider rejected the refresh token for good; the user must authorise again.
    NeedsReauth,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Active => "active",
            TokenState::NeedsReauth => "needs_reauth",
        }
    }

    pub fn parse(s: &str) -> Option<TokenState> {
        match s {
            "active" => Some(TokenState::Active),
            "needs_reauth" => Some(TokenState::NeedsReauth),
            _ => None,
        }
    }
}

/// What tokend knows about a token beyond the SDK's ten fields. Read-only on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Meta {
    /// Epoch ms of the first save; `max_session_age` counts from here.
    pub created_at: i64,
    pub updated_at: i64,
    /// Epoch ms of the last lookup or save by a client, as last flushed to disk.
    pub last_used_at: Option<i64>,
    pub state: TokenState,
    /// Refresh failures in a row; reset by a successful refresh.
    pub failures: u32,
    /// The last refresh error's code (a provider error code, never a secret).
    pub last_error: Option<String>,
    pub next_refresh_at: Option<i64>,
    /// New at every write, from one counter for the whole table (never reused, even
    /// for a token deleted and saved again under its id), so a cleanup that finishes
    /// after a client changed or re-saved the token can tell, and step aside. (A
    /// refresh's result goes by the credentials instead: see `Write::Refreshed`.)
    #[serde(skip)]
    pub version: i64,
    /// Epoch ms when `expiry_time` was last set: where the access token's lifetime, and
    /// so the refresh lead, is measured from.
    #[serde(skip)]
    pub expiry_set_at: Option<i64>,
    /// The provider's throttles in a row: the wait after the next one doubles with
    /// each. Reset by any other outcome and by new credentials.
    #[serde(skip)]
    pub throttles: u32,
}

/// A token as stored: the record plus tokend's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredToken {
    #[serde(flatten)]
    pub token: Token,
    pub meta: Meta,
}

impl StoredToken {
    /// The stored id; every stored token has one.
    pub fn id(&self) -> &str {
        self.token.id.as_deref().unwrap_or_default()
    }
}

/// Wall-clock now in epoch milliseconds, the unit of `expiry_time`.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn user_name_wins_over_everything() {
        let t = Token {
            user_name: s("u"),
            access_token: s("a"),
            client_id: s("c"),
            client_secret: s("x"),
            refresh_token: s("r"),
            ..Token::default()
        };
        assert_eq!(t.lookup(), Some(Lookup::UserName("u")));
    }

    #[test]
    fn access_token_only_without_client_credentials() {
        let bare = Token {
            access_token: s("a"),
            ..Token::default()
        };
        assert_eq!(bare.lookup(), Some(Lookup::AccessToken("a")));
        // One credential present: neither rule 2 nor rule 3 applies.
        let half = Token {
            access_token: s("a"),
            client_id: s("c"),
            ..Token::default()
        };
        assert_eq!(half.lookup(), None);
    }

    #[test]
    fn refresh_token_needs_both_client_credentials() {
        let no_secret = Token {
            refresh_token: s("r"),
            client_id: s("c"),
            ..Token::default()
        };
        assert_eq!(no_secret.lookup(), None);
        let bare = Token {
            refresh_token: s("r"),
            ..Token::default()
        };
        assert_eq!(bare.lookup(), None);
        let full = Token {
            refresh_token: s("r"),
            grant_token: s("g"),
            client_id: s("c"),
            client_secret: s("x"),
            ..Token::default()
        };
        assert_eq!(
            full.lookup(),
            Some(Lookup::Credentials {
                grant_token: Some("g"),
                refresh_token: Some("r")
            })
        );
    }

    #[test]
    fn id_alone_matches_nothing() {
        let t = Token {
            id: s("1"),
            ..Token::default()
        };
        assert_eq!(t.lookup(), None);
    }

    #[test]
    fn merge_keeps_stored_values_for_unset_fields_and_the_stored_id() {
        let mut stored = Token {
            id: s("1"),
            user_name: s("u"),
            refresh_token: s("r"),
            access_token: s("old"),
            ..Token::default()
        };
        stored.merge_from(Token {
            id: s("2"),
            access_token: s("new"),
            ..Token::default()
        });
        assert_eq!(stored.id, s("1"));
        assert_eq!(stored.refresh_token, s("r"));
        assert_eq!(stored.access_token, s("new"));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let t = Token {
            client_secret: s("SECRET1"),
            refresh_token: s("SECRET2"),
            access_token: s("SECRET3"),
            grant_token: s("SECRET4"),
            ..Token::default()
        };
        let shown = format!("{t:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
