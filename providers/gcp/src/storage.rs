//! Cloud Storage: students' buckets (labelled with their owner), the datasets seeded into
//! them (manifest last), their IAM bindings, and archiving what students wrote.

use std::path::Path;

use google_cloud_gax::error::rpc::Code;
use google_cloud_iam_v1::model::{Binding, GetPolicyOptions, Policy};
use google_cloud_storage::model::Bucket;
use labctl_provider_api::configs::{
    config, dataset_hash, dataset_observed, dataset_prefix, split_dataset_id, BucketConfig, DatasetConfig,
    DATASET_MANIFEST,
};
use labctl_provider_api::{archive, attrs, ErrorKind, Observed, ProviderError, ResourceSpec, Tags};
use labctl_provider_vm::{worker_binary, WORKER_BINARIES};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::clients::Gcp;
use crate::errors::{code, deleted, failed, found, is_conflict};
use crate::labels;
use crate::paging::every_page;

/// `projects/_/buckets/<name>`: a bucket as the v2 API names it.
pub fn resource(bucket: &str) -> String {
    format!("projects/_/buckets/{bucket}")
}

fn bucket_observed(name: &str) -> Observed {
    Observed {
        id: name.to_owned(),
        attributes: attrs(json!({ "name": name, "url": format!("gs://{name}") })),
        sensitive: vec![],
    }
}

/// Makes the bucket, or adopts it if this lab's (a run killed after creating it).
pub async fn create_bucket(c: &Gcp, spec: &ResourceSpec) -> Result<Observed, ProviderError> {
    let BucketConfig { name } = config(spec)?;
    ensure_bucket(c, &name, spec).await?;
    Ok(bucket_observed(&name))
}

/// The lab's artifacts bucket: the worker binaries the VMs fetch, under `bin/`, each with
/// its SHA-256 beside it (`bin/<name>.sha256`, written after the binary).
#[derive(Debug, Serialize, Deserialize)]
pub struct ArtifactsConfig {
    pub name: String,
    /// The workers' version, when the VMs run them (the bucket may hold only notebooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<String>,
}

/// Makes (or adopts) the artifacts bucket and uploads the worker binaries that are not
/// there yet.
pub async fn create_artifacts(
    c: &Gcp,
    spec: &ResourceSpec,
    bin_dir: &Path,
) -> Result<Observed, ProviderError> {
    let ArtifactsConfig { name, workers } = config(spec)?;
    ensure_bucket(c, &name, spec).await?;
    let mut binaries = serde_json::Map::new();
    for binary in WORKER_BINARIES.into_iter().filter(|_| workers.is_some()) {
        let (bytes, hash) = worker_binary(bin_dir, binary).await?;
        if binary_hash(c, &name, binary).await?.as_deref() != Some(hash.as_str()) {
            put(c, &name, &format!("bin/{binary}"), bytes).await?;
            put(c, &name, &format!("bin/{binary}.sha256"), hash.clone().into_bytes()).await?;
        }
        binaries.insert(binary.to_owned(), json!(hash));
    }
    Ok(Observed {
        id: name.clone(),
        attributes: attrs(
            json!({ "artifacts_bucket": name, "url": format!("gs://{name}"), "binaries": binaries }),
        ),
        sensitive: vec![],
    })
}

/// The artifacts bucket as it is: gone if the bucket or a binary is.
pub async fn read_artifacts(c: &Gcp, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
    let binaries = prior.attributes.get("binaries").and_then(|b| b.as_object()).cloned().unwrap_or_default();
    for (binary, hash) in &binaries {
        if binary_hash(c, &prior.id, binary).await?.as_deref() != hash.as_str() {
            return Ok(None);
        }
    }
    Ok(get_bucket(c, &prior.id).await?.map(|_| prior.clone()))
}

