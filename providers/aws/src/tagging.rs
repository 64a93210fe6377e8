//! The ownership tags on every AWS resource, in each service's own shape.

use std::collections::HashMap;

use labctl_provider_api::{ResourceSpec, Tags};

pub(crate) const LAB: &str = Tags::LAB;
/// The resource's address in the lab, so that a create finds what an interrupted create made.
pub(crate) const ADDRESS: &str = "labctl/address";

/// The tags of `spec` as key/value pairs, with a `Name` for the console.
pub(crate) fn pairs(spec: &ResourceSpec, name: &str) -> Vec<(String, String)> {
    let mut pairs = vec![("Name".to_owned(), name.to_owned()), (ADDRESS.to_owned(), spec.address.clone())];
    pairs.extend(spec.tags.pairs().into_iter().map(|(k, v)| (k.to_owned(), v)));
    pairs
}

pub(crate) fn ec2(spec: &ResourceSpec, name: &str) -> Vec<aws_sdk_ec2::types::Tag> {
    pairs(spec, name)
        .into_iter()
        .map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build())
        .collect()
}

/// A tag specification for creating an EC2 resource of `resource_type` already tagged.
pub(crate) fn ec2_spec(
    resource_type: aws_sdk_ec2::types::ResourceType,
    spec: &ResourceSpec,
    name: &str,
) -> aws_sdk_ec2::types::TagSpecification {
    aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(resource_type)
        .set_tags(Some(ec2(spec, name)))
        .build()
}

pub(crate) fn ec2_parse(tags: &[aws_sdk_ec2::types::Tag]) -> Option<Tags> {
    Tags::from_pairs(tags.iter().map(|t| (t.key().unwrap_or(""), t.value().unwrap_or(""))))
}

/// The EC2 filters selecting this address of this lab.
pub(crate) fn ec2_owned(spec: &ResourceSpec) -> Vec<aws_sdk_ec2::types::Filter> {
    vec![
        ec2_filter(&format!("tag:{LAB}"), &spec.tags.lab),
        ec2_filter(&format!("tag:{ADDRESS}"), &spec.address),
    ]
}

pub(crate) fn ec2_filter(name: &str, value: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder().name(name).values(value).build()
}

pub(crate) fn iam(spec: &ResourceSpec, name: &str) -> Vec<aws_sdk_iam::types::Tag> {
    pairs(spec, name)
        .into_iter()
        .map(|(k, v)| {
            aws_sdk_iam::types::Tag::builder().key(k).value(v).build().expect("key and value are set")
        })
        .collect()
}

pub(crate) fn s3(spec: &ResourceSpec, name: &str) -> aws_sdk_s3::types::Tagging {
    let tags = pairs(spec, name)
        .into_iter()
        .map(|(k, v)| {
            aws_sdk_s3::types::Tag::builder().key(k).value(v).build().expect("key and value are set")
        })
        .collect();
    aws_sdk_s3::types::Tagging::builder().set_tag_set(Some(tags)).build().expect("the tag set is set")
}

pub(crate) fn eks(spec: &ResourceSpec, name: &str) -> HashMap<String, String> {
    pairs(spec, name).into_iter().collect()
}

/// The IAM path under which every lab's identities are.
pub(crate) const IAM_ROOT: &str = "/labctl/";

/// IAM path for a lab's users, roles and instance profiles: lets a sweep list them directly.
pub(crate) fn iam_path(lab: &str) -> String {
    format!("{IAM_ROOT}{lab}/")
}
