//! The state lock: one writer at a time, and a message saying who holds it.
//!
//! The lock is an OS file lock (`flock`) on `<state>.lock`, so a writer that dies — even by
//! SIGKILL — releases it; the file's content (owner, pid, host, since) is what a refused
//! second writer is shown. `state unlock` removes the file to break a lock held by a process
//! that is still alive but stuck (or by a host whose file system does not honour flock).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::remote::S3Object;

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockInfo {
    pub owner: String,
    pub pid: u32,
    pub host: String,
    pub since: String,
    pub operation: String,
    /// Random per lock: tells this run's lock from a later one of the same process.
    #[serde(default)]
    pub nonce: String,
}

impl std::fmt::Display for LockInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (pid {} on {}) since {}, running `{}`",
            self.owner, self.pid, self.host, self.since, self.operation
        )
    }
}

/// A held lock; released when dropped.
#[derive(Debug)]
pub enum StateLock {
    /// An flock on the lock file beside the state file.
    File { path: PathBuf, file: File },
    /// The lock object beside the state object in S3, holding `info`.
    S3 { object: S3Object, info: LockInfo },
}

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the state is locked by {0}")]
    Held(LockInfo),
    #[error("the state is locked by another process (its lock {0} is unreadable)")]
    HeldUnknown(PathBuf),
    #[error("cannot lock the state: {0}")]
    Io(#[from] io::Error),
}

impl StateLock {
    /// Takes the lock for `operation` or says who holds it.
    pub fn acquire(path: &Path, operation: &str) -> Result<Self, LockError> {
        if let Some(dir) = path.parent() {
            super::store::create_private_dir(dir)?;
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
            file.write_all(serde_json::to_string(&LockInfo::mine(operation)).unwrap_or_default().as_bytes())?;
            file.sync_all()?;
            return Ok(Self::File { path: path.to_owned(), file });
        }
    }

    /// Takes the S3 lock by creating its object only if it does not exist.
    pub fn acquire_s3(object: &S3Object, operation: &str) -> Result<Self, LockError> {
        let info = LockInfo::mine(operation);
        match object.lock(&info)? {
            Ok(()) => Ok(Self::S3 { object: object.clone(), info }),
            Err(Some(holder)) => Err(LockError::Held(holder)),
            Err(None) => Err(LockError::HeldUnknown(PathBuf::from(format!("{}.lock", object.url())))),
        }
    }

    /// Who holds the lock at `path`, if anyone does.
    pub fn holder(path: &Path) -> Option<LockInfo> {
        let text = fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Breaks the lock at `path`, whoever holds it.
    pub fn force_unlock(path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
}

impl LockInfo {
    /// This process, about to run `operation`.
    fn mine(operation: &str) -> Self {
        Self {
            owner: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
            pid: std::process::id(),
            host: hostname(),
            since: jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .unwrap_or_else(|_| jiff::Timestamp::now())
                .to_string(),
            operation: operation.to_owned(),
            nonce: labctl_provider_api::random_token(),
        }
    }
}

impl Drop for StateLock {
    /// Removes the lock only if it is still ours: after `state unlock`, another run may
    /// hold a new lock at the same place.
    fn drop(&mut self) {
        match self {
            Self::File { path, file } => {
                let ours =
                    |m: fs::Metadata| file.metadata().is_ok_and(|f| f.ino() == m.ino() && f.dev() == m.dev());
                if fs::metadata(&*path).is_ok_and(ours) {
                    let _ = fs::remove_file(&*path);
                }
            }
            Self::S3 { object, info } => {
                if let Err(e) = object.unlock(Some(info)) {
                    tracing::warn!("cannot release the state lock: {e}; break it with `labctl state unlock`");
                }
            }
        }
    }
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_lock_s_old_holder_does_not_remove_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lock");
        let stuck = StateLock::acquire(&path, "apply").unwrap();
        StateLock::force_unlock(&path).unwrap();
        let _new = StateLock::acquire(&path, "apply").unwrap();
        drop(stuck);
        assert!(path.exists(), "the new holder's lock file stays");
        assert!(matches!(StateLock::acquire(&path, "destroy"), Err(LockError::Held(_))));
    }

    #[test]
    fn second_writer_is_told_who_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lock");
        let held = StateLock::acquire(&path, "apply").unwrap();
        match StateLock::acquire(&path, "destroy") {
            Err(LockError::Held(info)) => {
                assert_eq!(info.pid, std::process::id());
                assert_eq!(info.operation, "apply");
            }
            other => panic!("expected a held lock, got {other:?}"),
        }
        drop(held);
        assert!(!path.exists());
        StateLock::acquire(&path, "destroy").unwrap();
    }
}
