//! The database's files are private to the daemon's user: they hold every secret.

use std::path::{Path, PathBuf};

/// Creates the database file 0600 if it is new, and takes group and other access away
/// from it and its WAL if they have any: they hold every secret, and a file created
/// under the shell's umask (or restored from a backup) would be readable by everyone.
/// SQLite creates the WAL with the database file's mode. Never stops the open: what it
/// cannot do (a file another user owns, a filesystem without modes) it warns about,
/// file by file, and a file it cannot open is SQLite's to report.
pub(super) fn keep_private(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    if path.as_os_str() == ":memory:" {
        return;
    }
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    let db = std::fs::File::options()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path);
    for (file, opened) in [(path, db), (wal.as_path(), std::fs::File::open(&wal))] {
        match opened.and_then(|f| tighten(&f)) {
            Ok(None) => {}
            Ok(Some(was)) => tracing::warn!(path = %file.display(), was = format!("{was:o}"),
                "the file was readable by others; its mode is now 0600"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %file.display(), error = %e,
                "could not make this file of the database private to this user"),
        }
    }
}

/// Takes group and other bits off `file`; the mode it had, if it changed it.
fn tighten(file: &std::fs::File) -> std::io::Result<Option<u32>> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file.metadata()?.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
    Ok(Some(mode))
}

/// Creates `dir` (and parents) readable only by the daemon's user: the database holds
/// refresh tokens.
pub(super) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Which file a path names: its device and inode.
pub(super) type FileId = (u64, u64);

pub(super) fn file_id(path: &Path) -> std::io::Result<FileId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| (m.dev(), m.ino()))
}

/// What became of the database file opened as `opened`, if `path` names it no more:
/// deleted, or replaced (a backup restored over it) while the daemon ran. SQLite goes on
/// writing to the file it holds open, which nobody can open again: saves acknowledged
/// after that would be lost at the next start. One `stat` per commit finds out.
pub(super) fn gone(path: &Path, opened: FileId) -> Option<&'static str> {
    match file_id(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("deleted"),
        Ok(now) if now != opened => Some("replaced"),
        _ => None,
    }
}
