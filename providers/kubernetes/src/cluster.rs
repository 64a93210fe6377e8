//! The connection to the cluster: made on first use from the kubeconfig, or from what the
//! provider that makes the cluster says (renewed with its token).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use kube::config::{KubeConfigOptions, Kubeconfig};
use labctl_provider_api::{ErrorKind, ProviderError};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

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

/// A cluster another provider makes (an EKS or GKE cluster) and the Kubernetes provider works on:
/// how to reach it, asked when a connection is first needed and again before its token
/// expires.
#[async_trait::async_trait]
pub trait ClusterAccess: Send + Sync {
    /// The cluster's name, for messages.
    fn name(&self) -> &str;

    /// How to reach the cluster now, or `None` while it does not exist (then nothing in it
    /// does either).
    async fn access(&self) -> Result<Option<Access>, ProviderError>;
}

/// The test-only variable mapping a cloud cluster's name to a kubeconfig whose cluster
/// stands in for its Kubernetes API: `LABCTL_TEST_KUBECONFIGS="<cluster>=<kubeconfig>[,…]"`
/// (an emulator's EKS or GKE serves none). The cluster must still exist in the cloud.
const TEST_KUBECONFIGS: &str = "LABCTL_TEST_KUBECONFIGS";

/// The kubeconfig `LABCTL_TEST_KUBECONFIGS` gives the cloud cluster `name`, if any: a
/// [`ClusterAccess`] answers [`Access::Kubeconfig`] with it.
pub fn test_stand_in(name: &str) -> Option<PathBuf> {
    let mapping = std::env::var(TEST_KUBECONFIGS).ok()?;
    mapping
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, p)| p.into())
}

/// A kubeconfig for the cluster `name` at `server` (CA: base64 PEM) whose user gets its
/// credentials from a command: `exec`, the lines of its `exec` entry after `apiVersion`
/// (`command: …`, `args: […]`, …). It holds no secret; instructors use it with kubectl.
pub fn exec_kubeconfig(name: &str, server: &str, ca: &str, exec: &str) -> String {
    let exec: String = exec.lines().map(|line| format!("        {line}\n")).collect();
    format!(
        "apiVersion: v1
kind: Config
clusters:
  - name: {name}
    cluster:
      server: {server}
      certificate-authority-data: {ca}
contexts:
  - name: {name}
    context:
      cluster: {name}
      user: {name}
current-context: {name}
users:
  - name: {name}
    user:
      exec:
        apiVersion: client.authentication.k8s.io/v1beta1
{exec}"
    )
}

/// How to reach a cluster.
pub enum Access {
    /// Its API endpoint and CA (base64 PEM), with a bearer token good until `expires`.
    Token { server: String, ca: String, token: String, expires: Instant },
    /// A kubeconfig file's current context (a test cluster standing in for a cloud's).
    Kubeconfig(PathBuf),
}

/// Where the provider's cluster is: a kubeconfig's context, or a cluster the lab makes.
enum Source {
    Kubeconfig(KubernetesConfig),
    Hosted(Arc<dyn ClusterAccess>),
}

/// A connection and until when it may be used.
type Current = (Arc<Cluster>, Option<Instant>);

/// The cluster, connected on first use. An unusable kubeconfig gives every resource the
/// same answer; a hosted cluster is asked again once its token is about to expire.
pub(crate) struct Connection {
    source: Source,
    ready_timeout_secs: u64,
    current: tokio::sync::Mutex<Option<Result<Current, ProviderError>>>,
}

/// A token is renewed this long, and as long as a wait may take, before it expires: a
/// client taken from the connection is used until then.
const RENEW_BEFORE: Duration = Duration::from_secs(60);

impl Connection {
    pub fn new(config: KubernetesConfig) -> Self {
        let ready_timeout_secs = config.ready_timeout_secs;
        Self { source: Source::Kubeconfig(config), ready_timeout_secs, current: Default::default() }
    }

