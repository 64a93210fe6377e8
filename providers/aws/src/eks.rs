//! EKS: the lab's managed Kubernetes clusters, with the EBS CSI driver add-on so that volume
//! claims bind, and their node groups (labelled `labctl/pool`; GPU groups tainted so that
//! only GPU workloads land there; tagged so that a cluster autoscaler, where one runs, can
//! scale them up from zero).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use aws_sdk_eks::types::{
    AmiTypes, Cluster, Nodegroup, NodegroupScalingConfig, Taint, TaintEffect, VpcConfigRequest,
};
use labctl_provider_api::configs::config;
use labctl_provider_api::dep_attr;
use labctl_provider_api::{attrs, Deps, ErrorKind, Observed, ProviderError, ResourceSpec, GPU_RESOURCE};
use serde_json::{json, Value};

use crate::clients::{Aws, Service::Eks};
use crate::errors::{failed, ignore_missing, is_missing};
use crate::identity::{delete_role, ensure_role};
use crate::plugin::{ClusterConfig, NodePoolConfig};
use crate::{dep_list, tagging};

const MISSING: &[&str] = &["ResourceNotFoundException"];

/// How long to wait for a cluster or node group to become active or go away.
const WAIT: Duration = Duration::from_secs(30 * 60);
const POLL: Duration = Duration::from_secs(5);

/// The EKS add-on that provisions EBS volumes for claims; its controller runs as the nodes'
/// role, which is given its policy.
pub(crate) const EBS_CSI_ADDON: &str = "aws-ebs-csi-driver";

/// The CSI driver's provisioner name, which the default StorageClass names.
pub const EBS_CSI_PROVISIONER: &str = "ebs.csi.aws.com";

const CLUSTER_POLICIES: &[&str] = &["AmazonEKSClusterPolicy"];
const NODE_POLICIES: &[&str] = &[
    "AmazonEKSWorkerNodePolicy",
    "AmazonEC2ContainerRegistryReadOnly",
    "AmazonEKS_CNI_Policy",
    "service-role/AmazonEBSCSIDriverPolicy",
];

/// The IAM roles a cluster's create makes (and its delete removes).
pub(crate) fn roles(cluster: &str) -> [String; 2] {
    [cluster_role(cluster), node_role(cluster)]
}

fn cluster_role(cluster: &str) -> String {
    format!("{cluster}-cluster")
}

fn node_role(cluster: &str) -> String {
    format!("{cluster}-node")
}

pub(crate) async fn create_cluster(
    c: &Aws,
    spec: &ResourceSpec,
    deps: &Deps,
    lab: &str,
) -> Result<Observed, ProviderError> {
    let ClusterConfig { name, version } = config(spec)?;
    let name = name.as_str();
    let role_arn =
        ensure_role(c, spec, lab, &cluster_role(name), "eks.amazonaws.com", CLUSTER_POLICIES, None).await?;
    let node_role_arn =
        ensure_role(c, spec, lab, &node_role(name), "ec2.amazonaws.com", NODE_POLICIES, None).await?;
    let subnets = dep_list(deps, "subnets");
    let partial = |e: ProviderError| e.with_partial(Observed { id: name.to_owned(), ..Default::default() });
    match describe_cluster(c, name).await? {
        Some(found) if found.tags().and_then(|t| t.get(tagging::LAB)) != Some(&spec.tags.lab) => {
            return Err(ProviderError::invalid(format!(
                "EKS cluster `{name}` already exists and is not this lab's"
            )));
        }
        Some(found) => {
            // A version bump upgrades the control plane in place (one minor version a time).
            if let Some(version) = version.filter(|v| found.version() != Some(v.as_str())) {
                c.call(Eks, c.eks.update_cluster_version().name(name).version(&version).send())
                    .await
                    .map_err(failed(format!("upgrading EKS cluster {name} to {version}")))?;
            }
        }
        None => {
            let vpc = VpcConfigRequest::builder().set_subnet_ids(Some(subnets.clone())).build();
            c.call(
                Eks,
                c.eks
                    .create_cluster()
                    .name(name)
                    .role_arn(&role_arn)
                    .resources_vpc_config(vpc)
                    .set_version(version)
                    .set_tags(Some(tagging::eks(spec, name)))
                    .send(),
            )
            .await
            .map_err(failed(format!("creating EKS cluster {name}")))
            .map_err(partial)?;
        }
    }
    let cluster =
        wait_active(name, || describe_cluster(c, name), |c| c.status().map(|s| s.as_str().to_owned()))
            .await
            .map_err(partial)?;
    // The cluster is whole without it: the next run installs it (no `partial`).
    ensure_addon(c, spec, name, EBS_CSI_ADDON).await?;
    let mut observed = cluster_observed(&cluster, &c.region);
    observed.attributes.insert("node_role_arn".into(), Value::String(node_role_arn));
    observed.attributes.insert("subnets".into(), json!(subnets));
    Ok(observed)
}

