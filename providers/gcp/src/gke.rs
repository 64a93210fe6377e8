//! GKE: the lab's Kubernetes clusters (zonal, in the lab's VPC network, labelled with the
//! ownership tags; Dataplane V2 enforcing the students' network policies, and Workload
//! Identity, so that pods cannot borrow the nodes' own Google account) and their node pools
//! (labelled `labctl/pool`; GPU pools with their accelerators, the driver GKE installs, the
//! `nvidia.com/gpu` taint; GKE's autoscaler between `min` and `max`, from zero).
//!
//! GKE runs one operation at a time on a cluster: every change waits for the cluster's
//! running operations first (an interrupted run's, or GKE's own upgrades and repairs), a
//! refusal because one started meanwhile is tried again, and the plan puts a cluster's
//! pools one after another. A cluster or pool GKE left in ERROR is refused as such, which
//! makes the next apply replace it. A cluster cannot be made without a node pool, so it is made
//! with a small bootstrap pool that its create deletes once the cluster runs (the lab's
//! pools are resources of their own).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use google_cloud_container_v1::model::{
    cluster, gpu_driver_installation_config, node_pool, node_taint, operation, workload_metadata_config,
    AcceleratorConfig, Cluster, ClusterUpdate, DatapathProvider, GPUDriverInstallationConfig,
    IPAllocationPolicy, NetworkConfig, NodeConfig, NodeLabels, NodePool, NodePoolAutoscaling, NodeTaint,
    Operation, StatusCondition, WorkloadIdentityConfig, WorkloadMetadataConfig,
};
use google_cloud_gax::error::Error;
use labctl_provider_api::configs::config;
use labctl_provider_api::{
    attrs, dep_attr, Deps, ErrorKind, Observed, ProviderError, ResourceSpec, Tags, GPU_RESOURCE, POOL_LABEL,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::clients::Gcp;
use crate::compute;
use crate::errors::{failed, found};
use crate::labels;

/// A GKE cluster of the lab.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterConfig {
    pub name: String,
    /// The Kubernetes version (`1.31`, or a full GKE version); GKE's default if unset.
    pub version: Option<String>,
}

/// A node pool of one of the lab's clusters.
#[derive(Debug, Serialize, Deserialize)]
pub struct NodePoolConfig {
    /// The cluster's name in the lab file.
    pub cluster: String,
    pub name: String,
    pub machine_type: String,
    pub min: u32,
    pub max: u32,
    /// Nodes to run, when the lab file says (else the autoscaler's choice stays).
    pub desired: Option<u32>,
    pub gpu: u32,
    /// The GPU attached to each node (`nvidia-tesla-t4`, …), when `gpu` > 0.
    pub accelerator: Option<String>,
    /// The node labels that select the pool.
    pub labels: BTreeMap<String, String>,
}

/// The pool a cluster is made with, deleted once it runs.
const BOOTSTRAP_POOL: &str = "labctl-bootstrap";

/// How long a cluster or pool may take to be made or deleted (GKE takes minutes).
const WAIT: Duration = Duration::from_secs(45 * 60);

/// The value of GPU nodes' `nvidia.com/gpu` taint, as on EKS.
const GPU_TAINT_VALUE: &str = "present";

/// The longest cluster name GKE takes.
pub const MAX_CLUSTER_NAME: usize = 40;

/// The GPU GKE attaches to a machine type: G2 machines come with L4s, A2 with A100s, A3 with
/// H100s or H200s; N1 machines take T4s, the cheapest GPU for teaching. `None`: GKE gives
/// that machine type no GPUs.
pub fn accelerator(machine_type: &str) -> Option<&'static str> {
    let family = machine_type.split('-').next()?;
    match family {
        "n1" => Some("nvidia-tesla-t4"),
        "g2" => Some("nvidia-l4"),
        "a2" if machine_type.starts_with("a2-ultragpu") => Some("nvidia-a100-80gb"),
        "a2" => Some("nvidia-tesla-a100"),
        "a3" if machine_type.starts_with("a3-megagpu") => Some("nvidia-h100-mega-80gb"),
        "a3" if machine_type.starts_with("a3-ultragpu") => Some("nvidia-h200-141gb"),
        "a3" => Some("nvidia-h100-80gb"),
        _ => None,
    }
}

