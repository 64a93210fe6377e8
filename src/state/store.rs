//! Reading and writing state. In a file: temp file, fsync, rename; the previous version
//! kept as `<state>.backup`; mode 0600 because state holds secrets. Or in S3 (see
//! [`super::remote`]), for a lab several people apply.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::lock::{LockError, StateLock};
use super::remote::{S3Object, S3Settings};
use super::{LockInfo, State, FORMAT_VERSION};

/// Where one lab's state lives, and how it is read and written.
#[derive(Debug, Clone)]
pub struct StateStore {
    path: PathBuf,
    /// Set when the state lives in S3 (`path` is then its `s3://` URL).
    remote: Option<S3Object>,
}

impl StateStore {
    /// A state file at `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path, remote: None }
    }

    /// A state file, or an S3 object when `location` is an `s3://bucket/key` URL.
    pub fn at(location: &Path, s3: &S3Settings) -> Self {
        match location.to_str().and_then(S3Object::parse) {
            Some((bucket, key)) => {
                let remote = S3Object::connect(bucket, key, s3);
                Self { path: PathBuf::from(remote.url()), remote: Some(remote) }
            }
            None => Self::new(location.to_owned()),
        }
    }

    /// The default place: `.labctl/<lab>.state.json` beside the lab file.
    pub fn beside(lab_file: &Path, lab: &str) -> Self {
        let dir = lab_file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Self::new(dir.join(".labctl").join(format!("{lab}.state.json")))
    }

    /// The state file's path, or the state object's `s3://` URL.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The location a saved plan records: an absolute path, or the `s3://` URL.
    pub fn absolute(&self) -> PathBuf {
        match &self.remote {
            Some(_) => self.path.clone(),
            None => std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone()),
        }
    }

    /// Takes the state lock for `operation`, or says who holds it.
    pub fn lock(&self, operation: &str) -> Result<StateLock, LockError> {
        match &self.remote {
            Some(remote) => StateLock::acquire_s3(remote, operation),
            None => StateLock::acquire(&self.lock_path(), operation),
        }
    }

    /// Who holds the state lock, if anyone.
    pub fn lock_holder(&self) -> Option<LockInfo> {
        match &self.remote {
            Some(remote) => remote.holder().ok().flatten(),
            None => StateLock::holder(&self.lock_path()),
        }
    }

    /// Breaks the state lock, whoever holds it.
    pub fn force_unlock(&self) -> io::Result<()> {
        match &self.remote {
            Some(remote) => remote.unlock(None),
            None => StateLock::force_unlock(&self.lock_path()),
        }
    }

    pub fn backup_path(&self) -> PathBuf {
        with_suffix(&self.path, ".backup")
    }

    pub fn lock_path(&self) -> PathBuf {
        with_suffix(&self.path, ".lock")
    }

    /// Reads the state; a missing file is a fresh state for `lab`.
    pub fn load(&self, lab: &str) -> io::Result<State> {
        let bytes = match &self.remote {
            Some(remote) => remote.get()?,
            None => match fs::read(&self.path) {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            },
        };
        let Some(bytes) = bytes else { return Ok(State::new(lab)) };
        let state: State = serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", self.path.display()))
        })?;
        if state.format_version != FORMAT_VERSION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: state format version {} is not supported by this labctl (which reads {FORMAT_VERSION})",
                    self.path.display(),
                    state.format_version
                ),
            ));
        }
        if state.lab != lab {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: this state belongs to lab `{}`, not `{lab}`", self.path.display(), state.lab),
            ));
        }
        Ok(state)
    }

    /// Whether a state exists yet.
    pub fn exists(&self) -> bool {
        match &self.remote {
            Some(remote) => remote.get().is_ok_and(|b| b.is_some()),
            None => self.path.exists(),
        }
    }

    /// Writes `state` with the next serial. Readers (and a crash at any instant) see either
    /// the previous complete file or this one.
    pub fn save(&self, state: &mut State) -> io::Result<()> {
        state.serial += 1;
        let bytes = serde_json::to_vec(state).map_err(io::Error::other)?;
        match &self.remote {
            Some(remote) => remote.put(bytes),
            None => self.write_bytes(&bytes),
        }
    }

    fn write_bytes(&self, bytes: &[u8]) -> io::Result<()> {
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
}

/// Creates the state directory readable by its owner only: state holds secrets.
pub(super) fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn save_load_backup_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join(".labctl/lab1.state.json"));
        let mut state = store.load("lab1").unwrap();
        assert_eq!(state.serial, 0);
        store.save(&mut state).unwrap();
        store.save(&mut state).unwrap();
        let back = store.load("lab1").unwrap();
        assert_eq!((back.serial, back.lineage.as_str()), (2, state.lineage.as_str()));
        let previous: State = serde_json::from_slice(&fs::read(store.backup_path()).unwrap()).unwrap();
        assert_eq!(previous.serial, 1);
        let mode = fs::metadata(store.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(store.load("other").unwrap_err().to_string().contains("belongs to lab `lab1`"));
    }
}
