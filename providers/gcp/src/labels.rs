//! labctl's ownership tags as GCP labels: `labctl/lab` is `labctl-lab` (label keys take no
//! `/`), values as they are (`Tags::pairs` keeps them label-safe). What takes no labels
//! (service accounts, networks, firewalls) carries them in its description.

use std::collections::HashMap;

use labctl_provider_api::Tags;

/// The labels carrying `tags`.
pub fn of(tags: &Tags) -> HashMap<String, String> {
    tags.pairs().into_iter().map(|(k, v)| (k.replace('/', "-"), v)).collect()
}

/// The tags a resource's labels carry; `None` if it is not labctl's.
pub fn tags<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> Option<Tags> {
    let pairs: Vec<(String, &str)> =
        labels.into_iter().map(|(k, v)| (k.replacen("labctl-", "labctl/", 1), v.as_str())).collect();
    Tags::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), *v)))
}

/// A description carrying `tags`, which sweeps read back.
pub fn description(tags: &Tags) -> String {
    let pairs: Vec<String> = tags.pairs().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(" ")
}

/// The tags a description carries; `None` if it is not labctl's.
pub fn described(description: &str) -> Option<Tags> {
    Tags::from_pairs(description.split(' ').filter_map(|pair| pair.split_once('=')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_go_into_labels_and_back() {
        let tags =
            Tags { cohort: Some("gpu".into()), student: Some("ada".into()), ..Tags::lab("bigdata", None) };
        let labels = of(&tags);
        assert_eq!(labels["labctl-lab"], "bigdata");
        assert_eq!(labels["labctl-student"], "ada");
        assert_eq!(super::tags(&labels), Some(tags));
        let foreign = HashMap::from([("team".to_owned(), "x".to_owned())]);
        assert_eq!(super::tags(&foreign), None);
    }

    #[test]
    fn a_description_carries_the_owner_tags() {
        let tags =
            Tags { cohort: Some("gpu".into()), student: Some("ada".into()), ..Tags::lab("bigdata", None) };
        assert_eq!(described(&description(&tags)), Some(tags));
        assert_eq!(described("a service account of someone else"), None);
    }
}
