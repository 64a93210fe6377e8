//! The google-cloud clients of one lab, made on first use: Cloud Storage's JSON client for
//! objects, its gRPC `StorageControl` for buckets and their IAM policies, IAM's admin
//! client for service accounts, Compute Engine's for networks, firewalls and VMs, GKE's for
//! clusters and node pools, and the signer of the VMs' links to the worker binaries.

use std::path::PathBuf;
use std::time::Duration;

use google_cloud_auth::credentials::{AccessTokenCredentials, Credentials};
use google_cloud_auth::signer::Signer;
use google_cloud_compute_v1::client::{Firewalls, Instances, Networks, Subnetworks};
use google_cloud_container_v1::client::ClusterManager;
use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt};
use google_cloud_iam_admin_v1::client::Iam;
use google_cloud_storage::client::{Storage, StorageControl};
use labctl_provider_api::ProviderError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How labctl reaches GCP for one lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GcpConfig {
    /// The project the lab lives in.
    pub project: String,
    /// Where buckets and the network's subnet go.
    pub region: String,
    /// Where VMs go.
    pub zone: String,
    /// A service-account key file; by default Application Default Credentials.
    pub credentials: Option<PathBuf>,
    pub endpoints: ApiEndpoints,
}

/// API endpoint overrides (emulators); each defaults to Google's.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiEndpoints {
    /// Cloud Storage's JSON API (objects).
    pub storage: Option<String>,
    /// Cloud Storage's gRPC API (buckets, their IAM policies).
    pub storage_grpc: Option<String>,
    /// IAM's admin API (service accounts, keys).
    pub iam: Option<String>,
    /// Compute Engine's API (networks, firewalls, VMs).
    pub compute: Option<String>,
    /// GKE's API (clusters, node pools).
    pub container: Option<String>,
}

/// The connected clients.
pub struct Gcp {
    pub project: String,
    pub region: String,
    /// Objects, over the JSON API.
    pub objects: Storage,
    /// Buckets, their IAM policies and object listings, over gRPC.
    pub control: StorageControl,
    /// Service accounts and keys.
    pub iam: Iam,
    pub zone: String,
    pub networks: Networks,
    pub subnetworks: Subnetworks,
    pub firewalls: Firewalls,
    pub instances: Instances,
    /// GKE clusters and node pools.
    pub clusters: ClusterManager,
    /// labctl's own credentials, whose access tokens open GKE clusters' Kubernetes APIs.
    pub tokens: AccessTokenCredentials,
    /// Signs the VMs' links to the worker binaries, as labctl's own account; made when first
    /// needed (a user's own login, `gcloud auth application-default login`, cannot sign).
    signer: tokio::sync::OnceCell<Signer>,
    /// The service-account key file of the settings, if any.
    pub key_file: Option<PathBuf>,
    /// Plain HTTP, for the OAuth token endpoint (see oauth.rs).
    pub http: reqwest::Client,
    /// Where the links point (Cloud Storage's, or an emulator).
    pub storage_endpoint: Option<String>,
}

impl Gcp {
    /// `projects/<project>`.
    pub fn parent(&self) -> String {
        format!("projects/{}", self.project)
    }

    /// The signer of labctl's own credentials.
    pub async fn signer(&self) -> Result<&Signer, ProviderError> {
        self.signer
            .get_or_try_init(|| async {
                let built = match &self.key_file {
                    Some(path) => google_cloud_auth::credentials::service_account::Builder::new(key(path)?)
                        .build_signer(),
                    None => google_cloud_auth::credentials::Builder::default().build_signer(),
                };
                built.map_err(|e| {
                    ProviderError::fatal(format!(
                        "cannot sign the VMs' links to the worker binaries with these credentials ({e}): \
                         give [provider.gcp] credentials, a service-account key file"
                    ))
                })
            })
            .await
    }
}

/// Clients made once, on first use.
pub struct Clients {
    config: GcpConfig,
    made: tokio::sync::OnceCell<Gcp>,
}

/// Attempts per request: the engine retries what may succeed later, with its own backoff.
const ATTEMPTS: usize = 3;