pub(crate) async fn describe_cluster(c: &Aws, name: &str) -> Result<Option<Cluster>, ProviderError> {
    match c.call(Eks, c.eks.describe_cluster().name(name).send()).await {
        Ok(out) => Ok(out.cluster().cloned()),
        Err(e) if is_missing(&e, MISSING) => Ok(None),
        Err(e) => Err(failed(format!("reading EKS cluster {name}"))(e)),
    }
}

fn cluster_observed(cluster: &Cluster, region: &str) -> Observed {
    let name = cluster.name().unwrap_or_default();
    let endpoint = cluster.endpoint().unwrap_or_default();
    let ca = cluster.certificate_authority().and_then(|c| c.data()).unwrap_or_default();
    Observed {
        id: name.to_owned(),
        attributes: attrs(json!({
            "cluster_name": name,
            "arn": cluster.arn(),
            "endpoint": endpoint,
            "version": cluster.version(),
            "status": cluster.status().map(|s| s.as_str()),
            "kubeconfig": kubeconfig(name, endpoint, ca, region),
        })),
        sensitive: vec![],
    }
}

/// A kubeconfig for the cluster that authenticates through `aws eks get-token` (it holds no
/// secret); the Kubernetes provider and instructors use it.
fn kubeconfig(name: &str, endpoint: &str, ca: &str, region: &str) -> String {
    let exec = format!("command: aws\nargs: [eks, get-token, --cluster-name, {name}, --region, {region}]");
    labctl_provider_kubernetes::exec_kubeconfig(name, endpoint, ca, &exec)
}

pub(crate) async fn read_cluster(c: &Aws, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
    Ok(describe_cluster(c, &prior.id).await?.map(|cluster| {
        let mut now = cluster_observed(&cluster, &c.region);
        for kept in ["node_role_arn", "subnets"] {
            if let Some(v) = prior.attributes.get(kept) {
                now.attributes.insert(kept.into(), v.clone());
            }
        }
        now
    }))
}

/// Installs add-on `addon` on the cluster, unless it is there. Its controller becomes active
/// once nodes run it: nothing waits for that here.
async fn ensure_addon(c: &Aws, spec: &ResourceSpec, cluster: &str, addon: &str) -> Result<(), ProviderError> {
    let found = c.call(Eks, c.eks.describe_addon().cluster_name(cluster).addon_name(addon).send()).await;
    match found {
        Ok(_) => return Ok(()),
        Err(e) if is_missing(&e, MISSING) => {}
        Err(e) => return Err(failed(format!("reading add-on {addon} of EKS cluster {cluster}"))(e)),
    }
    let request = c
        .eks
        .create_addon()
        .cluster_name(cluster)
        .addon_name(addon)
        .resolve_conflicts(aws_sdk_eks::types::ResolveConflicts::Overwrite)
        .set_tags(Some(tagging::eks(spec, &format!("{cluster}/{addon}"))));
    match c.call(Eks, request.send()).await {
        Ok(_) => Ok(()),
        Err(e) if crate::errors::code(&e) == Some("ResourceInUseException") => Ok(()),
        Err(e) => Err(failed(format!("installing add-on {addon} on EKS cluster {cluster}"))(e)),
    }
}

