//! Expansion: a validated lab becomes the desired resource graph, with stable addresses
//! and explicit dependencies.

use labctl_provider_api::{Attributes, ResourceSpec, Tags};
use serde_json::{json, Value};

use toml::Spanned;

use super::file::kubernetes_defaults as k8s;
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
    let aws = matches!(lab.provider, ProviderConfig::Aws(_));
    // Clusters are made on AWS; on Kubernetes `[cluster]` describes the context's cluster.
    if aws {
        expand_aws_shared(lab, &lab_tags, &mut nodes);
        for (name, cluster) in &lab.clusters {
            let address = format!("cluster[\"{name}\"]");
            let config = json!({ "name": format!("{}-{name}", lab.name), "version": cluster.version });
            nodes.push(node(provider, &address, "cluster", config, &lab_tags, vec![NETWORK.to_owned()]));
            for (pool, p) in &cluster.node_pool {
                let config = json!({
                    "cluster": name, "name": pool, "instance_type": p.instance_type,
                    "min": p.min, "max": p.max.get_ref(), "gpu": p.gpu,
                });
                let pool_address = format!("{address}.node_pool[\"{pool}\"]");
                nodes.push(node(
                    provider,
                    &pool_address,
                    "node_pool",
                    config,
                    &lab_tags,
                    vec![address.clone()],
                ));
            }
        }
    }
    for (cohort, student) in lab.students() {
        expand_student(lab, cohort, student, &mut nodes);
    }
    nodes
}

/// Addresses of the lab-wide AWS resources students depend on.
const NETWORK: &str = "network";
const ARTIFACTS: &str = "artifacts";
const INSTANCE_PROFILE: &str = "instance_profile";

/// Whether students get VMs (on AWS): they do when they get compute or workers.
fn has_vms(lab: &Lab) -> bool {
    lab.student.compute.is_some() || lab.student.workers.is_some()
}

/// The AWS resources the whole lab shares: the network, the artifacts bucket (worker
/// binaries and datasets, uploaded once) and the VMs' instance profile.
fn expand_aws_shared(lab: &Lab, tags: &Tags, nodes: &mut Vec<Node>) {
    let network = lab.network.as_ref();
    if has_vms(lab) || !lab.clusters.is_empty() {
        let config = json!({
            "name": lab.name,
            "cidr": network.and_then(|n| n.cidr.clone()).unwrap_or_else(|| "10.0.0.0/16".into()),
            "zones": network.and_then(|n| n.zones).unwrap_or(2),
        });
        nodes.push(node("aws", NETWORK, "network", config, tags, vec![]));
    }
    let datasets: serde_json::Map<String, Value> = lab
        .student
        .bucket
        .iter()
        .flat_map(|b| &b.datasets)
        .map(|d| (d.get_ref().clone(), json!(lab.datasets[d.get_ref()])))
        .collect();
    if has_vms(lab) || !datasets.is_empty() {
        let workers = lab.student.workers.is_some().then_some(env!("CARGO_PKG_VERSION"));
        let config = json!({ "name": artifacts_bucket(lab), "datasets": datasets, "workers": workers });
        nodes.push(node("aws", ARTIFACTS, "artifacts", config, tags, vec![]));
    }
    if has_vms(lab) {
        let config = json!({ "name": format!("{}-vm", lab.name), "artifacts": artifacts_bucket(lab) });
        nodes.push(node(
            "aws",
            INSTANCE_PROFILE,
            "instance_profile",
            config,
            tags,
            vec![ARTIFACTS.to_owned()],
        ));
    }
}

fn artifacts_bucket(lab: &Lab) -> String {
    format!("{}-artifacts", lab.name)
}

