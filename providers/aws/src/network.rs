//! The lab's VPC (public subnets in several zones, internet gateway, default route) and each
//! student's security group.

use aws_sdk_ec2::types::{AttributeBooleanValue, IpPermission, IpRange, ResourceType, UserIdGroupPair};
use labctl_provider_api::configs::config;
use labctl_provider_api::dep_attr;
use labctl_provider_api::{attrs, Deps, ErrorKind, Observed, ProviderError, ResourceSpec};
use serde_json::json;

use crate::clients::{Aws, Service::Ec2};
use crate::errors::{code, failed, ignore_missing, is_missing};
use crate::part_of;
use crate::plugin::{FirewallConfig, NetworkConfig};
use crate::tagging::{ec2_filter, ec2_owned, ec2_parse, ec2_spec};

fn on() -> AttributeBooleanValue {
    AttributeBooleanValue::builder().value(true).build()
}

/// Finds or makes every part of the network, so a create interrupted half-way completes.
pub(crate) async fn create(c: &Aws, spec: &ResourceSpec) -> Result<Observed, ProviderError> {
    let network: NetworkConfig = config(spec)?;
    let (name, cidr, zones) = (network.name.as_str(), network.cidr.as_str(), network.zones as usize);
    let vpc_id = match find_vpc(c, spec).await? {
        Some(id) => id,
        None => {
            let out = c
                .call(
                    Ec2,
                    c.ec2
                        .create_vpc()
                        .cidr_block(cidr)
                        .tag_specifications(ec2_spec(ResourceType::Vpc, spec, name))
                        .send(),
                )
                .await
                .map_err(failed(format!("creating VPC {cidr}")))?;
            out.vpc().and_then(|v| v.vpc_id()).unwrap_or_default().to_owned()
        }
    };
    let partial = |e: ProviderError| e.with_partial(Observed { id: vpc_id.clone(), ..Default::default() });
    // Instances get DNS names (EKS nodes register by them); one attribute per call.
    for (what, request) in [
        ("DNS support", c.ec2.modify_vpc_attribute().vpc_id(&vpc_id).enable_dns_support(on())),
        ("DNS hostnames", c.ec2.modify_vpc_attribute().vpc_id(&vpc_id).enable_dns_hostnames(on())),
    ] {
        c.call(Ec2, request.send())
            .await
            .map_err(failed(format!("turning on {what} in VPC {vpc_id}")))
            .map_err(partial)?;
    }

    let igw_spec = part_of(spec, "internet_gateway");
    let igw = c
        .call(Ec2, c.ec2.describe_internet_gateways().set_filters(Some(ec2_owned(&igw_spec))).send())
        .await
        .map_err(failed("listing internet gateways"))
        .map_err(partial)?;
    let igw_id = match igw.internet_gateways().first() {
        Some(g) => g.internet_gateway_id().unwrap_or_default().to_owned(),
        None => {
            let out = c
                .call(
                    Ec2,
                    c.ec2
                        .create_internet_gateway()
                        .tag_specifications(ec2_spec(ResourceType::InternetGateway, &igw_spec, name))
                        .send(),
                )
                .await
                .map_err(failed("creating the internet gateway"))
                .map_err(partial)?;
            out.internet_gateway().and_then(|g| g.internet_gateway_id()).unwrap_or_default().to_owned()
        }
    };
    let attached = igw
        .internet_gateways()
        .first()
        .is_some_and(|g| g.attachments().iter().any(|a| a.vpc_id() == Some(&vpc_id)));
    if !attached {
        c.call(Ec2, c.ec2.attach_internet_gateway().internet_gateway_id(&igw_id).vpc_id(&vpc_id).send())
            .await
            .map_err(failed("attaching the internet gateway"))
            .map_err(partial)?;
    }

    let routes_spec = part_of(spec, "routes");
    let tables = c
        .call(Ec2, c.ec2.describe_route_tables().set_filters(Some(ec2_owned(&routes_spec))).send())
        .await
        .map_err(failed("listing route tables"))
        .map_err(partial)?;
    let table = tables.route_tables().first();
    let table_id = match table {
        Some(t) => t.route_table_id().unwrap_or_default().to_owned(),
        None => {
            let out = c
                .call(
                    Ec2,
                    c.ec2
                        .create_route_table()
                        .vpc_id(&vpc_id)
                        .tag_specifications(ec2_spec(ResourceType::RouteTable, &routes_spec, name))
                        .send(),
                )
                .await
                .map_err(failed("creating the route table"))
                .map_err(partial)?;
            out.route_table().and_then(|t| t.route_table_id()).unwrap_or_default().to_owned()
        }
    };
    if !table.is_some_and(|t| t.routes().iter().any(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))) {
        c.call(
            Ec2,
            c.ec2
                .create_route()
                .route_table_id(&table_id)
                .destination_cidr_block("0.0.0.0/0")
                .gateway_id(&igw_id)
                .send(),
        )
        .await
        .map_err(failed("adding the default route"))
        .map_err(partial)?;
    }

    let azs = c
        .call(Ec2, c.ec2.describe_availability_zones().filters(ec2_filter("state", "available")).send())
        .await
        .map_err(failed("listing availability zones"))
        .map_err(partial)?;
    let mut names: Vec<&str> = azs.availability_zones().iter().filter_map(|z| z.zone_name()).collect();
    names.sort_unstable();
    if names.len() < zones {
        return Err(ProviderError::invalid(format!(
            "region {} has {} availability zones; the lab asks for {zones}",
            c.region,
            names.len()
        ))
        .with_partial(Observed { id: vpc_id.clone(), ..Default::default() }));
    }
    for (i, zone) in names.iter().take(zones).enumerate() {
        let subnet_spec = part_of(spec, &format!("subnet/{zone}"));
        let found = c
            .call(Ec2, c.ec2.describe_subnets().set_filters(Some(ec2_owned(&subnet_spec))).send())
            .await
            .map_err(failed("listing subnets"))
            .map_err(partial)?;
        let subnet_id = match found.subnets().first().and_then(|s| s.subnet_id()) {
            Some(id) => id.to_owned(),
            None => create_subnet(
                c,
                &vpc_id,
                &subnet_cidr(cidr, i).map_err(|e| partial(ProviderError::invalid(e)))?,
                zone,
                &subnet_spec,
                name,
            )
            .await
            .map_err(partial)?,
        };
        // Converged every time: a create killed after making the subnet left these undone.
        let routed =
            table.is_some_and(|t| t.associations().iter().any(|a| a.subnet_id() == Some(subnet_id.as_str())));
        if !routed {
            c.call(Ec2, c.ec2.associate_route_table().route_table_id(&table_id).subnet_id(&subnet_id).send())
                .await
                .map_err(failed("routing the subnet"))
                .map_err(partial)?;
        }
        c.call(
            Ec2,
            c.ec2
                .modify_subnet_attribute()
                .subnet_id(&subnet_id)
                .map_public_ip_on_launch(AttributeBooleanValue::builder().value(true).build())
                .send(),
        )
        .await
        .map_err(failed("giving the subnet public addresses"))
        .map_err(partial)?;
    }
    observe(c, &vpc_id).await?.ok_or_else(|| {
        ProviderError::new(ErrorKind::Unavailable, format!("VPC {vpc_id} vanished while being made"))
    })
}

