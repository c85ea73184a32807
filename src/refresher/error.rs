//! What a caller of the refresher is told when it gets no fresh token.

use crate::error::StoreError;

/// Why a caller did not get a refreshed token. Never carries a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RefreshError {
    /// No token has that id or user_name.
    #[error("no such token")]
    NotFound,
    /// The user must authorise again: the provider rejected the refresh token (with
    /// `provider_error`), or the token never had what a refresh needs (`None`).
    #[error("{}", match provider_error {
        Some(code) => format!("the provider rejected the refresh token ({code}); the user must authorise again"),
        None => "the token cannot be refreshed: it lacks a refresh token, a client id or a client secret".to_owned(),
    })]
    NeedsReauth { provider_error: Option<String> },
    /// The refresh budget or the provider's rate limit says wait until `retry_at`.
    #[error("refreshing this token is paused by the rate limit until {retry_at} (epoch ms)")]
    Throttled { retry_at: i64 },
    /// The provider could not be reached or answered with an error; retried later.
    #[error("refresh failed: {reason}")]
    Failed {
        provider_error: String,
        reason: String,
        /// When tokend tries again, if it will by itself.
        retry_at: Option<i64>,
    },
    #[error(transparent)]
    Store(StoreError),
    #[error("tokend is shutting down")]
    ShuttingDown,
}
