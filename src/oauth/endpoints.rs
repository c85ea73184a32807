//! Where a token's accounts server is: an explicit per-api_domain map from config first,
//! then Zoho's data-centre table (ZOHO.md), then the configured fallback.

use std::collections::BTreeMap;

use reqwest::Url;

use super::OAuthError;

/// Zoho's data centres: an api_domain host without its first label → accounts server. The
/// first label is `www`, `sandbox` or `developer`: all use their region's accounts server.
const DATA_CENTRES: &[(&str, &str)] = &[
    ("zohoapis.com", "https://accounts.zoho.com"),
    ("zohoapis.eu", "https://accounts.zoho.eu"),
    ("zohoapis.in", "https://accounts.zoho.in"),
    ("zohoapis.com.cn", "https://accounts.zoho.com.cn"),
    ("zohoapis.jp", "https://accounts.zoho.jp"),
    ("zohoapis.com.au", "https://accounts.zoho.com.au"),
    ("zohoapis.ca", "https://accounts.zohocloud.ca"),
    ("zohoapis.sa", "https://accounts.zoho.sa"),
];

/// Where the accounts server for a token is: an explicit per-api_domain map from config
/// first, then Zoho's data-centre table (only `https://{www,sandbox,developer}.zohoapis.X`
/// on the default port), then the fallback `accounts_url`. api_domains are compared by
/// scheme, host and port, so case, a trailing slash or a path do not matter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// The fallback base URL, like `https://accounts.zoho.com` or `http://127.0.0.1:PORT`.
    pub accounts_url: Option<String>,
    /// api_domain → accounts base URL; wins over the data-centre table.
    pub per_domain: BTreeMap<String, String>,
}

/// `Endpoints`, validated and normalised for lookups.
#[derive(Debug)]
pub(super) struct Resolver {
    /// `Endpoints::accounts_url`, without a trailing slash.
    fallback: Option<String>,
    /// `Endpoints::per_domain`, keyed by normalised origin, values without a trailing slash.
    per_domain: BTreeMap<String, String>,
}

impl Resolver {
    pub(super) fn new(endpoints: &Endpoints) -> Result<Resolver, OAuthError> {
        let fallback = endpoints
            .accounts_url
            .as_deref()
            .map(checked_accounts_base)
            .transpose()?;
        let per_domain = endpoints
            .per_domain
            .iter()
            .map(|(domain, url)| Ok((origin_key(domain), checked_accounts_base(url)?)))
            .collect::<Result<_, OAuthError>>()?;
        Ok(Resolver {
            fallback,
            per_domain,
        })
    }

    pub(super) fn accounts_url(&self, api_domain: Option<&str>) -> Result<String, OAuthError> {
        let configured = api_domain.and_then(|d| self.per_domain.get(&origin_key(d)));
        configured
            .cloned()
            .or_else(|| api_domain.and_then(data_centre).map(str::to_owned))
            .or_else(|| self.fallback.clone())
            .ok_or_else(|| OAuthError::NoAccountsServer {
                api_domain: api_domain.map(str::to_owned),
            })
    }
}

/// `url` if it is an http(s) URL with a host.
pub fn http_url(url: &str) -> Option<Url> {
    let url = Url::parse(url.trim()).ok()?;
    (matches!(url.scheme(), "http" | "https") && url.host_str().is_some()).then_some(url)
}

/// A configured accounts base without its trailing slash, if it is an http(s) URL with
/// a host. Config validation uses it too, so a URL `config check` accepts is one the
/// daemon can use.
pub(crate) fn accounts_base(url: &str) -> Option<String> {
    let base = url.trim().trim_end_matches('/');
    http_url(base).map(|_| base.to_owned())
}

fn checked_accounts_base(url: &str) -> Result<String, OAuthError> {
    // Not quoted: a URL may carry a password. Config validation names the key.
    accounts_base(url).ok_or_else(|| OAuthError::Setup {
        reason: "an accounts URL is not an http(s) URL with a host".into(),
    })
}

/// The form api_domains are compared in: `scheme://host[:port]` in lowercase (or the
/// trimmed lowercase text when it is not an http(s) URL).
fn origin_key(api_domain: &str) -> String {
    match http_url(api_domain) {
        Some(url) => url.origin().ascii_serialization(),
        None => api_domain.trim().trim_end_matches('/').to_ascii_lowercase(),
    }
}

/// The accounts server of a Zoho data centre's api_domain, from the table in ZOHO.md.
fn data_centre(api_domain: &str) -> Option<&'static str> {
    let url = http_url(api_domain).filter(|u| u.scheme() == "https" && u.port().is_none())?;
    let (prefix, region) = url.host_str()?.split_once('.')?;
    let known = matches!(prefix, "www" | "sandbox" | "developer");
    let row = DATA_CENTRES.iter().find(|(dc, _)| known && *dc == region)?;
    Some(row.1)
}
