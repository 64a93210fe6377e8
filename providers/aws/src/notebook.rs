//! The lab's notebook stack (`labctl_provider_vm::notebook`) in its S3 artifacts bucket:
//! the wheelhouse and the starters, uploaded when their content changed.

use std::path::Path;

use labctl_provider_api::configs::config;
use labctl_provider_api::{sha256, Observed, ProviderError, ResourceSpec};
use labctl_provider_vm::notebook::{self, stack_bucket, NotebookStackConfig, PREFIX, WHEELHOUSE_KEY};

use crate::clients::Aws;
use crate::storage::{delete_prefix, object_hash, put};

/// Builds the stack in `dir` and uploads what changed.
pub(crate) async fn create(c: &Aws, spec: &ResourceSpec, dir: &Path) -> Result<Observed, ProviderError> {
    let stack: NotebookStackConfig = config(spec)?;
    let bucket = stack.artifacts.as_str();
    let (pins, wheelhouse) = notebook::build(dir, &stack.requirements).await?;
    if object_hash(c, bucket, WHEELHOUSE_KEY).await?.as_deref() != Some(wheelhouse.sha256.as_str()) {
        let path = wheelhouse.path.clone();
        put(c, bucket, WHEELHOUSE_KEY, &wheelhouse.sha256, move || std::fs::read(path)).await?;
    }
    for (key, text) in stack.starter_objects() {
        let hash = sha256(text.as_bytes());
        if object_hash(c, bucket, &key).await?.as_deref() != Some(hash.as_str()) {
            let bytes = text.as_bytes().to_vec();
            put(c, bucket, &key, &hash, move || Ok(bytes)).await?;
        }
    }
    Ok(notebook::observed(format!("s3://{bucket}/{PREFIX}"), &stack, &wheelhouse, pins))
}

/// The stack as recorded while its wheelhouse is in the bucket.
pub(crate) async fn read(c: &Aws, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
    Ok(object_hash(c, stack_bucket(prior), WHEELHOUSE_KEY).await?.is_some().then(|| prior.clone()))
}

pub(crate) async fn delete(c: &Aws, prior: &Observed) -> Result<(), ProviderError> {
    delete_prefix(c, stack_bucket(prior), Some(PREFIX)).await
}
