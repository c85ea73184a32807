//! The client for Zoho's accounts server: refresh an access token, exchange a grant code,
//! revoke a refresh token (`../shared/ZOHO.md`, "The accounts server").
//!
//! Zoho answers most errors with HTTP 200 and an `error` field, so answers are classified
//! by their body, and [`OAuthError`] tells the refresher what to do next: give up until the
//! user authorises again, wait out the rate window, or back off and retry. Secrets travel
//! only in the form body; no token, client secret, grant code or response body is ever
//! logged or put in an error message.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::ACCEPT;
use reqwest::StatusCode;
use serde_json::{Map, Value};

mod endpoints;

pub(crate) use endpoints::accounts_base;
use endpoints::Resolver;
pub use endpoints::{http_url, Endpoints};

#[cfg(test)]
mod tests;

const TOKEN_PATH: &str = "/oauth/v2/token";
const REVOKE_PATH: &str = "/oauth/v2/token/revoke";

/// The most of a response body that is read. Zoho's answers are a few hundred bytes; a
/// broken or hostile server must not make the daemon buffer without limit.
const MAX_BODY: usize = 64 * 1024;

/// The longest lifetime believed. No Zoho token lives past an hour; the clamp keeps the
/// refresher's deadline arithmetic far from overflow, and bounds the damage of a server
/// that sends milliseconds in `expires_in` without the legacy `expires_in_sec`.
const MAX_EXPIRES_IN: Duration = Duration::from_secs(24 * 60 * 60);

/// Error codes after which no retry can succeed: the refresh token, grant code or client
/// credentials are dead, and the user must authorise again.
const PERMANENT: &[&str] = &[
    "invalid_code",
    "invalid_client",
    "invalid_client_secret",
    "invalid_grant",
    "unauthorized_client",
];

/// Zoho's throttling `error` code. Its description is localised, so only this is matched.
const THROTTLED: &str = "Access Denied";

/// The HTTP client for the token endpoint. Cloning is cheap and shares the connection pool.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    http: reqwest::Client,
    endpoints: Arc<Resolver>,
}

/// A refresh: `grant_type=refresh_token`. No `Debug`: it holds secrets.
pub struct RefreshRequest<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub refresh_token: &'a str,
    pub api_domain: Option<&'a str>,
}

/// A grant-code exchange: `grant_type=authorization_code`. No `Debug`: it holds secrets.
pub struct CodeRequest<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub code: &'a str,
    /// Sent as `redirect_uri` when present, omitted otherwise.
    pub redirect_uri: Option<&'a str>,
    pub api_domain: Option<&'a str>,
}

/// A successful answer. `Debug` redacts both tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    pub access_token: String,
    /// Present on a code exchange; on a refresh only when Zoho rotated it (else keep the
    /// stored one).
    pub refresh_token: Option<String>,
    /// From `expires_in_sec` when present (legacy servers sent `expires_in` in ms beside
    /// it), else `expires_in` in seconds; at most a day.
    pub expires_in: Duration,
    pub api_domain: Option<String>,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("access_token", &"<redacted>")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_in", &self.expires_in)
            .field("api_domain", &self.api_domain)
            .finish()
    }
}

/// Why a call to the accounts server failed. Messages never contain secrets or bodies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// The provider rejected the credentials (`code` is one of `invalid_code`,
    /// `invalid_client`, `invalid_client_secret`, `invalid_grant`, `unauthorized_client`):
    /// stop retrying and mark the token `needs_reauth`.
    #[error(
        "the accounts server rejected the credentials ({code}): the user must authorise again"
    )]
    Permanent { code: String },
    /// Zoho's `Access Denied` or HTTP 429: wait until the rate window can have cleared.
    #[error("the accounts server is throttling requests")]
    Throttled,
    /// No usable answer (connection, timeout, 5xx, malformed body, unknown error code):
    /// retry with backoff. `reason` is short and holds no body content.
    #[error("the accounts server request failed: {reason}")]
    Transient { reason: String },
    /// No accounts server is known for this api_domain, or the token has none: configure
    /// one, or save the token's api_domain; retrying cannot help.
    #[error("{}", match api_domain {
        Some(d) => format!("no accounts server is known for api_domain {d:?}: set refresh.accounts_url, or refresh.accounts for this api_domain"),
        None => "the token has no api_domain, so its accounts server is unknown: save it with its api_domain (the SDK's TokendStore saves the SDK environment's), or set refresh.accounts_url".to_owned(),
    })]
    NoAccountsServer { api_domain: Option<String> },
    /// The client could not be built (TLS initialisation, an invalid accounts URL): the
    /// daemon cannot refresh with this configuration.
    #[error("cannot set up the accounts server client: {reason}")]
    Setup { reason: String },
}

