//! S3: the lab's artifacts bucket (worker binaries and datasets, uploaded once and only
//! when their content changed), each student's bucket, and datasets copied into it.

use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Delete, ObjectIdentifier,
    PublicAccessBlockConfiguration,
};
use labctl_provider_api::configs::{
    config, dataset_hash, dataset_observed, dataset_prefix, split_dataset_id, BucketConfig, DatasetConfig,
    DATASET_MANIFEST,
};
use labctl_provider_api::dep_attr;
use labctl_provider_api::{archive, attrs, Deps, ErrorKind, Observed, ProviderError, ResourceSpec, Tags};
use serde_json::{json, Value};

use labctl_provider_vm::{worker_binary, WORKER_BINARIES};

use crate::clients::{Aws, Service::S3};

use crate::errors::{code, failed, is_missing};
use crate::plugin::ArtifactsConfig;
use crate::tagging;

/// Object metadata key holding the content hash that decides whether to upload again.
const HASH: &str = "sha256";

pub(crate) async fn create_artifacts(
    c: &Aws,
    spec: &ResourceSpec,
    bin_dir: &Path,
) -> Result<Observed, ProviderError> {
    let artifacts: ArtifactsConfig = config(spec)?;
    let bucket = artifacts.name.as_str();
    ensure_bucket(c, bucket, spec).await?;
    let partial = |e: ProviderError| e.with_partial(artifacts_observed(bucket, json!({}), json!({})));
    let mut binaries = serde_json::Map::new();
    if artifacts.workers.is_some() {
        for name in WORKER_BINARIES {
            let (bytes, hash) = worker_binary(bin_dir, name).await.map_err(partial)?;
            let key = format!("bin/{name}");
            if object_hash(c, bucket, &key).await.map_err(partial)?.as_deref() != Some(hash.as_str()) {
                put(c, bucket, &key, &hash, move || Ok(bytes)).await.map_err(partial)?;
            }
            binaries.insert(name.to_owned(), Value::String(hash));
        }
    }
    let mut datasets = serde_json::Map::new();
    for (name, dataset) in &artifacts.datasets {
        let hash = dataset_hash(dataset);
        let manifest_key = format!("datasets/{name}/{DATASET_MANIFEST}");
        if object_hash(c, bucket, &manifest_key).await.map_err(partial)?.as_deref() != Some(hash.as_str()) {
            // A changed definition may have fewer parts: none of the old ones may linger.
            delete_prefix(c, bucket, Some(&dataset_prefix(name))).await.map_err(partial)?;
            for part in dataset.parts() {
                let key = format!("datasets/{name}/{}", part.name);
                let (dataset, part) = (dataset.clone(), part.clone());
                let generate = move || {
                    let mut out = vec![];
                    dataset.write_part(&part, &mut out).map(|()| out)
                };
                put(c, bucket, &key, &hash, generate).await.map_err(partial)?;
            }
            let manifest = json!({ "dataset": dataset }).to_string().into_bytes();
            put(c, bucket, &manifest_key, &hash, move || Ok(manifest)).await.map_err(partial)?;
        }
        datasets.insert(name.clone(), Value::String(hash));
    }
    Ok(artifacts_observed(bucket, Value::Object(binaries), Value::Object(datasets)))
}

fn artifacts_observed(bucket: &str, binaries: Value, datasets: Value) -> Observed {
    Observed {
        id: bucket.to_owned(),
        attributes: attrs(json!({
            "artifacts_bucket": bucket,
            "url": format!("s3://{bucket}"),
            "binaries": binaries,
            "datasets": datasets,
        })),
        sensitive: vec![],
    }
}

pub(crate) async fn read_artifacts(c: &Aws, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
    Ok(bucket_exists(c, &prior.id).await?.then(|| prior.clone()))
}

pub(crate) async fn create_bucket(c: &Aws, spec: &ResourceSpec) -> Result<Observed, ProviderError> {
    let BucketConfig { name } = config(spec)?;
    let name = name.as_str();
    ensure_bucket(c, name, spec).await?;
    Ok(bucket_observed(name))
}

