//! foobar's own files in `state_dir` (certificates, keys, the API token, last good zones...):
//! each kind in its own subfolder, each file written atomically. And [`watch`]: what counts as a
//! change when watching files.
//!
//! ```text
//! bytes ──▶ FOLDER/.NAME.tmp-PID-N (written, fsync) ──rename──▶ FOLDER/NAME ──▶ fsync FOLDER
//! ```
//!
//! A crash at any point leaves either the previous file or the new one, never half of one, so
//! the next start never trusts a torn file. Written here because it is four system calls; the
//! crates that do it carry far more than that.

#![warn(missing_docs)]

pub mod watch;

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

/// Who may read a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The owner and others (certificates, zone copies).
    Public,
    /// The owner only: mode 0600 (keys, tokens).
    Private,
}

/// Replaces `path` with `bytes` atomically, creating its folder when missing.
pub fn write(path: &Path, bytes: &[u8], access: Access) -> io::Result<()> {
    write_with(path, access, |file| file.write_all(bytes))
}

/// Replaces `path` atomically with what `contents` writes, creating its folder when missing:
/// for a file too large to build in memory first (a big zone's copy). A `contents` that fails
/// leaves `path` as it was.
pub fn write_with(
    path: &Path,
    access: Access,
    contents: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let folder = match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    fs::create_dir_all(folder)?;
    let temporary = temporary_path(path);
    let result =
        write_new(&temporary, contents, access).and_then(|()| fs::rename(&temporary, path));
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result?;
    // The rename itself is durable once the folder is.
    File::open(folder)?.sync_all()
}

/// A temporary name beside `path`, unique to this process and this write.
fn temporary_path(path: &Path) -> PathBuf {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let write = WRITES.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.tmp-{}-{write}", std::process::id()))
}

fn write_new(
    path: &Path,
    contents: impl FnOnce(&mut File) -> io::Result<()>,
    access: Access,
) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if access == Access::Private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    let mut file = options.open(path)?;
    contents(&mut file)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/folder/file");
        write(&path, b"one", Access::Public).unwrap();
        write(&path, b"two", Access::Public).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["file"]);
    }

    #[test]
    fn contents_that_fail_halfway_keep_the_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        write(&path, b"good", Access::Public).unwrap();
        let failed = write_with(&path, Access::Public, |file| {
            file.write_all(b"half of it")?;
            Err(io::Error::other("the source broke off"))
        });
        assert_eq!(failed.unwrap_err().to_string(), "the source broke off");
        assert_eq!(fs::read(&path).unwrap(), b"good");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_for_the_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write(&path, b"secret", Access::Private).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_failed_write_keeps_the_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        write(&path, b"good", Access::Public).unwrap();
        // A folder in the way of the rename.
        let blocked = dir.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("x"), b"").unwrap();
        assert!(write(&blocked, b"bad", Access::Public).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"good");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
