//! Finding everything that carries a lab's tags, whether or not state knows it, in an order
//! that is safe to delete in: VMs and node groups before clusters, volumes and security
//! groups before the network, storage and identities last.

use aws_smithy_async::future::pagination_stream::PaginationStream;
use labctl_provider_api::{Found, ProviderError, Tags};

use crate::clients::{
    Aws,
    Service::{Ec2, Eks, Iam, S3},
};
use crate::compute::LIVE;
use crate::errors::{code, failed};
use crate::tagging::{ec2_filter, ec2_parse, iam_path, ADDRESS, IAM_ROOT, LAB};

pub(crate) async fn sweep(c: &Aws, lab: &str) -> Result<Vec<Found>, ProviderError> {
    let mut found = vec![];
    let lab_filter = || ec2_filter(&format!("tag:{LAB}"), lab);

    let live = aws_sdk_ec2::types::Filter::builder()
        .name("instance-state-name")
        .set_values(Some(LIVE.map(String::from).to_vec()))
        .build();
    let reservations = c
        .call(
            Ec2,
            all(c
                .ec2
                .describe_instances()
                .filters(lab_filter())
                .filters(live)
                .into_paginator()
                .items()
                .send()),
        )
        .await
        .map_err(failed("listing VMs"))?;
    for i in reservations.iter().flat_map(|r| r.instances()) {
        push(&mut found, "vm", i.instance_id(), ec2_parse(i.tags()));
    }

    let (pools, clusters) = eks(c, Some(lab)).await?;
    found.extend(pools);
    found.extend(clusters);

    let volumes = c
        .call(Ec2, all(c.ec2.describe_volumes().filters(lab_filter()).into_paginator().items().send()))
        .await
        .map_err(failed("listing volumes"))?;
    for v in &volumes {
        push(&mut found, "volume", v.volume_id(), ec2_parse(v.tags()));
    }
    let groups = c
        .call(
            Ec2,
            all(c.ec2.describe_security_groups().filters(lab_filter()).into_paginator().items().send()),
        )
        .await
        .map_err(failed("listing security groups"))?;
    for g in &groups {
        push(&mut found, "firewall", g.group_id(), ec2_parse(g.tags()));
    }
    // Subnets, gateways and routes are tagged parts of the network and go with its VPC.
    let vpcs = c
        .call(
            Ec2,
            all(c
                .ec2
                .describe_vpcs()
                .filters(lab_filter())
                .filters(ec2_filter(&format!("tag:{ADDRESS}"), "network"))
                .into_paginator()
                .items()
                .send()),
        )
        .await
        .map_err(failed("listing VPCs"))?;
    // A gateway whose create was interrupted before it was attached belongs to no VPC.
    let gateways = c
        .call(
            Ec2,
            all(c.ec2.describe_internet_gateways().filters(lab_filter()).into_paginator().items().send()),
        )
        .await
        .map_err(failed("listing internet gateways"))?;
    for g in gateways.iter().filter(|g| g.attachments().is_empty()) {
        push(&mut found, "internet_gateway", g.internet_gateway_id(), ec2_parse(g.tags()));
    }
    for v in &vpcs {
        push(&mut found, "network", v.vpc_id(), ec2_parse(v.tags()));
    }

    found.extend(buckets(c, Some(lab)).await?);
    let identities = identities(c, lab, &found).await?;
    found.extend(identities);
    Ok(found)
}

fn push(found: &mut Vec<Found>, kind: &str, id: Option<&str>, tags: Option<Tags>) {
    if let (Some(id), Some(tags)) = (id, tags) {
        found.push(Found { kind: kind.to_owned(), id: id.to_owned(), tags });
    }
}

/// Every item of a paginated listing.
pub(crate) async fn all<T, E>(mut stream: PaginationStream<Result<T, E>>) -> Result<Vec<T>, E> {
    let mut items = vec![];
    while let Some(item) = stream.next().await {
        items.push(item?);
    }
    Ok(items)
}

