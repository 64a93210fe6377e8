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

impl Tags {
    /// The key naming the lab, what a sweep selects on.
    pub const LAB: &'static str = "labctl/lab";
    pub const COHORT: &'static str = "labctl/cohort";
    pub const STUDENT: &'static str = "labctl/student";

    /// The tags as key/value pairs (cloud tags, Kubernetes labels).
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![(Self::LAB, self.lab.clone())];
        pairs.extend(self.cohort.iter().map(|c| (Self::COHORT, c.clone())));
        pairs.extend(self.student.iter().map(|s| (Self::STUDENT, s.clone())));
        pairs
    }

    /// Reads the tags back from key/value pairs; `None` without a lab (not labctl's).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Self> {
        let map: std::collections::HashMap<&str, &str> = pairs.into_iter().collect();
        Some(Self {
            lab: map.get(Self::LAB)?.to_string(),
            cohort: map.get(Self::COHORT).map(|s| s.to_string()),
            student: map.get(Self::STUDENT).map(|s| s.to_string()),
        })
    }
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