fn bucket_observed(name: &str) -> Observed {
    Observed {
        id: name.to_owned(),
        attributes: attrs(
            json!({ "name": name, "url": format!("s3://{name}"), "arn": format!("arn:aws:s3:::{name}") }),
        ),
        sensitive: vec![],
    }
}

pub(crate) async fn read_bucket(c: &Aws, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
    Ok(bucket_exists(c, &prior.id).await?.then(|| bucket_observed(&prior.id)))
}

async fn bucket_exists(c: &Aws, name: &str) -> Result<bool, ProviderError> {
    match c.call(S3, c.s3.head_bucket().bucket(name).send()).await {
        Ok(_) => Ok(true),
        Err(e) if is_missing(&e, &["NoSuchBucket", "NotFound"]) => Ok(false),
        Err(e) => Err(failed(format!("reading bucket {name}"))(e)),
    }
}

/// Makes the bucket, or adopts it if it is this resource's own (tagged for this lab, cohort
/// and student) or an untagged empty one an interrupted create left; tags it and blocks
/// public access.
async fn ensure_bucket(c: &Aws, name: &str, spec: &ResourceSpec) -> Result<(), ProviderError> {
    // us-east-1 answers a create of a bucket the account owns with 200, not
    // BucketAlreadyOwnedByYou: look first, so another lab's bucket is never taken over.
    if bucket_exists(c, name).await? {
        check_adoptable(c, name, spec).await?;
    }
    let mut create = c.s3.create_bucket().bucket(name);
    if c.region != "us-east-1" {
        let location = CreateBucketConfiguration::builder()
            .location_constraint(BucketLocationConstraint::from(c.region.as_str()))
            .build();
        create = create.create_bucket_configuration(location);
    }
    match c.call(S3, create.send()).await {
        Ok(_) => {}
        Err(e) if code(&e) == Some("BucketAlreadyOwnedByYou") => check_adoptable(c, name, spec).await?,
        Err(e) if code(&e) == Some("BucketAlreadyExists") => {
            return Err(ProviderError::invalid(format!(
                "bucket name `{name}` is taken by another AWS account; choose another lab name"
            )))
        }
        Err(e) => return Err(failed(format!("creating bucket {name}"))(e)),
    }
    let partial = |e: ProviderError| e.with_partial(bucket_observed(name));
    c.call(S3, c.s3.put_bucket_tagging().bucket(name).tagging(tagging::s3(spec, name)).send())
        .await
        .map_err(failed(format!("tagging bucket {name}")))
        .map_err(partial)?;
    let block = PublicAccessBlockConfiguration::builder()
        .block_public_acls(true)
        .ignore_public_acls(true)
        .block_public_policy(true)
        .restrict_public_buckets(true)
        .build();
    c.call(S3, c.s3.put_public_access_block().bucket(name).public_access_block_configuration(block).send())
        .await
        .map_err(failed(format!("blocking public access to bucket {name}")))
        .map_err(partial)?;
    Ok(())
}

async fn check_adoptable(c: &Aws, name: &str, spec: &ResourceSpec) -> Result<(), ProviderError> {
    let tags = match c.call(S3, c.s3.get_bucket_tagging().bucket(name).send()).await {
        Ok(out) => Tags::from_pairs(out.tag_set().iter().map(|t| (t.key(), t.value()))),
        Err(e) if code(&e) == Some("NoSuchTagSet") => None,
        Err(e) => return Err(failed(format!("reading the tags of bucket {name}"))(e)),
    };
    match tags {
        Some(tags) if tags.same_owner(&spec.tags) => Ok(()),
        Some(tags) => {
            Err(ProviderError::invalid(format!("bucket `{name}` already belongs to lab `{}`", tags.lab)))
        }
        None => {
            let objects = c
                .call(S3, c.s3.list_objects_v2().bucket(name).max_keys(1).send())
                .await
                .map_err(failed(format!("listing bucket {name}")))?;
            if objects.key_count().unwrap_or(0) > 0 {
                return Err(ProviderError::invalid(format!(
                    "bucket `{name}` exists, holds objects and was not made by labctl; remove it or choose another lab name"
                )));
            }
            Ok(())
        }
    }
}

