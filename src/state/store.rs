//! Reading and writing state through a [`Backend`]: a file ([`super::file`]) or an object
//! in a provider's store ([`super::remote`]), for a lab several people apply. The format
//! checks (version, lab, serial) are the same for both.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use labctl_provider_api::RemoteState;

use super::error::StateError;
use super::file::FileBackend;
use super::lock::{LockError, StateLock};
use super::remote::RemoteBackend;
use super::{LockInfo, State, FORMAT_VERSION};

/// Where a state's bytes live, and how they are locked.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The state file's path, or the state object's URL, as shown to users.
    fn location(&self) -> PathBuf;
    /// The location a saved plan records: an absolute path, or the URL.
    fn absolute(&self) -> PathBuf;
    /// The state's bytes; `None` if there is no state yet.
    fn read(&self) -> io::Result<Option<Vec<u8>>>;
    /// Replaces the state so that readers (and a crash at any instant) see the old or the new.
    fn write(&self, bytes: &[u8]) -> io::Result<()>;
    /// Takes the state lock for `operation`, or says who holds it.
    fn lock(&self, operation: &str) -> Result<StateLock, LockError>;
    /// Who holds the state lock, if anyone.
    fn lock_holder(&self) -> Option<LockInfo>;
    /// Breaks the state lock, whoever holds it.
    fn force_unlock(&self) -> io::Result<()>;
}

/// Where one lab's state lives, and how it is read and written.
#[derive(Debug, Clone)]
pub struct StateStore {
    backend: Arc<dyn Backend>,
}

impl StateStore {
    /// A state file at `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { backend: Arc::new(FileBackend::new(path)) }
    }

    /// A state kept in a provider's object store.
    pub fn remote(object: Arc<dyn RemoteState>) -> Self {
        Self { backend: Arc::new(RemoteBackend::new(object)) }
    }

    /// The default place: `.labctl/<lab>.state.json` beside the lab file.
    pub fn beside(lab_file: &Path, lab: &str) -> Self {
        let dir = lab_file.parent().unwrap_or(Path::new(""));
        Self::new(dir.join(".labctl").join(format!("{lab}.state.json")))
    }

    /// The state file's path, or the state object's URL.
    pub fn path(&self) -> PathBuf {
        self.backend.location()
    }

    /// The location a saved plan records: an absolute path, or the URL.
    pub fn absolute(&self) -> PathBuf {
        self.backend.absolute()
    }

    /// Takes the state lock for `operation`, or says who holds it.
    pub fn lock(&self, operation: &str) -> Result<StateLock, LockError> {
        self.backend.lock(operation)
    }

    /// Who holds the state lock, if anyone.
    pub fn lock_holder(&self) -> Option<LockInfo> {
        self.backend.lock_holder()
    }

    /// Breaks the state lock, whoever holds it.
    pub fn force_unlock(&self) -> io::Result<()> {
        self.backend.force_unlock()
    }

    /// Reads the state; a missing one is a fresh state for `lab`.
    pub fn load(&self, lab: &str) -> Result<State, StateError> {
        let location = self.path();
        let bytes = match self.backend.read() {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(State::new(lab)),
            Err(source) => return Err(StateError::Read { location, source }),
        };
        // The version first: a newer layout may not parse as this one.
        #[derive(serde::Deserialize)]
        struct Version {
            format_version: u32,
        }
        let version: Version = serde_json::from_slice(&bytes)
            .map_err(|source| StateError::Damaged { location: location.clone(), source })?;
        if version.format_version != FORMAT_VERSION {
            return Err(StateError::Version { location, found: version.format_version });
        }
        let state: State = serde_json::from_slice(&bytes)
            .map_err(|source| StateError::Damaged { location: location.clone(), source })?;
        if state.lab != lab {
            return Err(StateError::OtherLab { location, lab: lab.to_owned(), found: state.lab });
        }
        Ok(state)
    }

    /// Whether a state exists yet.
    pub fn exists(&self) -> bool {
        self.backend.read().is_ok_and(|b| b.is_some())
    }

    /// Writes `state` with the next serial.
    pub fn save(&self, state: &mut State) -> Result<(), StateError> {
        state.serial += 1;
        let bytes = serde_json::to_vec(state).map_err(io::Error::other);
        bytes
            .and_then(|bytes| self.backend.write(&bytes))
            .map_err(|source| StateError::Write { location: self.path(), source })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use std::fs;

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
        let backup = dir.path().join(".labctl/lab1.state.json.backup");
        let previous: State = serde_json::from_slice(&fs::read(backup).unwrap()).unwrap();
        assert_eq!(previous.serial, 1);
        let mode = fs::metadata(store.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(store.load("other").unwrap_err().to_string().contains("belongs to lab `lab1`"));
    }
}