/// What is wrong with `gpu` GPUs per node of `machine_type`, if anything: N1 machines take
/// 1, 2 or 4 T4s; the GPU machine types come with theirs.
pub fn gpu_count_problem(machine_type: &str, gpu: u32) -> Option<String> {
    (machine_type.starts_with("n1-") && ![1, 2, 4].contains(&gpu))
        .then(|| format!("an n1 machine takes 1, 2 or 4 NVIDIA T4s, not {gpu}"))
}

/// A cluster's id: `locations/<zone>/clusters/<name>`.
pub fn cluster_id(zone: &str, name: &str) -> String {
    format!("locations/{zone}/clusters/{name}")
}

/// The API's name of what `id` names.
fn path(c: &Gcp, id: &str) -> String {
    format!("{}/{id}", c.parent())
}

/// The cluster part of a pool's id (`locations/<z>/clusters/<c>/nodePools/<p>`).
fn cluster_of(pool_id: &str) -> &str {
    pool_id.split("/nodePools/").next().unwrap_or(pool_id)
}

/// The location part of an id (`locations/<zone>/…`).
fn location_of(id: &str) -> &str {
    id.split('/').nth(1).unwrap_or_default()
}

/// The API's name of the location of `id`, where its operations are.
fn location_path(c: &Gcp, id: &str) -> String {
    format!("{}/locations/{}", c.parent(), location_of(id))
}

/// The end of a change of the cluster `id`: the operation its request started, waited for.
/// A refusal because another operation runs on the cluster is worth another try.
async fn change(c: &Gcp, id: &str, sent: Result<Operation, Error>, what: &str) -> Result<(), ProviderError> {
    let op = sent.map_err(|e| {
        let busy = e.status().is_some_and(|s| s.message.contains("is running incompatible operation"));
        let mut error = failed(what)(e);
        if busy {
            error.kind = ErrorKind::Unavailable;
        }
        error
    })?;
    match done(c, cluster_of(id), &op).await? {
        None => Ok(()),
        Some((code, message)) => {
            let kind = match code {
                // Aborted or unavailable: worth another try.
                10 | 14 => ErrorKind::Unavailable,
                _ => ErrorKind::Invalid,
            };
            Err(ProviderError::new(kind, format!("{what}: {message}")))
        }
    }
}

/// Refuses a cluster or pool GKE left in ERROR (a failed create): with it as `partial`, the
/// engine records it tainted and the next apply replaces it.
fn refuse_error(what: &str, id: &str, in_error: bool, message: &str) -> Result<(), ProviderError> {
    if !in_error {
        return Ok(());
    }
    let error = ProviderError::invalid(format!(
        "{what} is in ERROR ({message}); labctl deletes and makes it again on the next apply"
    ));
    Err(error.with_partial(Observed { id: id.to_owned(), ..Default::default() }))
}

/// What GKE says of a cluster's or pool's state.
fn conditions(conditions: &[StatusCondition]) -> String {
    let messages: Vec<&str> = conditions.iter().map(|c| c.message.as_str()).collect();
    if messages.is_empty() {
        "GKE gives no reason".to_owned()
    } else {
        messages.join("; ")
    }
}

/// A Kubernetes version's numbers (`1.31.6-gke.1020000` → 1, 31, 6); `None` for an alias
/// (`latest`, `-`).
fn version_numbers(version: &str) -> Option<Vec<u32>> {
    let numbers = version.split('-').next()?.split('.').map(|n| n.parse().ok()).collect::<Option<Vec<u32>>>();
    numbers.filter(|n| !n.is_empty())
}