fn expand_student(lab: &Lab, cohort: &Cohort, student: &Student, nodes: &mut Vec<Node>) {
    let provider = lab.provider.name();
    let aws = matches!(lab.provider, ProviderConfig::Aws(_));
    let base = format!("student[\"{}\"]", student.id);
    let tags =
        Tags { lab: lab.name.clone(), cohort: Some(cohort.name.clone()), student: Some(student.id.clone()) };
    let s = &lab.student;
    let bucket_name = format!("{}-{}", lab.name, student.id);
    let credential = format!("{base}.credential");
    let namespace = format!("{base}.namespace");
    let kubernetes = matches!(lab.provider, ProviderConfig::Kubernetes(_));
    if kubernetes {
        expand_namespace(lab, cohort, student, &namespace, &tags, nodes);
    }
    if s.credentials.as_ref().is_none_or(|c| *c.get_ref()) {
        let (config, deps) = if aws {
            (
                json!({ "student": student.id, "user": bucket_name, "bucket": bucket_name, "artifacts": artifacts_bucket(lab) }),
                vec![],
            )
        } else if kubernetes {
            (
                json!({ "student": student.id, "namespace": namespace_name(lab, student) }),
                vec![namespace.clone()],
            )
        } else {
            (json!({ "student": student.id }), vec![])
        };
        nodes.push(node(provider, &credential, "credential", config, &tags, deps));
    }
    if let Some(bucket) = &s.bucket {
        let bucket_address = format!("{base}.bucket");
        nodes.push(node(provider, &bucket_address, "bucket", json!({ "name": bucket_name }), &tags, vec![]));
        for name in &bucket.datasets {
            let name = name.get_ref();
            let config = json!({ "bucket": bucket_name, "name": name, "dataset": lab.datasets[name] });
            let address = format!("{base}.dataset[\"{name}\"]");
            let mut deps = vec![bucket_address.clone()];
            if aws {
                deps.push(ARTIFACTS.to_owned());
            }
            nodes.push(node(provider, &address, "dataset", config, &tags, deps));
        }
    }
    let version = env!("CARGO_PKG_VERSION");
    if aws && has_vms(lab) {
        // On AWS the workers run on the student's VM, installed by its cloud-init.
        let firewall = format!("{base}.firewall");
        nodes.push(node(
            provider,
            &firewall,
            "firewall",
            json!({ "name": bucket_name }),
            &tags,
            vec![NETWORK.to_owned()],
        ));
        let compute = s.compute.as_ref();
        let image = compute.and_then(|c| c.image.clone());
        let workers = s.workers.as_ref();
        let config = json!({
            "name": bucket_name,
            "student": student.id,
            "instance_type": compute.and_then(|c| c.instance_type.clone()).unwrap_or_else(|| DEFAULT_INSTANCE_TYPE.into()),
            "disk_gb": compute.and_then(|c| c.disk_gb).unwrap_or(30),
            "image_owner": compute.and_then(|c| c.image_owner.clone()).or_else(|| image.is_none().then(|| DEFAULT_IMAGE_OWNER.into())),
            "image": image.unwrap_or_else(|| DEFAULT_IMAGE.into()),
            "ssh_keys": compute.map(|c| c.ssh_keys.iter().map(|k| k.get_ref().clone()).collect::<Vec<_>>()).filter(|k| !k.is_empty()),
            "mapreduce": workers.and_then(|w| w.mapreduce.as_ref()).map(|m| json!({ "workers": m.workers })),
            "scheduler": workers.and_then(|w| w.scheduler.as_ref()).map(|sch| json!({ "workers": sch.workers, "slots": sch.slots.unwrap_or(1) })),
            "version": version,
        });
        let deps = vec![
            NETWORK.to_owned(),
            firewall,
            INSTANCE_PROFILE.to_owned(),
            ARTIFACTS.to_owned(),
            credential.clone(),
        ];
        nodes.push(node(provider, &format!("{base}.vm"), "vm", config, &tags, deps));
    }
    if let Some(workers) = s.workers.as_ref().filter(|_| !aws) {
        // The workers' shared secret is the student's credential token.
        let mut deps = vec![credential];
        let k8s = |config: &mut Value, cpu: &Option<Spanned<String>>, memory: &Option<Spanned<String>>| {
            if let ProviderConfig::Kubernetes(settings) = &lab.provider {
                config["namespace"] = json!(namespace_name(lab, student));
                config["image"] = json!(settings.image);
                config["cpu"] = json!(quantity(cpu, k8s::WORKER_CPU));
                config["memory"] = json!(quantity(memory, k8s::WORKER_MEMORY));
            }
        };
        if kubernetes {
            deps.push(namespace);
        }
        if let Some(m) = &workers.mapreduce {
            let mut config = json!({ "student": student.id, "workers": m.workers, "version": version });
            k8s(&mut config, &m.cpu, &m.memory);
            if let ProviderConfig::Kubernetes(settings) = &lab.provider {
                // Its pods share the student's volume.
                config["storage_access"] =
                    json!(settings.storage.as_ref().and_then(|v| v.access).unwrap_or_default());
            }
            nodes.push(node(
                provider,
                &format!("{base}.mapreduce"),
                "mapreduce",
                config,
                &tags,
                deps.clone(),
            ));
        }
        if let Some(sch) = &workers.scheduler {
            let mut config = json!({ "student": student.id, "workers": sch.workers, "slots": sch.slots.unwrap_or(1), "version": version });
            k8s(&mut config, &sch.cpu, &sch.memory);
            if let Some(gpu) = gpu_placement(lab, cohort) {
                config["gpu"] = gpu;
            }
            nodes.push(node(provider, &format!("{base}.scheduler"), "scheduler", config, &tags, deps));
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

/// The student's namespace on Kubernetes, with its quota and limits.
fn expand_namespace(
    lab: &Lab,
    cohort: &Cohort,
    student: &Student,
    address: &str,
    tags: &Tags,
    nodes: &mut Vec<Node>,
) {
    let quota = lab.student.quota.as_ref();
    let limits = lab.student.limits.as_ref();
    let gpu_workers =
        lab.student.workers.as_ref().and_then(|w| w.scheduler.as_ref()).map_or(0, |s| s.workers);
    let storage = match &lab.provider {
        ProviderConfig::Kubernetes(settings) => settings.storage.clone().unwrap_or_default(),
        _ => Default::default(),
    };
    let config = json!({
        "namespace": namespace_name(lab, student),
        "quota": {
            "cpu": quantity(&quota.and_then(|q| q.cpu.clone()), k8s::QUOTA_CPU),
            "memory": quantity(&quota.and_then(|q| q.memory.clone()), k8s::QUOTA_MEMORY),
            "pods": quota.and_then(|q| q.pods).unwrap_or(k8s::QUOTA_PODS),
            "gpu": lab.gpus(cohort) * gpu_workers,
        },
        "limits": {
            "default_cpu": quantity(&limits.and_then(|l| l.default_cpu.clone()), k8s::DEFAULT_CPU),
            "default_memory": quantity(&limits.and_then(|l| l.default_memory.clone()), k8s::DEFAULT_MEMORY),
            "max_cpu": quantity(&limits.and_then(|l| l.max_cpu.clone()), k8s::MAX_CPU),
            "max_memory": quantity(&limits.and_then(|l| l.max_memory.clone()), k8s::MAX_MEMORY),
        },
        "storage": {
            "size": quantity(&storage.size, k8s::STORAGE),
            "class": storage.class,
            "access": storage.access.unwrap_or_default(),
        },
    });
    nodes.push(node(lab.provider.name(), address, "namespace", config, tags, vec![]));
}

fn namespace_name(lab: &Lab, student: &Student) -> String {
    format!("{}-{}", lab.name, student.id)
}

/// Where a cohort's GPU workers go on Kubernetes: how many GPUs each, and the labels of the
/// cluster's GPU pool (validation made sure there is one).
fn gpu_placement(lab: &Lab, cohort: &Cohort) -> Option<Value> {
    let count = lab.gpus(cohort);
    if count == 0 || !matches!(lab.provider, ProviderConfig::Kubernetes(_)) {
        return None;
    }
    let (name, pool) = lab.clusters.values().flat_map(|c| &c.node_pool).find(|(_, p)| p.gpu > 0)?;
    let selector = if pool.labels.is_empty() {
        [("labctl/pool".to_owned(), name.clone())].into()
    } else {
        pool.labels.clone()
    };
    Some(json!({ "count": count, "node_selector": selector }))
}

fn quantity(value: &Option<Spanned<String>>, default: &str) -> String {
    value.as_ref().map_or_else(|| default.to_owned(), |v| v.get_ref().clone())
}

/// VM defaults on AWS: a general-purpose instance and the newest Ubuntu LTS-style image
/// published by Canonical.
const DEFAULT_INSTANCE_TYPE: &str = "t3.large";
const DEFAULT_IMAGE: &str = "ubuntu/images/hvm-ssd*/ubuntu-*-amd64-server-*";
const DEFAULT_IMAGE_OWNER: &str = "099720109477";

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
