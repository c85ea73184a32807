//! The ten columns every source shares, and the checks every imported record passes
//! whatever it came from. Messages name columns and lines, never values.

use std::collections::HashMap;

use super::{At, Problems};
use crate::model::Token;

/// The longest value a field may hold. Zoho's values are under 100 bytes (the DBStore's
/// columns are `varchar(255)`); the cap keeps a save of ordinary values well inside the
/// daemon's default request size limit (64 KiB). Not a guarantee: escaped control
/// characters grow a value sixfold, and `max_request_bytes` can be set lower, so an
/// import can still stop part-way (and says so; running it again finishes it).
pub const MAX_FIELD_BYTES: usize = 4096;

/// One of the token record's ten fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Id,
    UserName,
    ClientId,
    ClientSecret,
    RefreshToken,
    AccessToken,
    GrantToken,
    ExpiryTime,
    RedirectUrl,
    ApiDomain,
}

impl Field {
    /// In the SDK's column order (the FileStore's positions).
    pub const ALL: [Field; 10] = [
        Field::Id,
        Field::UserName,
        Field::ClientId,
        Field::ClientSecret,
        Field::RefreshToken,
        Field::AccessToken,
        Field::GrantToken,
        Field::ExpiryTime,
        Field::RedirectUrl,
        Field::ApiDomain,
    ];

    /// The column's name in the MySQL DBStore table (and in tokend's protocol).
    pub fn name(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::UserName => "user_name",
            Field::ClientId => "client_id",
            Field::ClientSecret => "client_secret",
            Field::RefreshToken => "refresh_token",
            Field::AccessToken => "access_token",
            Field::GrantToken => "grant_token",
            Field::ExpiryTime => "expiry_time",
            Field::RedirectUrl => "redirect_url",
            Field::ApiDomain => "api_domain",
        }
    }

    /// The field a column header names. Besides the DBStore's names this accepts the
    /// FileStore's `redirect_uri` and the older SDKs' `user_mail`; case and surrounding
    /// spaces do not matter.
    pub fn from_column(name: &str) -> Option<Field> {
        let name = name.trim().to_ascii_lowercase();
        match name.as_str() {
            "redirect_uri" => Some(Field::RedirectUrl),
            "user_mail" => Some(Field::UserName),
            _ => Field::ALL.into_iter().find(|f| f.name() == name),
        }
    }

    /// Whether a source may leave this column out: only `api_domain`, which the SDK
    /// added last (its stores still read files and tables without it).
    pub fn optional(self) -> bool {
        self == Field::ApiDomain
    }

    fn slot(self, t: &mut Token) -> &mut Option<String> {
        match self {
            Field::Id => &mut t.id,
            Field::UserName => &mut t.user_name,
            Field::ClientId => &mut t.client_id,
            Field::ClientSecret => &mut t.client_secret,
            Field::RefreshToken => &mut t.refresh_token,
            Field::AccessToken => &mut t.access_token,
            Field::GrantToken => &mut t.grant_token,
            Field::ExpiryTime => &mut t.expiry_time,
            Field::RedirectUrl => &mut t.redirect_url,
            Field::ApiDomain => &mut t.api_domain,
        }
    }

    /// The field's value on `t`.
    pub fn get(self, t: &Token) -> Option<&str> {
        match self {
            Field::Id => t.id.as_deref(),
            Field::UserName => t.user_name.as_deref(),
            Field::ClientId => t.client_id.as_deref(),
            Field::ClientSecret => t.client_secret.as_deref(),
            Field::RefreshToken => t.refresh_token.as_deref(),
            Field::AccessToken => t.access_token.as_deref(),
            Field::GrantToken => t.grant_token.as_deref(),
            Field::ExpiryTime => t.expiry_time.as_deref(),
            Field::RedirectUrl => t.redirect_url.as_deref(),
            Field::ApiDomain => t.api_domain.as_deref(),
        }
    }

    /// Sets the field from a source's value: absent or empty means null, as in the SDK's
    /// stores. A value the field cannot hold is an error in words that do not quote it.
    pub fn set(self, t: &mut Token, value: Option<&str>) -> Result<(), String> {
        let value = value.filter(|v| !v.is_empty());
        if let Some(v) = value {
            if v.len() > MAX_FIELD_BYTES {
                return Err(format!(
                    "`{}` is longer than {MAX_FIELD_BYTES} bytes",
                    self.name()
                ));
            }
            // The SDK calls len() then int() on it; tokend's protocol takes what
            // `is_epoch_ms` does, so a record the daemon would refuse is refused here,
            // before anything is saved.
            if self == Field::ExpiryTime && !crate::model::is_epoch_ms(v) {
                return Err(
                    "`expiry_time` must be epoch milliseconds: digits only, or empty".into(),
                );
            }
        }
        *self.slot(t) = value.map(str::to_owned);
        Ok(())
    }
}

/// The check on one whole record: a token without a refresh, grant or access token
/// cannot be used by anyone, and the daemon refuses to store it.
pub fn check_record(t: &Token) -> Result<(), String> {
    if t.has_credential() {
        Ok(())
    } else {
        Err("no refresh_token, grant_token or access_token: nothing to import".into())
    }
}

/// The checks across records: two records with one id, or one user_name, would be
/// saved into one token, the second silently replacing the first.
pub fn check_across(records: &[(At, Token)], problems: &mut Problems) {
    let mut ids: HashMap<&str, At> = HashMap::new();
    let mut users: HashMap<&str, At> = HashMap::new();
    for (at, t) in records {
        if let Some(id) = t.id.as_deref() {
            if let Some(first) = ids.insert(id, *at) {
                ids.insert(id, first);
                problems.push(*at, format!("the same `id` as {first}"));
            }
        }
        if let Some(user) = t.user_name.as_deref() {
            if let Some(first) = users.insert(user, *at) {
                users.insert(user, first);
                problems.push(*at, format!("the same `user_name` as {first}"));
            }
        }
    }
}
