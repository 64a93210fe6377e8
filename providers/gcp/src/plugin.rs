//! The GCP provider as a plugin: its `[provider.gcp]` settings, what a lab gets on GCP (a
//! network when students get VMs or the lab has clusters, an artifacts bucket when VMs run
//! the workers, GKE clusters with their node pools; per student a bucket with the datasets,
//! a service account scoped to it, and a firewall rule and a VM running their workers, or a
//! namespace on one of the lab's clusters, `[student] kubernetes`, where the Kubernetes
//! provider runs their workers).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use labctl_provider_api::configs::bucket_nodes;
use labctl_provider_api::lab::{Cohort, Lab, LabSections, Student};
use labctl_provider_api::{
    Address, Capabilities, Connected, Endpoints, Findings, Node, Plugin, ProviderSetup, Settings,
    StudentResources,
};
use labctl_provider_kubernetes::{Addons, CloudSecret, HostedCluster, StorageClassConfig};
use labctl_provider_vm::notebook::{self, NotebookStackConfig};
use labctl_provider_vm::smoke::SshRunner;
use labctl_provider_vm::ssh::{Ssh, SshClient};
use labctl_provider_vm::{notebook_service, services, ssh_cidrs, vm_workers, warn_open_ssh};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::clients::{ApiEndpoints, Clients, GcpConfig};
use crate::compute::{FirewallConfig, GceStates, NetworkConfig, VmConfig};
use crate::gke::{accelerator, gpu_count_problem, ClusterConfig, NodePoolConfig, MAX_CLUSTER_NAME};
use crate::gke_access::GkeAccess;
use crate::identity::{account_id, workload_environment, CredentialConfig};
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
        Capabilities {
            gpus: true,
            key_rotation: true,
            smoke_data_generated: true,
            archive: true,
            hosts_kubernetes: true,
            notebooks: true,
        }
    }

    fn configure(
        &self,
        settings: &Settings<'_>,
        lab: &LabSections<'_>,
        findings: &mut Findings,
    ) -> Option<Box<dyn ProviderSetup>> {
        for (cluster, pools) in lab.clusters {
            for (pool, p) in pools.node_pool.iter().filter(|(_, p)| p.gpu > 0) {
                let machine_type = p.instance_type.get_ref();
                let problem = match accelerator(machine_type) {
                    None => Some("a machine type GKE attaches no GPUs to".to_owned()),
                    Some(_) => gpu_count_problem(machine_type, p.gpu),
                };
                if let Some(problem) = problem {
                    findings.errors.push(lab.error(
                        p.instance_type.span(),
                        format!(
                            "[cluster.{cluster}.node_pool.{pool}] asks for {} GPU(s) a node on `{}`: {problem}",
                            p.gpu, machine_type
                        ),
                        "GPUs on gcp: an n1 machine type (NVIDIA T4), g2 (L4), a2 (A100) or a3 (H100)",
                    ));
                }
            }
        }
        // The MapReduce pods read and write the student's bucket with their key.
        let hosted = HostedCluster::configure(lab, BUCKET_ACCESS, findings);
        notebook::refuse_on_cluster(lab, hosted.as_ref().map(|h| h.cluster.as_str()), findings);
        if lab.student.compute.as_ref().is_some_and(|c| c.image_owner.is_some()) {
            findings.errors.push(lab.error(
                lab.spans.compute.clone().unwrap_or(0..0),
                "`image_owner` is for AWS images",
                "on gcp: image = \"projects/<project>/global/images/family/<family>\" (or an image's own path)",
            ));
        }
        warn_open_ssh(lab, findings);
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
            hosted,
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
    /// Where students' namespaces go, if on one of the lab's clusters.
    #[serde(default)]
    pub hosted: Option<HostedCluster>,
}

/// The Secret with a student's key in their namespace on the lab's cluster.
const BUCKET_ACCESS: &str = "gcp-credentials";

/// The default StorageClass labctl makes on a cluster students are on.
const STORAGE_CLASS: &str = "labctl-pd-balanced";

/// The provisioner of GKE's persistent-disk CSI driver.
const PD_CSI_PROVISIONER: &str = "pd.csi.storage.gke.io";

/// The GKE name of the lab's `[cluster.<cluster>]`.
fn gke_name(lab: &str, cluster: &str) -> String {
    fitted_name(&format!("{lab}-{cluster}"), "", MAX_CLUSTER_NAME)
}

