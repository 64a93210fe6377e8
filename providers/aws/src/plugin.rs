//! The AWS provider as a plugin: its `[provider.aws]` settings, what a lab gets on AWS (a
//! network, an artifacts bucket, an instance profile, clusters; per student a credential,
//! a bucket with datasets, a firewall and a VM whose cloud-init runs their workers, or a
//! namespace on one of the lab's clusters, `[student] kubernetes`, where the Kubernetes
//! provider runs their workers), and the S3 state backend.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use labctl_provider_api::configs::bucket_nodes;
use labctl_provider_api::cost::{Billed, PriceTable};
use labctl_provider_api::lab::{Cohort, Lab, LabSections, Student};
use labctl_provider_api::{
    Address, Capabilities, Connected, Endpoints, Findings, Node, Plugin, ProviderSetup, RemoteState,
    ResourceSpec, Settings, StudentResources,
};
use labctl_provider_kubernetes::{Addons, CloudSecret, HostedCluster, StorageClassConfig};
use labctl_provider_vm::cloud_init::{MapReduce, Scheduler};
use labctl_provider_vm::notebook::{self, NotebookStackConfig};
use labctl_provider_vm::smoke::SshRunner;
use labctl_provider_vm::ssh::{Ssh, SshClient};
use labctl_provider_vm::{
    notebook_service, services, ssh_cidrs, vm_workers, warn_open_ssh, NotebookService, WORKER_BINARIES,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::clients::Clients;
use crate::compute::Ec2States;
use crate::eks::EBS_CSI_PROVISIONER;
use crate::eks_access::EksAccess;
use crate::platform::{self, Arch};
use crate::state::{S3Object, S3Settings};
use crate::{AwsConfig, AwsProvider, DEFAULT_CONCURRENCY};

/// `[provider.aws]`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    pub region: String,
    /// API endpoint override (an emulator, LocalStack).
    pub endpoint: Option<String>,
    pub profile: Option<String>,
    /// Maximum provider requests per second (default: unlimited; AWS throttling is retried).
    pub rate_limit: Option<f64>,
    /// Requests in flight per AWS service (EC2, S3, IAM, EKS); default 16.
    pub concurrency: Option<usize>,
    /// An ssh_config for reaching the students' VMs (bastions, ProxyJump); by default
    /// OpenSSH reads the user's own ~/.ssh/config.
    pub ssh_config: Option<String>,
}

/// VM defaults on AWS: a general-purpose instance and Ubuntu 24.04 published by Canonical
/// (see `platform::default_image`).
const DEFAULT_INSTANCE_TYPE: &str = "t3.large";
const DEFAULT_IMAGE_OWNER: &str = "099720109477";

/// Addresses of the lab-wide resources students depend on.
const NETWORK: &str = "network";
const ARTIFACTS: &str = "artifacts";
const INSTANCE_PROFILE: &str = "instance_profile";

/// The AWS provider's plugin.
pub struct AwsPlugin;

