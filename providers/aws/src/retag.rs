//! Moving the `labctl/expires` tag of resources that exist (the one tag that changes after
//! creation), on every part a kind is made of: a network's VPC, subnets, route table and
//! gateway, a VM and its volume, a cluster and its roles (its node groups go with it).

use labctl_provider_api::{Observed, ProviderError, ResourceSpec, Tags};

use crate::clients::{
    Aws,
    Service::{Ec2, Eks, Iam, S3},
};
use crate::errors::{code, done, failed};
use crate::sweep::all;
use crate::tagging::{ec2_filter, LAB};

/// Sets `spec`'s expiry tag on the resource `prior`, or removes it when the lab has none.
pub(crate) async fn retag(c: &Aws, spec: &ResourceSpec, prior: &Observed) -> Result<(), ProviderError> {
    let expiry = spec.tags.pairs().into_iter().find(|(key, _)| *key == Tags::EXPIRES).map(|(_, v)| v);
    let expiry = expiry.as_deref();
    match spec.kind.as_str() {
        "network" | "firewall" | "vm" => ec2(c, spec, prior, expiry).await,
        "artifacts" | "bucket" => bucket(c, &prior.id, expiry).await,
        "credential" => user(c, &prior.id, expiry).await,
        "instance_profile" => {
            profile(c, &prior.id, expiry).await?;
            role(c, &prior.id, expiry).await
        }
        "cluster" => {
            eks(c, prior, expiry).await?;
            for name in crate::eks::roles(&prior.id) {
                role(c, &name, expiry).await?;
            }
            Ok(())
        }
        // A node group is swept, and so reaped, as part of its cluster, by the cluster's
        // tags. (Tagging it too would need EKS TagResource on node group ARNs, which the
        // AWS emulator the tests run, moto, does not serve.)
        // A dataset is objects in its bucket; the rest are found by sweeps only.
        _ => Ok(()),
    }
}

/// Every EC2 resource `prior` is made of: a VPC with its subnets, route tables and gateway,
/// a security group, an instance with its volumes.
async fn ec2(
    c: &Aws,
    spec: &ResourceSpec,
    prior: &Observed,
    expiry: Option<&str>,
) -> Result<(), ProviderError> {
    let id = prior.id.clone();
    let ours = || ec2_filter(&format!("tag:{LAB}"), &spec.tags.lab);
    let mut parts = vec![id.clone()];
    match spec.kind.as_str() {
        "network" => {
            let subnets = c.ec2.describe_subnets().filters(ec2_filter("vpc-id", &id)).filters(ours());
            let subnets = c.call(Ec2, all(subnets.into_paginator().items().send())).await;
            parts.extend(
                subnets
                    .map_err(failed("listing subnets"))?
                    .iter()
                    .filter_map(|s| s.subnet_id().map(str::to_owned)),
            );
            let routes = c.ec2.describe_route_tables().filters(ec2_filter("vpc-id", &id)).filters(ours());
            let routes = c.call(Ec2, all(routes.into_paginator().items().send())).await;
            parts.extend(
                routes
                    .map_err(failed("listing route tables"))?
                    .iter()
                    .filter_map(|r| r.route_table_id().map(str::to_owned)),
            );
            let gateways = c
                .ec2
                .describe_internet_gateways()
                .filters(ec2_filter("attachment.vpc-id", &id))
                .filters(ours());
            let gateways = c.call(Ec2, all(gateways.into_paginator().items().send())).await;
            parts.extend(
                gateways
                    .map_err(failed("listing internet gateways"))?
                    .iter()
                    .filter_map(|g| g.internet_gateway_id().map(str::to_owned)),
            );
        }
        "vm" => {
            let volumes =
                c.ec2.describe_volumes().filters(ec2_filter("attachment.instance-id", &id)).filters(ours());
            let volumes = c.call(Ec2, all(volumes.into_paginator().items().send())).await;
            parts.extend(
                volumes
                    .map_err(failed("listing volumes"))?
                    .iter()
                    .filter_map(|v| v.volume_id().map(str::to_owned)),
            );
        }
        _ => {}
    }
    let what = format!("tagging {}", parts.join(", "));
    let tag = aws_sdk_ec2::types::Tag::builder().key(Tags::EXPIRES);
    match expiry {
        Some(v) => {
            let set = c.ec2.create_tags().set_resources(Some(parts)).tags(tag.value(v).build());
            done(c.call(Ec2, set.send()).await, &what)
        }
        None => {
            let remove = c.ec2.delete_tags().set_resources(Some(parts)).tags(tag.build());
            done(c.call(Ec2, remove.send()).await, &what)
        }
    }
}

