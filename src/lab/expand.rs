//! Expansion: a validated lab becomes the desired resource graph, with stable addresses
//! and explicit dependencies.

use labctl_provider_api::{Attributes, ResourceSpec, Tags};
use serde_json::{json, Value};

use super::{Cohort, Lab, ProviderConfig, Student};

/// One desired resource and the addresses it depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Which provider manages it: the lab's, or `null` for placeholder resources.
    pub provider: String,
    pub spec: ResourceSpec,
    pub deps: Vec<String>,
}

/// The resources the lab wants, dependencies before dependents.
pub fn expand(lab: &Lab) -> Vec<Node> {
    let mut nodes = vec![];
    let provider = lab.provider.name();
    let lab_tags = Tags { lab: lab.name.clone(), cohort: None, student: None };
    if !matches!(lab.provider, ProviderConfig::Local(_)) {
        for (name, cluster) in &lab.clusters {
            let address = format!("cluster[\"{name}\"]");
            let config = json!({ "name": format!("{}-{name}", lab.name), "version": cluster.version });
            nodes.push(node(provider, &address, "cluster", config, &lab_tags, vec![]));
            for (pool, p) in &cluster.node_pool {
                let config = json!({
                    "cluster": name, "name": pool, "instance_type": p.instance_type,
                    "min": p.min, "max": p.max.get_ref(), "gpu": p.gpu,
                });
                let pool_address = format!("{address}.node_pool[\"{pool}\"]");
                nodes.push(node(provider, &pool_address, "node_pool", config, &lab_tags, vec![address.clone()]));
            }
        }
    }
    for (cohort, student) in lab.students() {
        expand_student(lab, cohort, student, &mut nodes);
    }
    nodes
}

fn expand_student(lab: &Lab, cohort: &Cohort, student: &Student, nodes: &mut Vec<Node>) {
    let provider = lab.provider.name();
    let base = format!("student[\"{}\"]", student.id);
    let tags = Tags { lab: lab.name.clone(), cohort: Some(cohort.name.clone()), student: Some(student.id.clone()) };
    let s = &lab.student;
    if s.credentials.as_ref().is_none_or(|c| *c.get_ref()) {
        let config = json!({ "student": student.id });
        nodes.push(node(provider, &format!("{base}.credential"), "credential", config, &tags, vec![]));
    }
    if let Some(bucket) = &s.bucket {
        let bucket_name = format!("{}-{}", lab.name, student.id);
        let bucket_address = format!("{base}.bucket");
        nodes.push(node(provider, &bucket_address, "bucket", json!({ "name": bucket_name }), &tags, vec![]));
        for name in &bucket.datasets {
            let name = name.get_ref();
            let config = json!({ "bucket": bucket_name, "name": name, "dataset": lab.datasets[name] });
            let address = format!("{base}.dataset[\"{name}\"]");
            nodes.push(node(provider, &address, "dataset", config, &tags, vec![bucket_address.clone()]));
        }
    }
    if let Some(workers) = &s.workers {
        // The workers' shared secret is the student's credential token.
        let credential = vec![format!("{base}.credential")];
        let version = env!("CARGO_PKG_VERSION");
        if let Some(m) = &workers.mapreduce {
            let config = json!({ "student": student.id, "workers": m.workers, "version": version });
            nodes.push(node(provider, &format!("{base}.mapreduce"), "mapreduce", config, &tags, credential.clone()));
        }
        if let Some(sch) = &workers.scheduler {
            let config = json!({ "student": student.id, "workers": sch.workers, "slots": sch.slots.unwrap_or(1), "version": version });
            nodes.push(node(provider, &format!("{base}.scheduler"), "scheduler", config, &tags, credential));
        }
    }
    if let Some(placeholders) = &s.null {
        let config = json!({
            "input": placeholders.input.as_ref().map(toml_to_json),
            "triggers_replace": placeholders.triggers_replace.as_ref().map(toml_to_json),
        });
        let first = format!("{base}.null[0]");
        for i in 0..*placeholders.count.get_ref() {
            let deps = if i == 0 { vec![] } else { vec![first.clone()] };
            nodes.push(node("null", &format!("{base}.null[{i}]"), "null", config.clone(), &tags, deps));
        }
    }
}

fn node(provider: &str, address: &str, kind: &str, config: Value, tags: &Tags, deps: Vec<String>) -> Node {
    let config: Attributes = match config {
        Value::Object(m) => m.into_iter().filter(|(_, v)| !v.is_null()).collect(),
        _ => unreachable!("configs are object literals"),
    };
    Node {
        provider: provider.to_owned(),
        spec: ResourceSpec { address: address.to_owned(), kind: kind.to_owned(), config, tags: tags.clone() },
        deps,
    }
}

fn toml_to_json(v: &toml::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