impl Plugin for AwsPlugin {
    fn name(&self) -> &'static str {
        "aws"
    }

    fn settings_schema(&self) -> Value {
        serde_json::to_value(schemars::schema_for!(AwsSettings)).unwrap_or_default()
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

    /// The SDK warns about every credential source it tries; labctl reports the outcome.
    fn quiet_log_targets(&self) -> &'static [&'static str] {
        &["aws_config", "aws_smithy_runtime"]
    }

    fn configure(
        &self,
        settings: &Settings<'_>,
        lab: &LabSections<'_>,
        findings: &mut Findings,
    ) -> Option<Box<dyn ProviderSetup>> {
        warn_open_ssh(lab, findings);
        if let Some(compute) = &lab.student.compute {
            let pattern = compute.image.as_ref().filter(|i| !i.starts_with("ami-"));
            if let (Some(pattern), None) = (pattern, &compute.image_owner) {
                findings.warnings.push(format!(
                    "[student.compute] image `{pattern}` is a name pattern without `image_owner`: anyone can publish an image by that name; set image_owner (an account id, or \"amazon\")"
                ));
            }
        }
        // The MapReduce pods read and write the student's bucket with their key.
        let hosted = HostedCluster::configure(lab, BUCKET_ACCESS, findings);
        notebook::refuse_on_cluster(lab, hosted.as_ref().map(|h| h.cluster.as_str()), findings);
        let aws: AwsSettings = settings.parse_into(self.name(), findings)?;
        Some(Box::new(AwsSetup {
            hosted,
            config: AwsConfig {
                region: aws.region,
                endpoint: aws.endpoint,
                profile: aws.profile,
                concurrency: aws.concurrency.unwrap_or(DEFAULT_CONCURRENCY),
            },
            rate_limit: aws.rate_limit,
            ssh: Ssh {
                config: aws.ssh_config.map(|c| settings.path_beside(&c)),
                known_hosts_dir: settings.path_beside(".labctl"),
            },
        }))
    }

    fn restore(&self, saved: Value) -> Result<Box<dyn ProviderSetup>, String> {
        serde_json::from_value::<AwsSetup>(saved).map(|s| Box::new(s) as _).map_err(|e| e.to_string())
    }

    /// `s3://bucket/key`, reached with the lab's AWS settings if it is on AWS, else with the
    /// standard AWS chain.
    fn remote_state(
        &self,
        url: &str,
        lab: &dyn ProviderSetup,
    ) -> Option<Result<Arc<dyn RemoteState>, String>> {
        let (bucket, key) = S3Object::parse(url)?;
        let settings = match lab.as_any().downcast_ref::<AwsSetup>() {
            Some(aws) => S3Settings {
                region: Some(aws.config.region.clone()),
                endpoint: aws.config.endpoint.clone(),
                profile: aws.config.profile.clone(),
            },
            None => S3Settings::default(),
        };
        Some(Ok(Arc::new(S3Object::connect(bucket, key, &settings))))
    }
}

/// The AWS provider configured for one lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AwsSetup {
    pub config: AwsConfig,
    pub rate_limit: Option<f64>,
    pub ssh: Ssh,
    /// Where students' namespaces go, if on one of the lab's clusters.
    #[serde(default)]
    pub hosted: Option<HostedCluster>,
}

/// The Secret with a student's AWS key in their namespace on the lab's cluster.
const BUCKET_ACCESS: &str = "aws-credentials";

/// The default StorageClass labctl makes on a cluster students are on.
const STORAGE_CLASS: &str = "labctl-gp3";

/// The EKS name of the lab's `[cluster.<cluster>]`.
fn eks_name(lab: &str, cluster: &str) -> String {
    format!("{lab}-{cluster}")
}

/// The lab's VPC.
#[derive(Debug, Serialize, Deserialize)]
pub struct NetworkConfig {
    pub name: String,
    pub cidr: String,
    pub zones: u32,
}

/// The lab's artifacts bucket: worker binaries and datasets, uploaded once.
#[derive(Debug, Serialize, Deserialize)]
pub struct ArtifactsConfig {
    pub name: String,
    pub datasets: BTreeMap<String, labctl_provider_api::lab::Dataset>,
    /// The workers' version, when students get workers.
    pub workers: Option<String>,
}

/// The VMs' IAM role and instance profile.
#[derive(Debug, Serialize, Deserialize)]
pub struct InstanceProfileConfig {
    pub name: String,
    pub artifacts: String,
}

/// An EKS cluster.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterConfig {
    pub name: String,
    pub version: Option<String>,
}

/// An EKS managed node group.
#[derive(Debug, Serialize, Deserialize)]
pub struct NodePoolConfig {
    pub cluster: String,
    pub name: String,
    pub instance_type: String,
    pub min: u32,
    pub max: u32,
    /// Nodes to run, when the lab file says (else the autoscaler's choice stays).
    pub desired: Option<u32>,
    pub gpu: u32,
    /// The node labels that select the pool.
    pub labels: BTreeMap<String, String>,
}

/// A student's IAM user, access key and worker token.
#[derive(Debug, Serialize, Deserialize)]
pub struct CredentialConfig {
    pub student: String,
    pub user: String,
    pub bucket: String,
    pub artifacts: String,
}

/// A student's security group.
#[derive(Debug, Serialize, Deserialize)]
pub struct FirewallConfig {
    pub name: String,
    /// Where SSH may come from.
    pub ssh_cidrs: Vec<String>,
}