impl ProviderSetup for GcpSetup {
    fn name(&self) -> &'static str {
        "gcp"
    }

    fn rate_limit(&self) -> Option<f64> {
        self.rate_limit
    }

    /// The notebooks' wheelhouse is built here, for this machine's Python.
    fn preflight(&self, lab: &Lab, _bin_dir: &Path) -> Result<Vec<String>, String> {
        let machine_type = lab.student.compute.as_ref().and_then(|c| c.instance_type.as_deref());
        // Arm machines: Tau T2A and the Axion families.
        let arm = ["t2a-", "c4a-", "n4a-"]
            .iter()
            .any(|f| machine_type.unwrap_or(DEFAULT_MACHINE_TYPE).starts_with(f));
        notebook::preflight(lab, if arm { "aarch64" } else { "x86_64" }, &image(lab))
    }

    /// The network when students get VMs or the lab has clusters, the artifacts bucket (the
    /// worker binaries) when VMs run the workers, and the clusters with their node pools.
    fn expand_shared(&self, lab: &Lab) -> Vec<Node> {
        let vms = lab.any_vms();
        if !vms && lab.clusters.is_empty() {
            return vec![];
        }
        let tags = lab.lab_tags();
        let cidr = lab.network.as_ref().and_then(|n| n.cidr.clone());
        let network =
            NetworkConfig { name: lab.name.clone(), cidr: cidr.unwrap_or_else(|| "10.0.0.0/16".into()) };
        let mut nodes = vec![Node::new("gcp", NETWORK, "network", &network, &tags, vec![])];
        let stack = NotebookStackConfig::of(lab, &artifacts_bucket(lab));
        if vms && (vm_workers(lab) || stack.is_some()) {
            let artifacts = ArtifactsConfig {
                name: artifacts_bucket(lab),
                workers: vm_workers(lab).then(|| env!("CARGO_PKG_VERSION").into()),
            };
            nodes.push(Node::new("gcp", ARTIFACTS, "artifacts", &artifacts, &tags, vec![]));
        }
        if let Some(stack) = stack {
            let deps = vec![ARTIFACTS.to_owned()];
            nodes.push(Node::new("gcp", notebook::ADDRESS, "notebook_stack", &stack, &tags, deps));
        }
        for (name, cluster) in &lab.clusters {
            let address = Address::top("cluster", name);
            let config = ClusterConfig { name: gke_name(&lab.name, name), version: cluster.version.clone() };
            nodes.push(Node::new(
                "gcp",
                address.clone(),
                "cluster",
                &config,
                &tags,
                vec![NETWORK.to_owned()],
            ));
            // GKE changes a cluster one operation at a time: its pools one after another.
            let mut previous: Option<String> = None;
            for (pool, p) in &cluster.node_pool {
                let config = NodePoolConfig {
                    cluster: name.clone(),
                    name: pool.clone(),
                    machine_type: p.instance_type.get_ref().clone(),
                    min: p.min,
                    max: *p.max.get_ref(),
                    desired: p.desired.as_ref().map(|d| *d.get_ref()),
                    gpu: p.gpu,
                    accelerator: (p.gpu > 0)
                        .then(|| accelerator(p.instance_type.get_ref()))
                        .flatten()
                        .map(str::to_owned),
                    labels: p.selector(pool),
                };
                let pool_address = address.keyed("node_pool", pool).to_string();
                let mut node = Node::new(
                    "gcp",
                    pool_address.clone(),
                    "node_pool",
                    &config,
                    &tags,
                    vec![address.to_string()],
                );
                node.after.extend(previous.replace(pool_address));
                nodes.push(node);
            }
        }
        if let Some(hosted) = &self.hosted {
            let storage_class = StorageClassConfig {
                name: STORAGE_CLASS.to_owned(),
                provisioner: PD_CSI_PROVISIONER.to_owned(),
                // The disks it makes carry the lab's label (`gcloud compute disks list
                // --filter labels.labctl-lab=<lab>` finds any a deleted cluster left).
                parameters: BTreeMap::from([
                    ("type".to_owned(), "pd-balanced".to_owned()),
                    ("labels".to_owned(), format!("labctl-lab={}", lab.name)),
                ]),
            };
            // GKE runs the NVIDIA device plugin on its GPU nodes itself.
            nodes.push(hosted.addons(lab, Addons { storage_class, device_plugin: false }));
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
        if lab.credentials() && (bucket.is_some() || lab.on_vms(cohort)) {
            // Its grant is on the bucket.
            let config = CredentialConfig {
                student: student.id.clone(),
                account: account_id(&lab.name, &student.id),
                bucket: bucket.is_some().then(|| name.clone()),
            };
            let deps = bucket.iter().cloned().collect();
            nodes.push(Node::new("gcp", credential.clone(), "credential", &config, &tags, deps));
        }
        if let Some(hosted) = self.hosted.as_ref().filter(|_| lab.on_cluster(cohort)) {
            let bucket = lab.student.bucket.is_some().then_some(name.as_str());
            let secret = CloudSecret {
                values: workload_environment(
                    &self.config.project,
                    self.config.endpoints.storage.as_deref(),
                    bucket,
                ),
                // object_store (the MapReduce workers') reads the key itself from there.
                from: BTreeMap::from([("GOOGLE_SERVICE_ACCOUNT_KEY".to_owned(), "key".to_owned())]),
            };
            nodes.extend(hosted.expand_student(lab, cohort, student, Some(secret)));
        }
        if lab.on_vms(cohort) {
            // The student's VM; its cloud-init installs and runs their workers.
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
                image: image(lab),
                ssh_keys: compute
                    .map(|c| c.ssh_keys.iter().map(|k| k.get_ref().clone()).collect::<Vec<_>>())
                    .filter(|k| !k.is_empty()),
                mapreduce,
                scheduler,
                notebook: notebook_service(lab),
                version: env!("CARGO_PKG_VERSION").to_owned(),
            };
            let mut deps = vec![NETWORK.to_owned(), firewall.to_string(), credential.to_string()];
            if vm_workers(lab) {
                deps.push(ARTIFACTS.to_owned());
            }
            if config.notebook.is_some() {
                deps.extend(notebook::vm_deps(lab, &student.id));
            }
            nodes.push(Node::new("gcp", base.child("vm"), "vm", &config, &tags, deps));
        }
        nodes
    }

    /// The smoke workloads run on each student's VM, over SSH as that student, or as Jobs in
    /// their namespace on the lab's cluster.
    fn connect(&self, lab: &str, bin_dir: &Path) -> Connected {
        let clients = Arc::new(Clients::new(self.config.clone()));
        let ssh = Arc::new(SshClient::new(&self.ssh, lab, Arc::new(GceStates(clients.clone()))));
        let access = |h: &HostedCluster| {
            let name = gke_name(lab, &h.cluster);
            let id = crate::gke::cluster_id(&self.config.zone, &name);
            Arc::new(GkeAccess { clients: clients.clone(), id, name }) as _
        };
        let vms = || Arc::new(SshRunner::new(ssh.clone())) as _;
        let (hosted, smoke) = HostedCluster::connect(self.hosted.as_ref(), lab, access, vms);
        Connected {
            // Beside the lab's pinned host keys (`.labctl/` beside the lab file).
            provider: Arc::new(GcpProvider {
                clients,
                bin_dir: bin_dir.to_owned(),
                ssh,
                python_dir: self.ssh.known_hosts_dir.join(format!("{lab}.python")),
            }),
            hosted,
            smoke: Ok(smoke),
        }
    }

    /// Their bucket and datasets, the service account and key that open them, and their VM
    /// or their namespace.
    fn endpoints(&self, student: &StudentResources) -> Endpoints {
        HostedCluster::endpoints(self.hosted.as_ref(), student, self.own_endpoints(student))
    }

    /// The namespace on the lab's cluster; a VM's name, address and state as last seen.
    fn describe(&self, student: &StudentResources) -> Vec<(String, String)> {
        let vm = labctl_provider_vm::describe(student).into_iter().collect();
        HostedCluster::describe(self.hosted.as_ref(), student, vm)
    }
}

impl GcpSetup {
    /// A student's bucket, datasets, key and VM.
    fn own_endpoints(&self, student: &StudentResources) -> Endpoints {
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
}

/// The students' VMs' boot image: the lab's, or Ubuntu 24.04 LTS.
fn image(lab: &Lab) -> String {
    let compute = lab.student.compute.as_ref();
    compute.and_then(|c| c.image.clone()).unwrap_or_else(|| DEFAULT_IMAGE.into())
}

/// A Compute Engine name (at most 63 characters) for `base` and `suffix`.
fn compute_name(base: &str, suffix: &str) -> String {
    fitted_name(base, suffix, 63)
}

/// A name of at most `max` characters for `base` and `suffix`: as they are when they fit,
/// else `base` shortened and told apart by its hash.
fn fitted_name(base: &str, suffix: &str, max: usize) -> String {
    if base.len() + suffix.len() <= max {
        return format!("{base}{suffix}");
    }
    let kept: String = base.chars().take(max - suffix.len() - 5).collect();
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
