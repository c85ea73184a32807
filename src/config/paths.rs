//! Where the socket and the database go when the configuration does not say.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

const SOCKET_NAME: &str = "tokend.sock";
const DB_NAME: &str = "tokens.db";

/// `$RUNTIME_DIRECTORY/tokend.sock` under systemd, else `$XDG_RUNTIME_DIR/tokend/tokend.sock`,
/// else `/tmp/tokend-<uid>/tokend.sock` (a private directory, as ssh-agent does).
pub fn default_socket_path(env: &HashMap<String, String>) -> PathBuf {
    let var = |k: &str| env.get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("RUNTIME_DIRECTORY") {
        return first_dir(&dir).join(SOCKET_NAME);
    }
    if let Some(dir) = var("XDG_RUNTIME_DIR") {
        return dir.join("tokend").join(SOCKET_NAME);
    }
    PathBuf::from(format!("/tmp/tokend-{}", nix::unistd::getuid())).join(SOCKET_NAME)
}

/// `$STATE_DIRECTORY/tokens.db` under systemd, else `$XDG_STATE_HOME/tokend/tokens.db`,
/// else `~/.local/state/tokend/tokens.db`.
pub fn default_db_path(env: &HashMap<String, String>) -> PathBuf {
    let var = |k: &str| env.get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("STATE_DIRECTORY") {
        return first_dir(&dir).join(DB_NAME);
    }
    let state_home = var("XDG_STATE_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/var/lib"));
    state_home.join("tokend").join(DB_NAME)
}

/// systemd passes a colon-separated list when a unit names several directories.
fn first_dir(list: &Path) -> PathBuf {
    let s = list.to_string_lossy();
    PathBuf::from(s.split(':').next().unwrap_or_default())
}
