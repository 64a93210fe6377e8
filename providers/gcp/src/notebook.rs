//! The lab's notebook stack (`labctl_provider_vm::notebook`) in its Cloud Storage artifacts
//! bucket: the wheelhouse and the starters, each uploaded when its SHA-256 (recorded beside
//! it, as the worker binaries') changed.

use std::path::Path;

use labctl_provider_api::configs::config;
use labctl_provider_api::{sha256, Observed, ProviderError, ResourceSpec};
use labctl_provider_vm::notebook::{self, stack_bucket, NotebookStackConfig, PREFIX, WHEELHOUSE_KEY};

use crate::clients::Gcp;
use crate::storage::{delete_prefix, get, put};

/// Builds the stack in `dir` and uploads what changed.
pub(crate) async fn create(c: &Gcp, spec: &ResourceSpec, dir: &Path) -> Result<Observed, ProviderError> {
    let stack: NotebookStackConfig = config(spec)?;
    let bucket = stack.artifacts.as_str();
    let (pins, wheelhouse) = notebook::build(dir, &stack.requirements).await?;
    let bytes = tokio::fs::read(&wheelhouse.path)
        .await
        .map_err(|e| ProviderError::fatal(format!("{}: {e}", wheelhouse.path.display())))?;
    upload(c, bucket, WHEELHOUSE_KEY, &wheelhouse.sha256, bytes).await?;
    for (key, text) in stack.starter_objects() {
        upload(c, bucket, &key, &sha256(text.as_bytes()), text.as_bytes().to_vec()).await?;
    }
    Ok(notebook::observed(format!("gs://{bucket}/{PREFIX}"), &stack, &wheelhouse, pins))
}

/// Writes `key` (then its hash beside it) unless the hash recorded is `hash`.
async fn upload(c: &Gcp, bucket: &str, key: &str, hash: &str, bytes: Vec<u8>) -> Result<(), ProviderError> {
    let recorded = get(c, bucket, &format!("{key}.sha256")).await?;
    if recorded.as_deref() != Some(hash.as_bytes()) {
        put(c, bucket, key, bytes).await?;
        put(c, bucket, &format!("{key}.sha256"), hash.as_bytes().to_vec()).await?;
    }
    Ok(())
}

/// The stack as recorded while its wheelhouse is in the bucket.
pub(crate) async fn read(c: &Gcp, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
    let recorded = get(c, stack_bucket(prior), &format!("{WHEELHOUSE_KEY}.sha256")).await?;
    Ok(recorded.is_some().then(|| prior.clone()))
}

pub(crate) async fn delete(c: &Gcp, prior: &Observed) -> Result<(), ProviderError> {
    delete_prefix(c, stack_bucket(prior), PREFIX).await
}
