//! The GCP provider as a plugin: its `[provider.gcp]` settings, what a lab gets on GCP (a
//! network and an artifacts bucket when students get VMs; per student a bucket with the
//! datasets, a service account scoped to it, a firewall rule and a VM running their
//! workers), and what it refuses for now (clusters).

use std::path::Path;
use std::sync::Arc;

use labctl_provider_api::configs::bucket_nodes;
use labctl_provider_api::lab::{Cohort, Lab, LabSections, Student};
use labctl_provider_api::{
    Address, Capabilities, Connected, Endpoints, Findings, Node, Plugin, ProviderSetup, Settings,
    StudentResources,
};
use labctl_provider_vm::smoke::SshRunner;
use labctl_provider_vm::ssh::{Ssh, SshClient};
use labctl_provider_vm::{has_vms, services, ssh_cidrs, warn_open_ssh};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::clients::{ApiEndpoints, Clients, GcpConfig};
use crate::compute::{FirewallConfig, GceStates, NetworkConfig, VmConfig};
use crate::identity::{account_id, CredentialConfig};
use crate::storage::ArtifactsConfig;
use crate::GcpProvider;

/// `[provider.gcp]`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GcpSettings {
    /// The project the lab lives in.
    pub project: String,
    /// Where buckets and the network's subnet go, e.g. `europe-west1`.
    pub region: String,
    /// Where VMs go (default: zone `b` of the region, e.g. `europe-west1-b`).
    pub zone: Option<String>,
    /// A service-account key file (default: Application Default Credentials).
    pub credentials: Option<String>,
    /// API endpoint overrides (emulators).
    #[serde(default)]
    pub endpoints: ApiEndpoints,
    /// Maximum provider requests per second (default: unlimited).
    pub rate_limit: Option<f64>,
    /// An ssh_config for reaching the students' VMs (bastions, ProxyJump); by default
    /// OpenSSH reads the user's own ~/.ssh/config.
    pub ssh_config: Option<String>,
}

/// VM defaults on GCP: a general-purpose machine and Ubuntu 24.04, whose images run
/// cloud-init from the `user-data` metadata (Debian's GCE images have no cloud-init).
const DEFAULT_MACHINE_TYPE: &str = "e2-standard-2";
const DEFAULT_IMAGE: &str = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64";

/// Addresses of the lab-wide resources students' VMs depend on.
const NETWORK: &str = "network";
const ARTIFACTS: &str = "artifacts";

/// The GCP provider's plugin.
pub struct GcpPlugin;

impl Plugin for GcpPlugin {
    fn name(&self) -> &'static str {
        "gcp"
    }

    fn settings_schema(&self) -> Value {
        serde_json::to_value(schemars::schema_for!(GcpSettings)).unwrap_or_default()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { key_rotation: true, archive: true, ..Capabilities::default() }
    }

    fn configure(
        &self,
        settings: &Settings<'_>,
        lab: &LabSections<'_>,
        findings: &mut Findings,
    ) -> Option<Box<dyn ProviderSetup>> {
        let allowed = "allowed on gcp for now: [student] bucket, credentials, compute and workers (on VMs)";
        let kubernetes = lab.student.kubernetes.as_ref().map(|k| k.cluster.span());
        let unsupported = [
            (!lab.clusters.is_empty(), lab.spans.cluster.clone(), "clusters"),
            (kubernetes.is_some(), kubernetes, "students on a cluster"),
        ];
        for (_, span, what) in unsupported.into_iter().filter(|(asked, _, _)| *asked) {
            let message = format!("the gcp provider cannot make {what} yet");
            findings.errors.push(lab.error(span.unwrap_or(0..0), message, allowed));
        }
        if lab.student.compute.as_ref().is_some_and(|c| c.image_owner.is_some()) {
            findings.errors.push(lab.error(
                lab.spans.compute.clone().unwrap_or(0..0),
                "`image_owner` is for AWS images",
                "on gcp: image = \"projects/<project>/global/images/family/<family>\" (or an image's own path)",
            ));
        }
        warn_open_ssh(lab.student, findings);
        let gcp: GcpSettings = settings.parse_into(self.name(), findings)?;
        if !valid_project(&gcp.project) {
            findings.errors.push(lab.error(
                settings.span.clone(),
                format!("`{}` is not a GCP project id", gcp.project),
                "allowed: 6 to 30 lowercase letters, digits and hyphens, starting with a letter",
            ));
            return None;
        }
        Some(Box::new(GcpSetup {
            config: GcpConfig {
                project: gcp.project,
                zone: gcp.zone.unwrap_or_else(|| format!("{}-b", gcp.region)),
                region: gcp.region,
                credentials: gcp.credentials.map(|c| settings.path_beside(&c)),
                endpoints: gcp.endpoints,
            },
            rate_limit: gcp.rate_limit,
            ssh: Ssh {
                config: gcp.ssh_config.map(|c| settings.path_beside(&c)),
                known_hosts_dir: settings.path_beside(".labctl"),
            },
        }))
    }

    fn restore(&self, saved: Value) -> Result<Box<dyn ProviderSetup>, String> {
        serde_json::from_value::<GcpSetup>(saved).map(|s| Box::new(s) as _).map_err(|e| e.to_string())
    }
}

