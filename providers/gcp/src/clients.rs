//! The google-cloud clients of one lab, made on first use: Cloud Storage's JSON client for
//! objects, its gRPC `StorageControl` for buckets and their IAM policies, and IAM's admin
//! client for service accounts.

use std::path::PathBuf;

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
    /// Where buckets go.
    pub region: String,
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
}

impl Gcp {
    /// `projects/<project>`.
    pub fn parent(&self) -> String {
        format!("projects/{}", self.project)
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

async fn connect(config: &GcpConfig) -> Result<Gcp, ProviderError> {
    let credentials = credentials(config)?;
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
    let mut iam = Iam::builder().with_credentials(credentials).with_retry_policy(retry());
    if let Some(endpoint) = &e.iam {
        iam = iam.with_endpoint(endpoint);
    }
    Ok(Gcp {
        project: config.project.clone(),
        region: config.region.clone(),
        objects: objects.build().await.map_err(cannot("Cloud Storage"))?,
        control: control.build().await.map_err(cannot("Cloud Storage control"))?,
        iam: iam.build().await.map_err(cannot("IAM"))?,
    })
}

/// The key file of the settings, or Application Default Credentials.
fn credentials(config: &GcpConfig) -> Result<google_cloud_auth::credentials::Credentials, ProviderError> {
    let built = match &config.credentials {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ProviderError::fatal(format!("cannot read the GCP key file {}: {e}", path.display()))
            })?;
            let key = serde_json::from_str(&text)
                .map_err(|e| ProviderError::fatal(format!("{} is not a key file: {e}", path.display())))?;
            google_cloud_auth::credentials::service_account::Builder::new(key).build()
        }
        None => google_cloud_auth::credentials::Builder::default().build(),
    };
    built.map_err(|e| ProviderError::fatal(format!("no GCP credentials: {e}")))
}