impl Clients {
    /// Clients for `config`, not connected yet.
    pub fn new(config: GcpConfig) -> Self {
        Self { config, made: tokio::sync::OnceCell::new() }
    }

    /// The clients, made on the first call.
    pub async fn get(&self) -> Result<&Gcp, ProviderError> {
        self.made.get_or_try_init(|| connect(&self.config)).await
    }
}

/// How often a Compute Engine operation is polled: its VMs and networks take seconds.
fn polling() -> impl google_cloud_gax::polling_backoff_policy::PollingBackoffPolicy {
    ExponentialBackoffBuilder::new()
        .with_initial_delay(Duration::from_millis(250))
        .with_maximum_delay(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}

async fn connect(config: &GcpConfig) -> Result<Gcp, ProviderError> {
    let tokens = credentials(config)?;
    let credentials = Credentials::from(tokens.clone());
    fn cannot(what: &'static str) -> impl FnOnce(google_cloud_gax::client_builder::Error) -> ProviderError {
        move |e| ProviderError::fatal(format!("cannot set up the {what} client: {e}"))
    }
    let retry = || Aip194Strict.with_attempt_limit(ATTEMPTS as u32);
    let e = &config.endpoints;
    let mut objects = Storage::builder().with_credentials(credentials.clone()).with_retry_policy(retry());
    if let Some(endpoint) = &e.storage {
        objects = objects.with_endpoint(endpoint);
    }
    let mut control =
        StorageControl::builder().with_credentials(credentials.clone()).with_retry_policy(retry());
    if let Some(endpoint) = &e.storage_grpc {
        control = control.with_endpoint(endpoint);
    }
    let mut iam = Iam::builder().with_credentials(credentials.clone()).with_retry_policy(retry());
    if let Some(endpoint) = &e.iam {
        iam = iam.with_endpoint(endpoint);
    }
    macro_rules! compute {
        ($client:ty) => {{
            let mut builder = <$client>::builder()
                .with_credentials(credentials.clone())
                .with_retry_policy(retry())
                .with_polling_backoff_policy(polling());
            if let Some(endpoint) = &e.compute {
                builder = builder.with_endpoint(endpoint);
            }
            builder.build().await.map_err(cannot("Compute Engine"))?
        }};
    }
    let mut clusters =
        ClusterManager::builder().with_credentials(credentials.clone()).with_retry_policy(retry());
    if let Some(endpoint) = &e.container {
        clusters = clusters.with_endpoint(endpoint);
    }
    Ok(Gcp {
        project: config.project.clone(),
        region: config.region.clone(),
        objects: objects.build().await.map_err(cannot("Cloud Storage"))?,
        control: control.build().await.map_err(cannot("Cloud Storage control"))?,
        iam: iam.build().await.map_err(cannot("IAM"))?,
        zone: config.zone.clone(),
        networks: compute!(Networks),
        subnetworks: compute!(Subnetworks),
        firewalls: compute!(Firewalls),
        instances: compute!(Instances),
        clusters: clusters.build().await.map_err(cannot("GKE"))?,
        tokens,
        signer: tokio::sync::OnceCell::new(),
        key_file: config.credentials.clone(),
        http: reqwest::Client::new(),
        storage_endpoint: e.storage.clone(),
    })
}

/// A service-account key file's contents.
fn key(path: &std::path::Path) -> Result<serde_json::Value, ProviderError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ProviderError::fatal(format!("cannot read the GCP key file {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| ProviderError::fatal(format!("{} is not a key file: {e}", path.display())))
}

/// The key file of the settings, or Application Default Credentials.
fn credentials(config: &GcpConfig) -> Result<AccessTokenCredentials, ProviderError> {
    let built = match &config.credentials {
        Some(path) => google_cloud_auth::credentials::service_account::Builder::new(key(path)?)
            .build_access_token_credentials(),
        None => google_cloud_auth::credentials::Builder::default().build_access_token_credentials(),
    };
    built.map_err(|e| ProviderError::fatal(format!("no GCP credentials: {e}")))
}