/// Whether the control plane at `current` is older than the lab's `wanted` (`1.31`, or a
/// full version): labctl only upgrades (GKE upgrades clusters on its own, and refuses to
/// go back).
fn older(current: &str, wanted: &str) -> bool {
    match (version_numbers(current), version_numbers(wanted)) {
        (Some(current), Some(wanted)) => current[..wanted.len().min(current.len())] < wanted[..],
        _ => false,
    }
}

/// Creates the cluster, or adopts this lab's and upgrades its control plane to the lab's
/// version; either way without the bootstrap pool.
pub async fn create_cluster(c: &Gcp, spec: &ResourceSpec, deps: &Deps) -> Result<Observed, ProviderError> {
    let ClusterConfig { name, version } = config(spec)?;
    let id = cluster_id(&c.zone, &name);
    let partial = |e: ProviderError| e.with_partial(Observed { id: id.clone(), ..Default::default() });
    match get_cluster(c, &id).await? {
        Some(found) => {
            if !labels::tags(&found.resource_labels).is_some_and(|t| t.same_owner(&spec.tags)) {
                return Err(ProviderError::invalid(format!(
                    "GKE cluster {name} exists and is not labctl's for {} of lab {}: rename the lab or remove it",
                    spec.address, spec.tags.lab
                )));
            }
            let in_error = found.status == cluster::Status::Error;
            refuse_error(&format!("GKE cluster {name}"), &id, in_error, &conditions(&found.conditions))?;
            settle(c, &id).await?;
            if let Some(version) = version.filter(|v| older(&found.current_master_version, v)) {
                let update = ClusterUpdate::new().set_desired_master_version(&version);
                let sent = c.clusters.update_cluster().set_name(path(c, &id)).set_update(update).send().await;
                change(c, &id, sent, &format!("upgrading GKE cluster {name} to {version}")).await?;
            }
        }
        None => {
            let bootstrap = NodePool::new()
                .set_name(BOOTSTRAP_POOL)
                .set_initial_node_count(1)
                .set_config(NodeConfig::new().set_machine_type("e2-small").set_disk_size_gb(20));
            let cluster = Cluster::new()
                .set_name(&name)
                .set_description(labels::description(&spec.tags))
                .set_resource_labels(labels::of(&spec.tags))
                .set_network(compute::name_of(dep_attr(deps, "network")?))
                .set_subnetwork(compute::name_of(dep_attr(deps, "subnetwork")?))
                .set_ip_allocation_policy(IPAllocationPolicy::new().set_use_ip_aliases(true))
                // Dataplane V2 enforces the network policies keeping students apart.
                .set_network_config(
                    NetworkConfig::new().set_datapath_provider(DatapathProvider::AdvancedDatapath),
                )
                .set_workload_identity_config(
                    WorkloadIdentityConfig::new().set_workload_pool(format!("{}.svc.id.goog", c.project)),
                )
                .set_initial_cluster_version(version.unwrap_or_default())
                .set_node_pools([bootstrap]);
            let sent = c
                .clusters
                .create_cluster()
                .set_parent(location_path(c, &id))
                .set_cluster(cluster)
                .send()
                .await;
            change(c, &id, sent, &format!("creating GKE cluster {name}")).await.map_err(partial)?;
        }
    }
    // The lab's own pools are resources of their own (made after this).
    let bootstrap = format!("{id}/nodePools/{BOOTSTRAP_POOL}");
    if get_node_pool(c, &bootstrap).await?.is_some() {
        delete_node_pool(c, &bootstrap).await.map_err(partial)?;
    }
    let cluster = get_cluster(c, &id).await?.ok_or_else(|| {
        ProviderError::new(ErrorKind::Unavailable, format!("GKE cluster {name} vanished while being made"))
    })?;
    Ok(cluster_observed(c, &id, &cluster))
}

async fn get_cluster(c: &Gcp, id: &str) -> Result<Option<Cluster>, ProviderError> {
    found(c.clusters.get_cluster().set_name(path(c, id)).send().await, format!("reading GKE cluster {id}"))
}

