//! Students' credentials: a service account per student whose only grant is
//! `roles/storage.objectAdmin` on their bucket, a JSON key for it, and their workers'
//! token. Service accounts carry no labels: their account ids start with the lab's
//! prefix ([`account_prefix`]) and their descriptions carry the ownership tags.

use std::collections::BTreeMap;

use google_cloud_iam_admin_v1::model::list_service_account_keys_request::KeyType;
use google_cloud_iam_admin_v1::model::ServiceAccount;
use labctl_provider_api::configs::config;
use labctl_provider_api::{
    attrs, random_token, sha256, ErrorKind, Observed, ProviderError, ResourceSpec, Tags,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::clients::Gcp;
use crate::errors::{deleted, failed, found, is_conflict, is_not_found};
use crate::paging::every_page;
use crate::{labels, storage};

/// The role a student's account has on their bucket.
pub const BUCKET_ROLE: &str = "roles/storage.objectAdmin";

/// A student's service account, key and worker token.
#[derive(Debug, Serialize, Deserialize)]
pub struct CredentialConfig {
    /// The student's id.
    pub student: String,
    /// The account id (6–30 characters: see [`account_id`]).
    pub account: String,
    /// The student's bucket, the account's only grant (none if they get no bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
}

/// What every account id of lab `lab` starts with: up to 12 characters of its name and 4
/// hex digits of its hash, so that two labs never share one.
pub fn account_prefix(lab: &str) -> String {
    let short: String = lab.chars().take(12).collect();
    format!("{}-{}-", short.trim_end_matches('-'), &sha256(lab.as_bytes())[..4])
}

/// The account id of `student` in lab `lab`: the lab's prefix and the student's id, which
/// is shortened (with a hash) past 30 characters.
pub fn account_id(lab: &str, student: &str) -> String {
    let prefix = account_prefix(lab);
    let room = 30 - prefix.len();
    if student.len() <= room {
        return format!("{prefix}{student}");
    }
    let kept: String = student.chars().take(room - 5).collect();
    format!("{prefix}{}-{}", kept.trim_end_matches('-'), &sha256(student.as_bytes())[..4])
}

/// Puts `tags` in the account's description (the expiry moves with the lab file).
pub async fn describe_account(c: &Gcp, email: &str, tags: &Tags) -> Result<(), ProviderError> {
    let account = ServiceAccount::new().set_name(name(c, email)).set_description(labels::description(tags));
    let mask = google_cloud_wkt::FieldMask::default().set_paths(["description"]);
    let patched =
        c.iam.patch_service_account().set_service_account(account).set_update_mask(mask).send().await;
    deleted(patched, format!("describing service account {email}"))
}

/// `projects/<project>/serviceAccounts/<email>`.
fn name(c: &Gcp, email: &str) -> String {
    format!("projects/{}/serviceAccounts/{email}", c.project)
}

fn email(c: &Gcp, account: &str) -> String {
    format!("{account}@{}.iam.gserviceaccount.com", c.project)
}

/// Makes (or adopts) the account, gives it a fresh key (the old ones of an interrupted
/// run or of `prior`, a rotation, are deleted) and its bucket.
pub async fn create_credential(
    c: &Gcp,
    spec: &ResourceSpec,
    prior: Option<&Observed>,
) -> Result<Observed, ProviderError> {
    let CredentialConfig { student, account, bucket } = config(spec)?;
    let email = email(c, &account);
    let wanted = ServiceAccount::new()
        .set_display_name(format!("labctl {student}"))
        .set_description(labels::description(&spec.tags));
    let made = c
        .iam
        .create_service_account()
        .set_name(c.parent())
        .set_account_id(&account)
        .set_service_account(wanted)
        .send()
        .await;
    match made {
        Ok(_) => {}
        Err(e) if is_conflict(&e) => {
            let existing = get_account(c, &email).await?;
            if !existing
                .and_then(|a| labels::described(&a.description))
                .is_some_and(|t| t.same_owner(&spec.tags))
            {
                return Err(ProviderError::invalid(format!(
                    "service account {email} exists and is not {student}'s of this lab"
                )));
            }
        }
        Err(e) => return Err(failed(format!("creating service account {account}"))(e)),
    }
    // Whatever fails from here leaves the account, its grant and the worker token to record.
    // A rotation keeps the worker token and the SSH key pair (their VM knows them).
    let kept = |key: &str| prior.and_then(|p| p.attributes.get(key).cloned());
    let token = kept("token").unwrap_or_else(|| json!(random_token()));
    let (ssh_public_key, ssh_private_key) = match (kept("ssh_public_key"), kept("ssh_private_key")) {
        (Some(public), Some(private)) => (public, private),
        _ => {
            let (public, private) =
                labctl_provider_vm::ssh::key_pair(&format!("{}-{student}", spec.tags.lab))?;
            (json!(public), json!(private))
        }
    };
    let mut observed = Observed {
        id: email.clone(),
        attributes: attrs(json!({
            "email": email,
            "token": token,
            "bucket": bucket,
            "ssh_public_key": ssh_public_key,
            "ssh_private_key": ssh_private_key,
        })),
        sensitive: vec!["key".into(), "token".into(), "ssh_private_key".into()],
    };
    let partial = |e: ProviderError| e.with_partial(observed.clone());
    let key = c.iam.create_service_account_key().set_name(name(c, &email)).send().await;
    let key = key.map_err(settling(format!("creating a key for {email}"))).map_err(partial)?;
    delete_keys_but(c, &email, &key.name).await.map_err(partial)?;
    let member = format!("serviceAccount:{email}");
    if let Some(bucket) = &bucket {
        storage::bind(c, bucket, BUCKET_ROLE, &member, true).await.map_err(partial)?;
    }
    let key_file = String::from_utf8(key.private_key_data.to_vec())
        .map_err(|_| ProviderError::fatal(format!("the key of {email} is not a JSON key file")))?;
    observed.attributes.insert("key_id".into(), json!(key.name.rsplit('/').next()));
    observed.attributes.insert("key".into(), json!(workload_key(c.storage_endpoint.as_deref(), &key_file)?));
    Ok(observed)
}

/// Like [`failed`], but IAM being eventually consistent, an account made a moment ago that
/// is not found yet is worth trying again.
fn settling(what: String) -> impl FnOnce(google_cloud_gax::error::Error) -> ProviderError {
    move |e| {
        let not_yet = is_not_found(&e);
        let mut error = failed(what)(e);
        if not_yet {
            error.kind = ErrorKind::Unavailable;
        }
        error
    }
}

async fn get_account(c: &Gcp, email: &str) -> Result<Option<ServiceAccount>, ProviderError> {
    let got = c.iam.get_service_account().set_name(name(c, email)).send().await;
    found(got, format!("reading service account {email}"))
}

/// The names of the account's user-managed keys; none if the account is gone.
async fn keys(c: &Gcp, email: &str) -> Result<Vec<String>, ProviderError> {
    let listed = c
        .iam
        .list_service_account_keys()
        .set_name(name(c, email))
        .set_key_types([KeyType::UserManaged])
        .send()
        .await;
    let listed = found(listed, format!("listing the keys of {email}"))?;
    Ok(listed.map(|list| list.keys.into_iter().map(|k| k.name).collect()).unwrap_or_default())
}

async fn delete_keys_but(c: &Gcp, email: &str, keep: &str) -> Result<(), ProviderError> {
    for key in keys(c, email).await?.into_iter().filter(|k| k != keep) {
        deleted(
            c.iam.delete_service_account_key().set_name(&key).send().await,
            format!("deleting key {key}"),
        )?;
    }
    Ok(())
}

/// The credential as it is: gone if its key is (as it is with its account: the key
/// listing of an account that is gone is empty).
pub async fn read_credential(c: &Gcp, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
    let key = prior.attributes.get("key_id").and_then(|k| k.as_str()).unwrap_or_default();
    let present = keys(c, &prior.id).await?.iter().any(|k| k.ends_with(&format!("/{key}")));
    Ok(present.then(|| prior.clone()))
}

/// Takes the account off its bucket and deletes it (its keys go with it).
pub async fn delete_credential(c: &Gcp, prior: &Observed) -> Result<(), ProviderError> {
    if let Some(bucket) = prior.attributes.get("bucket").and_then(|b| b.as_str()) {
        storage::bind(c, bucket, BUCKET_ROLE, &format!("serviceAccount:{}", prior.id), false).await?;
    }
    delete_account(c, &prior.id).await
}

/// Deletes the service account `email`; one already gone is fine.
pub async fn delete_account(c: &Gcp, email: &str) -> Result<(), ProviderError> {
    let gone = c.iam.delete_service_account().set_name(name(c, email)).send().await;
    deleted(gone, format!("deleting service account {email}"))
}

/// Every service account of the project: `(email, description)`.
pub async fn accounts(c: &Gcp) -> Result<Vec<(String, String)>, ProviderError> {
    every_page(|token| async move {
        let page = c.iam.list_service_accounts().set_name(c.parent()).set_page_token(token).send().await;
        let page = page.map_err(failed("listing service accounts"))?;
        Ok((page.accounts.into_iter().map(|a| (a.email, a.description)).collect(), page.next_page_token))
    })
    .await
}

/// A student's key file as their workloads get it: when Cloud Storage is not Google's (an
/// emulator, `storage`), the key names it as `gcs_base_url`, where object_store looks for it.
fn workload_key(storage: Option<&str>, key: &str) -> Result<String, ProviderError> {
    let Some(endpoint) = storage else { return Ok(key.to_owned()) };
    let mut key: serde_json::Map<String, Value> = serde_json::from_str(key)
        .map_err(|e| ProviderError::fatal(format!("the student's key is not a JSON key file: {e}")))?;
    key.insert("gcs_base_url".into(), endpoint.trim_end_matches('/').into());
    serde_json::to_string_pretty(&key).map_err(|e| ProviderError::fatal(e.to_string()))
}

/// What a student's workloads (the MapReduce workers, their own tools) are given to reach
/// their bucket besides their key: the project, the bucket as `LABCTL_BUCKET`, and for a
/// plain-HTTP Cloud Storage (an emulator, `storage`) what object_store needs to use it.
pub fn workload_environment(
    project: &str,
    storage: Option<&str>,
    bucket: Option<&str>,
) -> BTreeMap<String, String> {
    let mut environment = BTreeMap::from([("GOOGLE_CLOUD_PROJECT".to_owned(), project.to_owned())]);
    if storage.is_some_and(|e| e.starts_with("http://")) {
        environment.insert("GOOGLE_ALLOW_HTTP".to_owned(), "true".to_owned());
    }
    if let Some(bucket) = bucket {
        environment.insert("LABCTL_BUCKET".to_owned(), format!("gs://{bucket}"));
    }
    environment
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_fit_gcp_and_carry_the_lab_prefix() {
        let id = account_id("bigdata", "ada");
        assert!(id.starts_with(&account_prefix("bigdata")), "{id}");
        assert!(id.ends_with("-ada"));
        let long = account_id("a-very-long-lab-name-indeed", "a-student-with-a-long-id");
        assert!((6..=30).contains(&long.len()), "{long}");
        assert!(long.starts_with(&account_prefix("a-very-long-lab-name-indeed")));
        assert_ne!(long, account_id("a-very-long-lab-name-indeed", "a-student-with-a-long-iq"));
        assert_ne!(account_prefix("bigdata"), account_prefix("bigdata2"));
    }
}