/// Deletes the cluster's add-on, the cluster, waits until it is gone, then its roles.
pub(crate) async fn delete_cluster(c: &Aws, name: &str) -> Result<(), ProviderError> {
    ignore_missing(
        c.call(Eks, c.eks.delete_addon().cluster_name(name).addon_name(EBS_CSI_ADDON).send()).await,
        MISSING,
        &format!("deleting add-on {EBS_CSI_ADDON} of EKS cluster {name}"),
    )?;
    ignore_missing(
        c.call(Eks, c.eks.delete_cluster().name(name).send()).await,
        MISSING,
        &format!("deleting EKS cluster {name}"),
    )?;
    wait_gone(name, || describe_cluster(c, name)).await?;
    delete_role(c, &cluster_role(name)).await?;
    delete_role(c, &node_role(name)).await
}

/// Creates the node group, or converges an existing one's size.
pub(crate) async fn create_node_pool(
    c: &Aws,
    spec: &ResourceSpec,
    deps: &Deps,
) -> Result<Observed, ProviderError> {
    let cluster = dep_attr(deps, "cluster_name")?;
    let pool: NodePoolConfig = config(spec)?;
    let name = pool.name.as_str();
    let (min, max, gpu) = (pool.min as i32, pool.max as i32, pool.gpu);
    let desired = pool.desired.map(|d| d as i32);
    let scaling = |desired: i32| {
        NodegroupScalingConfig::builder().min_size(min).max_size(max).desired_size(desired).build()
    };
    let id = format!("{cluster}/{name}");
    let partial = |e: ProviderError| e.with_partial(Observed { id: id.clone(), ..Default::default() });
    match describe_node_pool(c, cluster, name).await? {
        Some(found) => {
            let current = found.scaling_config();
            let size = |s: fn(&NodegroupScalingConfig) -> Option<i32>| current.and_then(s);
            // Without a size in the lab file, the autoscaler's (or `labctl scale`'s) stays,
            // within the new bounds.
            let now = size(NodegroupScalingConfig::desired_size).unwrap_or(min);
            let wanted = desired.unwrap_or(now).clamp(min, max);
            if size(NodegroupScalingConfig::min_size) != Some(min)
                || size(NodegroupScalingConfig::max_size) != Some(max)
                || wanted != now
            {
                c.call(
                    Eks,
                    c.eks
                        .update_nodegroup_config()
                        .cluster_name(cluster)
                        .nodegroup_name(name)
                        .scaling_config(scaling(wanted))
                        .send(),
                )
                .await
                .map_err(failed(format!("resizing node group {id}")))?;
            }
            converge_labels(c, cluster, &id, &found, &pool).await?;
        }
        None => {
            let labels = node_labels(&pool);
            let mut request = c
                .eks
                .create_nodegroup()
                .cluster_name(cluster)
                .nodegroup_name(name)
                .scaling_config(scaling(desired.unwrap_or(min)))
                .set_subnets(Some(dep_list(deps, "subnets")))
                .instance_types(&pool.instance_type)
                .node_role(dep_attr(deps, "node_role_arn")?)
                .set_tags(Some(
                    tagging::eks(spec, &id)
                        .into_iter()
                        .chain(autoscaler_tags(cluster, &pool, &labels))
                        .collect(),
                ));
            if gpu > 0 {
                let taint = Taint::builder()
                    .key(GPU_RESOURCE)
                    .value(GPU_TAINT_VALUE)
                    .effect(TaintEffect::NoSchedule)
                    .build();
                request = request.ami_type(AmiTypes::Al2X8664Gpu).taints(taint);
            }
            c.call(Eks, request.set_labels(Some(labels)).send())
                .await
                .map_err(failed(format!("creating node group {id}")))
                .map_err(partial)?;
        }
    }
    let pool = wait_active(
        &id,
        || describe_node_pool(c, cluster, name),
        |n| n.status().map(|s| s.as_str().to_owned()),
    )
    .await
    .map_err(partial)?;
    Ok(node_pool_observed(&id, &pool))
}