/// Empties the bucket, then deletes it.
pub(crate) async fn delete_bucket(c: &Aws, name: &str) -> Result<(), ProviderError> {
    delete_prefix(c, name, None).await?;
    match c.call(S3, c.s3.delete_bucket().bucket(name).send()).await {
        Ok(_) => Ok(()),
        Err(e) if is_missing(&e, &["NoSuchBucket"]) => Ok(()),
        Err(e) if code(&e) == Some("BucketNotEmpty") => Err(ProviderError::new(
            ErrorKind::Unavailable,
            format!("bucket {name} got new objects while being emptied"),
        )),
        Err(e) => Err(failed(format!("deleting bucket {name}"))(e)),
    }
}

/// Copies the objects of student bucket `bucket` that [`archive::destination`] keeps into
/// `into`, one after another; how many. A bucket already gone holds nothing.
pub(crate) async fn archive_bucket(
    c: &Aws,
    bucket: &str,
    datasets: &[&str],
    into: &Path,
) -> Result<usize, ProviderError> {
    if !bucket_exists(c, bucket).await? {
        return Ok(0);
    }
    let mut copied = 0;
    for key in list_keys(c, bucket, "").await? {
        let Some(to) = archive::destination(into, &key, datasets)? else { continue };
        let what = format!("archiving s3://{bucket}/{key}");
        let object =
            c.call(S3, c.s3.get_object().bucket(bucket).key(&key).send()).await.map_err(failed(&what))?;
        let bytes = object.body.collect().await.map_err(|e| ProviderError::fatal(format!("{what}: {e}")))?;
        let written = async {
            tokio::fs::create_dir_all(to.parent().expect("inside the archive")).await?;
            tokio::fs::write(&to, bytes.into_bytes()).await
        };
        written.await.map_err(|e| ProviderError::fatal(format!("{what} to {}: {e}", to.display())))?;
        copied += 1;
    }
    Ok(copied)
}

/// Every key under `prefix`, over all pages.
async fn list_keys(c: &Aws, bucket: &str, prefix: &str) -> Result<Vec<String>, ProviderError> {
    let mut keys = vec![];
    let mut pages = c.s3.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
    while let Some(page) = c.call(S3, pages.next()).await {
        let page = page.map_err(failed(format!("listing s3://{bucket}/{prefix}")))?;
        keys.extend(page.contents().iter().filter_map(|o| o.key()).map(str::to_owned));
    }
    Ok(keys)
}

/// Deletes every object under `prefix` (the whole bucket for `None`), a thousand at a time;
/// a bucket that is gone has nothing left to delete.
pub(crate) async fn delete_prefix(c: &Aws, bucket: &str, prefix: Option<&str>) -> Result<(), ProviderError> {
    loop {
        let page = match c
            .call(S3, c.s3.list_objects_v2().bucket(bucket).set_prefix(prefix.map(str::to_owned)).send())
            .await
        {
            Ok(page) => page,
            Err(e) if is_missing(&e, &["NoSuchBucket"]) => return Ok(()),
            Err(e) => return Err(failed(format!("listing bucket {bucket}"))(e)),
        };
        let keys: Vec<ObjectIdentifier> = page
            .contents()
            .iter()
            .filter_map(|o| o.key())
            .map(|k| ObjectIdentifier::builder().key(k).build().expect("the key is set"))
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        let delete = Delete::builder().set_objects(Some(keys)).quiet(true).build().expect("objects are set");
        let out = c
            .call(S3, c.s3.delete_objects().bucket(bucket).delete(delete).send())
            .await
            .map_err(failed(format!("emptying bucket {bucket}")))?;
        if let Some(e) = out.errors().first() {
            return Err(ProviderError::invalid(format!(
                "cannot delete s3://{bucket}/{}: {} ({} objects refused)",
                e.key().unwrap_or_default(),
                e.message().or(e.code()).unwrap_or("refused"),
                out.errors().len()
            )));
        }
    }
}