async fn create_subnet(
    c: &Aws,
    vpc_id: &str,
    block: &str,
    zone: &str,
    spec: &ResourceSpec,
    name: &str,
) -> Result<String, ProviderError> {
    let out = c
        .call(
            Ec2,
            c.ec2
                .create_subnet()
                .vpc_id(vpc_id)
                .cidr_block(block)
                .availability_zone(zone)
                .tag_specifications(ec2_spec(ResourceType::Subnet, spec, &format!("{name}-{zone}")))
                .send(),
        )
        .await
        .map_err(failed(format!("creating subnet {block} in {zone}")))?;
    Ok(out.subnet().and_then(|s| s.subnet_id()).unwrap_or_default().to_owned())
}

async fn find_vpc(c: &Aws, spec: &ResourceSpec) -> Result<Option<String>, ProviderError> {
    let out = c
        .call(Ec2, c.ec2.describe_vpcs().set_filters(Some(ec2_owned(spec))).send())
        .await
        .map_err(failed("listing VPCs"))?;
    Ok(out.vpcs().first().and_then(|v| v.vpc_id()).map(str::to_owned))
}

pub(crate) async fn read(c: &Aws, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
    observe(c, &prior.id).await
}

/// The VPC and its subnets (ordered by zone) as they are now.
async fn observe(c: &Aws, vpc_id: &str) -> Result<Option<Observed>, ProviderError> {
    let vpcs = match c.call(Ec2, c.ec2.describe_vpcs().vpc_ids(vpc_id).send()).await {
        Ok(out) => out,
        Err(e) if is_missing(&e, &["InvalidVpcID.NotFound"]) => return Ok(None),
        Err(e) => return Err(failed(format!("reading VPC {vpc_id}"))(e)),
    };
    let Some(vpc) = vpcs.vpcs().first() else { return Ok(None) };
    let subnets = c
        .call(Ec2, c.ec2.describe_subnets().filters(ec2_filter("vpc-id", vpc_id)).send())
        .await
        .map_err(failed("listing subnets"))?;
    let mut subnets: Vec<(&str, &str)> = subnets
        .subnets()
        .iter()
        .map(|s| (s.availability_zone().unwrap_or(""), s.subnet_id().unwrap_or("")))
        .collect();
    subnets.sort_unstable();
    Ok(Some(Observed {
        id: vpc_id.to_owned(),
        attributes: attrs(json!({
            "vpc_id": vpc_id,
            "cidr": vpc.cidr_block(),
            "zones": subnets.iter().map(|s| s.0).collect::<Vec<_>>(),
            "subnets": subnets.iter().map(|s| s.1).collect::<Vec<_>>(),
        })),
        sensitive: vec![],
    }))
}