impl OAuthError {
    /// A short stable code for the token's `meta.last_error` and the wire's
    /// `provider_error`: the provider's code for `Permanent`, else the variant's name.
    pub fn code(&self) -> &str {
        match self {
            OAuthError::Permanent { code } => code,
            OAuthError::Throttled => "throttled",
            OAuthError::Transient { .. } => "transient",
            OAuthError::NoAccountsServer { .. } => "no_accounts_server",
            OAuthError::Setup { .. } => "setup",
        }
    }
}

fn transient(reason: impl Into<String>) -> OAuthError {
    OAuthError::Transient {
        reason: reason.into(),
    }
}

impl OAuthClient {
    /// Validates the configured accounts URLs and builds the HTTP client.
    pub fn new(
        endpoints: Endpoints,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<OAuthClient, OAuthError> {
        let endpoints = Arc::new(Resolver::new(&endpoints)?);
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            // A 307/308 would resend the form, client secret included, wherever the server
            // points; the token endpoint has no reason to redirect.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tokend/", env!("CARGO_PKG_VERSION")))
            .build()
            // Debug, unlike Display, shows the cause; nothing secret exists at this point.
            .map_err(|e| OAuthError::Setup {
                reason: format!("{e:?}"),
            })?;
        Ok(OAuthClient { http, endpoints })
    }

    /// The accounts server base URL (no trailing slash) for a token's api_domain.
    pub fn accounts_url(&self, api_domain: Option<&str>) -> Result<String, OAuthError> {
        self.endpoints.accounts_url(api_domain)
    }

    /// POST {accounts}/oauth/v2/token, form grant_type=refresh_token, client_id,
    /// client_secret, refresh_token.
    pub async fn refresh(&self, req: &RefreshRequest<'_>) -> Result<Grant, OAuthError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", req.client_id),
            ("client_secret", req.client_secret),
            ("refresh_token", req.refresh_token),
        ];
        grant_from(&self.post(req.api_domain, TOKEN_PATH, &form).await?)
    }

    /// POST {accounts}/oauth/v2/token, form grant_type=authorization_code, client_id,
    /// client_secret, code, redirect_uri (omitted if None).
    pub async fn exchange_code(&self, req: &CodeRequest<'_>) -> Result<Grant, OAuthError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("client_id", req.client_id),
            ("client_secret", req.client_secret),
            ("code", req.code),
        ];
        form.extend(req.redirect_uri.map(|uri| ("redirect_uri", uri)));
        grant_from(&self.post(req.api_domain, TOKEN_PATH, &form).await?)
    }

    /// POST {accounts}/oauth/v2/token/revoke, form token=<refresh_token>. Only an answer
    /// `{"status":"success"}` counts as revoked.
    pub async fn revoke(
        &self,
        refresh_token: &str,
        api_domain: Option<&str>,
    ) -> Result<(), OAuthError> {
        let answer = self
            .post(api_domain, REVOKE_PATH, &[("token", refresh_token)])
            .await?;
        match answer.get("status").and_then(Value::as_str) {
            Some("success") => Ok(()),
            _ => Err(transient("revocation not confirmed")),
        }
    }

    /// Sends the form and returns the answer's JSON object if it carries no error.
    async fn post(
        &self,
        api_domain: Option<&str>,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<Map<String, Value>, OAuthError> {
        let url = format!("{}{path}", self.accounts_url(api_domain)?);
        let mut response = (self.http.post(&url))
            .header(ACCEPT, "application/json")
            .form(form)
            .send()
            .await
            .map_err(request_failed)?;
        let status = response.status();
        // The origin and path only: a configured URL may carry `user:password@`.
        let server = reqwest::Url::parse(&url).map(|u| u.origin().ascii_serialization());
        tracing::debug!(
            server = server.as_deref().unwrap_or("?"),
            path,
            status = status.as_u16(),
            "accounts server answered"
        );
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(OAuthError::Throttled);
        }
        // A server fault says nothing about the credentials, whatever its body claims.
        if status.is_server_error() {
            return Err(transient(format!("HTTP {}", status.as_u16())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(request_failed)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(transient(format!(
                    "response larger than {} KiB",
                    MAX_BODY / 1024
                )));
            }
            body.extend_from_slice(&chunk);
        }
        classify(status, &body)
    }
}

