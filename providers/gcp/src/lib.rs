//! labctl's GCP provider, through the google-cloud Rust crates.
//!
//! What a lab gets on GCP:
//!
//! | kind         | what it is                                                                   |
//! |--------------|------------------------------------------------------------------------------|
//! | `bucket`     | per student: a Cloud Storage bucket labelled `labctl-lab`, `labctl-cohort`, `labctl-student` |
//! | `dataset`    | per student: a dataset generated into their bucket under `datasets/<name>/`, manifest last |
//! | `credential` | per student: a service account whose only grant is `roles/storage.objectAdmin` on their bucket, a JSON key, a worker token |
//!
//! Buckets carry the ownership tags as labels; service accounts take no labels, so their
//! account ids start with the lab's prefix and their descriptions carry the tags. Creates
//! adopt what an interrupted run made; sweeps list by labels and by account-id prefix.
//! VMs and GKE clusters are not supported yet: the plugin refuses labs that ask for them.

#![warn(clippy::print_stdout)]

mod clients;
mod errors;
mod identity;
mod labels;
mod paging;
mod plugin;
mod storage;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use labctl_provider_api::{
    Deps, Found, KindSchema, Observed, Provider, ProviderError, ResourceSpec, StudentResources,
};

pub use clients::{ApiEndpoints, GcpConfig};
use clients::{Clients, Gcp};
pub use identity::{account_id, account_prefix};
pub use plugin::GcpPlugin;

const KINDS: &[KindSchema] = &[
    KindSchema { name: "bucket", replace_on: &["name"] },
    KindSchema { name: "dataset", replace_on: &["*"] },
    KindSchema { name: "credential", replace_on: &["*"] },
    // Found only by sweeps: a credential's account without its state.
    KindSchema { name: "service_account", replace_on: &["*"] },
];

/// The GCP provider for one lab.
pub struct GcpProvider {
    clients: Arc<Clients>,
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
            "bucket" => storage::read_bucket(c, prior).await,
            "dataset" => storage::read_dataset(c, prior).await,
            "credential" => identity::read_credential(c, prior).await,
            other => Err(unknown_kind(other)),
        }
    }

    async fn create(&self, spec: &ResourceSpec, _deps: &Deps) -> Result<Observed, ProviderError> {
        let c = self.clients.get().await?;
        match spec.kind.as_str() {
            "bucket" => storage::create_bucket(c, spec).await,
            "dataset" => storage::create_dataset(c, spec).await,
            "credential" => identity::create_credential(c, spec, None).await,
            other => Err(unknown_kind(other)),
        }
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        prior: &Observed,
        _deps: &Deps,
    ) -> Result<Observed, ProviderError> {
        match spec.kind.as_str() {
            // Key rotation: a new key, the old one deleted, the same worker token.
            "credential" => identity::create_credential(self.clients.get().await?, spec, Some(prior)).await,
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
            "bucket" => storage::delete_bucket(c, &prior.id).await,
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
        storage::archive_bucket(self.clients.get().await?, bucket, &datasets, into).await
    }

    /// Service accounts first (they hold grants on the buckets), then the buckets.
    async fn sweep(&self, lab: &str) -> Result<Vec<Found>, ProviderError> {
        let c = self.clients.get().await?;
        let prefix = account_prefix(lab);
        let mut found: Vec<Found> = identity::accounts(c)
            .await?
            .into_iter()
            .filter(|(email, _)| email.starts_with(&prefix))
            .filter_map(|(email, description)| {
                let tags = identity::tags_of(&description).filter(|t| t.lab == lab)?;
                Some(Found { kind: "service_account".into(), id: email, tags })
            })
            .collect();
        let buckets = storage::labelled_buckets(c).await?;
        found.extend(buckets.into_iter().filter(|(_, tags)| tags.lab == lab).map(|(id, tags)| Found {
            kind: "bucket".into(),
            id,
            tags,
        }));
        Ok(found)
    }

    /// Buckets carry the expiry as a label, accounts in their description; objects carry
    /// none.
    async fn retag(&self, spec: &ResourceSpec, prior: &Observed) -> Result<Observed, ProviderError> {
        let c = self.clients.get().await?;
        match spec.kind.as_str() {
            "bucket" => storage::label_bucket(c, &prior.id, &spec.tags).await?,
            "credential" => identity::describe_account(c, &prior.id, &spec.tags).await?,
            _ => {}
        }
        Ok(prior.clone())
    }

    async fn labs(&self) -> Result<Vec<String>, ProviderError> {
        let c: &Gcp = self.clients.get().await?;
        let from_buckets = storage::labelled_buckets(c).await?.into_iter().map(|(_, t)| t.lab);
        let from_accounts = identity::accounts(c)
            .await?
            .into_iter()
            .filter_map(|(_, d)| identity::tags_of(&d))
            .map(|t| t.lab);
        let mut labs: Vec<String> = from_buckets.chain(from_accounts).collect();
        labs.sort();
        labs.dedup();
        Ok(labs)
    }
}

fn unknown_kind(kind: &str) -> ProviderError {
    ProviderError::invalid(format!("the gcp provider has no resource kind `{kind}`"))
}
