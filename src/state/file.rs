//! The file backend: state in a file written atomically (temp file, fsync, rename,
//! directory fsync), the previous version kept as `<state>.backup`, mode 0600 because state
//! holds secrets; locked by an OS file lock (`flock`) on `<state>.lock`, so a writer that
//! dies — even by SIGKILL — releases it. The lock file's content (owner, pid, host, since) is
//! what a refused second writer is shown; `state unlock` removes the file to break a lock
//! held by a process that is alive but stuck (or by a host whose file system does not honour
//! flock).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::lock::{LockError, LockInfo, StateLock};
use super::store::Backend;

/// A state file and its lock file beside it.
#[derive(Debug, Clone)]
pub struct FileBackend {
    path: PathBuf,
}

impl FileBackend {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn backup_path(&self) -> PathBuf {
        with_suffix(&self.path, ".backup")
    }

    pub fn lock_path(&self) -> PathBuf {
        with_suffix(&self.path, ".lock")
    }
}

impl Backend for FileBackend {
    fn location(&self) -> PathBuf {
        self.path.clone()
    }

    fn absolute(&self) -> PathBuf {
        std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone())
    }

    fn read(&self) -> io::Result<Option<Vec<u8>>> {
        match fs::read(&self.path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write(&self, bytes: &[u8]) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        create_private_dir(dir)?;
        // A fixed name: the lock makes this run the only writer, and a temp left by a crash
        // is simply overwritten.
        let tmp = with_suffix(&self.path, ".tmp");
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        if self.path.exists() {
            // Best effort: a file system without hard links still gets its state saved.
            let backup = self.backup_path();
            let _ = fs::remove_file(&backup);
            if let Err(e) = fs::hard_link(&self.path, &backup) {
                tracing::warn!("cannot keep a backup of the state at {}: {e}", backup.display());
            }
        }
        fs::rename(&tmp, &self.path)?;
        // Make the rename itself durable.
        fs::File::open(dir)?.sync_all()
    }

    fn lock(&self, operation: &str) -> Result<StateLock, LockError> {
        FileLock::acquire(&self.lock_path(), operation).map(|held| StateLock(Box::new(held)))
    }

    fn lock_holder(&self) -> Option<LockInfo> {
        let text = fs::read_to_string(self.lock_path()).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn force_unlock(&self) -> io::Result<()> {
        fs::remove_file(self.lock_path())
    }
}

/// An flock on the lock file beside the state file.
#[derive(Debug)]
struct FileLock {
    path: PathBuf,
    file: File,
}

impl FileLock {
    /// Takes the lock for `operation` or says who holds it.
    fn acquire(path: &Path, operation: &str) -> Result<Self, LockError> {
        if let Some(dir) = path.parent() {
            create_private_dir(dir)?;
        }
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)?;
            // SAFETY: flock on a file descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                    return Err(err.into());
                }
                let mut text = String::new();
                file.read_to_string(&mut text)?;
                return Err(match serde_json::from_str(&text) {
                    Ok(info) => LockError::Held(info),
                    Err(_) => LockError::HeldUnknown(path.to_owned()),
                });
            }
            // The previous holder may have removed the file between our open and flock:
            // then we locked an orphan, and must start over on the new file.
            let same = fs::metadata(path).map(|m| m.ino() == file.metadata().map(|f| f.ino()).unwrap_or(0));
            if !matches!(same, Ok(true)) {
                continue;
            }
            file.set_len(0)?;
            file.rewind()?;
            let info = serde_json::to_string(&LockInfo::mine(operation)).map_err(io::Error::other)?;
            file.write_all(info.as_bytes())?;
            file.sync_all()?;
            return Ok(Self { path: path.to_owned(), file });
        }
    }
}

impl Drop for FileLock {
    /// Removes the lock only if it is still ours: after `state unlock`, another run may
    /// hold a new lock at the same place.
    fn drop(&mut self) {
        let ours =
            |m: fs::Metadata| self.file.metadata().is_ok_and(|f| f.ino() == m.ino() && f.dev() == m.dev());
        if fs::metadata(&self.path).is_ok_and(ours) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Creates the state directory readable by its owner only: state holds secrets.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(dir: &tempfile::TempDir) -> FileBackend {
        FileBackend::new(dir.path().join("s"))
    }

    #[test]
    fn a_broken_lock_s_old_holder_does_not_remove_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = backend(&dir);
        let path = file.lock_path();
        let stuck = file.lock("apply").unwrap();
        file.force_unlock().unwrap();
        let _new = file.lock("apply").unwrap();
        drop(stuck);
        assert!(path.exists(), "the new holder's lock file stays");
        assert!(matches!(file.lock("destroy"), Err(LockError::Held(_))));
    }

    #[test]
    fn second_writer_is_told_who_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let file = backend(&dir);
        let path = file.lock_path();
        let held = file.lock("apply").unwrap();
        match file.lock("destroy") {
            Err(LockError::Held(info)) => {
                assert_eq!(info.pid, std::process::id());
                assert_eq!(info.operation, "apply");
            }
            other => panic!("expected a held lock, got {other:?}"),
        }
        drop(held);
        assert!(!path.exists());
        file.lock("destroy").unwrap();
    }
}
