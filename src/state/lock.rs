//! The state lock: one writer at a time, and a message saying who holds it. How a lock is
//! taken and released is the backend's ([`super::file`], [`super::remote`]).

use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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

/// A held lock; released when dropped (by the backend's guard inside).
#[derive(Debug)]
pub struct StateLock(
    #[allow(dead_code, reason = "held for its Drop")] pub(super) Box<dyn std::fmt::Debug + Send>,
);

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the state is locked by {0}")]
    Held(LockInfo),
    #[error("the state is locked by another process (its lock {0} is unreadable)")]
    HeldUnknown(PathBuf),
    #[error("cannot lock the state")]
    Io(#[from] io::Error),
}

impl LockInfo {
    /// This process, about to run `operation`.
    pub(super) fn mine(operation: &str) -> Self {
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

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}
