//! IAM: each student's user (scoped to their own bucket, with an access key and a worker
//! token) and the roles the lab's VMs and clusters run as.

use labctl_provider_api::configs::config;
use labctl_provider_api::{attrs, Observed, ProviderError, ResourceSpec, Tags};
use serde_json::json;

use crate::clients::{Aws, Service::Iam};
use crate::errors::{code, failed, ignore_missing, is_missing};
use crate::plugin::{CredentialConfig, InstanceProfileConfig};
use crate::tagging::{self, iam_path};

const MISSING: &[&str] = &["NoSuchEntity"];

/// The name of the inline policy labctl puts on users and roles.
const POLICY: &str = "labctl";

/// The student's IAM user with a policy for their own bucket and the shared datasets, a
/// fresh access key (older keys of the user are deleted: their secrets cannot be read back),
/// the token their workers use to authenticate clients and the SSH key pair they log in to
/// their VM with (both kept from `prior` when rotating keys, else new).
pub(crate) async fn create_credential(
    c: &Aws,
    spec: &ResourceSpec,
    lab: &str,
    prior: Option<&Observed>,
) -> Result<Observed, ProviderError> {
    let credential: CredentialConfig = config(spec)?;
    let (user, bucket, artifacts) =
        (credential.user.as_str(), credential.bucket.as_str(), credential.artifacts.as_str());
    let created = c
        .call(
            Iam,
            c.iam
                .create_user()
                .user_name(user)
                .path(iam_path(lab))
                .set_tags(Some(tagging::iam(spec, user)))
                .send(),
        )
        .await;
    let arn = match created {
        Ok(out) => out.user().map(|u| u.arn().to_owned()),
        Err(e) if code(&e) == Some("EntityAlreadyExists") => Some(adopt_user(c, user, spec).await?),
        Err(e) => return Err(failed(format!("creating IAM user {user}"))(e)),
    }
    .unwrap_or_default();
    let partial = |e: ProviderError| e.with_partial(Observed { id: user.to_owned(), ..Default::default() });
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            // Objects only: the bucket's policy, tags, versioning and public access stay
            // the instructor's.
            {
                "Sid": "OwnBucket",
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
                "Resource": format!("arn:aws:s3:::{bucket}"),
            },
            {
                "Sid": "OwnObjects",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                "Resource": format!("arn:aws:s3:::{bucket}/*"),
            },
            {
                "Sid": "SharedDatasets",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": format!("arn:aws:s3:::{artifacts}/datasets/*"),
            },
        ],
    });
    c.call(
        Iam,
        c.iam
            .put_user_policy()
            .user_name(user)
            .policy_name(POLICY)
            .policy_document(policy.to_string())
            .send(),
    )
    .await
    .map_err(failed(format!("setting the policy of IAM user {user}")))
    .map_err(partial)?;
    delete_access_keys(c, user).await.map_err(partial)?;
    let key = c
        .call(Iam, c.iam.create_access_key().user_name(user).send())
        .await
        .map_err(failed(format!("creating an access key for IAM user {user}")))
        .map_err(partial)?;
    let key = key
        .access_key()
        .ok_or_else(|| partial(ProviderError::fatal(format!("no access key returned for {user}"))))?;
    let kept =
        |name: &str| prior.and_then(|p| p.attributes.get(name)).and_then(|v| v.as_str()).map(str::to_owned);
    let token = kept("token").unwrap_or_else(labctl_provider_api::random_token);
    let (ssh_public_key, ssh_private_key) = match (kept("ssh_public_key"), kept("ssh_private_key")) {
        (Some(public), Some(private)) => (public, private),
        _ => labctl_provider_vm::ssh::key_pair(&format!("{lab}-{}", credential.student)).map_err(partial)?,
    };
    Ok(Observed {
        id: user.to_owned(),
        attributes: attrs(json!({
            "user": user,
            "arn": arn,
            "bucket": bucket,
            "access_key_id": key.access_key_id(),
            "secret_access_key": key.secret_access_key(),
            "token": token,
            "ssh_public_key": ssh_public_key,
            "ssh_private_key": ssh_private_key,
        })),
        sensitive: vec!["secret_access_key".into(), "token".into(), "ssh_private_key".into()],
    })
}

/// Takes over a user an interrupted create made; refuses anyone else's.
async fn adopt_user(c: &Aws, user: &str, spec: &ResourceSpec) -> Result<String, ProviderError> {
    let out = c
        .call(Iam, c.iam.get_user().user_name(user).send())
        .await
        .map_err(failed(format!("reading IAM user {user}")))?;
    let found =
        out.user().ok_or_else(|| ProviderError::fatal(format!("IAM user {user} has no description")))?;
    let tags = Tags::from_pairs(found.tags().iter().map(|t| (t.key(), t.value())));
    if !tags.as_ref().is_some_and(|t| t.same_owner(&spec.tags)) {
        return Err(ProviderError::invalid(format!(
            "IAM user `{user}` already exists and is not this lab's student (tags: {})",
            tags.map_or("none".to_owned(), |t| format!("lab `{}`", t.lab))
        )));
    }
    Ok(found.arn().to_owned())
}

/// The user, if it and the access key state recorded still exist; secrets come from state.
pub(crate) async fn read_credential(c: &Aws, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
    let user = &prior.id;
    let keys = match c.call(Iam, c.iam.list_access_keys().user_name(user).send()).await {
        Ok(out) => out,
        Err(e) if is_missing(&e, MISSING) => return Ok(None),
        Err(e) => return Err(failed(format!("reading IAM user {user}"))(e)),
    };
    let recorded = prior.attributes.get("access_key_id").and_then(|k| k.as_str());
    let key_exists = keys.access_key_metadata().iter().any(|k| k.access_key_id() == recorded);
    Ok(key_exists.then(|| prior.clone()))
}

/// Deletes every access key of the user (none if the user is gone).
async fn delete_access_keys(c: &Aws, user: &str) -> Result<(), ProviderError> {
    let keys = match c.call(Iam, c.iam.list_access_keys().user_name(user).send()).await {
        Ok(keys) => keys,
        Err(e) if is_missing(&e, MISSING) => return Ok(()),
        Err(e) => return Err(failed(format!("listing access keys of {user}"))(e)),
    };
    for key in keys.access_key_metadata() {
        let id = key.access_key_id().unwrap_or_default();
        ignore_missing(
            c.call(Iam, c.iam.delete_access_key().user_name(user).access_key_id(id).send()).await,
            MISSING,
            "deleting an access key",
        )?;
    }
    Ok(())
}

/// Deletes the user with its keys and inline policies.
pub(crate) async fn delete_user(c: &Aws, user: &str) -> Result<(), ProviderError> {
    delete_access_keys(c, user).await?;
    let policies = c.call(Iam, c.iam.list_user_policies().user_name(user).send()).await;
    if let Ok(policies) = &policies {
        for policy in policies.policy_names() {
            ignore_missing(
                c.call(Iam, c.iam.delete_user_policy().user_name(user).policy_name(policy).send()).await,
                MISSING,
                "deleting a user policy",
            )?;
        }
    }
    ignore_missing(
        c.call(Iam, c.iam.delete_user().user_name(user).send()).await,
        MISSING,
        &format!("deleting IAM user {user}"),
    )
}

/// Makes (or adopts) a role that `service` may assume, with AWS-managed policies attached
/// and an optional inline policy. Returns its ARN.
pub(crate) async fn ensure_role(
    c: &Aws,
    spec: &ResourceSpec,
    lab: &str,
    name: &str,
    service: &str,
    managed: &[&str],
    inline: Option<serde_json::Value>,
) -> Result<String, ProviderError> {
    let trust = json!({
        "Version": "2012-10-17",
        "Statement": [{ "Effect": "Allow", "Principal": { "Service": service }, "Action": "sts:AssumeRole" }],
    });
    let created = c
        .call(
            Iam,
            c.iam
                .create_role()
                .role_name(name)
                .path(iam_path(lab))
                .assume_role_policy_document(trust.to_string())
                .set_tags(Some(tagging::iam(spec, name)))
                .send(),
        )
        .await;
    let arn = match created {
        Ok(out) => out.role().map(|r| r.arn().to_owned()).unwrap_or_default(),
        Err(e) if code(&e) == Some("EntityAlreadyExists") => {
            let out = c
                .call(Iam, c.iam.get_role().role_name(name).send())
                .await
                .map_err(failed(format!("reading IAM role {name}")))?;
            let role = out
                .role()
                .ok_or_else(|| ProviderError::fatal(format!("IAM role {name} has no description")))?;
            if Tags::from_pairs(role.tags().iter().map(|t| (t.key(), t.value())))
                .is_none_or(|t| t.lab != spec.tags.lab)
            {
                return Err(ProviderError::invalid(format!(
                    "IAM role `{name}` already exists and is not this lab's"
                )));
            }
            role.arn().to_owned()
        }
        Err(e) => return Err(failed(format!("creating IAM role {name}"))(e)),
    };
    for policy in managed {
        let policy_arn = format!("arn:aws:iam::aws:policy/{policy}");
        c.call(Iam, c.iam.attach_role_policy().role_name(name).policy_arn(&policy_arn).send())
            .await
            .map_err(failed(format!("attaching {policy} to role {name}")))?;
    }
    if let Some(document) = inline {
        c.call(
            Iam,
            c.iam
                .put_role_policy()
                .role_name(name)
                .policy_name(POLICY)
                .policy_document(document.to_string())
                .send(),
        )
        .await
        .map_err(failed(format!("setting the policy of role {name}")))?;
    }
    Ok(arn)
}

/// Deletes a role after detaching its policies and removing it from instance profiles.
pub(crate) async fn delete_role(c: &Aws, name: &str) -> Result<(), ProviderError> {
    let attached = match c.call(Iam, c.iam.list_attached_role_policies().role_name(name).send()).await {
        Ok(out) => out,
        Err(e) if is_missing(&e, MISSING) => return Ok(()),
        Err(e) => return Err(failed(format!("reading IAM role {name}"))(e)),
    };
    for policy in attached.attached_policies() {
        let arn = policy.policy_arn().unwrap_or_default();
        ignore_missing(
            c.call(Iam, c.iam.detach_role_policy().role_name(name).policy_arn(arn).send()).await,
            MISSING,
            "detaching a role policy",
        )?;
    }
    if let Ok(inline) = c.call(Iam, c.iam.list_role_policies().role_name(name).send()).await {
        for policy in inline.policy_names() {
            ignore_missing(
                c.call(Iam, c.iam.delete_role_policy().role_name(name).policy_name(policy).send()).await,
                MISSING,
                "deleting a role policy",
            )?;
        }
    }
    if let Ok(profiles) = c.call(Iam, c.iam.list_instance_profiles_for_role().role_name(name).send()).await {
        for profile in profiles.instance_profiles() {
            let profile = profile.instance_profile_name();
            ignore_missing(
                c.call(
                    Iam,
                    c.iam
                        .remove_role_from_instance_profile()
                        .instance_profile_name(profile)
                        .role_name(name)
                        .send(),
                )
                .await,
                MISSING,
                "removing a role from its instance profile",
            )?;
        }
    }
    ignore_missing(
        c.call(Iam, c.iam.delete_role().role_name(name).send()).await,
        MISSING,
        &format!("deleting IAM role {name}"),
    )
}

/// The role and instance profile the lab's VMs run as: read access to the artifacts bucket.
pub(crate) async fn create_instance_profile(
    c: &Aws,
    spec: &ResourceSpec,
    lab: &str,
) -> Result<Observed, ProviderError> {
    let profile: InstanceProfileConfig = config(spec)?;
    let (name, artifacts) = (profile.name.as_str(), profile.artifacts.as_str());
    let read_artifacts = json!({
        "Version": "2012-10-17",
        "Statement": [
            { "Effect": "Allow", "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{artifacts}/*") },
            { "Effect": "Allow", "Action": "s3:ListBucket", "Resource": format!("arn:aws:s3:::{artifacts}") },
        ],
    });
    let role_arn = ensure_role(c, spec, lab, name, "ec2.amazonaws.com", &[], Some(read_artifacts)).await?;
    let partial = |e: ProviderError| e.with_partial(Observed { id: name.to_owned(), ..Default::default() });
    let created = c
        .call(
            Iam,
            c.iam
                .create_instance_profile()
                .instance_profile_name(name)
                .path(iam_path(lab))
                .set_tags(Some(tagging::iam(spec, name)))
                .send(),
        )
        .await;
    match created {
        Ok(_) => {}
        Err(e) if code(&e) == Some("EntityAlreadyExists") => {}
        Err(e) => return Err(partial(failed(format!("creating instance profile {name}"))(e))),
    }
    let profile = c
        .call(Iam, c.iam.get_instance_profile().instance_profile_name(name).send())
        .await
        .map_err(failed(format!("reading instance profile {name}")))
        .map_err(partial)?;
    let profile = profile.instance_profile().ok_or_else(|| {
        partial(ProviderError::fatal(format!("instance profile {name} has no description")))
    })?;
    if !profile.roles().iter().any(|r| r.role_name() == name) {
        c.call(Iam, c.iam.add_role_to_instance_profile().instance_profile_name(name).role_name(name).send())
            .await
            .map_err(failed(format!("adding role {name} to its instance profile")))
            .map_err(partial)?;
    }
    Ok(instance_profile_observed(name, profile.arn(), &role_arn))
}

fn instance_profile_observed(name: &str, arn: &str, role_arn: &str) -> Observed {
    Observed {
        id: name.to_owned(),
        attributes: attrs(
            json!({ "instance_profile": name, "instance_profile_arn": arn, "role_arn": role_arn }),
        ),
        sensitive: vec![],
    }
}

pub(crate) async fn read_instance_profile(
    c: &Aws,
    prior: &Observed,
) -> Result<Option<Observed>, ProviderError> {
    match c.call(Iam, c.iam.get_instance_profile().instance_profile_name(&prior.id).send()).await {
        Ok(out) => Ok(out.instance_profile().and_then(|p| {
            let role = p.roles().first()?;
            Some(instance_profile_observed(&prior.id, p.arn(), role.arn()))
        })),
        Err(e) if is_missing(&e, MISSING) => Ok(None),
        Err(e) => Err(failed(format!("reading instance profile {}", prior.id))(e)),
    }
}

/// Deletes the instance profile and its role (they share the name).
pub(crate) async fn delete_instance_profile(c: &Aws, name: &str) -> Result<(), ProviderError> {
    delete_role(c, name).await?;
    ignore_missing(
        c.call(Iam, c.iam.delete_instance_profile().instance_profile_name(name).send()).await,
        MISSING,
        &format!("deleting instance profile {name}"),
    )
}