/// A student's VM, whose cloud-init installs and runs their workers.
#[derive(Debug, Serialize, Deserialize)]
pub struct VmConfig {
    pub name: String,
    pub student: String,
    pub instance_type: String,
    pub disk_gb: u32,
    pub image_owner: Option<String>,
    pub image: String,
    pub ssh_keys: Option<Vec<String>>,
    pub mapreduce: Option<MapReduce>,
    pub scheduler: Option<Scheduler>,
    /// The student's notebook service, installed from the lab's notebook stack (absent
    /// without: a VM recorded before notebooks existed keeps its config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notebook: Option<NotebookService>,
    pub version: String,
}

impl AwsSetup {
    fn instance_type(lab: &Lab) -> String {
        let compute = lab.student.compute.as_ref();
        compute.and_then(|c| c.instance_type.clone()).unwrap_or_else(|| DEFAULT_INSTANCE_TYPE.into())
    }

    /// The lab's image, or Ubuntu 24.04 for the instance type's CPU.
    fn image(lab: &Lab) -> String {
        let image = lab.student.compute.as_ref().and_then(|c| c.image.clone());
        image.unwrap_or_else(|| platform::default_image(Arch::of_instance_type(&Self::instance_type(lab))))
    }

    fn artifacts_bucket(lab: &Lab) -> String {
        format!("{}-artifacts", lab.name)
    }
}

