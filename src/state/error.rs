//! Why a state could not be read or written.

use std::io;
use std::path::PathBuf;

use super::FORMAT_VERSION;

/// A state that cannot be read or saved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the state at {}", location.display())]
    Read {
        location: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the state at {} is damaged", location.display())]
    Damaged {
        location: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the state at {} has format version {found}, and this labctl reads version {FORMAT_VERSION}",
        location.display()
    )]
    Version { location: PathBuf, found: u32 },
    #[error("the state at {} belongs to lab `{found}`, not `{lab}`", location.display())]
    OtherLab { location: PathBuf, lab: String, found: String },
    #[error("cannot save the state to {}", location.display())]
    Write {
        location: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl StateError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Damaged { location, .. } => Some(format!(
                "a state file's previous version is kept beside it as {}.backup: \
                 check that one and copy it over the damaged one",
                location.display()
            )),
            Self::Version { .. } => Some("run the labctl version that wrote this state".into()),
            Self::OtherLab { .. } => {
                Some("each lab needs a state of its own: check the lab's name and `--state`".into())
            }
            Self::Read { .. } | Self::Write { .. } => None,
        }
    }
}
