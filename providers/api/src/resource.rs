use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Attribute values of a resource, by name.
pub type Attributes = serde_json::Map<String, serde_json::Value>;

/// What a resource's dependencies look like now, by address.
pub type Deps = BTreeMap<String, Observed>;

/// The ownership tags every resource labctl creates carries (`labctl/lab`,
/// `labctl/cohort`, `labctl/student`), so that a sweep can find it without state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tags {
    pub lab: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub student: Option<String>,
}

/// A resource as the lab wants it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceSpec {
    /// Stable address, e.g. `student["ada"].bucket`.
    pub address: String,
    pub kind: String,
    /// Desired attributes; comparing them with the last applied ones gives the diff.
    pub config: Attributes,
    pub tags: Tags,
}

/// A resource as it exists: its provider-side identity and attributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    pub id: String,
    #[serde(default)]
    pub attributes: Attributes,
    /// Names of attributes whose values are secrets: never printed or logged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<String>,
}

/// A tagged resource found by [`crate::Provider::sweep`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Found {
    pub kind: String,
    pub id: String,
    pub tags: Tags,
}

/// How a provider treats changes to one kind of resource.
#[derive(Debug, Clone)]
pub struct KindSchema {
    pub name: &'static str,
    /// Config attributes whose change forces delete-and-recreate; `"*"` means any change.
    pub replace_on: &'static [&'static str],
}

impl KindSchema {
    /// Whether changing `attribute` forces a replacement.
    pub fn forces_replace(&self, attribute: &str) -> bool {
        self.replace_on.iter().any(|a| *a == "*" || *a == attribute)
    }
}

/// The attributes of a JSON object literal (`attrs(json!({...}))`).
///
/// # Panics
/// If `value` is not an object: callers pass literals.
pub fn attrs(value: serde_json::Value) -> Attributes {
    match value {
        serde_json::Value::Object(m) => m,
        other => panic!("attrs() takes an object literal, not {other}"),
    }
}

/// A string attribute that must be present, e.g. a name in a resource's config.
pub fn str_attr<'a>(attributes: &'a Attributes, key: &str) -> Result<&'a str, crate::ProviderError> {
    attributes
        .get(key)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| crate::ProviderError::invalid(format!("missing string attribute `{key}`")))
}
