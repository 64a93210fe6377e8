//! labctl's AWS provider, through aws-sdk-rust.
//!
//! What a lab gets on AWS:
//!
//! | kind               | what it is                                                          |
//! |--------------------|---------------------------------------------------------------------|
//! | `network`          | a VPC with one public subnet per availability zone, an internet gateway and routes |
//! | `artifacts`        | one S3 bucket per lab holding the worker binaries and the datasets (content-hashed) |
//! | `notebook_stack`   | in the artifacts bucket: the notebooks' wheelhouse (built here, pinned), starters |
//! | `instance_profile` | an IAM role + instance profile that lets the VMs read the artifacts |
//! | `cluster`          | an EKS cluster with its cluster and node IAM roles                  |
//! | `node_pool`        | an EKS managed node group (GPU pools tainted `nvidia.com/gpu`)       |
//! | `credential`       | per student: an IAM user scoped to their bucket, an access key, a worker token |
//! | `bucket`           | per student: an S3 bucket                                           |
//! | `dataset`          | per student: a dataset copied from the artifacts bucket into theirs |
//! | `firewall`         | per student: a security group (their VMs reach each other; SSH in)  |
//! | `vm`               | per student: an EC2 instance whose cloud-init installs and runs the workers |
//!
//! Every resource carries the tags `labctl/lab`, `labctl/cohort`, `labctl/student` and
//! `labctl/address`; IAM users, roles and instance profiles also live under the path
//! `/labctl/<lab>/`. Creates look for a tagged resource before making one, so a run killed
//! at any point is repaired by the next one without duplicates. Sweeps list by those tags.

#![warn(clippy::print_stdout)]

mod clients;
mod compute;
mod eks;
mod eks_access;
mod eks_token;
mod errors;
mod identity;
mod network;
mod notebook;
mod platform;
mod plugin;
mod pricing;
mod retag;
mod state;
mod storage;
mod sweep;
mod tagging;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use labctl_provider_api::{
    Deps, Found, KindSchema, Observed, Provider, ProviderError, ResourceSpec, StudentResources,
};

use clients::Clients;
pub use clients::{AwsConfig, DEFAULT_CONCURRENCY};
use labctl_provider_vm::ssh::SshClient;
pub use plugin::AwsPlugin;

const KINDS: &[KindSchema] = &[
    KindSchema { name: "network", replace_on: &["cidr", "zones"] },
    KindSchema { name: "artifacts", replace_on: &["name"] },
    KindSchema { name: "notebook_stack", replace_on: labctl_provider_vm::notebook::REPLACE_ON },
    KindSchema { name: "instance_profile", replace_on: &["*"] },
    KindSchema { name: "cluster", replace_on: &["name"] },
    KindSchema { name: "node_pool", replace_on: &["cluster", "name", "instance_type", "gpu"] },
    KindSchema { name: "credential", replace_on: &["*"] },
    KindSchema { name: "bucket", replace_on: &["name"] },
    KindSchema { name: "dataset", replace_on: &["*"] },
    KindSchema { name: "firewall", replace_on: &["name"] },
    KindSchema { name: "vm", replace_on: &["*"] },
    // Found only by sweeps: leftovers of a VM, a network or a cluster.
    KindSchema { name: "volume", replace_on: &["*"] },
    KindSchema { name: "internet_gateway", replace_on: &["*"] },
    KindSchema { name: "role", replace_on: &["*"] },
];

/// The AWS provider for one lab.
pub struct AwsProvider {
    lab: String,
    clients: Arc<Clients>,
    /// Where `lab-mapreduce` and `lab-scheduler` are, to upload them as artifacts.
    bin_dir: PathBuf,
    /// Reaches the VMs (to give their workers a rotated key).
    ssh: Arc<SshClient>,
    /// Where the lab's Python environment is built, to pack the notebooks' wheelhouse.
    python_dir: PathBuf,
}

impl AwsProvider {
    /// A provider for lab `lab`, reaching its VMs through `ssh` and building its Python
    /// environment in `python_dir`; it connects on first use.
    fn new(
        clients: Arc<Clients>,
        lab: &str,
        bin_dir: &Path,
        ssh: Arc<SshClient>,
        python_dir: PathBuf,
    ) -> Self {
        Self { lab: lab.to_owned(), clients, bin_dir: bin_dir.to_owned(), ssh, python_dir }
    }
}

#[async_trait]
impl Provider for AwsProvider {
    fn name(&self) -> &str {
        "aws"
    }

    fn kinds(&self) -> &[KindSchema] {
        KINDS
    }

    async fn read(&self, kind: &str, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
        let c = self.clients.get().await?;
        match kind {
            "network" => network::read(c, prior).await,
            "firewall" => network::read_firewall(c, prior).await,
            "artifacts" => storage::read_artifacts(c, prior).await,
            "notebook_stack" => notebook::read(c, prior).await,
            "bucket" => storage::read_bucket(c, prior).await,
            "dataset" => storage::read_dataset(c, prior).await,
            "credential" => identity::read_credential(c, prior).await,
            "instance_profile" => identity::read_instance_profile(c, prior).await,
            "vm" => compute::read(c, prior).await,
            "cluster" => eks::read_cluster(c, prior).await,
            "node_pool" => eks::read_node_pool(c, prior).await,
            other => Err(unknown_kind(other)),
        }
    }