async fn describe_node_pool(c: &Aws, cluster: &str, name: &str) -> Result<Option<Nodegroup>, ProviderError> {
    match c.call(Eks, c.eks.describe_nodegroup().cluster_name(cluster).nodegroup_name(name).send()).await {
        Ok(out) => Ok(out.nodegroup().cloned()),
        Err(e) if is_missing(&e, MISSING) => Ok(None),
        Err(e) => Err(failed(format!("reading node group {cluster}/{name}"))(e)),
    }
}

/// Gives an existing node group the labels and tags the lab wants now (a pool's `labels`
/// edited, a group made before the autoscaler's tags): new nodes get them.
async fn converge_labels(
    c: &Aws,
    cluster: &str,
    id: &str,
    found: &Nodegroup,
    pool: &NodePoolConfig,
) -> Result<(), ProviderError> {
    let wanted = node_labels(pool);
    let current = found.labels().cloned().unwrap_or_default();
    if current != wanted {
        let stale: Vec<String> = current.keys().filter(|k| !wanted.contains_key(*k)).cloned().collect();
        let labels = aws_sdk_eks::types::UpdateLabelsPayload::builder()
            .set_add_or_update_labels(Some(wanted.clone()))
            .set_remove_labels((!stale.is_empty()).then_some(stale))
            .build();
        let request =
            c.eks.update_nodegroup_config().cluster_name(cluster).nodegroup_name(&pool.name).labels(labels);
        c.call(Eks, request.send()).await.map_err(failed(format!("relabelling node group {id}")))?;
    }
    if let Some(arn) = found.nodegroup_arn() {
        let tags = autoscaler_tags(cluster, pool, &wanted);
        let missing = tags.iter().any(|(k, v)| found.tags().and_then(|t| t.get(k)) != Some(v));
        if missing {
            c.call(Eks, c.eks.tag_resource().resource_arn(arn).set_tags(Some(tags)).send())
                .await
                .map_err(failed(format!("tagging node group {id}")))?;
        }
    }
    Ok(())
}

/// The value of GPU nodes' `nvidia.com/gpu` taint.
const GPU_TAINT_VALUE: &str = "present";

/// A node group's node labels: what selects its pool (`labctl/pool`, or the pool's own
/// labels), and on GPU groups what the NVIDIA tools label GPU nodes with.
fn node_labels(pool: &NodePoolConfig) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = pool.labels.clone().into_iter().collect();
    labels.insert(labctl_provider_api::POOL_LABEL.to_owned(), pool.name.clone());
    if pool.gpu > 0 {
        labels.insert(format!("{GPU_RESOURCE}.present"), "true".into());
        labels.insert(format!("{GPU_RESOURCE}.count"), pool.gpu.to_string());
    }
    labels
}

/// The cluster autoscaler's discovery and node-template tags for a node group, so that an
/// autoscaler can scale it up from zero nodes (it then knows the labels, taint and GPUs a
/// new node would have). labctl installs no autoscaler.
fn autoscaler_tags(
    cluster: &str,
    pool: &NodePoolConfig,
    labels: &HashMap<String, String>,
) -> HashMap<String, String> {
    const AUTOSCALER: &str = "k8s.io/cluster-autoscaler";
    let mut tags = HashMap::new();
    tags.insert(format!("{AUTOSCALER}/enabled"), "true".into());
    tags.insert(format!("{AUTOSCALER}/{cluster}"), "owned".into());
    for (key, value) in labels {
        tags.insert(format!("{AUTOSCALER}/node-template/label/{key}"), value.clone());
    }
    if pool.gpu > 0 {
        tags.insert(
            format!("{AUTOSCALER}/node-template/taint/{GPU_RESOURCE}"),
            format!("{GPU_TAINT_VALUE}:NoSchedule"),
        );
        tags.insert(format!("{AUTOSCALER}/node-template/resources/{GPU_RESOURCE}"), pool.gpu.to_string());
    }
    tags
}

