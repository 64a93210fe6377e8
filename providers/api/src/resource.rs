use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Attribute values of a resource, by name.
pub type Attributes = serde_json::Map<String, serde_json::Value>;

/// What a resource's dependencies look like now, by address.
pub type Deps = BTreeMap<String, Observed>;

/// The ownership tags every resource labctl creates carries (`labctl/lab`,
/// `labctl/cohort`, `labctl/student`), so that a sweep can find it without state, and the
/// lab's expiry (`labctl/expires`), so that `labctl reap` can tell when to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tags {
    pub lab: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub student: Option<String>,
    /// The only tag that changes after creation: a re-apply moves it with the lab file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<jiff::Timestamp>,
}

impl Tags {
    /// The key naming the lab, what a sweep selects on.
    pub const LAB: &'static str = "labctl/lab";
    pub const COHORT: &'static str = "labctl/cohort";
    pub const STUDENT: &'static str = "labctl/student";
    pub const EXPIRES: &'static str = "labctl/expires";

    /// Tags of a lab-wide resource (a network, a cluster) of lab `lab`.
    pub fn lab(lab: &str, expires: Option<jiff::Timestamp>) -> Self {
        Self { lab: lab.to_owned(), cohort: None, student: None, expires }
    }

    /// The tags as key/value pairs (cloud tags, Kubernetes labels). Every value is a valid
    /// Kubernetes label value and GCP label value (the expiry as `20261220t180000z`).
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![(Self::LAB, self.lab.clone())];
        pairs.extend(self.cohort.iter().map(|c| (Self::COHORT, c.clone())));
        pairs.extend(self.student.iter().map(|s| (Self::STUDENT, s.clone())));
        pairs.extend(self.expires.map(|at| (Self::EXPIRES, encode_expiry(at))));
        pairs
    }

    /// Reads the tags back from key/value pairs; `None` without a lab (not labctl's). An
    /// expiry that does not parse counts as none.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Self> {
        let map: std::collections::HashMap<&str, &str> = pairs.into_iter().collect();
        Some(Self {
            lab: map.get(Self::LAB)?.to_string(),
            cohort: map.get(Self::COHORT).map(|s| s.to_string()),
            student: map.get(Self::STUDENT).map(|s| s.to_string()),
            expires: map.get(Self::EXPIRES).and_then(|s| decode_expiry(s)),
        })
    }

    /// Whether `other` names the same owner (lab, cohort, student), whatever the expiry:
    /// what adopting a resource checks.
    pub fn same_owner(&self, other: &Tags) -> bool {
        (&self.lab, &self.cohort, &self.student) == (&other.lab, &other.cohort, &other.student)
    }
}

/// An expiry as a tag value: ISO 8601's basic format in lower case, to the second.
fn encode_expiry(at: jiff::Timestamp) -> String {
    at.strftime("%Y%m%dt%H%M%Sz").to_string()
}

/// An expiry tag value back.
fn decode_expiry(value: &str) -> Option<jiff::Timestamp> {
    let civil = value.strip_suffix(['z', 'Z'])?.to_ascii_uppercase();
    let at = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%S", &civil).ok()?;
    at.to_zoned(jiff::tz::TimeZone::UTC).ok().map(|z| z.timestamp())
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

/// An attribute of whichever dependency has it (a VM's subnet comes from the network, its
/// key from the credential, …).
pub fn dep_attr<'a>(deps: &'a Deps, key: &str) -> Result<&'a str, crate::ProviderError> {
    deps.values()
        .find_map(|d| d.attributes.get(key).and_then(|v| v.as_str()))
        .ok_or_else(|| crate::ProviderError::invalid(format!("no dependency provides `{key}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiry_tag_is_label_safe_and_reads_back() {
        let at: jiff::Timestamp = "2026-12-20T18:00:07.5Z".parse().unwrap();
        let tags = Tags { expires: Some(at), ..Tags::lab("bigdata", None) };
        let pairs = tags.pairs();
        assert_eq!(pairs.last().unwrap(), &(Tags::EXPIRES, "20261220t180007z".to_owned()));
        let back = Tags::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str()))).unwrap();
        assert_eq!(back.expires, Some("2026-12-20T18:00:07Z".parse().unwrap()));
        assert!(back.same_owner(&Tags::lab("bigdata", None)));
        assert!(!back.same_owner(&Tags { student: Some("ada".into()), ..Tags::lab("bigdata", None) }));
        let garbled = [(Tags::LAB, "bigdata"), (Tags::EXPIRES, "next-week")];
        assert_eq!(Tags::from_pairs(garbled).unwrap().expires, None);
    }
}