/// Copies a dataset from the artifacts bucket into the student's (server side), manifest last.
pub(crate) async fn create_dataset(
    c: &Aws,
    spec: &ResourceSpec,
    deps: &Deps,
) -> Result<Observed, ProviderError> {
    let DatasetConfig { bucket, name, dataset } = config(spec)?;
    let (bucket, name) = (bucket.as_str(), name.as_str());
    let artifacts = dep_attr(deps, "artifacts_bucket")?;
    let hash = dataset_hash(&dataset);
    let prefix = dataset_prefix(name);
    let manifest_key = format!("{prefix}{DATASET_MANIFEST}");
    if object_hash(c, bucket, &manifest_key).await?.as_deref() == Some(hash.as_str()) {
        return Ok(dataset_observed("s3", bucket, name, &hash));
    }
    if object_hash(c, artifacts, &manifest_key).await?.as_deref() != Some(hash.as_str()) {
        return Err(ProviderError::new(
            ErrorKind::Unavailable,
            format!(
                "dataset `{name}` in the artifacts bucket {artifacts} is not the one this lab defines yet"
            ),
        ));
    }
    let partial = |e: ProviderError| e.with_partial(dataset_observed("s3", bucket, name, ""));
    delete_prefix(c, bucket, Some(&prefix)).await.map_err(partial)?;
    let mut keys = list_keys(c, artifacts, &prefix).await.map_err(partial)?;
    // The manifest goes last: its presence means the copy is complete.
    keys.sort_by_key(|k| k.ends_with(DATASET_MANIFEST));
    for key in &keys {
        c.call(
            S3,
            c.s3.copy_object().bucket(bucket).key(key).copy_source(format!("{artifacts}/{key}")).send(),
        )
        .await
        .map_err(failed(format!("copying {key} into bucket {bucket}")))
        .map_err(partial)?;
    }
    Ok(dataset_observed("s3", bucket, name, &hash))
}

pub(crate) async fn read_dataset(c: &Aws, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
    let (bucket, name) = split_dataset_id(&prior.id)?;
    Ok(object_hash(c, bucket, &format!("datasets/{name}/{DATASET_MANIFEST}"))
        .await?
        .map(|hash| dataset_observed("s3", bucket, name, &hash)))
}

pub(crate) async fn delete_dataset(c: &Aws, id: &str) -> Result<(), ProviderError> {
    let (bucket, name) = split_dataset_id(id)?;
    delete_prefix(c, bucket, Some(&dataset_prefix(name))).await
}

/// The content hash recorded on an object; `None` if the object (or bucket) is missing.
pub(crate) async fn object_hash(c: &Aws, bucket: &str, key: &str) -> Result<Option<String>, ProviderError> {
    match c.call(S3, c.s3.head_object().bucket(bucket).key(key).send()).await {
        Ok(out) => Ok(Some(out.metadata().and_then(|m| m.get(HASH)).cloned().unwrap_or_default())),
        Err(e) if is_missing(&e, &["NotFound", "NoSuchKey", "NoSuchBucket"]) => Ok(None),
        Err(e) => Err(failed(format!("reading s3://{bucket}/{key}"))(e)),
    }
}

/// Puts one object whose bytes `body` produces (off the async threads), recording `hash`.
pub(crate) async fn put(
    c: &Aws,
    bucket: &str,
    key: &str,
    hash: &str,
    body: impl FnOnce() -> std::io::Result<Vec<u8>> + Send + 'static,
) -> Result<(), ProviderError> {
    let bytes = tokio::task::spawn_blocking(body)
        .await
        .map_err(|e| ProviderError::fatal(format!("generating {key}: {e}")))?
        .map_err(|e| ProviderError::fatal(format!("generating {key}: {e}")))?;
    c.call(
        S3,
        c.s3.put_object().bucket(bucket).key(key).metadata(HASH, hash).body(ByteStream::from(bytes)).send(),
    )
    .await
    .map_err(failed(format!("uploading s3://{bucket}/{key}")))?;
    Ok(())
}