fn node_pool_observed(id: &str, pool: &Nodegroup) -> Observed {
    let scaling = pool.scaling_config();
    Observed {
        id: id.to_owned(),
        attributes: attrs(json!({
            "arn": pool.nodegroup_arn(),
            "instance_types": pool.instance_types(),
            "min": scaling.and_then(|s| s.min_size()),
            "max": scaling.and_then(|s| s.max_size()),
            "desired": scaling.and_then(|s| s.desired_size()),
            "labels": pool.labels(),
            "taints": pool.taints().iter().map(|t| format!(
                "{}={}:{}",
                t.key().unwrap_or_default(),
                t.value().unwrap_or_default(),
                t.effect().map(|e| e.as_str()).unwrap_or_default()
            )).collect::<Vec<_>>(),
            "status": pool.status().map(|s| s.as_str()),
        })),
        sensitive: vec![],
    }
}

fn split_pool_id(id: &str) -> Result<(&str, &str), ProviderError> {
    id.split_once('/').ok_or_else(|| ProviderError::invalid(format!("malformed node group id `{id}`")))
}

pub(crate) async fn read_node_pool(c: &Aws, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
    let (cluster, name) = split_pool_id(&prior.id)?;
    Ok(describe_node_pool(c, cluster, name).await?.map(|p| node_pool_observed(&prior.id, &p)))
}

pub(crate) async fn delete_node_pool(c: &Aws, id: &str) -> Result<(), ProviderError> {
    let (cluster, name) = split_pool_id(id)?;
    ignore_missing(
        c.call(Eks, c.eks.delete_nodegroup().cluster_name(cluster).nodegroup_name(name).send()).await,
        MISSING,
        &format!("deleting node group {id}"),
    )?;
    wait_gone(id, || describe_node_pool(c, cluster, name)).await
}

/// Polls until the thing is `ACTIVE`; a failed state or the timeout is an error naming it.
async fn wait_active<T, F>(
    what: &str,
    describe: impl Fn() -> F,
    status: impl Fn(&T) -> Option<String>,
) -> Result<T, ProviderError>
where
    F: Future<Output = Result<Option<T>, ProviderError>>,
{
    let start = tokio::time::Instant::now();
    loop {
        let found = describe().await?.ok_or_else(|| {
            ProviderError::new(ErrorKind::Unavailable, format!("{what} vanished while being created"))
        })?;
        match status(&found).as_deref() {
            Some("ACTIVE") => return Ok(found),
            Some(failed @ ("FAILED" | "CREATE_FAILED" | "DEGRADED")) => {
                return Err(ProviderError::invalid(format!(
                    "{what} is {failed}; see the EKS console for the reason"
                )));
            }
            state if start.elapsed() > WAIT => {
                return Err(ProviderError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{what} is still {} after {} minutes",
                        state.unwrap_or("unknown"),
                        WAIT.as_secs() / 60
                    ),
                ));
            }
            _ => tokio::time::sleep(POLL).await,
        }
    }
}

