//! The state file: what labctl created, versioned, written atomically, locked, with
//! secrets marked.

mod error;
mod file;
mod lock;
mod remote;
mod store;

use std::collections::BTreeMap;

use labctl_provider_api::{Attributes, Observed, Tags};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use error::StateError;
pub use lock::{LockError, LockInfo, StateLock};
pub use store::{Backend, StateStore};

/// Bumped when the state layout changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

/// Everything labctl knows it created for one lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub format_version: u32,
    /// Increases with every write; a saved plan records it and is refused once stale.
    pub serial: u64,
    /// Random id given when the state is first created; never changes.
    pub lineage: String,
    pub lab: String,
    /// The lab's expiry as last applied, so that it is known without the lab file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<jiff::Timestamp>,
    pub resources: BTreeMap<String, ResourceState>,
}

/// One resource as last applied and observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceState {
    pub provider: String,
    pub kind: String,
    pub id: String,
    /// The desired attributes it was last applied with.
    pub config: Attributes,
    /// What the provider reported.
    pub attributes: Attributes,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deps: Vec<String>,
    pub tags: Tags,
    /// A create that failed half-way: the next apply replaces it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tainted: bool,
}

impl State {
    /// A fresh, empty state for `lab`.
    pub fn new(lab: &str) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            serial: 0,
            lineage: uuid::Uuid::new_v4().to_string(),
            lab: lab.to_owned(),
            expires: None,
            resources: BTreeMap::new(),
        }
    }
}

impl ResourceState {
    /// The provider-side view of this resource, as providers take it.
    pub fn observed(&self) -> Observed {
        Observed {
            id: self.id.clone(),
            attributes: self.attributes.clone(),
            sensitive: self.sensitive.clone(),
        }
    }

    /// Attributes with every sensitive value replaced, fit for printing.
    pub fn redacted_attributes(&self) -> Attributes {
        redact(&self.attributes, &self.sensitive)
    }
}

/// The placeholder printed instead of a secret.
pub const SENSITIVE: &str = "(sensitive)";

/// `attributes` with the values named in `sensitive` replaced by [`SENSITIVE`].
pub fn redact(attributes: &Attributes, sensitive: &[String]) -> Attributes {
    attributes
        .iter()
        .map(|(k, v)| {
            let v = if sensitive.contains(k) { Value::String(SENSITIVE.into()) } else { v.clone() };
            (k.clone(), v)
        })
        .collect()
}

/// `text` with every secret held in `state` replaced by [`SENSITIVE`]: for error messages
/// that might quote a provider's answer.
pub fn redact_text(text: &str, state: &State) -> String {
    let mut out = text.to_owned();
    for r in state.resources.values() {
        for name in &r.sensitive {
            if let Some(secret) = r.attributes.get(name).and_then(Value::as_str).filter(|s| s.len() >= 4) {
                out = out.replace(secret, SENSITIVE);
            }
        }
    }
    out
}
