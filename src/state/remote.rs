//! A state kept by a provider's object store ([`RemoteState`], e.g. `s3://bucket/key`): the
//! state is one object and its lock a second one created only if it does not exist, so
//! that of two teaching assistants applying at once exactly one gets the lock.
//!
//! Unlike the file lock, a remote lock outlives a holder killed by SIGKILL; the refusal names
//! the holder, and `labctl state unlock` breaks it.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use labctl_provider_api::RemoteState;

use super::lock::{LockError, LockInfo, StateLock};
use super::store::Backend;

/// The state and lock objects of a remote store.
#[derive(Debug, Clone)]
pub struct RemoteBackend {
    object: Arc<dyn RemoteState>,
}

impl RemoteBackend {
    pub fn new(object: Arc<dyn RemoteState>) -> Self {
        Self { object }
    }
}

/// Who holds the lock of `object`, if anyone.
fn holder(object: &dyn RemoteState) -> io::Result<Option<LockInfo>> {
    Ok(object.get_lock()?.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

impl Backend for RemoteBackend {
    fn location(&self) -> PathBuf {
        PathBuf::from(self.object.url())
    }

    fn absolute(&self) -> PathBuf {
        self.location()
    }

    fn read(&self) -> io::Result<Option<Vec<u8>>> {
        self.object.get()
    }

    fn write(&self, bytes: &[u8]) -> io::Result<()> {
        self.object.put(bytes.to_vec())
    }

    fn lock(&self, operation: &str) -> Result<StateLock, LockError> {
        let info = LockInfo::mine(operation);
        let body = serde_json::to_vec(&info).map_err(io::Error::other)?;
        if self.object.create_lock(body)? {
            return Ok(StateLock(Box::new(RemoteLock { object: self.object.clone(), info })));
        }
        match holder(self.object.as_ref())? {
            Some(holder) => Err(LockError::Held(holder)),
            None => Err(LockError::HeldUnknown(PathBuf::from(format!("{}.lock", self.object.url())))),
        }
    }

    fn lock_holder(&self) -> Option<LockInfo> {
        holder(self.object.as_ref()).ok().flatten()
    }

    fn force_unlock(&self) -> io::Result<()> {
        self.object.delete_lock()
    }
}

/// The lock object, holding `info`.
#[derive(Debug)]
struct RemoteLock {
    object: Arc<dyn RemoteState>,
    info: LockInfo,
}

impl Drop for RemoteLock {
    /// Removes the lock only while it still names us: after `state unlock`, another run may
    /// hold a new one.
    fn drop(&mut self) {
        let ours = holder(self.object.as_ref()).ok().flatten().as_ref() == Some(&self.info);
        if !ours {
            return;
        }
        if let Err(e) = self.object.delete_lock() {
            tracing::warn!("cannot release the state lock: {e}; break it with `labctl state unlock`");
        }
    }
}
