//! A state kept off this machine (an object store), offered by a provider: labctl keeps
//! the format, the serial and the lock protocol; the backend stores bytes.

use std::io;

/// One state object and its lock object in a remote store.
///
/// The calls are synchronous: the engine saves state between steps; implementations block on
/// the runtime they are called from (labctl's is multi-threaded).
pub trait RemoteState: Send + Sync + std::fmt::Debug {
    /// The state's URL, as users write it (`s3://bucket/key`).
    fn url(&self) -> String;

    /// The state's bytes; `None` if there is no state yet.
    fn get(&self) -> io::Result<Option<Vec<u8>>>;

    /// Replaces the state.
    fn put(&self, bytes: Vec<u8>) -> io::Result<()>;

    /// Creates the lock object holding `bytes` unless one exists; `false` if one did.
    fn create_lock(&self, bytes: Vec<u8>) -> io::Result<bool>;

    /// The lock object's bytes, if it exists.
    fn get_lock(&self) -> io::Result<Option<Vec<u8>>>;

    /// Removes the lock object.
    fn delete_lock(&self) -> io::Result<()>;
}
