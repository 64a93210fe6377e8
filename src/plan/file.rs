//! Saved plans: `labctl plan --out FILE` writes one, `labctl apply FILE` reads it back.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{Plan, PLAN_FORMAT};

/// A plan file that cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum PlanFileError {
    #[error("cannot write the plan to {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a plan file", path.display())]
    NotJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} is not a labctl plan of this version (expected format `{PLAN_FORMAT}`)", path.display())]
    Format { path: PathBuf },
    #[error("{} is a damaged plan", path.display())]
    Damaged {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl PlanFileError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Format { .. } | Self::Damaged { .. } => {
                Some("make the plan again with `labctl plan LAB --out FILE`".into())
            }
            Self::Write { .. } | Self::Read { .. } | Self::NotJson { .. } => None,
        }
    }
}

impl Plan {
    /// Writes the plan to `path`, readable by its owner only (it names the state and the
    /// provider's settings).
    pub fn save_to(&self, path: &Path) -> Result<(), PlanFileError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(io::Error::other);
        bytes
            .and_then(|bytes| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(path)?
                    .write_all(&bytes)
            })
            .map_err(|source| PlanFileError::Write { path: path.to_owned(), source })
    }

    /// Reads `path` as a saved plan if it is one (a JSON document); `None` for anything
    /// else (a lab file).
    pub fn read_from(path: &Path) -> Result<Option<Self>, PlanFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| PlanFileError::Read { path: path.to_owned(), source })?;
        if !text.trim_start().starts_with('{') {
            return Ok(None);
        }
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|source| PlanFileError::NotJson { path: path.to_owned(), source })?;
        if value.get("format").and_then(|f| f.as_str()) != Some(PLAN_FORMAT) {
            return Err(PlanFileError::Format { path: path.to_owned() });
        }
        serde_json::from_value(value)
            .map(Some)
            .map_err(|source| PlanFileError::Damaged { path: path.to_owned(), source })
    }
}