impl ProviderSetup for AwsSetup {
    fn name(&self) -> &'static str {
        "aws"
    }

    fn rate_limit(&self) -> Option<f64> {
        self.rate_limit
    }

    /// The worker binaries must run on the VMs: their CPU, and the image's glibc.
    /// The wheelhouse is built here, for this machine's Python.
    fn preflight(&self, lab: &Lab, bin_dir: &Path) -> Result<Vec<String>, String> {
        let arch = Arch::of_instance_type(&Self::instance_type(lab));
        let mut warnings = notebook::preflight(lab, arch.rust_name(), &Self::image(lab))?;
        if vm_workers(lab) {
            warnings.extend(platform::check(
                bin_dir,
                &WORKER_BINARIES,
                &Self::instance_type(lab),
                &Self::image(lab),
            )?);
        }
        Ok(warnings)
    }

    /// The network, the artifacts bucket, the VMs' instance profile, and the clusters.
    fn expand_shared(&self, lab: &Lab) -> Vec<Node> {
        let mut nodes = vec![];
        let tags = lab.lab_tags();
        let network = lab.network.as_ref();
        let vms = lab.any_vms();
        if vms || !lab.clusters.is_empty() {
            let config = NetworkConfig {
                name: lab.name.clone(),
                cidr: network.and_then(|n| n.cidr.clone()).unwrap_or_else(|| "10.0.0.0/16".into()),
                zones: network.and_then(|n| n.zones).unwrap_or(2),
            };
            nodes.push(Node::new("aws", NETWORK, "network", &config, &tags, vec![]));
        }
        let datasets: BTreeMap<String, _> =
            lab.seeded().map(|d| (d.to_owned(), lab.datasets[d].clone())).collect();
        if vms || !datasets.is_empty() {
            // The VMs install the workers from it.
            let workers = vm_workers(lab).then(|| env!("CARGO_PKG_VERSION").to_owned());
            let config = ArtifactsConfig { name: Self::artifacts_bucket(lab), datasets, workers };
            nodes.push(Node::new("aws", ARTIFACTS, "artifacts", &config, &tags, vec![]));
        }
        if let Some(config) = NotebookStackConfig::of(lab, &Self::artifacts_bucket(lab)) {
            let deps = vec![ARTIFACTS.to_owned()];
            nodes.push(Node::new("aws", notebook::ADDRESS, "notebook_stack", &config, &tags, deps));
        }
        if vms {
            let config = InstanceProfileConfig {
                name: format!("{}-vm", lab.name),
                artifacts: Self::artifacts_bucket(lab),
            };
            nodes.push(Node::new(
                "aws",
                INSTANCE_PROFILE,
                "instance_profile",
                &config,
                &tags,
                vec![ARTIFACTS.to_owned()],
            ));
        }
        for (name, cluster) in &lab.clusters {
            let address = Address::top("cluster", name);
            let config = ClusterConfig { name: eks_name(&lab.name, name), version: cluster.version.clone() };
            nodes.push(Node::new(
                "aws",
                address.clone(),
                "cluster",
                &config,
                &tags,
                vec![NETWORK.to_owned()],
            ));
            for (pool, p) in &cluster.node_pool {
                let config = NodePoolConfig {
                    cluster: name.clone(),
                    name: pool.clone(),
                    instance_type: p.instance_type.get_ref().clone(),
                    min: p.min,
                    max: *p.max.get_ref(),
                    desired: p.desired.as_ref().map(|d| *d.get_ref()),
                    gpu: p.gpu,
                    labels: p.selector(pool),
                };
                nodes.push(Node::new(
                    "aws",
                    address.keyed("node_pool", pool),
                    "node_pool",
                    &config,
                    &tags,
                    vec![address.to_string()],
                ));
            }
        }
        if let Some(hosted) = &self.hosted {
            nodes.push(hosted.addons(lab, Self::addons(lab)));
        }
        nodes
    }

    fn expand_student(&self, lab: &Lab, cohort: &Cohort, student: &Student) -> Vec<Node> {
        let mut nodes = vec![];
        let base = Address::student(&student.id);
        let tags = lab.tags(cohort, student);
        let s = &lab.student;
        let name = lab.resource_name(student);
        let credential = base.child("credential");
        if lab.credentials() {
            let config = CredentialConfig {
                student: student.id.clone(),
                user: name.clone(),
                bucket: name.clone(),
                artifacts: Self::artifacts_bucket(lab),
            };
            nodes.push(Node::new("aws", credential.clone(), "credential", &config, &tags, vec![]));
        }
        nodes.extend(bucket_nodes("aws", lab, cohort, student, &[ARTIFACTS]));
        if let Some(hosted) = self.hosted.as_ref().filter(|_| lab.on_cluster(cohort)) {
            nodes.extend(hosted.expand_student(lab, cohort, student, Some(self.bucket_access(&name))));
        }
        if lab.on_vms(cohort) {
            // The workers run on the student's VM, installed by its cloud-init.
            let firewall = base.child("firewall");
            nodes.push(Node::new(
                "aws",
                firewall.clone(),
                "firewall",
                &FirewallConfig { name: name.clone(), ssh_cidrs: ssh_cidrs(&lab.student) },
                &tags,
                vec![NETWORK.to_owned()],
            ));
            let compute = s.compute.as_ref();
            let image = compute.and_then(|c| c.image.clone());
            let (mapreduce, scheduler) = services(lab);
            let config = VmConfig {
                name,
                student: student.id.clone(),
                instance_type: Self::instance_type(lab),
                disk_gb: compute.and_then(|c| c.disk_gb).unwrap_or(30),
                image_owner: compute
                    .and_then(|c| c.image_owner.clone())
                    .or_else(|| image.is_none().then(|| DEFAULT_IMAGE_OWNER.into())),
                image: Self::image(lab),
                ssh_keys: compute
                    .map(|c| c.ssh_keys.iter().map(|k| k.get_ref().clone()).collect::<Vec<_>>())
                    .filter(|k| !k.is_empty()),
                mapreduce,
                scheduler,
                notebook: notebook_service(lab),
                version: env!("CARGO_PKG_VERSION").to_owned(),
            };
            let mut deps = vec![
                NETWORK.to_owned(),
                firewall.to_string(),
                INSTANCE_PROFILE.to_owned(),
                ARTIFACTS.to_owned(),
                credential.to_string(),
            ];
            if config.notebook.is_some() {
                deps.extend(notebook::vm_deps(lab, &student.id));
            }
            nodes.push(Node::new("aws", base.child("vm"), "vm", &config, &tags, deps));
        }
        nodes
    }

    /// The smoke workloads run on each student's VM, over SSH as that student, or as Jobs in
    /// their namespace on the lab's cluster.
    fn connect(&self, lab: &str, bin_dir: &Path) -> Connected {
        let clients = Arc::new(Clients::new(self.config.clone()));
        let ssh = Arc::new(SshClient::new(&self.ssh, lab, Arc::new(Ec2States(clients.clone()))));
        let access = |h: &HostedCluster| {
            Arc::new(EksAccess { clients: clients.clone(), name: eks_name(lab, &h.cluster) }) as _
        };
        let vms = || Arc::new(SshRunner::new(ssh.clone())) as _;
        let (hosted, smoke) = HostedCluster::connect(self.hosted.as_ref(), lab, access, vms);
        Connected {
            // Beside the lab's pinned host keys (`.labctl/` beside the lab file).
            provider: Arc::new(AwsProvider::new(
                clients,
                lab,
                bin_dir,
                ssh,
                self.ssh.known_hosts_dir.join(format!("{lab}.python")),
            )),
            hosted,
            smoke: Ok(smoke),
        }
    }

    /// The workers listen on fixed ports of the VM, reached through an SSH tunnel, or in the
    /// student's namespace; their key opens their bucket.
    fn endpoints(&self, student: &StudentResources) -> Endpoints {
        HostedCluster::endpoints(self.hosted.as_ref(), student, self.vm_endpoints(student))
    }

    /// The namespace on the lab's cluster; a VM's name, address and state as last seen.
    fn describe(&self, student: &StudentResources) -> Vec<(String, String)> {
        let vm = labctl_provider_vm::describe(student).into_iter().collect();
        HostedCluster::describe(self.hosted.as_ref(), student, vm)
    }

    fn billed(&self, spec: &ResourceSpec) -> Vec<Billed> {
        crate::pricing::billed(spec)
    }

    fn prices(&self) -> PriceTable {
        crate::pricing::prices()
    }
}

