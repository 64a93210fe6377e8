//! How the Kubernetes provider reaches a GKE cluster the lab makes: its endpoint and CA from
//! GKE, and an OAuth access token of labctl's own Google credentials (see oauth.rs), which
//! GKE's API server accepts (no `gcloud`, no `gke-gcloud-auth-plugin`, no kubeconfig to hand
//! around).
//!
//! In tests, `LABCTL_TEST_KUBECONFIGS` names a stand-in for the cluster's Kubernetes API
//! ([`test_stand_in`]).

use std::sync::Arc;

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

#[async_trait]
impl ClusterAccess for GkeAccess {
    fn name(&self) -> &str {
        &self.name
    }

    async fn access(&self) -> Result<Option<Access>, ProviderError> {
        let c = self.clients.get().await?;
        let Some((server, ca)) = crate::gke::endpoint(c, &self.id).await? else { return Ok(None) };
        // Asked for also when a stand-in answers in tests: the emulator grants tokens too.
        let token = crate::oauth::access_token(c).await?;
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
        let expires = tokio::time::Instant::now() + token.lifetime;
        Ok(Some(Access::Token { server, ca, token: token.token, expires }))
    }
}