    /// A connection to a cluster the lab makes, reached as `access` says.
    pub fn hosted(access: Arc<dyn ClusterAccess>, ready_timeout_secs: u64) -> Self {
        Self { source: Source::Hosted(access), ready_timeout_secs, current: Default::default() }
    }

    pub fn ready_timeout(&self) -> Duration {
        Duration::from_secs(self.ready_timeout_secs)
    }

    /// The cluster, or why it cannot be reached.
    pub async fn get(&self) -> Result<Arc<Cluster>, ProviderError> {
        self.find().await?.ok_or_else(|| {
            let name = match &self.source {
                Source::Hosted(access) => access.name(),
                Source::Kubeconfig(_) => "the kubeconfig's cluster",
            };
            ProviderError::new(ErrorKind::Unavailable, format!("cluster {name} does not exist yet"))
        })
    }

    /// The cluster, or `None` when it is a hosted cluster that does not exist.
    pub async fn find(&self) -> Result<Option<Arc<Cluster>>, ProviderError> {
        let mut current = self.current.lock().await;
        let margin = RENEW_BEFORE + self.ready_timeout();
        let fresh = |until: &Option<Instant>| until.is_none_or(|t| Instant::now() + margin < t);
        match &*current {
            Some(Ok((cluster, until))) if fresh(until) => return Ok(Some(cluster.clone())),
            Some(Err(e)) => return Err(e.clone()),
            _ => {}
        }
        let connected = match &self.source {
            // A kubeconfig that does not work now will not work for the next resource: its
            // failure is kept too.
            Source::Kubeconfig(config) => {
                connect(config).await.map_err(ProviderError::fatal).map(|c| (Arc::new(c), None))
            }
            Source::Hosted(access) => match access.access().await? {
                None => return Ok(None),
                Some(found) => Ok(hosted(access.name(), found).await.map_err(ProviderError::fatal)?),
            },
        };
        *current = Some(connected.clone());
        connected.map(|(cluster, _)| Some(cluster))
    }
}

/// Connects to a cluster the lab makes.
async fn hosted(name: &str, access: Access) -> Result<Current, String> {
    match access {
        Access::Kubeconfig(path) => {
            let config = KubernetesConfig { kubeconfig: Some(path), context: None, ready_timeout_secs: 0 };
            Ok((Arc::new(connect(&config).await?), None))
        }
        Access::Token { server, ca, token, expires } => {
            let kubeconfig: Kubeconfig = serde_json::from_value(serde_json::json!({
                "clusters": [{ "name": name, "cluster": { "server": server, "certificate-authority-data": ca } }],
                "users": [{ "name": name, "user": { "token": token } }],
                "contexts": [{ "name": name, "context": { "cluster": name, "user": name } }],
                "current-context": name,
            }))
            .map_err(|e| format!("cluster {name}'s connection: {e}"))?;
            let cluster = from_kubeconfig(kubeconfig, name.to_owned(), &format!("cluster {name}")).await?;
            Ok((Arc::new(cluster), Some(expires)))
        }
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
    from_kubeconfig(kubeconfig, context, &source).await
}

/// Connects to `context` of `kubeconfig` (read from `source`).
async fn from_kubeconfig(kubeconfig: Kubeconfig, context: String, source: &str) -> Result<Cluster, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exec_kubeconfig_names_the_cluster_and_the_command_that_authenticates() {
        let exec = "command: aws\nargs: [eks, get-token, --cluster-name, c1]";
        let text = exec_kubeconfig("c1", "https://203.0.113.9", "Q0E=", exec);
        let parsed = Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(parsed.current_context.as_deref(), Some("c1"));
        let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://203.0.113.9"));
        let user = parsed.auth_infos[0].auth_info.as_ref().unwrap().exec.as_ref().unwrap();
        assert_eq!(user.command.as_deref(), Some("aws"));
        assert_eq!(
            user.args.as_deref(),
            Some(&["eks", "get-token", "--cluster-name", "c1"].map(String::from)[..])
        );
    }
}