/// Deletes the VPC after everything inside it: subnets, route tables, gateways, groups.
pub(crate) async fn delete(c: &Aws, prior: &Observed) -> Result<(), ProviderError> {
    let vpc = prior.id.as_str();
    let in_vpc = || ec2_filter("vpc-id", vpc);
    let subnets = c
        .call(Ec2, c.ec2.describe_subnets().filters(in_vpc()).send())
        .await
        .map_err(failed("listing subnets"))?;
    let tables = c
        .call(Ec2, c.ec2.describe_route_tables().filters(in_vpc()).send())
        .await
        .map_err(failed("listing route tables"))?;
    for table in tables.route_tables() {
        let main = table.associations().iter().any(|a| a.main() == Some(true));
        for association in table.associations().iter().filter(|a| a.main() != Some(true)) {
            let id = association.route_table_association_id().unwrap_or_default();
            ignore_missing(
                c.call(Ec2, c.ec2.disassociate_route_table().association_id(id).send()).await,
                &["InvalidAssociationID.NotFound"],
                "unrouting a subnet",
            )?;
        }
        if !main {
            let id = table.route_table_id().unwrap_or_default();
            ignore_missing(
                c.call(Ec2, c.ec2.delete_route_table().route_table_id(id).send()).await,
                &["InvalidRouteTableID.NotFound"],
                "deleting a route table",
            )?;
        }
    }
    for subnet in subnets.subnets() {
        let id = subnet.subnet_id().unwrap_or_default();
        ignore_missing(
            c.call(Ec2, c.ec2.delete_subnet().subnet_id(id).send()).await,
            &["InvalidSubnetID.NotFound"],
            "deleting a subnet",
        )?;
    }
    let gateways = c
        .call(Ec2, c.ec2.describe_internet_gateways().filters(ec2_filter("attachment.vpc-id", vpc)).send())
        .await
        .map_err(failed("listing internet gateways"))?;
    for gateway in gateways.internet_gateways() {
        delete_gateway(c, gateway.internet_gateway_id().unwrap_or_default()).await?;
    }
    let groups = c
        .call(Ec2, c.ec2.describe_security_groups().filters(in_vpc()).send())
        .await
        .map_err(failed("listing security groups"))?;
    for group in groups.security_groups().iter().filter(|g| g.group_name() != Some("default")) {
        delete_firewall(c, group.group_id().unwrap_or_default()).await?;
    }
    ignore_missing(
        c.call(Ec2, c.ec2.delete_vpc().vpc_id(vpc).send()).await,
        &["InvalidVpcID.NotFound"],
        &format!("deleting VPC {vpc}"),
    )
}

