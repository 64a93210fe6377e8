use async_trait::async_trait;

use crate::{Deps, Found, KindSchema, Observed, Provider, ProviderError, ResourceSpec};

/// Resources that exist only in state, like Terraform's `terraform_data`: useful to hang
/// dependencies on, to force replacements (`triggers_replace`), and to measure the engine.
#[derive(Debug, Default)]
pub struct NullProvider;

const KINDS: &[KindSchema] = &[KindSchema { name: "null", replace_on: &["triggers_replace"] }];

#[async_trait]
impl Provider for NullProvider {
    fn name(&self) -> &str {
        "null"
    }

    fn kinds(&self) -> &[KindSchema] {
        KINDS
    }

    async fn read(&self, _kind: &str, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
        Ok(Some(prior.clone()))
    }

    async fn create(&self, spec: &ResourceSpec, _deps: &Deps) -> Result<Observed, ProviderError> {
        Ok(Observed { id: spec.address.clone(), attributes: spec.config.clone(), sensitive: vec![] })
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        prior: &Observed,
        _deps: &Deps,
    ) -> Result<Observed, ProviderError> {
        Ok(Observed { id: prior.id.clone(), attributes: spec.config.clone(), sensitive: vec![] })
    }

    async fn delete(&self, _kind: &str, _prior: &Observed) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn sweep(&self, _lab: &str) -> Result<Vec<Found>, ProviderError> {
        Ok(vec![])
    }

    async fn retag(&self, _spec: &ResourceSpec, prior: &Observed) -> Result<Observed, ProviderError> {
        Ok(prior.clone())
    }

    async fn labs(&self) -> Result<Vec<String>, ProviderError> {
        Ok(vec![])
    }
}
