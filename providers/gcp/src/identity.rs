//! Students' credentials: a service account per student whose only grant is
//! `roles/storage.objectAdmin` on their bucket, a JSON key for it, and their workers'
//! token. Service accounts carry no labels: their account ids start with the lab's
//! prefix ([`account_prefix`]) and their descriptions carry the ownership tags.

use google_cloud_iam_admin_v1::model::list_service_account_keys_request::KeyType;
use google_cloud_iam_admin_v1::model::ServiceAccount;
use labctl_provider_api::configs::config;
use labctl_provider_api::{attrs, random_token, sha256, Observed, ProviderError, ResourceSpec, Tags};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::clients::Gcp;
use crate::errors::{failed, is_conflict, is_not_found};
use crate::storage;

/// The role a student's account has on their bucket.
pub const BUCKET_ROLE: &str = "roles/storage.objectAdmin";

/// A student's service account, key and worker token.
#[derive(Debug, Serialize, Deserialize)]
pub struct CredentialConfig {
    pub student: String,
    /// The account id (6–30 characters: see [`account_id`]).
    pub account: String,
    pub bucket: String,
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

/// An account's description: its ownership tags, which sweeps read back.
fn description(tags: &Tags) -> String {
    let pairs: Vec<String> = tags
        .pairs()
        .into_iter()
        .filter(|(k, _)| *k != Tags::EXPIRES)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    pairs.join(" ")
}

/// The tags an account's description carries; `None` if it is not labctl's.
pub fn tags_of(description: &str) -> Option<Tags> {
    Tags::from_pairs(description.split(' ').filter_map(|pair| pair.split_once('=')))
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
        .set_description(description(&spec.tags));
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
            if !existing.and_then(|a| tags_of(&a.description)).is_some_and(|t| t.same_owner(&spec.tags)) {
                return Err(ProviderError::invalid(format!(
                    "service account {email} exists and is not {student}'s of this lab"
                )));
            }
        }
        Err(e) => return Err(failed(format!("creating service account {account}"))(e)),
    }
    let partial = Observed { id: email.clone(), ..Default::default() };
    let key = c
        .iam
        .create_service_account_key()
        .set_name(name(c, &email))
        .send()
        .await
        .map_err(failed(format!("creating a key for {email}")))
        .map_err(|e| e.with_partial(partial.clone()))?;
    delete_keys_but(c, &email, &key.name).await.map_err(|e| e.with_partial(partial.clone()))?;
    storage::bind(c, &bucket, BUCKET_ROLE, &format!("serviceAccount:{email}"), true)
        .await
        .map_err(|e| e.with_partial(partial.clone()))?;
    let key_file = String::from_utf8(key.private_key_data.to_vec())
        .map_err(|_| ProviderError::fatal(format!("the key of {email} is not a JSON key file")))?;
    let token =
        prior.and_then(|p| p.attributes.get("token").cloned()).unwrap_or_else(|| json!(random_token()));
    Ok(Observed {
        id: email.clone(),
        attributes: attrs(json!({
            "email": email,
            "key_id": key.name.rsplit('/').next(),
            "key": key_file,
            "token": token,
            "bucket": bucket,
        })),
        sensitive: vec!["key".into(), "token".into()],
    })
}

async fn get_account(c: &Gcp, email: &str) -> Result<Option<ServiceAccount>, ProviderError> {
    match c.iam.get_service_account().set_name(name(c, email)).send().await {
        Ok(a) => Ok(Some(a)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(failed(format!("reading service account {email}"))(e)),
    }
}

/// The names of the account's user-managed keys.
async fn keys(c: &Gcp, email: &str) -> Result<Vec<String>, ProviderError> {
    let listed = c
        .iam
        .list_service_account_keys()
        .set_name(name(c, email))
        .set_key_types([KeyType::UserManaged])
        .send()
        .await;
    match listed {
        Ok(list) => Ok(list.keys.into_iter().map(|k| k.name).collect()),
        Err(e) if is_not_found(&e) => Ok(vec![]),
        Err(e) => Err(failed(format!("listing the keys of {email}"))(e)),
    }
}

async fn delete_keys_but(c: &Gcp, email: &str, keep: &str) -> Result<(), ProviderError> {
    for key in keys(c, email).await?.into_iter().filter(|k| k != keep) {
        match c.iam.delete_service_account_key().set_name(&key).send().await {
            Err(e) if !is_not_found(&e) => return Err(failed(format!("deleting key {key}"))(e)),
            _ => {}
        }
    }
    Ok(())
}

/// The credential as it is: gone if its account or its key is.
pub async fn read_credential(c: &Gcp, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
    let key = prior.attributes.get("key_id").and_then(|k| k.as_str()).unwrap_or_default();
    let keys = keys(c, &prior.id).await?;
    let present =
        get_account(c, &prior.id).await?.is_some() && keys.iter().any(|k| k.ends_with(&format!("/{key}")));
    Ok(present.then(|| prior.clone()))
}

/// Takes the account off its bucket and deletes it (its keys go with it).
pub async fn delete_credential(c: &Gcp, prior: &Observed) -> Result<(), ProviderError> {
    if let Some(bucket) = prior.attributes.get("bucket").and_then(|b| b.as_str()) {
        storage::bind(c, bucket, BUCKET_ROLE, &format!("serviceAccount:{}", prior.id), false).await?;
    }
    delete_account(c, &prior.id).await
}

pub async fn delete_account(c: &Gcp, email: &str) -> Result<(), ProviderError> {
    match c.iam.delete_service_account().set_name(name(c, email)).send().await {
        Err(e) if !is_not_found(&e) => Err(failed(format!("deleting service account {email}"))(e)),
        _ => Ok(()),
    }
}

/// Every service account of the project: `(email, description)`.
pub async fn accounts(c: &Gcp) -> Result<Vec<(String, String)>, ProviderError> {
    let mut all = vec![];
    let mut token = String::new();
    loop {
        let page = c
            .iam
            .list_service_accounts()
            .set_name(c.parent())
            .set_page_token(&token)
            .send()
            .await
            .map_err(failed("listing service accounts"))?;
        all.extend(page.accounts.into_iter().map(|a| (a.email, a.description)));
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        token = page.next_page_token;
    }
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

    #[test]
    fn a_description_carries_the_owner_tags() {
        let tags =
            Tags { cohort: Some("gpu".into()), student: Some("ada".into()), ..Tags::lab("bigdata", None) };
        assert_eq!(tags_of(&description(&tags)), Some(tags));
        assert_eq!(tags_of("a service account of someone else"), None);
    }
}