    async fn edits(&self, kind: &str, prior: &Observed) -> Result<Vec<String>, ProviderError> {
        match kind {
            "vm" => compute::edits(self.clients.get().await?, prior).await,
            _ => Ok(vec![]),
        }
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Deps) -> Result<Observed, ProviderError> {
        let c = self.clients.get().await?;
        match spec.kind.as_str() {
            "network" => network::create(c, spec).await,
            "firewall" => network::create_firewall(c, spec, deps).await,
            "artifacts" => storage::create_artifacts(c, spec, &self.bin_dir).await,
            "notebook_stack" => notebook::create(c, spec, &self.python_dir).await,
            "bucket" => storage::create_bucket(c, spec).await,
            "dataset" => storage::create_dataset(c, spec, deps).await,
            "credential" => identity::create_credential(c, spec, &self.lab, None).await,
            "instance_profile" => identity::create_instance_profile(c, spec, &self.lab).await,
            "vm" => compute::create(c, spec, deps).await,
            "cluster" => eks::create_cluster(c, spec, deps, &self.lab).await,
            "node_pool" => eks::create_node_pool(c, spec, deps).await,
            other => Err(unknown_kind(other)),
        }
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        prior: &Observed,
        deps: &Deps,
    ) -> Result<Observed, ProviderError> {
        match spec.kind.as_str() {
            // Key rotation: a new access key, the same worker token and SSH key.
            "credential" => {
                return identity::create_credential(self.clients.get().await?, spec, &self.lab, Some(prior))
                    .await
            }
            // Started if stopped; a rotated key delivered to its workers.
            "vm" => return compute::update(self.clients.get().await?, &self.ssh, spec, prior, deps).await,
            _ => {}
        }
        // Attributes that cannot change in place force replacement (see KINDS); for the
        // rest, creating again converges the existing resource (re-upload changed
        // artifacts, resize a node group, re-tag). A failed update leaves a resource in
        // use, never a half-made one to replace: no `partial`.
        self.create(spec, deps).await.map_err(|mut e| {
            e.partial = None;
            e
        })
    }

    async fn delete(&self, kind: &str, prior: &Observed) -> Result<(), ProviderError> {
        let c = self.clients.get().await?;
        match kind {
            "network" => network::delete(c, prior).await,
            "firewall" => network::delete_firewall(c, &prior.id).await,
            "internet_gateway" => network::delete_gateway(c, &prior.id).await,
            "artifacts" | "bucket" => storage::delete_bucket(c, &prior.id).await,
            "notebook_stack" => notebook::delete(c, prior).await,
            "dataset" => storage::delete_dataset(c, &prior.id).await,
            "credential" => identity::delete_user(c, &prior.id).await,
            "instance_profile" => identity::delete_instance_profile(c, &prior.id).await,
            "role" => identity::delete_role(c, &prior.id).await,
            "vm" => compute::delete(c, &prior.id).await,
            "volume" => compute::delete_volume(c, &prior.id).await,
            "cluster" => eks::delete_cluster(c, &prior.id).await,
            "node_pool" => eks::delete_node_pool(c, &prior.id).await,
            other => Err(unknown_kind(other)),
        }
    }

    async fn archive(&self, student: &StudentResources, into: &Path) -> Result<usize, ProviderError> {
        let bucket = &student.get("bucket").map_err(ProviderError::fatal)?.id;
        let datasets = student.dataset_paths();
        let datasets: Vec<&str> = datasets.keys().map(String::as_str).collect();
        let copied = storage::archive_bucket(self.clients.get().await?, bucket, &datasets, into).await?;
        // A notebook's work is on the student's VM.
        Ok(copied + labctl_provider_vm::notebook::archive_home(&self.ssh, student, into).await?)
    }

    async fn sweep(&self, lab: &str) -> Result<Vec<Found>, ProviderError> {
        sweep::sweep(self.clients.get().await?, lab).await
    }

    async fn retag(&self, spec: &ResourceSpec, prior: &Observed) -> Result<Observed, ProviderError> {
        retag::retag(self.clients.get().await?, spec, prior).await?;
        Ok(prior.clone())
    }

    async fn labs(&self) -> Result<Vec<String>, ProviderError> {
        sweep::labs(self.clients.get().await?).await
    }
}

/// A list attribute of whichever dependency has it (the network's subnets); empty if none.
fn dep_list(deps: &Deps, key: &str) -> Vec<String> {
    deps.values()
        .find_map(|d| d.attributes.get(key).and_then(|v| v.as_array()))
        .map(|items| items.iter().filter_map(|i| i.as_str()).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The spec of one part of a composite resource (a network's subnet), tagged with its own
/// address so that a create finds each part an interrupted create already made.
fn part_of(spec: &ResourceSpec, part: &str) -> ResourceSpec {
    ResourceSpec { address: format!("{}/{part}", spec.address), ..spec.clone() }
}

fn unknown_kind(kind: &str) -> ProviderError {
    ProviderError::invalid(format!("the aws provider has no resource kind `{kind}`"))
}
