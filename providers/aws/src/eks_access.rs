//! How the Kubernetes provider reaches an EKS cluster the lab makes: its endpoint and CA
//! from EKS, and a token labctl mints itself (no `aws` CLI, no kubeconfig to hand around).
//!
//! In tests, `LABCTL_TEST_KUBECONFIGS` names a stand-in for the cluster's Kubernetes API
//! ([`test_stand_in`]).

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_credential_types::provider::ProvideCredentials;
use labctl_provider_api::{ErrorKind, ProviderError};
use labctl_provider_kubernetes::{test_stand_in, Access, ClusterAccess};

use crate::clients::Clients;
use crate::eks_token::{self, TOKEN_LIFETIME};
use crate::errors::source_chain;

/// The EKS cluster `name`, as the Kubernetes provider's cluster.
pub(crate) struct EksAccess {
    pub clients: Arc<Clients>,
    pub name: String,
}

#[async_trait]
impl ClusterAccess for EksAccess {
    fn name(&self) -> &str {
        &self.name
    }

    async fn access(&self) -> Result<Option<Access>, ProviderError> {
        let c = self.clients.get().await?;
        let Some(cluster) = crate::eks::describe_cluster(c, &self.name).await? else { return Ok(None) };
        if let Some(kubeconfig) = test_stand_in(&self.name) {
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