/// The SHA-256 recorded beside a worker binary; `None` if it is not (completely) there.
async fn binary_hash(c: &Gcp, bucket: &str, binary: &str) -> Result<Option<String>, ProviderError> {
    let recorded = get(c, bucket, &format!("bin/{binary}.sha256")).await?;
    Ok(recorded.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

/// Makes the bucket `name`, or adopts it if it is this lab's.
async fn ensure_bucket(c: &Gcp, name: &str, spec: &ResourceSpec) -> Result<(), ProviderError> {
    let bucket = Bucket::new()
        .set_project(c.parent())
        .set_labels(labels::of(&spec.tags))
        .set_location(c.region.to_uppercase());
    // The v2 API takes the project in the bucket, under the parent `projects/_`.
    let made = c
        .control
        .create_bucket()
        .set_parent("projects/_")
        .set_bucket_id(name)
        .set_bucket(bucket)
        .send()
        .await;
    match made {
        Ok(_) => Ok(()),
        Err(e) if is_conflict(&e) => {
            let taken = || {
                ProviderError::invalid(format!(
                    "bucket name `{name}` is taken by someone else (bucket names are global): rename the lab"
                ))
            };
            let existing = match c.control.get_bucket().set_name(resource(name)).send().await {
                Err(e) if code(&e) == Some(Code::PermissionDenied) => return Err(taken()),
                other => found(other, format!("reading bucket {name}"))?,
            };
            let owner = existing.as_ref().and_then(|b| labels::tags(&b.labels));
            if owner.is_some_and(|t| t.same_owner(&spec.tags)) {
                Ok(())
            } else {
                Err(taken())
            }
        }
        Err(e) => Err(failed(format!("creating bucket {name}"))(e)),
    }
}

async fn get_bucket(c: &Gcp, name: &str) -> Result<Option<Bucket>, ProviderError> {
    found(c.control.get_bucket().set_name(resource(name)).send().await, format!("reading bucket {name}"))
}

/// The bucket as it is, or `None` if it is gone.
pub async fn read_bucket(c: &Gcp, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
    Ok(get_bucket(c, &prior.id).await?.map(|_| bucket_observed(&prior.id)))
}

/// Puts `tags` on the bucket as labels (the expiry moves with the lab file).
pub async fn label_bucket(c: &Gcp, name: &str, tags: &Tags) -> Result<(), ProviderError> {
    let Some(mut bucket) = get_bucket(c, name).await? else { return Ok(()) };
    bucket.labels.retain(|k, _| !k.starts_with("labctl-"));
    bucket.labels.extend(labels::of(tags));
    c.control
        .update_bucket()
        .set_bucket(bucket)
        .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["labels"]))
        .send()
        .await
        .map(drop)
        .map_err(failed(format!("labelling bucket {name}")))
}

/// Every labctl bucket of the project with its owner's tags.
pub async fn labelled_buckets(c: &Gcp) -> Result<Vec<(String, Tags)>, ProviderError> {
    every_page(|token| async move {
        let page = c.control.list_buckets().set_parent(c.parent()).set_page_token(token).send().await;
        let page = page.map_err(failed("listing buckets"))?;
        let ours = page.buckets.into_iter().filter_map(|b| Some((b.bucket_id, labels::tags(&b.labels)?)));
        Ok((ours.collect(), page.next_page_token))
    })
    .await
}

/// Empties the bucket and deletes it; a bucket already gone is fine.
pub async fn delete_bucket(c: &Gcp, name: &str) -> Result<(), ProviderError> {
    delete_prefix(c, name, "").await?;
    deleted(
        c.control.delete_bucket().set_name(resource(name)).send().await,
        format!("deleting bucket {name}"),
    )
}

/// The names of the bucket's objects under `prefix`; none if the bucket is gone.
async fn list(c: &Gcp, bucket: &str, prefix: &str) -> Result<Vec<String>, ProviderError> {
    every_page(|token| async move {
        let page = c
            .control
            .list_objects()
            .set_parent(resource(bucket))
            .set_prefix(prefix)
            .set_page_token(token)
            .send()
            .await;
        Ok(match found(page, format!("listing gs://{bucket}/{prefix}"))? {
            Some(page) => (page.objects.into_iter().map(|o| o.name).collect(), page.next_page_token),
            None => (vec![], String::new()),
        })
    })
    .await
}

pub(crate) async fn delete_prefix(c: &Gcp, bucket: &str, prefix: &str) -> Result<(), ProviderError> {
    for object in list(c, bucket, prefix).await? {
        let gone = c.control.delete_object().set_bucket(resource(bucket)).set_object(&object).send().await;
        deleted(gone, format!("deleting gs://{bucket}/{object}"))?;
    }
    Ok(())
}

