//! The SDK clients, made once on first use, and the per-service bound on requests in flight.

use aws_config::{BehaviorVersion, Region};
use labctl_provider_api::ProviderError;
use serde::{Deserialize, Serialize};
use tokio::sync::{OnceCell, Semaphore, SemaphorePermit};

/// Where and how to reach AWS. Credentials come from the standard chain (environment,
/// profiles, SSO, instance roles).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AwsConfig {
    pub region: String,
    /// An endpoint for every service (an emulator, LocalStack); `AWS_ENDPOINT_URL` works too.
    pub endpoint: Option<String>,
    pub profile: Option<String>,
    /// Requests in flight per service (EC2, S3, IAM, EKS).
    pub concurrency: usize,
}

/// Default requests in flight per service: well under every service's burst limit.
pub const DEFAULT_CONCURRENCY: usize = 16;

pub(crate) struct Clients {
    config: AwsConfig,
    /// The clients, or why they cannot be made (kept: every resource gets the same answer).
    cell: OnceCell<Result<Aws, ProviderError>>,
}

/// Ready clients, each with its own bound on requests in flight.
pub(crate) struct Aws {
    pub ec2: aws_sdk_ec2::Client,
    pub s3: aws_sdk_s3::Client,
    pub iam: aws_sdk_iam::Client,
    pub eks: aws_sdk_eks::Client,
    pub region: String,
    /// Where the SDK's credentials come from (EKS tokens are signed with them too).
    pub credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
    /// The endpoint every service is reached at, when not AWS's own (an emulator).
    pub endpoint: Option<String>,
    ec2_slots: Semaphore,
    s3_slots: Semaphore,
    iam_slots: Semaphore,
    eks_slots: Semaphore,
}

/// Which service a request goes to, for [`Aws::slot`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Service {
    Ec2,
    S3,
    Iam,
    Eks,
}

impl Clients {
    pub fn new(config: AwsConfig) -> Self {
        Self { config, cell: OnceCell::new() }
    }

    pub async fn get(&self) -> Result<&Aws, ProviderError> {
        self.cell.get_or_init(|| Aws::connect(&self.config)).await.as_ref().map_err(Clone::clone)
    }
}

impl Aws {
    async fn connect(config: &AwsConfig) -> Result<Self, ProviderError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            // The engine retries with its own backoff and deadline; one policy, not two.
            .retry_config(aws_config::retry::RetryConfig::disabled());
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(profile) = &config.profile {
            loader = loader.profile_name(profile);
        }
        let shared = loader.load().await;
        // Fail once, clearly, rather than on every request.
        if let Some(credentials) = shared.credentials_provider() {
            use aws_credential_types::provider::ProvideCredentials;
            credentials.provide_credentials().await.map_err(|e| {
                ProviderError::fatal(format!(
                    "no AWS credentials ({e}); set AWS_PROFILE (or `profile` in [provider.aws]), run `aws sso login`, \
                     or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                ))
            })?;
        }
        let endpoint = config.endpoint.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        Ok(Self::from_shared(&shared, config, endpoint))
    }

    /// Clients from the SDK's `shared` configuration; `endpoint` when not AWS's own.
    fn from_shared(shared: &aws_config::SdkConfig, config: &AwsConfig, endpoint: Option<String>) -> Self {
        // Emulators serve buckets by path, not by virtual host.
        let path_style = endpoint.is_some();
        let s3 = aws_sdk_s3::config::Builder::from(shared).force_path_style(path_style).build();
        let slots = || Semaphore::new(config.concurrency.max(1));
        Self {
            ec2: aws_sdk_ec2::Client::new(shared),
            s3: aws_sdk_s3::Client::from_conf(s3),
            iam: aws_sdk_iam::Client::new(shared),
            eks: aws_sdk_eks::Client::new(shared),
            region: config.region.clone(),
            credentials: shared.credentials_provider(),
            endpoint,
            ec2_slots: slots(),
            s3_slots: slots(),
            iam_slots: slots(),
            eks_slots: slots(),
        }
    }

    /// Clients whose every request goes to `http` (a recorded conversation), signed with
    /// test credentials, in eu-west-1.
    #[cfg(test)]
    pub fn replaying(http: impl aws_smithy_runtime_api::client::http::HttpClient + 'static) -> Self {
        let credentials = aws_credential_types::Credentials::new("AKIDTEST", "secret", None, None, "test");
        let shared = aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(credentials))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .http_client(http)
            .build();
        let config = AwsConfig { region: "eu-west-1".into(), endpoint: None, profile: None, concurrency: 1 };
        Self::from_shared(&shared, &config, None)
    }

    /// Waits for a free request slot of `service`; hold it while the request is in flight.
    async fn slot(&self, service: Service) -> SemaphorePermit<'_> {
        let slots = match service {
            Service::Ec2 => &self.ec2_slots,
            Service::S3 => &self.s3_slots,
            Service::Iam => &self.iam_slots,
            Service::Eks => &self.eks_slots,
        };
        slots.acquire().await.expect("the semaphores are never closed")
    }

    /// Sends one request to `service` within its bound on requests in flight.
    pub async fn call<T>(&self, service: Service, request: impl std::future::Future<Output = T>) -> T {
        let _slot = self.slot(service).await;
        request.await
    }
}