fn cluster_observed(c: &Gcp, id: &str, cluster: &Cluster) -> Observed {
    let endpoint = api_server(cluster);
    Observed {
        id: id.to_owned(),
        attributes: attrs(json!({
            "cluster_name": cluster.name,
            "cluster_path": path(c, id),
            "location": cluster.location,
            "endpoint": endpoint,
            "version": cluster.current_master_version,
            "status": cluster.status.name().unwrap_or("unknown").to_lowercase(),
            "kubeconfig": kubeconfig(&cluster.name, &endpoint, &ca(cluster)),
        })),
        sensitive: vec![],
    }
}

/// A kubeconfig for the cluster that authenticates through `gke-gcloud-auth-plugin` (it
/// holds no secret); instructors use it with kubectl.
fn kubeconfig(name: &str, endpoint: &str, ca: &str) -> String {
    let exec = "command: gke-gcloud-auth-plugin\nprovideClusterInfo: true\n\
                installHint: Install gke-gcloud-auth-plugin (gcloud components install gke-gcloud-auth-plugin)";
    labctl_provider_kubernetes::exec_kubeconfig(name, endpoint, ca, exec)
}

pub async fn read_cluster(c: &Gcp, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
    Ok(get_cluster(c, &prior.id).await?.map(|cluster| cluster_observed(c, &prior.id, &cluster)))
}

/// The cluster's endpoint and CA certificate, if it exists.
pub async fn endpoint(c: &Gcp, id: &str) -> Result<Option<(String, String)>, ProviderError> {
    Ok(get_cluster(c, id).await?.map(|cluster| (api_server(&cluster), ca(&cluster))))
}

/// The URL of the cluster's Kubernetes API.
fn api_server(cluster: &Cluster) -> String {
    format!("https://{}", cluster.endpoint)
}

/// The cluster's CA certificate (base64 PEM).
fn ca(cluster: &Cluster) -> String {
    cluster.master_auth.as_ref().map(|a| a.cluster_ca_certificate.clone()).unwrap_or_default()
}

/// Gives the cluster the labels carrying `tags` (a new expiry), once its running
/// operations end.
pub async fn label_cluster(c: &Gcp, id: &str, tags: &Tags) -> Result<(), ProviderError> {
    settle(c, id).await?;
    let Some(cluster) = get_cluster(c, id).await? else { return Ok(()) };
    let sent = c
        .clusters
        .set_labels()
        .set_name(path(c, id))
        .set_resource_labels(labels::of(tags))
        .set_label_fingerprint(cluster.label_fingerprint)
        .send()
        .await;
    change(c, id, sent, &format!("labelling GKE cluster {id}")).await
}

/// Deletes the cluster (with what runs on it) once its running operations end.
pub async fn delete_cluster(c: &Gcp, id: &str) -> Result<(), ProviderError> {
    settle(c, id).await?;
    let sent = c.clusters.delete_cluster().set_name(path(c, id)).send().await;
    deleting(c, id, sent, &format!("deleting GKE cluster {id}")).await
}

/// A delete's end: waited for, also done if there was nothing to delete.
async fn deleting(
    c: &Gcp,
    id: &str,
    sent: Result<Operation, Error>,
    what: &str,
) -> Result<(), ProviderError> {
    match sent {
        Err(e) if crate::errors::is_not_found(&e) => Ok(()),
        sent => change(c, id, sent, what).await,
    }
}