fn valid_project(id: &str) -> bool {
    (6..=30).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The GCP provider configured for one lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GcpSetup {
    /// How it reaches GCP.
    pub config: GcpConfig,
    /// Requests per second allowed, if limited.
    pub rate_limit: Option<f64>,
    /// How labctl reaches the VMs.
    pub ssh: Ssh,
}

impl ProviderSetup for GcpSetup {
    fn name(&self) -> &'static str {
        "gcp"
    }

    fn rate_limit(&self) -> Option<f64> {
        self.rate_limit
    }

    /// The network and the artifacts bucket (the worker binaries) when students get VMs.
    fn expand_shared(&self, lab: &Lab) -> Vec<Node> {
        if !has_vms(&lab.student) {
            return vec![];
        }
        let tags = lab.lab_tags();
        let cidr = lab.network.as_ref().and_then(|n| n.cidr.clone());
        let network =
            NetworkConfig { name: lab.name.clone(), cidr: cidr.unwrap_or_else(|| "10.0.0.0/16".into()) };
        let mut nodes = vec![Node::new("gcp", NETWORK, "network", &network, &tags, vec![])];
        if lab.student.workers.is_some() {
            let artifacts =
                ArtifactsConfig { name: artifacts_bucket(lab), workers: env!("CARGO_PKG_VERSION").into() };
            nodes.push(Node::new("gcp", ARTIFACTS, "artifacts", &artifacts, &tags, vec![]));
        }
        nodes
    }

    fn expand_student(&self, lab: &Lab, cohort: &Cohort, student: &Student) -> Vec<Node> {
        let mut nodes = bucket_nodes("gcp", lab, cohort, student, &[]);
        let base = Address::student(&student.id);
        let tags = lab.tags(cohort, student);
        let name = lab.resource_name(student);
        let bucket = lab.student.bucket.is_some().then(|| base.child("bucket").to_string());
        let credential = base.child("credential");
        if lab.credentials() && (bucket.is_some() || has_vms(&lab.student)) {
            // Its grant is on the bucket.
            let config = CredentialConfig {
                student: student.id.clone(),
                account: account_id(&lab.name, &student.id),
                bucket: bucket.is_some().then(|| name.clone()),
            };
            let deps = bucket.iter().cloned().collect();
            nodes.push(Node::new("gcp", credential.clone(), "credential", &config, &tags, deps));
        }
        if has_vms(&lab.student) {
            // The workers run on the student's VM, installed by its cloud-init.
            let firewall = base.child("firewall");
            let config = FirewallConfig {
                name: compute_name(&name, "-ssh"),
                target: compute_name(&name, ""),
                ssh_cidrs: ssh_cidrs(&lab.student),
            };
            nodes.push(Node::new("gcp", firewall.clone(), "firewall", &config, &tags, vec![NETWORK.into()]));
            let compute = lab.student.compute.as_ref();
            let (mapreduce, scheduler) = services(lab);
            let config = VmConfig {
                name: compute_name(&name, ""),
                student: student.id.clone(),
                machine_type: compute
                    .and_then(|c| c.instance_type.clone())
                    .unwrap_or_else(|| DEFAULT_MACHINE_TYPE.into()),
                disk_gb: compute.and_then(|c| c.disk_gb).unwrap_or(30),
                image: compute.and_then(|c| c.image.clone()).unwrap_or_else(|| DEFAULT_IMAGE.into()),
                ssh_keys: compute
                    .map(|c| c.ssh_keys.iter().map(|k| k.get_ref().clone()).collect::<Vec<_>>())
                    .filter(|k| !k.is_empty()),
                mapreduce,
                scheduler,
                version: env!("CARGO_PKG_VERSION").to_owned(),
            };
            let mut deps = vec![NETWORK.to_owned(), firewall.to_string(), credential.to_string()];
            if lab.student.workers.is_some() {
                deps.push(ARTIFACTS.to_owned());
            }
            nodes.push(Node::new("gcp", base.child("vm"), "vm", &config, &tags, deps));
        }
        nodes
    }

    /// The smoke workloads run on each student's VM, over SSH as that student.
    fn connect(&self, lab: &str, bin_dir: &Path) -> Connected {
        let clients = Arc::new(Clients::new(self.config.clone()));
        let ssh = Arc::new(SshClient::new(&self.ssh, lab, Arc::new(GceStates(clients.clone()))));
        Connected {
            provider: Arc::new(GcpProvider { clients, bin_dir: bin_dir.to_owned(), ssh: ssh.clone() }),
            hosted: vec![],
            smoke: Ok(Arc::new(SshRunner::new(ssh))),
        }
    }

    /// Their bucket and datasets, the service account and key that open them, and their VM.
    fn endpoints(&self, student: &StudentResources) -> Endpoints {
        let attr = |what: &str, key: &str| student.attr(what, key).map(str::to_owned);
        let mut endpoints = labctl_provider_vm::endpoints(student);
        endpoints.bucket = attr("bucket", "url");
        endpoints.datasets = student.dataset_paths();
        if let Some(email) = attr("credential", "email") {
            let access = json!({
                "project": self.config.project,
                "service_account": email,
                "key": attr("credential", "key"),
            });
            endpoints.access.insert("gcp".to_owned(), access);
        }
        endpoints
    }

    /// A VM's name, address and state as last seen.
    fn describe(&self, student: &StudentResources) -> Vec<(String, String)> {
        labctl_provider_vm::describe(student).into_iter().collect()
    }
}

