//! The errors callers must tell apart. Messages name the file or key at fault and never
//! include a token value, client secret or grant code.

use std::io;
use std::path::PathBuf;

/// A store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or migrated: the daemon cannot start.
    #[error("cannot open the token database {}: {reason}", path.display())]
    Open { path: PathBuf, reason: String },
    /// The database's directory could not be created: fix its parent's permissions.
    #[error("cannot create the database directory {}: {reason}", path.display())]
    CreateDir { path: PathBuf, reason: String },
    /// SQLite failed mid-operation (disk full, I/O error). The operation changed nothing;
    /// the client may retry. SQLite's messages carry no bound values, so no secrets.
    /// (A message, not the rusqlite error, so that one failed group commit can be
    /// reported to every caller in the batch.)
    #[error("database failure: {0}")]
    Sqlite(String),
    /// A save that only identifies a token (id or user_name) matched nothing and carries
    /// no refresh, grant or access token to store: the client must authorise first.
    #[error(
        "no stored token matches, and the token carries no refresh, grant or access token to store"
    )]
    IncompleteToken,
    /// The save would give a second token a user_name that another token already has.
    #[error("another token already has this user_name")]
    Conflict,
    /// The database file was deleted or replaced while the daemon ran: writes would go
    /// to a file nobody can open again, so none is made.
    #[error("the token database {} was {what} while tokend ran; nothing more is saved, as it would be lost: restart tokend to open what is at that path now", path.display())]
    Gone { path: PathBuf, what: &'static str },
    /// The store actor has stopped (the daemon is shutting down).
    #[error("the token store is shutting down")]
    Unavailable,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e.to_string())
    }
}

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another daemon answers on the socket path: stop it or choose another path.
    #[error("another tokend is already serving on {}; stop it first or pass --socket", path.display())]
    AlreadyRunning { path: PathBuf },
    /// The socket path exists and is not a socket: refusing to delete someone's file.
    #[error("{} exists and is not a socket; remove it or choose another path", path.display())]
    NotASocket { path: PathBuf },
    /// Creating, binding or securing the socket failed. (`cause`, not `source`: the
    /// message holds it, and as a `#[source]` too, `{:#}` would say it twice.)
    #[error("cannot {action} {}: {cause}", path.display())]
    Socket {
        action: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    /// The HTTP client for the provider could not be set up.
    #[error(transparent)]
    OAuth(#[from] crate::oauth::OAuthError),
    /// The configured socket group does not exist.
    #[error("socket.group: no group named {0:?}")]
    NoSuchGroup(String),
}