/// Creates the node pool, or converges an existing one (`prior`: as labctl left it).
pub async fn create_node_pool(
    c: &Gcp,
    spec: &ResourceSpec,
    deps: &Deps,
    prior: Option<&Observed>,
) -> Result<Observed, ProviderError> {
    let pool: NodePoolConfig = config(spec)?;
    let cluster = dep_attr(deps, "cluster_path")?.trim_start_matches(&format!("{}/", c.parent())).to_owned();
    let id = format!("{cluster}/nodePools/{}", pool.name);
    let partial = |e: ProviderError| e.with_partial(Observed { id: id.clone(), ..Default::default() });
    settle(c, &cluster).await?;
    match get_node_pool(c, &id).await? {
        Some(found) => {
            let in_error = found.status == node_pool::Status::Error;
            refuse_error(&format!("node pool {id}"), &id, in_error, &conditions(&found.conditions))?;
            converge(c, &id, &found, &pool).await?;
        }
        None => {
            let node_pool = NodePool::new()
                .set_name(&pool.name)
                .set_initial_node_count(pool.desired.unwrap_or(pool.min) as i32)
                .set_config(node_config(&pool))
                .set_autoscaling(autoscaling(&pool));
            let sent = c
                .clusters
                .create_node_pool()
                .set_parent(path(c, &cluster))
                .set_node_pool(node_pool)
                .send()
                .await;
            change(c, &id, sent, &format!("creating node pool {id}")).await.map_err(partial)?;
        }
    }
    let found = get_node_pool(c, &id).await?.ok_or_else(|| {
        ProviderError::new(ErrorKind::Unavailable, format!("node pool {id} vanished while being made"))
    })?;
    let desired = pool.desired.or_else(|| prior.and_then(desired_of)).unwrap_or(pool.min);
    Ok(node_pool_observed(&id, &found, desired))
}

/// The node size labctl last set, as recorded.
fn desired_of(prior: &Observed) -> Option<u32> {
    prior.attributes.get("desired").and_then(serde_json::Value::as_u64).map(|d| d as u32)
}

/// Gives an existing pool the autoscaling bounds, size and labels the lab wants now, one
/// operation after another. A size in the lab file is set each time (GKE's autoscaler may
/// have moved it); without one, the autoscaler's stays.
async fn converge(c: &Gcp, id: &str, found: &NodePool, pool: &NodePoolConfig) -> Result<(), ProviderError> {
    let name = path(c, id);
    let bounds = |a: &NodePoolAutoscaling| (a.enabled, a.min_node_count, a.max_node_count);
    if found.autoscaling.as_ref().map(bounds) != Some(bounds(&autoscaling(pool))) {
        let sent = c
            .clusters
            .set_node_pool_autoscaling()
            .set_name(&name)
            .set_autoscaling(autoscaling(pool))
            .send()
            .await;
        change(c, id, sent, &format!("setting the autoscaling of node pool {id}")).await?;
    }
    let wanted = node_labels(pool);
    let labels = found.config.as_ref().map(|n| n.labels.clone()).unwrap_or_default();
    if labels != wanted {
        // `-`: the nodes' version stays (the field is required).
        let sent = c
            .clusters
            .update_node_pool()
            .set_name(&name)
            .set_node_version("-")
            .set_labels(NodeLabels::new().set_labels(wanted))
            .send()
            .await;
        change(c, id, sent, &format!("relabelling node pool {id}")).await?;
    }
    if let Some(desired) = pool.desired {
        let sent =
            c.clusters.set_node_pool_size().set_name(&name).set_node_count(desired as i32).send().await;
        change(c, id, sent, &format!("resizing node pool {id}")).await?;
    }
    Ok(())
}

/// GKE's autoscaler between the pool's bounds.
fn autoscaling(pool: &NodePoolConfig) -> NodePoolAutoscaling {
    NodePoolAutoscaling::new()
        .set_enabled(true)
        .set_min_node_count(pool.min as i32)
        .set_max_node_count(pool.max as i32)
}

