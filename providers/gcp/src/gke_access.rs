//! How the Kubernetes provider reaches a GKE cluster the lab makes: its endpoint and CA from
//! GKE, and an OAuth access token of labctl's own Google credentials, which GKE's API server
//! accepts (no `gcloud`, no `gke-gcloud-auth-plugin`, no kubeconfig to hand around).
//!
//! In tests, `LABCTL_TEST_KUBECONFIGS` names a stand-in for the cluster's Kubernetes API
//! ([`test_stand_in`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use labctl_provider_api::{ErrorKind, ProviderError};
use labctl_provider_kubernetes::{test_stand_in, Access, ClusterAccess};

use crate::clients::Clients;

/// The GKE cluster of `id` (`locations/<zone>/clusters/<name>`), as the Kubernetes
/// provider's cluster.
pub(crate) struct GkeAccess {
    pub clients: Arc<Clients>,
    pub id: String,
    pub name: String,
}

/// How long a connection uses one token: the credentials cache and renew it (Google's
/// access tokens last an hour), so asking again costs nothing.
const TOKEN_USE: Duration = Duration::from_secs(5 * 60);

#[async_trait]
impl ClusterAccess for GkeAccess {
    fn name(&self) -> &str {
        &self.name
    }

    async fn access(&self) -> Result<Option<Access>, ProviderError> {
        let c = self.clients.get().await?;
        let Some((server, ca)) = crate::gke::endpoint(c, &self.id).await? else { return Ok(None) };
        if let Some(kubeconfig) = test_stand_in(&self.name) {
            return Ok(Some(Access::Kubeconfig(kubeconfig)));
        }
        let name = &self.name;
        if ca.is_empty() {
            return Err(ProviderError::new(
                ErrorKind::Unavailable,
                format!("GKE reports no CA for cluster {name} yet"),
            ));
        }
        let token = c.tokens.access_token().await.map_err(|e| {
            ProviderError::new(ErrorKind::Unavailable, format!("no access token for GKE cluster {name}: {e}"))
        })?;
        let token = token.token;
        Ok(Some(Access::Token { server, ca, token, expires: tokio::time::Instant::now() + TOKEN_USE }))
    }
}
