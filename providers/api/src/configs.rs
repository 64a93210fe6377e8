//! Typed configs of the kinds more than one provider manages, shared by their expansions
//! and their CRUD code. A provider's other kinds have their configs in its own crate.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::lab::{Cohort, Dataset, Lab, Student};
use crate::{Address, Node, Observed, ProviderError, ResourceSpec};

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

/// A student's bucket and the datasets seeded into it, as nodes of `provider` (none if the
/// lab gives students no bucket); each dataset depends on the bucket and on `dataset_deps`.
pub fn bucket_nodes(
    provider: &str,
    lab: &Lab,
    cohort: &Cohort,
    student: &Student,
    dataset_deps: &[&str],
) -> Vec<Node> {
    if lab.student.bucket.is_none() {
        return vec![];
    }
    let base = Address::student(&student.id);
    let tags = lab.tags(cohort, student);
    let name = lab.resource_name(student);
    let bucket = base.child("bucket").to_string();
    let config = BucketConfig { name: name.clone() };
    let mut nodes = vec![Node::new(provider, bucket.clone(), "bucket", &config, &tags, vec![])];
    for dataset in lab.seeded() {
        let config = DatasetConfig {
            bucket: name.clone(),
            name: dataset.to_owned(),
            dataset: lab.datasets[dataset].clone(),
        };
        let deps =
            std::iter::once(bucket.clone()).chain(dataset_deps.iter().map(|d| d.to_string())).collect();
        nodes.push(Node::new(provider, base.keyed("dataset", dataset), "dataset", &config, &tags, deps));
    }
    nodes
}

/// Where dataset `name` goes in a bucket: `datasets/<name>/`.
pub fn dataset_prefix(name: &str) -> String {
    format!("datasets/{name}/")
}

/// A seeded dataset as a provider reports it: its id `<bucket>/<name>`, where it is
/// (`<scheme>://<bucket>/datasets/<name>/`) and the hash of its definition.
pub fn dataset_observed(scheme: &str, bucket: &str, name: &str, hash: &str) -> Observed {
    let url = format!("{scheme}://{bucket}/{}", dataset_prefix(name));
    Observed {
        id: format!("{bucket}/{name}"),
        attributes: crate::attrs(serde_json::json!({
            "bucket": bucket,
            "name": name,
            "url": url,
            "path": url,
            "sha256": hash,
        })),
        sensitive: vec![],
    }
}

/// A dataset's id, `<bucket>/<name>`, back into its parts.
pub fn split_dataset_id(id: &str) -> Result<(&str, &str), ProviderError> {
    id.split_once('/').ok_or_else(|| ProviderError::invalid(format!("malformed dataset id `{id}`")))
}

/// The object written last into a dataset's prefix: its presence, with the definition's
/// hash, means the dataset is complete and current.
pub const DATASET_MANIFEST: &str = "_LABCTL_MANIFEST.json";

/// The hash naming a dataset definition: of its JSON text with sorted keys, as the config
/// holds it (a manifest records it; an artifacts bucket and each student's copy are
/// compared by it).
pub fn dataset_hash(dataset: &Dataset) -> String {
    crate::sha256(serde_json::json!(dataset).to_string().as_bytes())
}

/// A spec's config as the typed config of its kind.
pub fn config<C: DeserializeOwned>(spec: &ResourceSpec) -> Result<C, ProviderError> {
    serde_json::from_value(serde_json::Value::Object(spec.config.clone()))
        .map_err(|e| ProviderError::invalid(format!("{}: {e}", spec.address)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::DatasetKind;
    use crate::{Node, Tags};

    /// The hash is of the definition as the dataset's config holds it, as before configs
    /// were typed: datasets uploaded by an earlier labctl are not uploaded again.
    #[test]
    fn a_definition_hashes_as_its_config_text() {
        let dataset = Dataset { kind: DatasetKind::Text { size_bytes: 5000, files: 2 }, seed: 7 };
        let config = DatasetConfig { bucket: "b".into(), name: "corpus".into(), dataset: dataset.clone() };
        let node = Node::new("aws", "dataset", "dataset", &config, &Tags::default(), vec![]);
        assert_eq!(dataset_hash(&dataset), crate::sha256(node.spec.config["dataset"].to_string().as_bytes()));
    }
}