/// A bucket's tag set, which S3 replaces whole.
async fn bucket(c: &Aws, name: &str, expiry: Option<&str>) -> Result<(), ProviderError> {
    let found = match c.call(S3, c.s3.get_bucket_tagging().bucket(name).send()).await {
        Ok(out) => out.tag_set().to_vec(),
        Err(e) if code(&e) == Some("NoSuchTagSet") => vec![],
        Err(e) => return Err(failed(format!("reading the tags of bucket {name}"))(e)),
    };
    let mut tags: Vec<aws_sdk_s3::types::Tag> =
        found.into_iter().filter(|t| t.key() != Tags::EXPIRES).collect();
    if let Some(value) = expiry {
        tags.push(
            aws_sdk_s3::types::Tag::builder().key(Tags::EXPIRES).value(value).build().expect("key and value"),
        );
    }
    let tagging =
        aws_sdk_s3::types::Tagging::builder().set_tag_set(Some(tags)).build().expect("the tag set is set");
    let put = c.s3.put_bucket_tagging().bucket(name).tagging(tagging);
    done(c.call(S3, put.send()).await, &format!("tagging bucket {name}"))
}

fn iam_tag(value: &str) -> aws_sdk_iam::types::Tag {
    aws_sdk_iam::types::Tag::builder().key(Tags::EXPIRES).value(value).build().expect("key and value are set")
}

async fn user(c: &Aws, name: &str, expiry: Option<&str>) -> Result<(), ProviderError> {
    let what = format!("tagging IAM user {name}");
    match expiry {
        Some(v) => done(c.call(Iam, c.iam.tag_user().user_name(name).tags(iam_tag(v)).send()).await, &what),
        None => {
            let remove = c.iam.untag_user().user_name(name).tag_keys(Tags::EXPIRES);
            done(c.call(Iam, remove.send()).await, &what)
        }
    }
}

async fn role(c: &Aws, name: &str, expiry: Option<&str>) -> Result<(), ProviderError> {
    let what = format!("tagging IAM role {name}");
    match expiry {
        Some(v) => done(c.call(Iam, c.iam.tag_role().role_name(name).tags(iam_tag(v)).send()).await, &what),
        None => {
            let remove = c.iam.untag_role().role_name(name).tag_keys(Tags::EXPIRES);
            done(c.call(Iam, remove.send()).await, &what)
        }
    }
}

async fn profile(c: &Aws, name: &str, expiry: Option<&str>) -> Result<(), ProviderError> {
    let what = format!("tagging instance profile {name}");
    match expiry {
        Some(v) => {
            let set = c.iam.tag_instance_profile().instance_profile_name(name).tags(iam_tag(v));
            done(c.call(Iam, set.send()).await, &what)
        }
        None => {
            let remove = c.iam.untag_instance_profile().instance_profile_name(name).tag_keys(Tags::EXPIRES);
            done(c.call(Iam, remove.send()).await, &what)
        }
    }
}

/// An EKS cluster, by the ARN its state records.
async fn eks(c: &Aws, prior: &Observed, expiry: Option<&str>) -> Result<(), ProviderError> {
    let arn = prior.attributes.get("arn").and_then(|a| a.as_str()).ok_or_else(|| {
        ProviderError::fatal(format!(
            "EKS resource {} has no ARN in state: apply again to record it",
            prior.id
        ))
    })?;
    let what = format!("tagging {arn}");
    match expiry {
        Some(v) => done(
            c.call(Eks, c.eks.tag_resource().resource_arn(arn).tags(Tags::EXPIRES, v).send()).await,
            &what,
        ),
        None => {
            let remove = c.eks.untag_resource().resource_arn(arn).tag_keys(Tags::EXPIRES);
            done(c.call(Eks, remove.send()).await, &what)
        }
    }
}