/// A student's security group: their own VMs reach each other on any port, and SSH from
/// the lab's `ssh_cidrs`; nothing of another student's is reachable. Converges an existing
/// group: SSH ranges no longer listed are revoked.
pub(crate) async fn create_firewall(
    c: &Aws,
    spec: &ResourceSpec,
    deps: &Deps,
) -> Result<Observed, ProviderError> {
    let FirewallConfig { name, ssh_cidrs } = config(spec)?;
    let name = name.as_str();
    let vpc = dep_attr(deps, "vpc_id")?;
    let found = c
        .call(
            Ec2,
            c.ec2
                .describe_security_groups()
                .filters(ec2_filter("vpc-id", vpc))
                .filters(ec2_filter("group-name", name))
                .send(),
        )
        .await
        .map_err(failed("listing security groups"))?;
    let mut ssh_open: Vec<String> = vec![];
    let group_id = match found.security_groups().first() {
        Some(g) if ec2_parse(g.tags()).is_some_and(|t| t.same_owner(&spec.tags)) => {
            ssh_open = g
                .ip_permissions()
                .iter()
                .filter(|p| p.from_port() == Some(22) && p.to_port() == Some(22))
                .flat_map(|p| p.ip_ranges())
                .filter_map(|r| r.cidr_ip())
                .map(str::to_owned)
                .collect();
            g.group_id().unwrap_or_default().to_owned()
        }
        Some(_) => {
            return Err(ProviderError::invalid(format!(
                "security group `{name}` exists in {vpc} but was not made by this lab"
            )))
        }
        None => {
            let out = c
                .call(
                    Ec2,
                    c.ec2
                        .create_security_group()
                        .group_name(name)
                        .description(format!("labctl: {}", spec.address))
                        .vpc_id(vpc)
                        .tag_specifications(ec2_spec(ResourceType::SecurityGroup, spec, name))
                        .send(),
                )
                .await
                .map_err(failed(format!("creating security group {name}")))?;
            out.group_id().unwrap_or_default().to_owned()
        }
    };
    let own = IpPermission::builder()
        .ip_protocol("-1")
        .user_id_group_pairs(UserIdGroupPair::builder().group_id(&group_id).build())
        .build();
    let ssh = |cidr: &str| {
        let range = IpRange::builder().cidr_ip(cidr).description("SSH").build();
        IpPermission::builder().ip_protocol("tcp").from_port(22).to_port(22).ip_ranges(range).build()
    };
    for stale in ssh_open.iter().filter(|c| !ssh_cidrs.contains(c)) {
        c.call(
            Ec2,
            c.ec2.revoke_security_group_ingress().group_id(&group_id).ip_permissions(ssh(stale)).send(),
        )
        .await
        .map_err(failed(format!("closing SSH from {stale} to security group {name}")))?;
    }
    // One rule per request: a request holding a rule that exists fails as a whole.
    let missing = ssh_cidrs.iter().filter(|c| !ssh_open.contains(c)).map(|c| ssh(c));
    for rule in std::iter::once(own).chain(missing) {
        let sent = c
            .call(
                Ec2,
                c.ec2.authorize_security_group_ingress().group_id(&group_id).ip_permissions(rule).send(),
            )
            .await;
        match sent {
            Err(e) if code(&e) == Some("InvalidPermission.Duplicate") => {}
            other => {
                other
                    .map_err(failed(format!("opening security group {name}")))
                    .map_err(|e| e.with_partial(Observed { id: group_id.clone(), ..Default::default() }))?;
            }
        }
    }
    Ok(firewall_observed(&group_id, name, vpc))
}

fn firewall_observed(group_id: &str, name: &str, vpc: &str) -> Observed {
    Observed {
        id: group_id.to_owned(),
        attributes: attrs(json!({ "group_id": group_id, "name": name, "vpc_id": vpc })),
        sensitive: vec![],
    }
}