/// The pool's nodes: its machine type, its labels, GKE's metadata server for pods (Workload
/// Identity: a pod gets no token of the nodes' account), and on GPU pools the accelerators
/// with GKE's driver and the `nvidia.com/gpu` taint. The node VMs carry GKE's labels, not
/// labctl's: they go with their pool, never alone.
fn node_config(pool: &NodePoolConfig) -> NodeConfig {
    let metadata = WorkloadMetadataConfig::new().set_mode(workload_metadata_config::Mode::GkeMetadata);
    let mut config = NodeConfig::new()
        .set_machine_type(&pool.machine_type)
        .set_labels(node_labels(pool))
        .set_workload_metadata_config(metadata);
    if let Some(accelerator) = pool.accelerator.as_ref().filter(|_| pool.gpu > 0) {
        let driver = GPUDriverInstallationConfig::new()
            .set_gpu_driver_version(gpu_driver_installation_config::GPUDriverVersion::Default);
        config = config
            .set_accelerators([AcceleratorConfig::new()
                .set_accelerator_type(accelerator)
                .set_accelerator_count(i64::from(pool.gpu))
                .set_gpu_driver_installation_config(driver)])
            .set_taints([NodeTaint::new()
                .set_key(GPU_RESOURCE)
                .set_value(GPU_TAINT_VALUE)
                .set_effect(node_taint::Effect::NoSchedule)]);
    }
    config
}

/// A pool's node labels: what selects it (`labctl/pool`, or the pool's own labels).
fn node_labels(pool: &NodePoolConfig) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = pool.labels.clone().into_iter().collect();
    labels.insert(POOL_LABEL.to_owned(), pool.name.clone());
    labels
}

async fn get_node_pool(c: &Gcp, id: &str) -> Result<Option<NodePool>, ProviderError> {
    found(c.clusters.get_node_pool().set_name(path(c, id)).send().await, format!("reading node pool {id}"))
}

fn node_pool_observed(id: &str, pool: &NodePool, desired: u32) -> Observed {
    let config = pool.config.as_ref();
    let scaling = pool.autoscaling.as_ref();
    Observed {
        id: id.to_owned(),
        attributes: attrs(json!({
            "machine_type": config.map(|c| c.machine_type.clone()),
            "min": scaling.map(|s| s.min_node_count),
            "max": scaling.map(|s| s.max_node_count),
            "desired": desired,
            "labels": config.map(|c| c.labels.iter().collect::<BTreeMap<_, _>>()),
            "accelerators": config.map(|c| c.accelerators.iter().map(|a| format!("{}x{}", a.accelerator_count, a.accelerator_type)).collect::<Vec<_>>()),
            "taints": config.map(|c| c.taints.iter().map(|t| format!("{}={}:{}", t.key, t.value, t.effect.name().unwrap_or_default())).collect::<Vec<_>>()),
            "status": pool.status.name().unwrap_or("unknown").to_lowercase(),
        })),
        sensitive: vec![],
    }
}

pub async fn read_node_pool(c: &Gcp, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
    let desired = desired_of(prior).unwrap_or_default();
    Ok(get_node_pool(c, &prior.id).await?.map(|p| node_pool_observed(&prior.id, &p, desired)))
}

/// Deletes the pool once the cluster's running operations end (also if the cluster is gone).
pub async fn delete_node_pool(c: &Gcp, id: &str) -> Result<(), ProviderError> {
    settle(c, cluster_of(id)).await?;
    let sent = c.clusters.delete_node_pool().set_name(path(c, id)).send().await;
    deleting(c, id, sent, &format!("deleting node pool {id}")).await
}

/// The lab's clusters in the configured zone, with the tags their labels carry.
pub async fn labelled_clusters(c: &Gcp) -> Result<Vec<(String, Tags)>, ProviderError> {
    let parent = format!("{}/locations/{}", c.parent(), c.zone);
    let listed = c.clusters.list_clusters().set_parent(parent).send().await;
    let listed = listed.map_err(failed("listing GKE clusters"))?;
    Ok(listed
        .clusters
        .iter()
        .filter_map(|cluster| {
            let tags = labels::tags(&cluster.resource_labels)?;
            Some((cluster_id(&cluster.location, &cluster.name), tags))
        })
        .collect())
}

