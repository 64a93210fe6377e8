//! What an AWS lab bills per hour: the items each resource consumes, and the on-demand
//! list prices labctl ships for them. The figures are AWS's published on-demand prices for
//! us-east-1 (Linux), as listed on aws.amazon.com/ec2/pricing/on-demand,
//! aws.amazon.com/eks/pricing and aws.amazon.com/ebs/pricing in 2025; other regions differ
//! by a few percent, and `[lab.budget] rates` overrides any of them.

use labctl_provider_api::configs::config;
use labctl_provider_api::cost::{Billed, PriceTable};
use labctl_provider_api::ResourceSpec;

use crate::plugin::{NodePoolConfig, VmConfig};

/// Where the figures come from, as the plan names them.
const SOURCE: &str = "AWS on-demand list prices for us-east-1 (Linux), 2025";

/// Hours in AWS's billing month, for prices quoted per GB-month.
const HOURS_PER_MONTH: f64 = 730.0;

/// USD per hour by instance type.
const INSTANCES: &[(&str, f64)] = &[
    ("t3.nano", 0.0052),
    ("t3.micro", 0.0104),
    ("t3.small", 0.0208),
    ("t3.medium", 0.0416),
    ("t3.large", 0.0832),
    ("t3.xlarge", 0.1664),
    ("t3.2xlarge", 0.3328),
    ("m5.large", 0.096),
    ("m5.xlarge", 0.192),
    ("m5.2xlarge", 0.384),
    ("m6i.large", 0.096),
    ("m6i.xlarge", 0.192),
    ("c5.large", 0.085),
    ("c5.xlarge", 0.17),
    ("r5.large", 0.126),
    ("g4dn.xlarge", 0.526),
    ("g4dn.2xlarge", 0.752),
    ("g5.xlarge", 1.006),
    ("g5.2xlarge", 1.212),
    ("p3.2xlarge", 3.06),
];

/// An EKS cluster's control plane, per hour (standard support).
const EKS_CLUSTER: f64 = 0.10;

/// gp3 volumes, per GB-month.
const GP3_GB_MONTH: f64 = 0.08;

/// The shipped table.
pub fn prices() -> PriceTable {
    let mut rates: std::collections::BTreeMap<String, f64> =
        INSTANCES.iter().map(|(t, usd)| (instance(t), *usd)).collect();
    rates.insert("eks:cluster".into(), EKS_CLUSTER);
    rates.insert("ebs:gp3-gb".into(), GP3_GB_MONTH / HOURS_PER_MONTH);
    PriceTable { rates, source: SOURCE.into() }
}

/// The price item of an instance type.
fn instance(instance_type: &str) -> String {
    format!("ec2:{instance_type}")
}

/// What `spec` bills per hour. Buckets, users, networks and firewalls bill nothing by the
/// hour (a lab's datasets are megabytes of S3, a fraction of a cent a month).
pub fn billed(spec: &ResourceSpec) -> Vec<Billed> {
    match spec.kind.as_str() {
        "vm" => match config::<VmConfig>(spec) {
            Ok(vm) => vec![
                Billed::fixed(instance(&vm.instance_type), 1.0),
                Billed::fixed("ebs:gp3-gb", f64::from(vm.disk_gb)),
            ],
            Err(_) => vec![],
        },
        "cluster" => vec![Billed::fixed("eks:cluster", 1.0)],
        "node_pool" => match config::<NodePoolConfig>(spec) {
            Ok(pool) => vec![Billed {
                item: instance(&pool.instance_type),
                min: f64::from(pool.min),
                max: f64::from(pool.max),
            }],
            Err(_) => vec![],
        },
        _ => vec![],
    }
}