/// Writes one object.
pub(crate) async fn put(c: &Gcp, bucket: &str, key: &str, bytes: Vec<u8>) -> Result<(), ProviderError> {
    c.objects
        .write_object(resource(bucket), key, bytes::Bytes::from(bytes))
        .send_buffered()
        .await
        .map(drop)
        .map_err(failed(format!("writing gs://{bucket}/{key}")))
}

/// Reads one object whole; `None` if it (or its bucket) is not there.
pub(crate) async fn get(c: &Gcp, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, ProviderError> {
    let what = format!("reading gs://{bucket}/{key}");
    let Some(mut read) = found(c.objects.read_object(resource(bucket), key).send().await, &what)? else {
        return Ok(None);
    };
    let mut bytes = vec![];
    while let Some(chunk) = read.next().await {
        bytes.extend_from_slice(&chunk.map_err(failed(&what))?);
    }
    Ok(Some(bytes))
}

/// The hash a dataset's manifest records, if the manifest is there.
async fn manifest_hash(c: &Gcp, bucket: &str, name: &str) -> Result<Option<String>, ProviderError> {
    let manifest = get(c, bucket, &format!("{}{DATASET_MANIFEST}", dataset_prefix(name))).await?;
    Ok(manifest.map(|bytes| {
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        value["sha256"].as_str().unwrap_or_default().to_owned()
    }))
}

/// Generates the dataset into the student's bucket, part by part, manifest last; a
/// complete copy of this definition is kept.
pub async fn create_dataset(c: &Gcp, spec: &ResourceSpec) -> Result<Observed, ProviderError> {
    let DatasetConfig { bucket, name, dataset } = config(spec)?;
    let (bucket, name) = (bucket.as_str(), name.as_str());
    let hash = dataset_hash(&dataset);
    if manifest_hash(c, bucket, name).await?.as_deref() == Some(hash.as_str()) {
        return Ok(dataset_observed("gs", bucket, name, &hash));
    }
    let partial = |e: ProviderError| e.with_partial(dataset_observed("gs", bucket, name, ""));
    // A changed definition may have fewer parts: none of the old ones may linger.
    let prefix = dataset_prefix(name);
    delete_prefix(c, bucket, &prefix).await.map_err(partial)?;
    for part in dataset.parts() {
        let (generator, key) = (dataset.clone(), format!("{prefix}{}", part.name));
        let generating = |e: String| ProviderError::fatal(format!("generating {key}: {e}"));
        let bytes = tokio::task::spawn_blocking(move || {
            let mut out = vec![];
            generator.write_part(&part, &mut out).map(|()| out)
        })
        .await
        .map_err(|e| generating(e.to_string()))?
        .map_err(|e| generating(e.to_string()))?;
        put(c, bucket, &key, bytes).await.map_err(partial)?;
    }
    let manifest = json!({ "sha256": hash, "dataset": dataset }).to_string().into_bytes();
    put(c, bucket, &format!("{prefix}{DATASET_MANIFEST}"), manifest).await.map_err(partial)?;
    Ok(dataset_observed("gs", bucket, name, &hash))
}

/// The dataset as its manifest says, or `None` if it is not complete.
pub async fn read_dataset(c: &Gcp, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
    let (bucket, name) = split_dataset_id(&prior.id)?;
    Ok(manifest_hash(c, bucket, name).await?.map(|hash| dataset_observed("gs", bucket, name, &hash)))
}

/// Deletes a dataset's objects.
pub async fn delete_dataset(c: &Gcp, id: &str) -> Result<(), ProviderError> {
    let (bucket, name) = split_dataset_id(id)?;
    delete_prefix(c, bucket, &dataset_prefix(name)).await
}

/// Copies what the student wrote (all but the seeded datasets) into `into`.
pub async fn archive_bucket(
    c: &Gcp,
    bucket: &str,
    datasets: &[&str],
    into: &Path,
) -> Result<usize, ProviderError> {
    let mut written = 0;
    for key in list(c, bucket, "").await? {
        let Some(path) = archive::destination(into, &key, datasets)? else { continue };
        let Some(bytes) = get(c, bucket, &key).await? else { continue };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| ProviderError::fatal(format!("{}: {e}", dir.display())))?;
        }
        std::fs::write(&path, bytes).map_err(|e| ProviderError::fatal(format!("{}: {e}", path.display())))?;
        written += 1;
    }
    Ok(written)
}