/// The node groups and clusters of `lab`, or of every lab (EKS lists names only; tags come
/// with describe).
async fn eks(c: &Aws, lab: Option<&str>) -> Result<(Vec<Found>, Vec<Found>), ProviderError> {
    let (mut pools, mut clusters) = (vec![], vec![]);
    let names = c
        .call(Eks, all(c.eks.list_clusters().into_paginator().items().send()))
        .await
        .map_err(failed("listing EKS clusters"))?;
    for name in names {
        let out = c
            .call(Eks, c.eks.describe_cluster().name(&name).send())
            .await
            .map_err(failed(format!("reading EKS cluster {name}")))?;
        let tags = out
            .cluster()
            .and_then(|c| c.tags())
            .and_then(|t| Tags::from_pairs(t.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
        let Some(tags) = tags.filter(|t| lab.is_none_or(|lab| t.lab == lab)) else { continue };
        let groups = c
            .call(Eks, all(c.eks.list_nodegroups().cluster_name(&name).into_paginator().items().send()))
            .await
            .map_err(failed(format!("listing node groups of {name}")))?;
        for group in groups {
            pools.push(Found { kind: "node_pool".into(), id: format!("{name}/{group}"), tags: tags.clone() });
        }
        clusters.push(Found { kind: "cluster".into(), id: name, tags });
    }
    Ok((pools, clusters))
}

/// Buckets named for `lab` (`<lab>-…`) whose tags say they are its; without a lab, every
/// bucket labctl tagged.
async fn buckets(c: &Aws, lab: Option<&str>) -> Result<Vec<Found>, ProviderError> {
    let mut found = vec![];
    let listed = c.call(S3, c.s3.list_buckets().send()).await.map_err(failed("listing buckets"))?;
    let prefix = lab.map(|lab| format!("{lab}-")).unwrap_or_default();
    for bucket in listed.buckets().iter().filter_map(|b| b.name()).filter(|n| n.starts_with(&prefix)) {
        let tags = match c.call(S3, c.s3.get_bucket_tagging().bucket(bucket).send()).await {
            Ok(out) => Tags::from_pairs(out.tag_set().iter().map(|t| (t.key(), t.value()))),
            // Another region's bucket, or one this account may not read: not this lab's.
            Err(e)
                if matches!(
                    code(&e),
                    Some("NoSuchTagSet" | "NoSuchBucket" | "PermanentRedirect" | "AccessDenied")
                ) =>
            {
                None
            }
            Err(e) => return Err(failed(format!("reading the tags of bucket {bucket}"))(e)),
        };
        push(&mut found, "bucket", Some(bucket), tags.filter(|t| lab.is_none_or(|lab| t.lab == lab)));
    }
    Ok(found)
}

/// Users, instance profiles and roles under the lab's IAM path.
async fn identities(c: &Aws, lab: &str, swept: &[Found]) -> Result<Vec<Found>, ProviderError> {
    let mut found = vec![];
    let path = iam_path(lab);
    let users = c
        .call(Iam, all(c.iam.list_users().path_prefix(&path).into_paginator().items().send()))
        .await
        .map_err(failed("listing IAM users"))?;
    for user in &users {
        let tags = c.call(Iam, c.iam.list_user_tags().user_name(user.user_name()).send()).await.ok();
        let tags = tags.and_then(|t| Tags::from_pairs(t.tags().iter().map(|t| (t.key(), t.value()))));
        push(&mut found, "credential", Some(user.user_name()), tags.or_else(|| Some(Tags::lab(lab, None))));
    }
    let profiles = c
        .call(Iam, all(c.iam.list_instance_profiles().path_prefix(&path).into_paginator().items().send()))
        .await
        .map_err(failed("listing instance profiles"))?;
    for profile in &profiles {
        push(
            &mut found,
            "instance_profile",
            Some(profile.instance_profile_name()),
            Some(Tags::lab(lab, None)),
        );
    }
    let roles = c
        .call(Iam, all(c.iam.list_roles().path_prefix(&path).into_paginator().items().send()))
        .await
        .map_err(failed("listing IAM roles"))?;
    // Roles that go with an instance profile or a cluster found above are deleted with it.
    let owned = |role: &str| {
        profiles.iter().any(|p| p.instance_profile_name() == role)
            || swept.iter().any(|f| f.kind == "cluster" && crate::eks::roles(&f.id).iter().any(|r| r == role))
    };
    for role in roles.iter().filter(|r| !owned(r.role_name())) {
        push(&mut found, "role", Some(role.role_name()), Some(Tags::lab(lab, None)));
    }
    Ok(found)
}

/// The name of every lab whose tags are on something here: on EC2 resources, buckets and
/// EKS clusters, and in the IAM paths of users and roles.
pub(crate) async fn labs(c: &Aws) -> Result<Vec<String>, ProviderError> {
    let mut labs = std::collections::BTreeSet::new();
    let tags = c
        .call(Ec2, all(c.ec2.describe_tags().filters(ec2_filter("key", LAB)).into_paginator().items().send()))
        .await
        .map_err(failed("listing EC2 tags"))?;
    labs.extend(tags.iter().filter_map(|t| t.value()).map(str::to_owned));
    labs.extend(buckets(c, None).await?.into_iter().map(|f| f.tags.lab));
    labs.extend(eks(c, None).await?.1.into_iter().map(|f| f.tags.lab));
    let prefix = IAM_ROOT;
    let users = c
        .call(Iam, all(c.iam.list_users().path_prefix(prefix).into_paginator().items().send()))
        .await
        .map_err(failed("listing IAM users"))?;
    let roles = c
        .call(Iam, all(c.iam.list_roles().path_prefix(prefix).into_paginator().items().send()))
        .await
        .map_err(failed("listing IAM roles"))?;
    let paths = users.iter().map(|u| u.path()).chain(roles.iter().map(|r| r.path()));
    labs.extend(paths.filter_map(|p| p.strip_prefix(prefix)?.strip_suffix('/')).map(str::to_owned));
    Ok(labs.into_iter().collect())
}