async fn wait_gone<T, F>(what: &str, describe: impl Fn() -> F) -> Result<(), ProviderError>
where
    F: Future<Output = Result<Option<T>, ProviderError>>,
{
    let start = tokio::time::Instant::now();
    while describe().await?.is_some() {
        if start.elapsed() > WAIT {
            return Err(ProviderError::new(ErrorKind::Timeout, format!("{what} is still being deleted")));
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use aws_smithy_runtime_api::client::http::{
        HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
    };
    use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
    use aws_smithy_types::body::SdkBody;
    use labctl_provider_api::Tags;

    use super::*;

    /// Answers each request with the next recorded answer, and keeps the requests.
    #[derive(Debug, Clone, Default)]
    struct Recorded {
        answers: Arc<Mutex<Vec<HttpResponse>>>,
        sent: Arc<Mutex<Vec<HttpRequest>>>,
    }

    impl Recorded {
        fn answering(answers: Vec<(u16, Option<&str>, &str)>) -> Self {
            let answers = answers.into_iter().map(|(status, error, body)| {
                let mut response =
                    HttpResponse::new(status.try_into().unwrap(), SdkBody::from(body.to_owned()));
                response.headers_mut().insert("content-type", "application/json");
                if let Some(error) = error {
                    response.headers_mut().insert("x-amzn-errortype", error.to_owned());
                }
                response
            });
            Self { answers: Arc::new(Mutex::new(answers.collect())), ..Self::default() }
        }
    }

    impl HttpConnector for Recorded {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            self.sent.lock().unwrap().push(request);
            let answer = self.answers.lock().unwrap().remove(0);
            HttpConnectorFuture::ready(Ok(answer))
        }
    }

    impl HttpClient for Recorded {
        fn http_connector(&self, _: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
            SharedHttpConnector::new(self.clone())
        }
    }

    /// moto has no add-on API: the EBS CSI driver's install is checked against EKS's API
    /// reference instead (DescribeAddon's 404, CreateAddon's request and its example answer).
    #[tokio::test]
    async fn the_ebs_csi_driver_is_asked_for_as_the_eks_api_documents_it() {
        let recorded = Recorded::answering(vec![
            (
                404,
                Some("ResourceNotFoundException"),
                r#"{"message":"No addon: aws-ebs-csi-driver found in cluster: bigdata-eks-shared","clusterName":"bigdata-eks-shared","addonName":"aws-ebs-csi-driver"}"#,
            ),
            (
                200,
                None,
                r#"{"addon":{"addonName":"aws-ebs-csi-driver","clusterName":"bigdata-eks-shared","status":"CREATING","addonVersion":"v1.37.0-eksbuild.1","health":{"issues":[]},"addonArn":"arn:aws:eks:eu-west-1:123456789012:addon/bigdata-eks-shared/aws-ebs-csi-driver/a1b2c3d4","createdAt":1733486400.0,"modifiedAt":1733486400.0,"tags":{}}}"#,
            ),
        ]);
        let c = Aws::replaying(recorded.clone());
        let spec = ResourceSpec {
            address: "cluster[\"shared\"]".into(),
            kind: "cluster".into(),
            config: Default::default(),
            tags: Tags { lab: "bigdata-eks".into(), ..Tags::default() },
        };
        ensure_addon(&c, &spec, "bigdata-eks-shared", EBS_CSI_ADDON).await.unwrap();

        let sent = recorded.sent.lock().unwrap();
        let base = "https://eks.eu-west-1.amazonaws.com/clusters/bigdata-eks-shared/addons";
        assert_eq!(sent.len(), 2, "a look, then one create");
        assert_eq!((sent[0].method(), sent[0].uri()), ("GET", format!("{base}/aws-ebs-csi-driver").as_str()));
        assert_eq!((sent[1].method(), sent[1].uri()), ("POST", base));
        let body: Value = serde_json::from_slice(sent[1].body().bytes().unwrap()).unwrap();
        assert_eq!(body["addonName"], "aws-ebs-csi-driver");
        assert_eq!(body["resolveConflicts"], "OVERWRITE");
        assert_eq!(body["tags"]["labctl/lab"], "bigdata-eks");
        assert_eq!(body["tags"]["labctl/address"], "cluster[\"shared\"]");
        let documented = [
            "addonName",
            "addonVersion",
            "serviceAccountRoleArn",
            "resolveConflicts",
            "clientRequestToken",
            "tags",
            "configurationValues",
            "podIdentityAssociations",
            "namespaceConfig",
        ];
        for field in body.as_object().unwrap().keys() {
            assert!(documented.contains(&field.as_str()), "CreateAddon has no field `{field}`");
        }
    }
}