/// Classifies a non-5xx answer by its body; the status only decides what a body without
/// an `error` code means.
fn classify(status: StatusCode, body: &[u8]) -> Result<Map<String, Value>, OAuthError> {
    let http_status = || transient(format!("HTTP {}", status.as_u16()));
    let answer = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(answer)) => answer,
        _ if !status.is_success() => return Err(http_status()),
        Ok(_) => return Err(transient("response is not a JSON object")),
        Err(_) => return Err(transient("response is not JSON")),
    };
    match answer.get("error") {
        Some(Value::String(code)) if code == THROTTLED => Err(OAuthError::Throttled),
        Some(Value::String(code)) if PERMANENT.contains(&code.as_str()) => {
            Err(OAuthError::Permanent { code: code.clone() })
        }
        Some(Value::String(code)) => Err(transient(match shown(code) {
            Some(code) => format!("unknown error code `{code}`"),
            None => "unknown error code (not shown: it does not look like one)".to_owned(),
        })),
        Some(Value::Null) | None if status.is_success() => Ok(answer),
        Some(Value::Null) | None => Err(http_status()),
        Some(_) => Err(transient("error field is not a string")),
    }
}

fn grant_from(answer: &Map<String, Value>) -> Result<Grant, OAuthError> {
    let text = |key| {
        let value = answer.get(key).and_then(Value::as_str);
        value.filter(|s| !s.is_empty()).map(str::to_owned)
    };
    let access_token =
        text("access_token").ok_or_else(|| transient("response lacks access_token"))?;
    // When `expires_in_sec` is present, `expires_in` may be milliseconds: never fall back.
    let seconds = match answer.get("expires_in_sec") {
        Some(value) => seconds(value),
        None => answer.get("expires_in").and_then(seconds),
    };
    let seconds = seconds.ok_or_else(|| transient("response lacks a positive expires_in"))?;
    Ok(Grant {
        access_token,
        refresh_token: text("refresh_token"),
        expires_in: Duration::from_secs(seconds).min(MAX_EXPIRES_IN),
        api_domain: text("api_domain"),
    })
}

/// A positive whole number of seconds, as a JSON number or a numeric string.
fn seconds(value: &Value) -> Option<u64> {
    let n = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.filter(|&n| n > 0)
}

/// A provider's error code, if it looks like one (Zoho's are words: `invalid_code`,
/// `Access Denied`), to quote in logs and replies. Anything else is not quoted: a broken
/// or hostile server could echo a token or secret from the request into it, and tokens,
/// secrets and grant codes all hold digits.
fn shown(code: &str) -> Option<&str> {
    let word = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ' ';
    (!code.is_empty() && code.len() <= 40 && code.chars().all(word)).then_some(code)
}

/// The kind of failure and the accounts server's host, no more: reqwest's own message
/// gives the whole URL and, for a decoding error, could quote the body.
fn request_failed(e: reqwest::Error) -> OAuthError {
    let causes = || std::iter::successors(std::error::Error::source(&e), |s| s.source());
    let io_kind =
        causes().find_map(|s| s.downcast_ref::<std::io::Error>().map(std::io::Error::kind));
    // hyper's connector says so when the name did not resolve; the io error under it is
    // "uncategorized", which tells a person nothing.
    let unresolved = causes().any(|s| s.to_string().starts_with("dns error"));
    let host = e
        .url()
        .and_then(|u| u.host_str())
        .unwrap_or("the accounts server");
    transient(match (e.is_timeout(), e.is_connect(), io_kind) {
        (true, _, _) => format!("{host} timed out"),
        _ if unresolved => format!("cannot resolve {host}"),
        (_, true, Some(kind)) => format!("connection to {host} failed: {kind}"),
        (_, true, None) => format!("connection to {host} failed"),
        _ if e.is_body() || e.is_decode() => "reading the response failed".to_owned(),
        _ => "request failed".to_owned(),
    })
}