/// Waits until no operation runs on the cluster `id` (GKE refuses a second one), whatever
/// they end in (an earlier run's failure is not this change's).
async fn settle(c: &Gcp, id: &str) -> Result<(), ProviderError> {
    let listed = c.clusters.list_operations().set_parent(location_path(c, id)).send().await;
    let listed = listed.map_err(failed(format!("listing the operations on GKE cluster {id}")))?;
    // GKE links targets as `…/zones/<zone>/clusters/<name>[/nodePools/<pool>]`.
    let name = id.rsplit('/').next().unwrap_or(id);
    let target = format!("/clusters/{name}");
    let running = listed.operations.iter().filter(|op| {
        op.status != operation::Status::Done
            && (op.target_link.ends_with(&target) || op.target_link.contains(&format!("{target}/")))
    });
    for op in running {
        done(c, id, op).await?;
    }
    Ok(())
}

/// Polls the operation on the cluster `id` until it is done: how it failed, if it did.
async fn done(c: &Gcp, id: &str, op: &Operation) -> Result<Option<(i32, String)>, ProviderError> {
    let name = format!("{}/operations/{}", location_path(c, id), op.name);
    let start = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(250);
    let mut op = op.clone();
    while op.status != operation::Status::Done {
        if start.elapsed() > WAIT {
            return Err(ProviderError::new(
                ErrorKind::Timeout,
                format!(
                    "GKE operation {} on {id} is still {} after {} minutes",
                    op.name,
                    op.status.name().unwrap_or("?"),
                    WAIT.as_secs() / 60
                ),
            ));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
        let got = c.clusters.get_operation().set_name(&name).send().await;
        op = got.map_err(failed(format!("reading GKE operation {} on {id}", op.name)))?;
    }
    Ok(op.error.filter(|e| e.code != 0).map(|e| (e.code, e.message)))
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_machine_types_name_their_accelerators() {
        assert_eq!(accelerator("n1-standard-4"), Some("nvidia-tesla-t4"));
        assert_eq!(accelerator("g2-standard-8"), Some("nvidia-l4"));
        assert_eq!(accelerator("a2-highgpu-1g"), Some("nvidia-tesla-a100"));
        assert_eq!(accelerator("a2-ultragpu-1g"), Some("nvidia-a100-80gb"));
        assert_eq!(accelerator("e2-standard-4"), None);
    }

    #[test]
    fn gpu_counts_fit_the_machine_type() {
        assert_eq!(gpu_count_problem("n1-standard-4", 2), None);
        assert!(gpu_count_problem("n1-standard-4", 3).is_some_and(|p| p.contains("1, 2 or 4")));
        assert_eq!(accelerator("a3-megagpu-8g"), Some("nvidia-h100-mega-80gb"));
        assert_eq!(accelerator("a3-highgpu-8g"), Some("nvidia-h100-80gb"));
    }

    #[test]
    fn the_control_plane_only_goes_up_to_the_labs_version() {
        assert!(older("1.30.10-gke.1070000", "1.31"));
        assert!(!older("1.31.6-gke.1020000", "1.31"), "1.31.6 is a 1.31");
        assert!(!older("1.32.2-gke.1297002", "1.31"), "never down");
        assert!(older("1.31.6-gke.1020000", "1.31.7"));
        assert!(!older("1.31.6-gke.1020000", "1.3"), "1.31 is past 1.3");
        assert!(!older("1.31.6-gke.1020000", "latest"), "an alias is GKE's to resolve");
    }

    #[test]
    fn ids_name_their_cluster_and_location() {
        let pool = "locations/europe-west1-b/clusters/bigdata-shared/nodePools/gpu";
        assert_eq!(cluster_of(pool), "locations/europe-west1-b/clusters/bigdata-shared");
        assert_eq!(location_of(pool), "europe-west1-b");
        assert_eq!(cluster_id("europe-west1-b", "x"), "locations/europe-west1-b/clusters/x");
    }
}
