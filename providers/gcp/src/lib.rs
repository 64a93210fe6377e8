//! labctl's GCP provider, through the google-cloud Rust crates.
//!
//! What a lab gets on GCP:
//!
//! | kind         | what it is                                                                   |
//! |--------------|------------------------------------------------------------------------------|
//! | `bucket`     | per student: a Cloud Storage bucket labelled `labctl-lab`, `labctl-cohort`, `labctl-student` |
//! | `dataset`    | per student: a dataset generated into their bucket under `datasets/<name>/`, manifest last |
//! | `credential` | per student: a service account whose only grant is `roles/storage.objectAdmin` on their bucket, a JSON key, a worker token, an SSH key pair |
//! | `network`    | per lab with VMs or clusters: a custom-mode VPC network and one subnet in the lab's region |
//! | `artifacts`  | per lab whose VMs run the workers: a bucket holding the worker binaries the VMs fetch by signed URLs |
//! | `firewall`   | per student: SSH to their VM only, from the lab's `ssh_cidrs` |
//! | `vm`         | per student: a GCE VM whose cloud-init installs and runs their workers with their key |
//! | `cluster`    | per `[cluster.<name>]`: a zonal GKE cluster in the lab's network |
//! | `node_pool`  | per pool: GKE's autoscaler between `min` and `max`; GPU pools with accelerators, GKE's driver and the `nvidia.com/gpu` taint |
//!
//! With `[student] kubernetes`, students' namespaces and workers go on one of the lab's GKE
//! clusters through the Kubernetes provider, their key in a Secret beside them.
//!
//! Buckets and VMs carry the ownership tags as labels; service accounts, networks and
//! firewall rules take no labels, so their descriptions carry the tags (and account ids
//! start with the lab's prefix). Creates adopt what an interrupted run made; sweeps list
//! by labels, descriptions and account-id prefix.

#![warn(clippy::print_stdout)]

mod clients;
mod compute;
mod errors;
mod gke;
mod gke_access;
mod identity;
mod labels;
mod notebook;
mod oauth;
mod paging;
mod plugin;
mod storage;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use labctl_provider_api::{
    Deps, Found, KindSchema, Observed, Provider, ProviderError, ResourceSpec, StudentResources,
};
use labctl_provider_vm::ssh::SshClient;

pub use clients::{ApiEndpoints, GcpConfig};
use clients::{Clients, Gcp};
pub use identity::{account_id, account_prefix};
pub use plugin::GcpPlugin;

const KINDS: &[KindSchema] = &[
    KindSchema { name: "network", replace_on: &["*"] },
    KindSchema { name: "artifacts", replace_on: &["name"] },
    KindSchema { name: "notebook_stack", replace_on: labctl_provider_vm::notebook::REPLACE_ON },
    KindSchema { name: "bucket", replace_on: &["name"] },
    KindSchema { name: "dataset", replace_on: &["*"] },
    KindSchema { name: "credential", replace_on: &["*"] },
    KindSchema { name: "firewall", replace_on: &["*"] },
    KindSchema { name: "vm", replace_on: &["*"] },
    KindSchema { name: "cluster", replace_on: &["name"] },
    KindSchema { name: "node_pool", replace_on: &["cluster", "name", "machine_type", "gpu", "accelerator"] },
    // Found only by sweeps: a credential's account, a network's subnet, without their state.
    KindSchema { name: "service_account", replace_on: &["*"] },
    KindSchema { name: "subnetwork", replace_on: &["*"] },
];

/// The GCP provider for one lab.
pub struct GcpProvider {
    clients: Arc<Clients>,
    /// Where the worker binaries are, for the artifacts bucket.
    bin_dir: std::path::PathBuf,
    /// Reaches the students' VMs (a rotated key is delivered over SSH).
    ssh: Arc<SshClient>,
    /// Where the lab's Python environment is built, to pack the notebooks' wheelhouse.
    python_dir: std::path::PathBuf,
}

#[async_trait]
impl Provider for GcpProvider {
    fn name(&self) -> &str {
        "gcp"
    }

    fn kinds(&self) -> &[KindSchema] {
        KINDS
    }

    async fn read(&self, kind: &str, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
        let c = self.clients.get().await?;
        match kind {
            "network" => compute::read_network(c, prior).await,
            "artifacts" => storage::read_artifacts(c, prior).await,
            "notebook_stack" => notebook::read(c, prior).await,
            "bucket" => storage::read_bucket(c, prior).await,
            "dataset" => storage::read_dataset(c, prior).await,
            "credential" => identity::read_credential(c, prior).await,
            "firewall" => compute::read_firewall(c, prior).await,
            "vm" => compute::read_vm(c, prior).await,
            "cluster" => gke::read_cluster(c, prior).await,
            "node_pool" => gke::read_node_pool(c, prior).await,
            other => Err(unknown_kind(other)),
        }
    }