/// A Compute Engine name (at most 63 characters) for `base` and `suffix`: as they are when
/// they fit, else `base` shortened and told apart by its hash.
fn compute_name(base: &str, suffix: &str) -> String {
    const MAX: usize = 63;
    if base.len() + suffix.len() <= MAX {
        return format!("{base}{suffix}");
    }
    let kept: String = base.chars().take(MAX - suffix.len() - 5).collect();
    format!("{}-{}{suffix}", kept.trim_end_matches('-'), &labctl_provider_api::sha256(base.as_bytes())[..4])
}

/// The lab's artifacts bucket: the worker binaries.
fn artifacts_bucket(lab: &Lab) -> String {
    format!("{}-artifacts", lab.name)
}

#[cfg(test)]
mod tests {
    use super::compute_name;

    #[test]
    fn compute_names_fit_in_63_characters_and_stay_apart() {
        assert_eq!(compute_name("bigdata-ada", "-ssh"), "bigdata-ada-ssh");
        let long = format!("a-lab-with-a-long-name-{}", "x".repeat(40));
        let (vm, rule) = (compute_name(&long, ""), compute_name(&long, "-ssh"));
        assert!(vm.len() <= 63 && rule.len() <= 63, "{vm} {rule}");
        assert!(rule.ends_with("-ssh") && rule.starts_with("a-lab-with"), "{rule}");
        assert_ne!(compute_name(&format!("{long}1"), ""), compute_name(&format!("{long}2"), ""));
    }
}
