//! Turning the lab's provider block into live providers, each with its own rate limit.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use labctl_provider_api::{KindSchema, NullProvider, Provider};
use labctl_provider_aws::{AwsConfig, AwsProvider};
use labctl_provider_kubernetes::{KubernetesConfig, KubernetesProvider};
use labctl_provider_local::LocalProvider;
use serde::{Deserialize, Serialize};

use crate::engine::{FaultInjector, RateLimiter};
use crate::lab::{Lab, ProviderConfig};

/// The provider block resolved to concrete settings; saved in plans so that `apply PLAN`
/// needs nothing but the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum ProviderSettings {
    Local { data_dir: PathBuf, rate_limit: Option<f64> },
    Aws { config: AwsConfig, rate_limit: Option<f64> },
    Kubernetes { config: KubernetesConfig, rate_limit: Option<f64> },
}

impl ProviderSettings {
    /// Resolves the lab's provider block; `data_dir` overrides the local provider's.
    pub fn resolve(lab: &Lab, data_dir: Option<PathBuf>) -> Result<Self, String> {
        match &lab.provider {
            ProviderConfig::Local(local) => {
                let data_dir = data_dir
                    .or_else(|| local.data_dir.as_ref().map(PathBuf::from))
                    .or_else(|| dirs::data_dir().map(|d| d.join("labctl")))
                    .ok_or("no data directory: pass --data-dir")?;
                let data_dir =
                    std::path::absolute(&data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
                Ok(Self::Local { data_dir, rate_limit: local.rate_limit })
            }
            ProviderConfig::Aws(aws) => Ok(Self::Aws {
                config: AwsConfig {
                    region: aws.region.clone(),
                    endpoint: aws.endpoint.clone(),
                    profile: aws.profile.clone(),
                    concurrency: aws.concurrency.unwrap_or(labctl_provider_aws::DEFAULT_CONCURRENCY),
                },
                rate_limit: aws.rate_limit,
            }),
            ProviderConfig::Kubernetes(k8s) => Ok(Self::Kubernetes {
                config: KubernetesConfig {
                    kubeconfig: k8s.kubeconfig.as_deref().map(|p| beside(&lab.path, p)),
                    context: k8s.context.clone(),
                    ready_timeout_secs: k8s
                        .ready_timeout
                        .unwrap_or(labctl_provider_kubernetes::DEFAULT_READY_TIMEOUT_SECS),
                },
                rate_limit: k8s.rate_limit,
            }),
            other => Err(format!(
                "the {} provider is not available in this build of labctl yet; use [provider.local]",
                other.name()
            )),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Local { .. } => "local",
            Self::Aws { .. } => "aws",
            Self::Kubernetes { .. } => "kubernetes",
        }
    }

    /// How to reach S3 for an `s3://` state: with the lab's AWS settings, if it has them.
    pub fn s3(&self) -> crate::state::S3Settings {
        match self {
            Self::Aws { config, .. } => crate::state::S3Settings {
                region: Some(config.region.clone()),
                endpoint: config.endpoint.clone(),
                profile: config.profile.clone(),
            },
            Self::Local { .. } | Self::Kubernetes { .. } => crate::state::S3Settings::default(),
        }
    }
}

/// Where the smoke workloads run.
pub enum SmokeRunner {
    /// On this machine: the bundled workers in `bin_dir` as clients of the students' services.
    Here { bin_dir: PathBuf },
    /// As Jobs in the students' namespaces.
    Jobs(Arc<KubernetesProvider>),
}

impl SmokeRunner {
    /// Checks run at once: here they share this machine's cores; Jobs run on the cluster's.
    pub fn parallel(&self) -> usize {
        match self {
            Self::Here { .. } => 2,
            Self::Jobs(_) => 8,
        }
    }
}

/// A path as written in the lab file at `lab_file`: `~/` is the home directory, a relative
/// path is taken from the lab file's directory (as rosters are).
fn beside(lab_file: &std::path::Path, path: &str) -> PathBuf {
    let path = match (path.strip_prefix("~/"), dirs::home_dir()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => lab_file.parent().unwrap_or(std::path::Path::new(".")).join(path),
    };
    std::path::absolute(&path).unwrap_or(path)
}

/// Where the bundled worker binaries are: `LABCTL_WORKER_BIN_DIR`, else beside `labctl`
/// (they are built from the same workspace).
pub fn worker_bin_dir() -> PathBuf {
    std::env::var_os("LABCTL_WORKER_BIN_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::current_exe().ok().and_then(|e| e.parent().map(PathBuf::from)))
        .unwrap_or_default()
}

/// A provider ready for the engine, with its request rate limit.
pub struct Live {
    pub provider: Arc<dyn Provider>,
    pub limiter: Arc<RateLimiter>,
}

/// The providers one lab uses, by name: its own and the built-in `null`; and where its
/// smoke workloads run.
pub struct Registry {
    live: HashMap<String, Live>,
    smoke: Result<SmokeRunner, String>,
}

impl Registry {
    pub fn new(settings: &ProviderSettings, lab: &str) -> Self {
        let here = || Ok(SmokeRunner::Here { bin_dir: worker_bin_dir() });
        let (main, rate, smoke): (Arc<dyn Provider>, _, _) = match settings {
            ProviderSettings::Local { data_dir, rate_limit } => {
                (Arc::new(LocalProvider::new(data_dir, lab, &worker_bin_dir())), *rate_limit, here())
            }
            ProviderSettings::Aws { config, rate_limit } => {
                let why = "smoke workloads run on the local and kubernetes providers only in this version of labctl; \
                           on aws each VM's cloud-init installs and starts the workers (see the VM's console output)";
                (
                    Arc::new(AwsProvider::new(config.clone(), lab, &worker_bin_dir())),
                    *rate_limit,
                    Err(why.to_owned()),
                )
            }
            ProviderSettings::Kubernetes { config, rate_limit } => {
                // The smoke jobs use the engine's connection to the cluster.
                let provider = Arc::new(KubernetesProvider::new(config.clone(), lab));
                (provider.clone(), *rate_limit, Ok(SmokeRunner::Jobs(provider)))
            }
        };
        let mut live = HashMap::new();
        for (provider, rate) in [(main, rate), (Arc::new(NullProvider) as Arc<dyn Provider>, None)] {
            let provider = FaultInjector::wrap_from_env(provider);
            live.insert(
                provider.name().to_owned(),
                Live { provider, limiter: Arc::new(RateLimiter::new(rate)) },
            );
        }
        Self { live, smoke }
    }

    /// Where `labctl verify` runs the smoke workloads, or why it cannot.
    pub fn smoke_runner(&self) -> Result<&SmokeRunner, String> {
        self.smoke.as_ref().map_err(Clone::clone)
    }

    pub fn get(&self, name: &str) -> Option<&Live> {
        self.live.get(name)
    }

    pub fn schema(&self, provider: &str, kind: &str) -> Option<&KindSchema> {
        self.live.get(provider)?.provider.kind(kind)
    }

    pub fn all(&self) -> impl Iterator<Item = &Live> {
        self.live.values()
    }
}
