//! The socket file: binding it with the right permissions in a directory nobody else
//! controls, adopting one systemd passed, and removing it on the way out.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use crate::config::SocketConfig;
use crate::error::Error;

/// Removes the socket file when dropped, if it is still the one this daemon created (a
/// newer daemon may have replaced it after this one stopped listening).
pub struct SocketGuard {
    path: PathBuf,
    inode: (u64, u64),
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.inode {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Binds the listening socket with the permissions the config asks for.
pub fn bind(config: &SocketConfig) -> Result<(UnixListener, SocketGuard), Error> {
    let path = &config.path;
    let fail = |action: &'static str| {
        move |cause: io::Error| Error::Socket {
            action,
            path: path.clone(),
            cause,
        }
    };
    let gid = match &config.group {
        Some(name) => Some(
            nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| Error::NoSuchGroup(name.clone()))?
                .gid
                .as_raw(),
        ),
        None => None,
    };
    if let Some(dir) = path.parent() {
        prepare_dir(dir, gid)?;
    }
    remove_if_stale(path)?;
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(fail("bind the socket"))?;
    let mode = if gid.is_some() { 0o660 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(fail("set permissions on"))?;
    if gid.is_some() {
        std::os::unix::fs::chown(path, None, gid).map_err(fail("set the group of"))?;
    }
    let meta = std::fs::symlink_metadata(path).map_err(fail("inspect"))?;
    listener.set_nonblocking(true).map_err(fail("configure"))?;
    let listener = UnixListener::from_std(listener).map_err(fail("listen on"))?;
    let guard = SocketGuard {
        path: path.clone(),
        inode: (meta.dev(), meta.ino()),
    };
    Ok((listener, guard))
}

/// Serves on a listening socket the service manager passed (socket activation,
/// `notify::inherited_listener`). The socket file, its mode and group, and its removal
/// belong to the manager (`tokend.socket`): no directory checks, and no guard, so a
/// stopping daemon never removes a socket that systemd goes on listening on.
pub fn adopt(listener: std::os::unix::net::UnixListener) -> Result<UnixListener, Error> {
    let path = socket_path(&listener);
    let fail = |action: &'static str| {
        let path = path.clone();
        move |cause: io::Error| Error::Socket {
            action,
            path,
            cause,
        }
    };
    listener.set_nonblocking(true).map_err(fail("configure"))?;
    UnixListener::from_std(listener).map_err(fail("listen on"))
}

/// The path a listening socket is bound to (empty for an unnamed or abstract one).
pub fn socket_path(listener: &std::os::unix::net::UnixListener) -> PathBuf {
    let addr = listener.local_addr().ok();
    addr.and_then(|a| a.as_pathname().map(Path::to_owned))
        .unwrap_or_default()
}

/// Creates the socket's directory private to the daemon (group-readable with a socket
/// group), and refuses an existing one that others could write into or that another
/// user owns: they could swap the socket for their own and collect every client's tokens.
fn prepare_dir(dir: &Path, gid: Option<u32>) -> Result<(), Error> {
    let fail = |action: &'static str| {
        move |cause: io::Error| Error::Socket {
            action,
            path: dir.to_owned(),
            cause,
        }
    };
    let mode = if gid.is_some() { 0o750 } else { 0o700 };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .map_err(fail("create the socket directory"))?;
        if gid.is_some() {
            std::os::unix::fs::chown(dir, None, gid).map_err(fail("set the group of"))?;
        }
        return Ok(());
    }
    let meta = std::fs::metadata(dir).map_err(fail("inspect the socket directory"))?;
    let refuse = |why: &str| {
        Err(fail("use the socket directory")(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{why}; choose a private directory"),
        )))
    };
    // Its owner can replace anything in it, sticky bit or not (say, another user who
    // made `/tmp/tokend-<uid>` first). Root's own directories, like `/run`, are fine.
    let owner = meta.uid();
    if owner != nix::unistd::geteuid().as_raw() && owner != 0 {
        return refuse("it is owned by another user");
    }
    // The sticky bit (as on /tmp) does not help: while tokend is down, another user can
    // bind the free path, and clients would send their secrets to that process.
    if meta.mode() & 0o022 != 0 {
        return refuse("it is writable by other users");
    }
    Ok(())
}

/// Clears the way for `bind`: a socket nobody answers on is a leftover of a daemon that
/// died; a live one, or anything that is not a socket, stops the start.
fn remove_if_stale(path: &Path) -> Result<(), Error> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(Error::NotASocket {
            path: path.to_owned(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(Error::AlreadyRunning {
            path: path.to_owned(),
        }),
        Err(_) => {
            tracing::info!(socket = %path.display(), "removing a stale socket left by a daemon that is gone");
            std::fs::remove_file(path).map_err(|cause| Error::Socket {
                action: "remove the stale socket",
                path: path.to_owned(),
                cause,
            })
        }
    }
}