/// Grants `member` `role` on the bucket, or (`grant` false) takes it away; read, changed
/// and written back with the etag read, again if someone changed the policy in between.
pub async fn bind(c: &Gcp, bucket: &str, role: &str, member: &str, grant: bool) -> Result<(), ProviderError> {
    let what = format!("the IAM policy of bucket {bucket}");
    for _ in 0..5 {
        // Version 3: conditional bindings of others come back whole, and are kept.
        let options = GetPolicyOptions::new().set_requested_policy_version(3);
        let read =
            c.control.get_iam_policy().set_resource(resource(bucket)).set_options(options).send().await;
        let Some(policy) = found(read, format!("reading {what}"))? else {
            return if grant {
                Err(ProviderError::invalid(format!("bucket {bucket} does not exist")))
            } else {
                Ok(())
            };
        };
        let Some(changed) = with_member(policy, role, member, grant) else { return Ok(()) };
        match c.control.set_iam_policy().set_resource(resource(bucket)).set_policy(changed).send().await {
            Ok(_) => return Ok(()),
            // The etag is stale: someone else changed it since.
            Err(e) if matches!(code(&e), Some(Code::Aborted | Code::FailedPrecondition)) => continue,
            Err(e) => {
                // IAM is eventually consistent: an account made a moment ago may not be a
                // member yet ("… does not exist"); trying again later helps.
                let settling = grant && e.status().is_some_and(|s| s.message.contains("does not exist"));
                let mut error = failed(format!("setting {what}"))(e);
                if settling {
                    error.kind = ErrorKind::Unavailable;
                }
                return Err(error);
            }
        }
    }
    Err(ProviderError::new(ErrorKind::Unavailable, format!("{what} kept changing while labctl changed it")))
}

/// `policy` with `member` added to (or removed from) `role`'s binding; `None` if it
/// already is as asked.
fn with_member(mut policy: Policy, role: &str, member: &str, grant: bool) -> Option<Policy> {
    let has = policy.bindings.iter().any(|b| b.role == role && b.members.iter().any(|m| m == member));
    if has == grant {
        return None;
    }
    if grant {
        match policy.bindings.iter_mut().find(|b| b.role == role && b.condition.is_none()) {
            Some(binding) => binding.members.push(member.to_owned()),
            None => policy.bindings.push(Binding::new().set_role(role).set_members([member])),
        }
    } else {
        for binding in policy.bindings.iter_mut().filter(|b| b.role == role) {
            binding.members.retain(|m| m != member);
        }
        policy.bindings.retain(|b| !b.members.is_empty());
    }
    // Version 3 is what keeps conditions; a policy without any may say 1.
    policy.version =
        policy.version.max(if policy.bindings.iter().any(|b| b.condition.is_some()) { 3 } else { 1 });
    Some(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_added_once_and_removed_with_its_empty_binding() {
        let owner =
            Binding::new().set_role("roles/storage.legacyBucketOwner").set_members(["serviceAccount:o"]);
        let policy = Policy::new().set_bindings([owner]).set_etag(bytes::Bytes::from_static(b"7"));
        let member = "serviceAccount:ada@p.iam.gserviceaccount.com";
        let granted = with_member(policy, "roles/storage.objectAdmin", member, true).unwrap();
        assert_eq!(granted.bindings.len(), 2);
        assert_eq!(granted.etag, bytes::Bytes::from_static(b"7"), "the etag guards the write");
        assert!(with_member(granted.clone(), "roles/storage.objectAdmin", member, true).is_none());
        let revoked = with_member(granted, "roles/storage.objectAdmin", member, false).unwrap();
        assert_eq!(revoked.bindings.len(), 1);
        assert_eq!(revoked.bindings[0].role, "roles/storage.legacyBucketOwner");
    }
}