pub(crate) async fn read_firewall(c: &Aws, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
    match c.call(Ec2, c.ec2.describe_security_groups().group_ids(&prior.id).send()).await {
        Ok(out) => Ok(out.security_groups().first().map(|g| {
            firewall_observed(
                g.group_id().unwrap_or_default(),
                g.group_name().unwrap_or_default(),
                g.vpc_id().unwrap_or_default(),
            )
        })),
        Err(e) if is_missing(&e, &["InvalidGroup.NotFound", "InvalidGroupId.Malformed"]) => Ok(None),
        Err(e) => Err(failed(format!("reading security group {}", prior.id))(e)),
    }
}

/// Deletes a security group; one still used by a terminating VM is retried by the engine.
pub(crate) async fn delete_firewall(c: &Aws, group_id: &str) -> Result<(), ProviderError> {
    match c.call(Ec2, c.ec2.delete_security_group().group_id(group_id).send()).await {
        Err(e) if code(&e) == Some("DependencyViolation") => Err(ProviderError::new(
            ErrorKind::Unavailable,
            format!("security group {group_id} is still in use"),
        )),
        result => {
            ignore_missing(result, &["InvalidGroup.NotFound"], &format!("deleting security group {group_id}"))
        }
    }
}

/// Detaches an internet gateway from whatever VPC it is attached to, then deletes it.
pub(crate) async fn delete_gateway(c: &Aws, id: &str) -> Result<(), ProviderError> {
    let found = match c.call(Ec2, c.ec2.describe_internet_gateways().internet_gateway_ids(id).send()).await {
        Ok(out) => out,
        Err(e) if is_missing(&e, &["InvalidInternetGatewayID.NotFound"]) => return Ok(()),
        Err(e) => return Err(failed(format!("reading internet gateway {id}"))(e)),
    };
    for attachment in found.internet_gateways().iter().flat_map(|g| g.attachments()) {
        let vpc = attachment.vpc_id().unwrap_or_default();
        ignore_missing(
            c.call(Ec2, c.ec2.detach_internet_gateway().internet_gateway_id(id).vpc_id(vpc).send()).await,
            &["Gateway.NotAttached", "InvalidInternetGatewayID.NotFound"],
            &format!("detaching internet gateway {id}"),
        )?;
    }
    ignore_missing(
        c.call(Ec2, c.ec2.delete_internet_gateway().internet_gateway_id(id).send()).await,
        &["InvalidInternetGatewayID.NotFound"],
        &format!("deleting internet gateway {id}"),
    )
}

/// The `index`th subnet of `cidr`, 16 of them (4 more prefix bits, at most /28).
fn subnet_cidr(cidr: &str, index: usize) -> Result<String, String> {
    let bad = || format!("network cidr `{cidr}` is not an IPv4 block like 10.0.0.0/16");
    let (addr, prefix) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: std::net::Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let prefix: u32 = prefix.parse().map_err(|_| bad())?;
    if prefix > 24 || index >= 16 {
        return Err(format!(
            "network cidr `{cidr}` is too small for {} subnets (use /24 or larger)",
            index + 1
        ));
    }
    let sub = prefix + 4;
    let base = u32::from(addr) & (u32::MAX << (32 - prefix));
    let net = base | ((index as u32) << (32 - sub));
    Ok(format!("{}/{sub}", std::net::Ipv4Addr::from(net)))
}

#[cfg(test)]
mod tests {
    use super::subnet_cidr;

    #[test]
    fn subnets_divide_the_block() {
        assert_eq!(subnet_cidr("10.0.0.0/16", 0).unwrap(), "10.0.0.0/20");
        assert_eq!(subnet_cidr("10.0.0.0/16", 1).unwrap(), "10.0.16.0/20");
        assert_eq!(subnet_cidr("10.1.7.9/16", 2).unwrap(), "10.1.32.0/20");
        assert_eq!(subnet_cidr("192.168.4.0/24", 3).unwrap(), "192.168.4.48/28");
        assert!(subnet_cidr("10.0.0.0/26", 0).is_err());
        assert!(subnet_cidr("ten/16", 0).is_err());
    }
}
