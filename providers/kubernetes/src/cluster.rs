//! The connection to the cluster, made once on first use from the kubeconfig.

use std::path::PathBuf;

use base64::Engine;
use kube::config::{KubeConfigOptions, Kubeconfig};
use labctl_provider_api::ProviderError;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

/// Which cluster, and how labctl waits on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KubernetesConfig {
    /// A kubeconfig file; default `KUBECONFIG`, then `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// A context in it; default its current context.
    pub context: Option<String>,
    /// How long to wait for a workload to become ready, or a namespace to be gone.
    pub ready_timeout_secs: u64,
}

/// Default of [`KubernetesConfig::ready_timeout_secs`]: enough to pull an image and start.
pub const DEFAULT_READY_TIMEOUT_SECS: u64 = 300;

/// A connected cluster and what a student's kubeconfig needs to reach it.
pub(crate) struct Cluster {
    pub client: kube::Client,
    /// The context's name, naming the cluster in students' kubeconfigs.
    pub name: String,
    pub server: String,
    /// The cluster's CA bundle, base64 PEM as in a kubeconfig.
    pub ca: Option<String>,
}

/// The cluster, connected on first use; an unusable kubeconfig gives every resource the
/// same answer.
pub(crate) struct Connection {
    config: KubernetesConfig,
    cell: OnceCell<Result<Cluster, ProviderError>>,
}

impl Connection {
    pub fn new(config: KubernetesConfig) -> Self {
        Self { config, cell: OnceCell::new() }
    }

    pub fn config(&self) -> &KubernetesConfig {
        &self.config
    }

    pub async fn get(&self) -> Result<&Cluster, ProviderError> {
        let connect = || async { connect(&self.config).await.map_err(ProviderError::fatal) };
        self.cell.get_or_init(connect).await.as_ref().map_err(Clone::clone)
    }
}

async fn connect(config: &KubernetesConfig) -> Result<Cluster, String> {
    let source = match &config.kubeconfig {
        Some(path) => path.display().to_string(),
        None => "the default kubeconfig (KUBECONFIG or ~/.kube/config)".to_owned(),
    };
    let kubeconfig = match &config.kubeconfig {
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    }
    .map_err(|e| format!("cannot read {source}: {e}"))?;
    let context = config.context.clone().or_else(|| kubeconfig.current_context.clone()).ok_or_else(|| {
        format!("{source} has no current context: set `context` under [provider.kubernetes]")
    })?;
    let named = kubeconfig.contexts.iter().find(|c| c.name == context).ok_or_else(|| {
        let known: Vec<&str> = kubeconfig.contexts.iter().map(|c| c.name.as_str()).collect();
        format!("{source} has no context `{context}` (it has: {})", known.join(", "))
    })?;
    let cluster_name = named.context.as_ref().map(|c| c.cluster.clone()).unwrap_or_default();
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.clone())
        .unwrap_or_default();
    let ca = match (&cluster.certificate_authority_data, &cluster.certificate_authority) {
        (Some(data), _) => Some(data.clone()),
        (None, Some(file)) => Some(
            base64::engine::general_purpose::STANDARD
                .encode(std::fs::read(file).map_err(|e| format!("{file}: {e}"))?),
        ),
        (None, None) => None,
    };
    let options = KubeConfigOptions { context: Some(context.clone()), ..Default::default() };
    let client_config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| format!("{source}, context `{context}`: {e}"))?;
    let server = client_config.cluster_url.to_string().trim_end_matches('/').to_owned();
    let client =
        kube::Client::try_from(client_config).map_err(|e| format!("cannot connect to {server}: {e}"))?;
    Ok(Cluster { client, name: context, server, ca })
}
