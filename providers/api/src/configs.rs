//! Typed configs of the kinds more than one provider manages, shared by their expansions
//! and their CRUD code. A provider's other kinds have their configs in its own crate.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::lab::Dataset;
use crate::{ProviderError, ResourceSpec};

/// A student's bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BucketConfig {
    pub name: String,
}

/// A dataset seeded into a student's bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetConfig {
    pub bucket: String,
    pub name: String,
    pub dataset: Dataset,
}

/// A spec's config as the typed config of its kind.
pub fn config<C: DeserializeOwned>(spec: &ResourceSpec) -> Result<C, ProviderError> {
    serde_json::from_value(serde_json::Value::Object(spec.config.clone()))
        .map_err(|e| ProviderError::invalid(format!("{}: {e}", spec.address)))
}
