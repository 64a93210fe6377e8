//! How the Kubernetes provider reaches an EKS cluster the lab makes: its endpoint and CA
//! from EKS, and a token labctl mints itself (no `aws` CLI, no kubeconfig to hand around).
//!
//! Test-only: `LABCTL_TEST_EKS_KUBECONFIGS="<cluster>=<kubeconfig>[,…]"` maps an EKS
//! cluster's name to a kubeconfig whose cluster stands in for its API (an emulator's EKS
//! serves no Kubernetes API). The cluster must still exist in EKS.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_credential_types::provider::ProvideCredentials;
use labctl_provider_api::{ErrorKind, ProviderError};
use labctl_provider_kubernetes::{Access, ClusterAccess};

use crate::clients::Clients;
use crate::eks_token::{self, TOKEN_LIFETIME};
use crate::errors::source_chain;

/// The EKS cluster `name`, as the Kubernetes provider's cluster.
pub(crate) struct EksAccess {
    pub clients: Arc<Clients>,
    pub name: String,
}

/// The test-only variable mapping cluster names to kubeconfigs.
const TEST_KUBECONFIGS: &str = "LABCTL_TEST_EKS_KUBECONFIGS";

/// The kubeconfig `LABCTL_TEST_EKS_KUBECONFIGS` gives cluster `name`, if any.
fn stand_in(name: &str) -> Option<PathBuf> {
    let mapping = std::env::var(TEST_KUBECONFIGS).ok()?;
    mapping
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, p)| p.into())
}

#[async_trait]
impl ClusterAccess for EksAccess {
    fn name(&self) -> &str {
        &self.name
    }

    async fn access(&self) -> Result<Option<Access>, ProviderError> {
        let c = self.clients.get().await?;
        let Some(cluster) = crate::eks::describe_cluster(c, &self.name).await? else { return Ok(None) };
        if let Some(kubeconfig) = stand_in(&self.name) {
            return Ok(Some(Access::Kubeconfig(kubeconfig)));
        }
        let name = &self.name;
        let not_yet = |what: &str| {
            ProviderError::new(
                ErrorKind::Unavailable,
                format!("EKS reports no {what} for cluster {name} yet"),
            )
        };
        let server = cluster.endpoint().ok_or_else(|| not_yet("endpoint"))?.to_owned();
        let ca = cluster.certificate_authority().and_then(|a| a.data()).ok_or_else(|| not_yet("CA"))?;
        let provider = c
            .credentials
            .as_ref()
            .ok_or_else(|| ProviderError::fatal("no AWS credentials to sign an EKS token with"))?;
        let credentials = provider.provide_credentials().await.map_err(|e| {
            ProviderError::fatal(format!("AWS credentials for an EKS token: {}", source_chain(&e)))
        })?;
        // Good for its lifetime, or until the credentials it is signed with expire.
        let now = SystemTime::now();
        let left = credentials.expiry().and_then(|at| at.duration_since(now).ok());
        let lifetime = left.map_or(TOKEN_LIFETIME, |left| left.min(TOKEN_LIFETIME));
        let token = eks_token::mint(name, &c.region, credentials, now).map_err(ProviderError::fatal)?;
        let expires = tokio::time::Instant::now() + lifetime;
        Ok(Some(Access::Token { server, ca: ca.to_owned(), token, expires }))
    }
}