impl AwsSetup {
    /// What the Secret `aws-credentials` in the student's namespace holds: their access
    /// key, region and bucket, for their pods.
    fn bucket_access(&self, name: &str) -> CloudSecret {
        let mut values = BTreeMap::from([
            ("AWS_REGION".to_owned(), self.config.region.clone()),
            ("AWS_DEFAULT_REGION".to_owned(), self.config.region.clone()),
            ("LABCTL_BUCKET".to_owned(), name.to_owned()),
        ]);
        if let Some(endpoint) = &self.config.endpoint {
            values.insert("AWS_ENDPOINT_URL".to_owned(), endpoint.clone());
            if endpoint.starts_with("http://") {
                // What `object_store` (the MapReduce workers' S3 client) needs for plain HTTP.
                values.insert("AWS_ALLOW_HTTP".to_owned(), "true".to_owned());
            }
        }
        let from = [("AWS_ACCESS_KEY_ID", "access_key_id"), ("AWS_SECRET_ACCESS_KEY", "secret_access_key")]
            .map(|(key, attribute)| (key.to_owned(), attribute.to_owned()))
            .into();
        CloudSecret { values, from }
    }

    /// The GPU device plugin on the cluster's GPU pools, and the default StorageClass of
    /// the EBS CSI driver.
    fn addons(lab: &Lab) -> Addons {
        Addons {
            device_plugin: true,
            storage_class: StorageClassConfig {
                name: STORAGE_CLASS.to_owned(),
                provisioner: EBS_CSI_PROVISIONER.to_owned(),
                // The driver tags the volumes it makes: sweeps and `reap` find them by the lab.
                parameters: [
                    ("type", "gp3".to_owned()),
                    ("encrypted", "true".to_owned()),
                    ("tagSpecification_1", format!("{}={}", labctl_provider_api::Tags::LAB, lab.name)),
                ]
                .map(|(k, v)| (k.to_owned(), v))
                .into(),
            },
        }
    }

    /// A student's VM endpoints and AWS access.
    fn vm_endpoints(&self, student: &StudentResources) -> Endpoints {
        let attr = |what: &str, key: &str| student.attr(what, key).map(str::to_owned);
        let mut endpoints = labctl_provider_vm::endpoints(student);
        endpoints.bucket = attr("bucket", "path").or_else(|| attr("bucket", "url"));
        endpoints.datasets = student.dataset_paths();
        if let Some(key) = attr("credential", "access_key_id") {
            let access = json!({
                "access_key_id": key,
                "secret_access_key": attr("credential", "secret_access_key"),
            });
            endpoints.access.insert("aws".to_owned(), access);
        }
        endpoints
    }
}