    async fn edits(&self, kind: &str, prior: &Observed) -> Result<Vec<String>, ProviderError> {
        match kind {
            "vm" => compute::vm_edits(self.clients.get().await?, prior).await,
            _ => Ok(vec![]),
        }
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Deps) -> Result<Observed, ProviderError> {
        let c = self.clients.get().await?;
        match spec.kind.as_str() {
            "network" => compute::create_network(c, spec).await,
            "artifacts" => storage::create_artifacts(c, spec, &self.bin_dir).await,
            "notebook_stack" => notebook::create(c, spec, &self.python_dir).await,
            "bucket" => storage::create_bucket(c, spec).await,
            "dataset" => storage::create_dataset(c, spec).await,
            "credential" => identity::create_credential(c, spec, None).await,
            "firewall" => compute::create_firewall(c, spec, deps).await,
            "vm" => compute::create_vm(c, spec, deps).await,
            "cluster" => gke::create_cluster(c, spec, deps).await,
            "node_pool" => gke::create_node_pool(c, spec, deps, None).await,
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
            // Key rotation: a new key, the old one deleted, the same worker token and SSH key.
            "credential" => identity::create_credential(self.clients.get().await?, spec, Some(prior)).await,
            // Started if stopped; a rotated key delivered to its workers.
            "vm" => compute::update_vm(self.clients.get().await?, &self.ssh, spec, prior, deps).await,
            // The artifacts converge by creating again (a changed binary is uploaded), a
            // cluster by upgrading its control plane.
            "artifacts" | "cluster" | "notebook_stack" => self.create(spec, deps).await,
            // Autoscaling bounds, size and labels.
            "node_pool" => gke::create_node_pool(self.clients.get().await?, spec, deps, Some(prior)).await,
            // Buckets and datasets are replaced on any change of config (see KINDS), and
            // their labels move by `retag`.
            other => {
                Err(ProviderError::invalid(format!("the gcp provider does not update a {other} in place")))
            }
        }
    }

    async fn delete(&self, kind: &str, prior: &Observed) -> Result<(), ProviderError> {
        let c = self.clients.get().await?;
        match kind {
            "network" => compute::delete_network(c, &prior.id).await,
            "subnetwork" => compute::delete_subnetwork(c, &prior.id).await,
            "firewall" => compute::delete_firewall(c, &prior.id).await,
            "vm" => compute::delete_vm(c, &prior.id).await,
            "cluster" => gke::delete_cluster(c, &prior.id).await,
            "node_pool" => gke::delete_node_pool(c, &prior.id).await,
            "artifacts" | "bucket" => storage::delete_bucket(c, &prior.id).await,
            "notebook_stack" => notebook::delete(c, prior).await,
            "dataset" => storage::delete_dataset(c, &prior.id).await,
            "credential" => identity::delete_credential(c, prior).await,
            "service_account" => identity::delete_account(c, &prior.id).await,
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

    /// VMs and clusters (with their pools) first, then firewall rules, subnets and
    /// networks; service accounts (they hold grants on the buckets), then the buckets.
    async fn sweep(&self, lab: &str) -> Result<Vec<Found>, ProviderError> {
        let c = self.clients.get().await?;
        let prefix = account_prefix(lab);
        let vms = compute::labelled_vms(c).await?.into_iter().map(|(id, tags)| ("vm", id, tags));
        let clusters = gke::labelled_clusters(c).await?.into_iter().map(|(id, tags)| ("cluster", id, tags));
        let mut found: Vec<Found> = vms
            .chain(clusters)
            .chain(compute::described(c).await?)
            .filter(|(_, _, tags)| tags.lab == lab)
            .map(|(kind, id, tags)| Found { kind: kind.into(), id, tags })
            .collect();
        found.extend(
            identity::accounts(c)
                .await?
                .into_iter()
                .filter(|(email, _)| email.starts_with(&prefix))
                .filter_map(|(email, description)| {
                    let tags = labels::described(&description).filter(|t| t.lab == lab)?;
                    Some(Found { kind: "service_account".into(), id: email, tags })
                }),
        );
        let buckets = storage::labelled_buckets(c).await?;
        found.extend(buckets.into_iter().filter(|(_, tags)| tags.lab == lab).map(|(id, tags)| Found {
            kind: "bucket".into(),
            id,
            tags,
        }));
        Ok(found)
    }

    /// Buckets, VMs and clusters carry the expiry as a label, accounts, networks and firewall rules
    /// in their description; objects carry none.
    async fn retag(&self, spec: &ResourceSpec, prior: &Observed) -> Result<Observed, ProviderError> {
        let c = self.clients.get().await?;
        match spec.kind.as_str() {
            "bucket" | "artifacts" => storage::label_bucket(c, &prior.id, &spec.tags).await?,
            "vm" => compute::label_vm(c, &prior.id, &spec.tags).await?,
            "cluster" => gke::label_cluster(c, &prior.id, &spec.tags).await?,
            "firewall" => compute::describe_firewall(c, &prior.id, &spec.tags).await?,
            "credential" => identity::describe_account(c, &prior.id, &spec.tags).await?,
            _ => {}
        }
        Ok(prior.clone())
    }

    async fn labs(&self) -> Result<Vec<String>, ProviderError> {
        let c: &Gcp = self.clients.get().await?;
        let from_buckets = storage::labelled_buckets(c).await?.into_iter().map(|(_, t)| t.lab);
        let from_vms = compute::labelled_vms(c).await?.into_iter().map(|(_, t)| t.lab);
        let from_clusters = gke::labelled_clusters(c).await?.into_iter().map(|(_, t)| t.lab);
        let from_networks = compute::described(c).await?.into_iter().map(|(_, _, t)| t.lab);
        let from_accounts = identity::accounts(c)
            .await?
            .into_iter()
            .filter_map(|(_, d)| labels::described(&d))
            .map(|t| t.lab);
        let mut labs: Vec<String> = from_buckets
            .chain(from_vms)
            .chain(from_clusters)
            .chain(from_networks)
            .chain(from_accounts)
            .collect();
        labs.sort();
        labs.dedup();
        Ok(labs)
    }
}

fn unknown_kind(kind: &str) -> ProviderError {
    ProviderError::invalid(format!("the gcp provider has no resource kind `{kind}`"))
}
