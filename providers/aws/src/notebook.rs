//! The lab's notebook stack in its artifacts bucket, for the students' VMs: the wheelhouse
//! they install the lab's Python environment from with no package index (built here once,
//! its versions pinned), the starter notebooks, and the files each VM fetches into the
//! student's home (their datasets, the starters).

use std::path::Path;

use labctl_notebook::stack::PythonEnv;
use labctl_provider_api::configs::config;
use labctl_provider_api::{attrs, sha256, Observed, ProviderError, ResourceSpec};
use serde_json::json;

use crate::clients::Aws;
use crate::plugin::NotebookStackConfig;
use crate::storage::{delete_prefix, object_hash, put};

/// Where the stack lives in the artifacts bucket.
const PREFIX: &str = "notebook/";

/// Builds the lab's Python environment in `dir` (or finds it built, at its pins), packs it
/// as a wheelhouse and uploads what changed.
pub(crate) async fn create(c: &Aws, spec: &ResourceSpec, dir: &Path) -> Result<Observed, ProviderError> {
    let stack: NotebookStackConfig = config(spec)?;
    let bucket = stack.artifacts.as_str();
    let (env, requirements) = (PythonEnv::at(dir), stack.requirements.clone());
    let (pins, wheelhouse) = tokio::task::spawn_blocking(move || {
        let pins = env.build(&requirements)?;
        env.wheelhouse().map(|w| (pins, w))
    })
    .await
    .map_err(|e| ProviderError::fatal(format!("building the wheelhouse: {e}")))?
    .map_err(ProviderError::invalid)?;
    let key = format!("{PREFIX}wheelhouse.tar");
    if object_hash(c, bucket, &key).await?.as_deref() != Some(wheelhouse.sha256.as_str()) {
        let path = wheelhouse.path.clone();
        put(c, bucket, &key, &wheelhouse.sha256, move || std::fs::read(path)).await?;
    }
    let mut files = vec![];
    for (name, text) in &stack.starters {
        let starter = format!("{PREFIX}starters/{name}");
        let hash = sha256(text.as_bytes());
        if object_hash(c, bucket, &starter).await?.as_deref() != Some(hash.as_str()) {
            let bytes = text.clone().into_bytes();
            put(c, bucket, &starter, &hash, move || Ok(bytes)).await?;
        }
        files.push(json!({ "key": starter, "path": format!("notebooks/{name}") }));
    }
    for (name, parts) in &stack.datasets {
        for part in parts {
            let path = format!("{}/{name}/{part}", labctl_provider_vm::smoke::DATASETS);
            files.push(json!({ "key": format!("datasets/{name}/{part}"), "path": path }));
        }
    }
    Ok(Observed {
        id: format!("s3://{bucket}/{PREFIX}"),
        attributes: attrs(json!({
            "bucket": bucket,
            "wheelhouse": key,
            "wheelhouse_sha256": wheelhouse.sha256,
            "python": wheelhouse.python,
            "pinned": pins,
            "files": files,
        })),
        sensitive: vec![],
    })
}

/// The stack as recorded while its wheelhouse is in the bucket.
pub(crate) async fn read(c: &Aws, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
    let (bucket, key) = (attr(prior, "bucket"), attr(prior, "wheelhouse"));
    Ok(object_hash(c, bucket, key).await?.is_some().then(|| prior.clone()))
}

pub(crate) async fn delete(c: &Aws, prior: &Observed) -> Result<(), ProviderError> {
    delete_prefix(c, attr(prior, "bucket"), Some(PREFIX)).await
}

fn attr<'a>(observed: &'a Observed, key: &str) -> &'a str {
    observed.attributes.get(key).and_then(|v| v.as_str()).unwrap_or_default()
}
