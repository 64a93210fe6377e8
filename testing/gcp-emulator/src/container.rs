//! Google Kubernetes Engine v1 over REST (`container.googleapis.com/v1`, the
//! `projects/*/locations/*` paths the official clients use): clusters, their node pools,
//! and the operations that change them. Every change is an operation that goes PENDING →
//! RUNNING → DONE (see operation.rs); a cluster runs one at a time, refusing any other
//! change meanwhile, as GKE does. What a change creates shows at once (PROVISIONING), what
//! it deletes stays until DONE (STOPPING), and what it edits shows its new state once DONE
//! (RECONCILING until then). A change that cannot happen when DONE (more GPUs than the
//! project's quota) fails its operation, and what it was creating is left in ERROR.
//! Clusters live in Compute Engine's networks, which they keep from being deleted, and take
//! endpoints from the addresses its VMs do. Pure state and answers: rest.rs authenticates,
//! routes by the discovery document and checks every body against it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::certificate::self_signed_ca;
use crate::compute::{self, Compute, NETWORK, SUBNETWORK};
use crate::operation::{done_at, Phase};
use crate::rest::{rfc3339, Call};
use crate::world::{Fault, World};

/// What links to clusters and operations start with, as GKE writes them.
const BASE: &str = "https://container.googleapis.com/v1/";

/// The Kubernetes versions the emulator offers, newest first, and the one a cluster gets
/// unless it asks for another.
const VERSIONS: [&str; 3] = ["1.32.2-gke.1297002", "1.31.6-gke.1020000", "1.30.10-gke.1070000"];
const DEFAULT_VERSION: &str = "1.31.6-gke.1020000";

/// How many GPUs of each type the project may run in a region (Compute Engine's
/// `NVIDIA_T4_GPUS`, … quotas).
const GPU_QUOTA: u64 = 8;

/// The project's GKE clusters and their operations.
#[derive(Default)]
pub struct Container {
    /// By path in the project: `locations/L/clusters/C`.
    clusters: BTreeMap<String, Cluster>,
    /// Oldest first.
    operations: Vec<Operation>,
}

/// A cluster as its DONE operations left it.
#[derive(Clone)]
struct Cluster {
    /// As `get` answers it but for what is worked out then: `status`, `nodePools`,
    /// `currentNodeCount` and `currentNodeVersion`.
    json: Map<String, Value>,
    pools: Vec<Pool>,
    /// PROVISIONING until the operation creating it is DONE, then RUNNING (ERROR if it
    /// failed).
    status: &'static str,
    /// The paths of the Compute Engine network and subnetwork it names.
    uses: Vec<String>,
}

/// A node pool as its DONE operations left it.
#[derive(Clone)]
struct Pool {
    /// As `nodePools.get` answers it but for `status`.
    json: Map<String, Value>,
    /// Its nodes in each of its zones: the API shows no pool's size, only the cluster's
    /// `currentNodeCount`, their sum.
    size: u64,
    /// As [`Cluster::status`].
    status: &'static str,
}

/// A change of a cluster, under way or done.
struct Operation {
    /// Its fixed fields: `name`, `operationType`, `selfLink`, `targetLink`, …
    json: Value,
    /// The path of its cluster.
    cluster: String,
    /// The node pool it works on, if one.
    pool: Option<String>,
    start: SystemTime,
    /// What it does once DONE; taken then.
    change: Option<Change>,
    /// Why it failed, if it did.
    error: Option<Fault>,
}

/// What an operation does to its cluster.
enum Change {
    /// The cluster becomes this one, what it creates RUNNING.
    Become(Cluster),
    Delete,
}

/// Answers `call` as the project stands `now`.
pub fn answer(world: &mut World, call: &Call, now: SystemTime) -> Result<Value, Fault> {
    let param = |name: &str| call.params.get(name).map(String::as_str).unwrap_or_default();
    let (project, location) = (param("projectsId"), param("locationsId"));
    if project != world.project {
        return Err(not_found(&format!("projects/{project}")));
    }
    let method = call.method.strip_prefix("container.projects.locations.").unwrap_or_default();
    let any_location = location == "-" && method.ends_with(".list");
    if !any_location && compute::region_of(location).is_none() && !compute::is_region(location) {
        return Err(not_found(&format!("projects/{project}/locations/{location}")));
    }
    world.settle(now);
    let cluster = format!("locations/{location}/clusters/{}", param("clustersId"));
    let pool = param("nodePoolsId");
    let body = call.body;
    let container = &world.container;
    match method {
        "clusters.list" => {
            let clusters =
                container.clusters.iter().filter(|(path, _)| any_location || in_location(path, location));
            Ok(listing("clusters", clusters.map(|(path, c)| container.render(path, c)).collect()))
        }
        "clusters.get" => Ok(container.render(&cluster, container.cluster(project, &cluster)?)),
        "clusters.create" => create_cluster(world, location, &body["cluster"], now),
        "clusters.delete" => {
            container.cluster(project, &cluster)?;
            container.idle(&cluster)?;
            Ok(start(world, &cluster, "DELETE_CLUSTER", None, Change::Delete, now))
        }
        "clusters.update" => update_cluster(world, &cluster, &body["update"], now),
        "clusters.setResourceLabels" => change(world, &cluster, "SET_LABELS", None, now, |after| {
            let current = &after.json["labelFingerprint"];
            if body["labelFingerprint"] != *current {
                let given = body["labelFingerprint"].as_str().unwrap_or_default();
                return Err(Fault::Precondition(format!(
                    "Labels could not be set due to fingerprint mismatch; try again with the proper fingerprint: incorrect fingerprint supplied was \"{given}\", the expected one is \"{}\".",
                    current.as_str().unwrap_or_default()
                )));
            }
            let labels = body.get("resourceLabels").cloned().unwrap_or_else(|| json!({}));
            after.json.insert("labelFingerprint".into(), json!(label_fingerprint(&labels)));
            after.json.insert("resourceLabels".into(), labels);
            Ok(())
        }),
        "clusters.nodePools.list" => {
            let (cluster, busy) = (container.cluster(project, &cluster)?, container.busy(&cluster));
            Ok(listing("nodePools", cluster.pools.iter().map(|p| render_pool(busy, p)).collect()))
        }
        "clusters.nodePools.get" => {
            let found = container.cluster(project, &cluster)?.pool(project, &cluster, pool)?;
            Ok(render_pool(container.busy(&cluster), found))
        }
        "clusters.nodePools.create" => create_pool(world, &cluster, &body["nodePool"], now),
        "clusters.nodePools.delete" => {
            change(world, &cluster, "DELETE_NODE_POOL", Some(pool), now, |after| {
                after.pool(project, &cluster, pool)?;
                after.pools.retain(|p| p.json["name"] != pool);
                Ok(())
            })
        }
        "clusters.nodePools.setSize" => {
            change(world, &cluster, "SET_NODE_POOL_SIZE", Some(pool), now, |after| {
                let size = body["nodeCount"].as_i64().unwrap_or(0);
                let size = u64::try_from(size).map_err(|_| {
                    Fault::Invalid(format!(
                        "SetNodePoolSizeRequest.node_count must not be negative, not {size}."
                    ))
                })?;
                after.pool_mut(project, &cluster, pool)?.size = size;
                Ok(())
            })
        }
        "clusters.nodePools.setAutoscaling" => {
            change(world, &cluster, "UPDATE_CLUSTER", Some(pool), now, |after| {
                set_autoscaling(after.pool_mut(project, &cluster, pool)?, &body["autoscaling"])
            })
        }
        "clusters.nodePools.update" => update_pool(world, &cluster, pool, body, now),
        "operations.list" => {
            let here = container.operations.iter().filter(|o| any_location || o.json["location"] == location);
            Ok(listing("operations", here.map(|o| o.render(now)).collect()))
        }
        "operations.get" => {
            let name = param("operationsId");
            let found = container
                .operations
                .iter()
                .find(|o| o.json["location"] == location && o.json["name"] == name);
            let found = found.ok_or_else(|| {
                not_found(&format!("projects/{project}/locations/{location}/operations/{name}"))
            })?;
            Ok(found.render(now))
        }
        _ => Err(Fault::NotFound(format!("the emulator does not serve {}", call.method))),
    }
}

impl Container {
    /// Applies the change of every operation DONE by `now`, oldest first.
    pub fn settle(&mut self, now: SystemTime) {
        for i in 0..self.operations.len() {
            if Phase::at(self.operations[i].start, now) != Phase::Done {
                continue;
            }
            if let Some(change) = self.operations[i].change.take() {
                let path = self.operations[i].cluster.clone();
                self.operations[i].error = self.apply(&path, change).err();
            }
        }
    }

    fn apply(&mut self, path: &str, change: Change) -> Result<(), Fault> {
        let Change::Become(mut after) = change else {
            self.clusters.remove(path);
            return Ok(());
        };
        if let Some(fault) = self.over_quota(path, &after) {
            if let Some(cluster) = self.clusters.get_mut(path) {
                cluster.provisioned("ERROR");
            }
            return Err(fault);
        }
        after.provisioned("RUNNING");
        self.clusters.insert(path.to_owned(), after);
        Ok(())
    }

    /// The GPU quota the cluster at `path` would exceed as `after`, if it uses more than it
    /// did.
    fn over_quota(&self, path: &str, after: &Cluster) -> Option<Fault> {
        let region = after.region();
        let others: Vec<&Cluster> = self
            .clusters
            .iter()
            .filter(|(p, c)| *p != path && c.region() == region)
            .map(|(_, c)| c)
            .collect();
        let kinds: BTreeSet<&str> =
            after.pools.iter().flat_map(Pool::accelerators).map(|(kind, _)| kind).collect();
        for kind in kinds {
            let elsewhere: u64 = others.iter().map(|c| c.gpus(kind, false)).sum();
            let before = elsewhere + self.clusters.get(path).map_or(0, |c| c.gpus(kind, false));
            let wanted = elsewhere + after.gpus(kind, true);
            if wanted > GPU_QUOTA && wanted > before {
                let quota = format!("{}_GPUS", kind.to_uppercase().replace("TESLA-", "").replace('-', "_"));
                return Some(Fault::Exhausted(format!(
                    "Insufficient quota to satisfy the request: Quota '{quota}' exceeded.  Limit: {GPU_QUOTA}.0 in region {region}."
                )));
            }
        }
        None
    }

    /// The operation under way on the cluster at `path`, if one is.
    fn busy(&self, path: &str) -> Option<&Operation> {
        self.operations.iter().find(|o| o.cluster == path && o.change.is_some())
    }

    /// Refuses a change of the cluster at `path` while an operation on it is under way.
    fn idle(&self, path: &str) -> Result<(), Fault> {
        match self.busy(path) {
            Some(o) => Err(Fault::Precondition(format!(
                "Cluster is running incompatible operation {}.",
                o.json["name"].as_str().unwrap_or_default()
            ))),
            None => Ok(()),
        }
    }

    /// The cluster at `path`, or GKE's 404.
    fn cluster(&self, project: &str, path: &str) -> Result<&Cluster, Fault> {
        self.clusters.get(path).ok_or_else(|| not_found(&format!("projects/{project}/{path}")))
    }

    /// A cluster as `get` answers it: its status and its pools' that of the operation under
    /// way on it, if any.
    fn render(&self, path: &str, cluster: &Cluster) -> Value {
        let busy = self.busy(path);
        let status = match busy.map(Operation::kind) {
            Some("CREATE_CLUSTER") => "PROVISIONING",
            Some("DELETE_CLUSTER") => "STOPPING",
            Some(_) => "RECONCILING",
            None => cluster.status,
        };
        let mut json = cluster.json.clone();
        json.insert("status".into(), json!(status));
        if !cluster.pools.is_empty() {
            json.insert("nodePools".into(), cluster.pools.iter().map(|p| render_pool(busy, p)).collect());
        }
        let nodes: u64 = cluster.pools.iter().filter(|p| p.status != "ERROR").map(Pool::nodes).sum();
        json.insert("currentNodeCount".into(), json!(nodes));
        let oldest =
            cluster.pools.iter().filter_map(|p| p.json["version"].as_str()).min_by_key(|v| version_key(v));
        if let Some(oldest) = oldest {
            json.insert("currentNodeVersion".into(), json!(oldest));
        }
        Value::Object(json)
    }

    /// Every cluster's endpoint address.
    pub fn endpoints(&self) -> impl Iterator<Item = &str> {
        self.clusters.values().filter_map(|c| c.json.get("endpoint").and_then(Value::as_str))
    }

    /// Which cluster uses which Compute Engine resource: their paths.
    pub fn network_users(&self) -> Vec<(String, String)> {
        let uses =
            self.clusters.iter().flat_map(|(path, c)| c.uses.iter().map(move |u| (path.clone(), u.clone())));
        uses.collect()
    }
}

impl Cluster {
    /// The region it is in.
    fn region(&self) -> &str {
        let location = self.json["location"].as_str().unwrap_or_default();
        compute::region_of(location).unwrap_or(location)
    }

    /// Its pool `name` (it is at `path` of `project`), or GKE's 404.
    fn pool(&self, project: &str, path: &str, name: &str) -> Result<&Pool, Fault> {
        let found = self.pools.iter().find(|p| p.json["name"] == name);
        found.ok_or_else(|| not_found(&format!("projects/{project}/{path}/nodePools/{name}")))
    }

    /// Its pool `name`, to change.
    fn pool_mut(&mut self, project: &str, path: &str, name: &str) -> Result<&mut Pool, Fault> {
        let found = self.pools.iter_mut().find(|p| p.json["name"] == name);
        found.ok_or_else(|| not_found(&format!("projects/{project}/{path}/nodePools/{name}")))
    }

    /// Gives what is PROVISIONING, itself and its pools, the status `status`.
    fn provisioned(&mut self, status: &'static str) {
        let statuses = std::iter::once(&mut self.status).chain(self.pools.iter_mut().map(|p| &mut p.status));
        for current in statuses.filter(|s| **s == "PROVISIONING") {
            *current = status;
        }
    }

    /// How many GPUs of type `kind` its pools run: those RUNNING, and those PROVISIONING too
    /// if `provisioning`.
    fn gpus(&self, kind: &str, provisioning: bool) -> u64 {
        let counted = |p: &&Pool| p.status == "RUNNING" || (provisioning && p.status == "PROVISIONING");
        let per_node = |p: &Pool| p.accelerators().filter(|(k, _)| *k == kind).map(|(_, n)| n).sum::<u64>();
        self.pools.iter().filter(counted).map(|p| p.nodes() * per_node(p)).sum()
    }
}

impl Pool {
    /// Its nodes, in all its zones.
    fn nodes(&self) -> u64 {
        let zones = self.json.get("locations").and_then(Value::as_array).map_or(1, Vec::len);
        self.size * zones as u64
    }

    /// Each node's accelerators: type and count.
    fn accelerators(&self) -> impl Iterator<Item = (&str, u64)> {
        let accelerators = self.json["config"]["accelerators"].as_array().into_iter().flatten();
        accelerators
            .map(|a| (a["acceleratorType"].as_str().unwrap_or_default(), count(&a["acceleratorCount"])))
    }
}

/// A node pool as `get` answers it, its status that of the operation `busy` on its cluster
/// if that works on it.
fn render_pool(busy: Option<&Operation>, pool: &Pool) -> Value {
    let status = match busy {
        Some(o) if o.pool.as_ref().is_none_or(|p| pool.json["name"] == *p) => match o.kind() {
            "CREATE_CLUSTER" | "CREATE_NODE_POOL" => "PROVISIONING",
            "DELETE_CLUSTER" | "DELETE_NODE_POOL" => "STOPPING",
            _ if o.pool.is_some() => "RECONCILING",
            _ => pool.status,
        },
        _ => pool.status,
    };
    let mut json = pool.json.clone();
    json.insert("status".into(), json!(status));
    Value::Object(json)
}

impl Operation {
    /// Its `operationType`.
    fn kind(&self) -> &str {
        self.json["operationType"].as_str().unwrap_or_default()
    }

    /// As `get` answers it `now`.
    fn render(&self, now: SystemTime) -> Value {
        let phase = Phase::at(self.start, now);
        let mut json = self.json.clone();
        json["status"] = json!(phase.status());
        if phase == Phase::Done {
            json["endTime"] = json!(rfc3339(done_at(self.start)));
            if let Some(error) = &self.error {
                json["error"] = error.rpc_status();
            }
        }
        json
    }
}

/// Starts `operation_type` on the cluster at `path` (on its pool `pool`), which must be
/// there with no operation under way: it becomes what `edit` makes of it once DONE.
fn change(
    world: &mut World,
    path: &str,
    operation_type: &str,
    pool: Option<&str>,
    now: SystemTime,
    edit: impl FnOnce(&mut Cluster) -> Result<(), Fault>,
) -> Result<Value, Fault> {
    let mut after = world.container.cluster(&world.project, path)?.clone();
    world.container.idle(path)?;
    edit(&mut after)?;
    Ok(start(world, path, operation_type, pool, Change::Become(after), now))
}

/// A new operation making `change` to the cluster at `path`, as it answers now (PENDING).
fn start(
    world: &mut World,
    path: &str,
    operation_type: &str,
    pool: Option<&str>,
    change: Change,
    now: SystemTime,
) -> Value {
    let millis = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    let name = format!("operation-{millis}-{:08x}", world.fresh_id() & 0xffff_ffff);
    let location = path.split('/').nth(1).unwrap_or_default();
    let target = pool.map_or_else(|| path.to_owned(), |p| format!("{path}/nodePools/{p}"));
    // GKE names the project by number in its operations' links.
    let number = world.project_number.to_string();
    let json = json!({
        "name": name,
        "operationType": operation_type,
        "selfLink": link(&number, &format!("locations/{location}/operations/{name}")),
        "targetLink": link(&number, &target),
        "location": location,
        "zone": location,
        "startTime": rfc3339(now),
    });
    let operation = Operation {
        json,
        cluster: path.to_owned(),
        pool: pool.map(str::to_owned),
        start: now,
        change: Some(change),
        error: None,
    };
    let answer = operation.render(now);
    world.container.operations.push(operation);
    answer
}

/// `clusters.create`: the cluster `body` describes in `location`, PROVISIONING at once.
fn create_cluster(world: &mut World, location: &str, body: &Value, now: SystemTime) -> Result<Value, Fault> {
    let project = world.project.clone();
    let name = body["name"].as_str().unwrap_or_default();
    check_name("cluster.name", name)?;
    let path = format!("locations/{location}/clusters/{name}");
    if world.container.clusters.contains_key(&path) {
        return Err(Fault::AlreadyExists(format!("Already exists: projects/{project}/{path}.")));
    }
    let mut json = body.as_object().cloned().unwrap_or_default();
    for output in ["status", "statusMessage", "currentNodeCount", "currentNodeVersion"] {
        json.remove(output);
    }
    let pools = json.remove("nodePools").and_then(|p| p.as_array().cloned()).unwrap_or_default();
    let initial = json.remove("initialNodeCount").and_then(|n| n.as_i64()).unwrap_or(0);
    let config = json.remove("nodeConfig").unwrap_or_else(|| json!({}));
    let pools = match (pools.is_empty(), initial) {
        (false, 0) => pools,
        (false, _) => {
            return Err(Fault::Invalid(
                "Cluster.initial_node_count and Cluster.node_pools cannot both be set.".into(),
            ))
        }
        (true, n) if n > 0 => vec![json!({"name": "default-pool", "config": config, "initialNodeCount": n})],
        (true, _) => {
            return Err(Fault::Invalid("Cluster.initial_node_count must be greater than zero.".into()))
        }
    };

    let region = compute::region_of(location).unwrap_or(location).to_owned();
    let zones = match json.get("locations").and_then(Value::as_array).filter(|z| !z.is_empty()) {
        Some(given) => zones_of(&region, given)?,
        None if region != location => vec![location.to_owned()],
        None => ["b", "c", "d"].iter().map(|letter| format!("{region}-{letter}")).collect(),
    };
    let text = |field: &str| json.get(field).and_then(Value::as_str).map(str::to_owned);
    let (network, subnetwork, uses) =
        networks(&world.compute, &project, &region, text("network"), text("subnetwork"))?;
    let master = version(
        text("initialClusterVersion").as_deref().unwrap_or_default(),
        DEFAULT_VERSION,
        None,
        "Master",
    )?;

    let mut made: Vec<Pool> = vec![];
    for pool in &pools {
        let pool = new_pool(&project, &path, pool, &master, &zones)?;
        if made.iter().any(|p| p.json["name"] == pool.json["name"]) {
            return Err(Fault::Invalid(format!("Duplicate node pool name {}.", pool.json["name"])));
        }
        made.push(pool);
    }
    let endpoint = compute::take_external(&mut compute::addresses_in_use(world))
        .ok_or_else(|| Fault::Invalid("The emulator's 203.0.113.0/24 addresses are all in use.".into()))?;
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("projects/{project}/{path}/{}", world.fresh_id()).as_bytes(),
    );
    let id: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let ca = self_signed_ca(&id, now).map_err(Fault::Internal)?;
    let mut master_auth = json.remove("masterAuth").and_then(|m| m.as_object().cloned()).unwrap_or_default();
    master_auth.insert("clusterCaCertificate".into(), json!(STANDARD.encode(ca)));
    let mut network_config =
        json.remove("networkConfig").and_then(|m| m.as_object().cloned()).unwrap_or_default();
    network_config.insert("network".into(), json!(format!("projects/{project}/{network}")));
    network_config.insert("subnetwork".into(), json!(format!("projects/{project}/{subnetwork}")));
    let labels = json.get("resourceLabels").cloned().unwrap_or_else(|| json!({}));
    let last = |path: &str| path.rsplit('/').next().unwrap_or_default().to_owned();
    json.extend([
        ("name".to_owned(), json!(name)),
        ("id".to_owned(), json!(id)),
        ("selfLink".to_owned(), json!(link(&project, &path))),
        ("location".to_owned(), json!(location)),
        ("zone".to_owned(), json!(location)),
        ("locations".to_owned(), json!(zones)),
        ("endpoint".to_owned(), json!(endpoint)),
        ("masterAuth".to_owned(), Value::Object(master_auth)),
        ("initialClusterVersion".to_owned(), json!(master)),
        ("currentMasterVersion".to_owned(), json!(master)),
        ("network".to_owned(), json!(last(&network))),
        ("subnetwork".to_owned(), json!(last(&subnetwork))),
        ("networkConfig".to_owned(), Value::Object(network_config)),
        ("labelFingerprint".to_owned(), json!(label_fingerprint(&labels))),
        ("createTime".to_owned(), json!(rfc3339(now))),
    ]);
    let cluster = Cluster { json, pools: made, status: "PROVISIONING", uses };
    world.container.clusters.insert(path.clone(), cluster.clone());
    Ok(start(world, &path, "CREATE_CLUSTER", None, Change::Become(cluster), now))
}

/// `nodePools.create`: the pool `body` describes, PROVISIONING at once.
fn create_pool(world: &mut World, path: &str, body: &Value, now: SystemTime) -> Result<Value, Fault> {
    let project = world.project.clone();
    let cluster = world.container.cluster(&project, path)?;
    let zones: Vec<String> = serde_json::from_value(cluster.json["locations"].clone()).unwrap_or_default();
    let master = cluster.json["currentMasterVersion"].as_str().unwrap_or(DEFAULT_VERSION).to_owned();
    let pool = new_pool(&project, path, body, &master, &zones)?;
    let name = pool.json["name"].as_str().unwrap_or_default().to_owned();
    let answer = change(world, path, "CREATE_NODE_POOL", Some(&name), now, |after| {
        if after.pools.iter().any(|p| p.json["name"] == name) {
            return Err(Fault::AlreadyExists(format!(
                "Already exists: projects/{project}/{path}/nodePools/{name}."
            )));
        }
        after.pools.push(pool.clone());
        Ok(())
    })?;
    if let Some(cluster) = world.container.clusters.get_mut(path) {
        cluster.pools.push(pool);
    }
    Ok(answer)
}

/// A node pool of the cluster at `path` as `body` describes it, PROVISIONING: GKE's
/// defaults for what it leaves out, the master's version `master` unless it asks for an
/// older one, the cluster's zones `zones` unless it names some.
fn new_pool(project: &str, path: &str, body: &Value, master: &str, zones: &[String]) -> Result<Pool, Fault> {
    let mut json = body.as_object().cloned().unwrap_or_default();
    json.remove("status");
    json.remove("statusMessage");
    let name = json.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
    check_name("node_pool.name", &name)?;
    let initial = json.get("initialNodeCount").and_then(Value::as_i64).unwrap_or(0);
    let size = u64::try_from(initial).map_err(|_| {
        Fault::Invalid(format!("NodePool.initial_node_count must not be negative, not {initial}."))
    })?;
    let mut config = json.remove("config").and_then(|c| c.as_object().cloned()).unwrap_or_default();
    for (field, default) in [
        ("machineType", json!("e2-medium")),
        ("diskSizeGb", json!(100)),
        ("diskType", json!("pd-balanced")),
        ("imageType", json!("COS_CONTAINERD")),
        ("serviceAccount", json!("default")),
    ] {
        config.entry(field).or_insert(default);
    }
    if let Some(accelerators) = config.get_mut("accelerators").and_then(Value::as_array_mut) {
        for (i, accelerator) in accelerators.iter_mut().enumerate() {
            if accelerator["acceleratorType"].as_str().is_none_or(str::is_empty) {
                return Err(Fault::Invalid(format!(
                    "NodeConfig.accelerators[{i}].accelerator_type must be set."
                )));
            }
            let n = count(&accelerator["acceleratorCount"]);
            if n == 0 {
                return Err(Fault::Invalid(format!(
                    "NodeConfig.accelerators[{i}].accelerator_count must be greater than zero."
                )));
            }
            accelerator["acceleratorCount"] = json!(n.to_string());
        }
    }
    let region = zones.first().and_then(|z| compute::region_of(z)).unwrap_or_default();
    let locations = match json.get("locations").and_then(Value::as_array).filter(|z| !z.is_empty()) {
        Some(given) => zones_of(region, given)?,
        None => zones.to_vec(),
    };
    let wanted = json.get("version").and_then(Value::as_str).unwrap_or_default();
    let version = version(wanted, master, Some(master), "Node")?;
    json.extend([
        ("name".to_owned(), json!(name)),
        ("config".to_owned(), Value::Object(config)),
        ("initialNodeCount".to_owned(), json!(initial)),
        ("version".to_owned(), json!(version)),
        ("locations".to_owned(), json!(locations)),
        ("selfLink".to_owned(), json!(link(project, &format!("{path}/nodePools/{name}")))),
    ]);
    json.entry("management").or_insert(json!({"autoUpgrade": true, "autoRepair": true}));
    let mut pool = Pool { json, size, status: "PROVISIONING" };
    if let Some(autoscaling) = pool.json.get("autoscaling").cloned() {
        set_autoscaling(&mut pool, &autoscaling)?;
    }
    Ok(pool)
}

/// `clusters.update`: one change of those the emulator serves (the master's version, a
/// pool's version or autoscaling), as GKE takes one a request.
fn update_cluster(world: &mut World, path: &str, update: &Value, now: SystemTime) -> Result<Value, Fault> {
    let project = world.project.clone();
    let fields = update.as_object().cloned().unwrap_or_default();
    let served = ["desiredMasterVersion", "desiredNodeVersion", "desiredNodePoolAutoscaling"];
    if let Some(other) =
        fields.keys().find(|f| !served.contains(&f.as_str()) && *f != "desiredNodePoolId" && *f != "etag")
    {
        return Err(Fault::Invalid(format!("The emulator does not serve ClusterUpdate.{other}.")));
    }
    let given: Vec<&str> = served.into_iter().filter(|f| fields.contains_key(*f)).collect();
    let [field] = given[..] else {
        return Err(Fault::Invalid(
            "Exactly one update can be applied to a cluster with each request.".into(),
        ));
    };
    let cluster = world.container.cluster(&project, path)?;
    let master = cluster.json["currentMasterVersion"].as_str().unwrap_or(DEFAULT_VERSION).to_owned();
    let wanted = fields[field].as_str().unwrap_or_default();
    if field == "desiredMasterVersion" {
        let version = version(wanted, DEFAULT_VERSION, None, "Master")?;
        if version_key(&version) < version_key(&master) {
            return Err(Fault::Invalid(format!(
                "Master cannot be downgraded from \"{master}\" to \"{version}\"."
            )));
        }
        return change(world, path, "UPGRADE_MASTER", None, now, |after| {
            after.json.insert("currentMasterVersion".into(), json!(version));
            Ok(())
        });
    }
    let pool = match (fields.get("desiredNodePoolId").and_then(Value::as_str), &cluster.pools[..]) {
        (Some(pool), _) => pool.to_owned(),
        (None, [only]) => only.json["name"].as_str().unwrap_or_default().to_owned(),
        (None, _) => return Err(Fault::Invalid(
            "ClusterUpdate.desired_node_pool_id must be set when the cluster has more than one node pool."
                .into(),
        )),
    };
    if field == "desiredNodeVersion" {
        let version = version(wanted, &master, Some(&master), "Node")?;
        return change(world, path, "UPGRADE_NODES", Some(&pool), now, |after| {
            after.pool_mut(&project, path, &pool)?.json.insert("version".into(), json!(version));
            Ok(())
        });
    }
    change(world, path, "UPDATE_CLUSTER", Some(&pool), now, |after| {
        set_autoscaling(after.pool_mut(&project, path, &pool)?, &fields[field])
    })
}

/// `nodePools.update`: those of its fields the emulator serves (`nodeVersion`, `labels`,
/// `taints`, `resourceLabels`).
fn update_pool(
    world: &mut World,
    path: &str,
    pool: &str,
    body: &Value,
    now: SystemTime,
) -> Result<Value, Fault> {
    let project = world.project.clone();
    let fields = body.as_object().cloned().unwrap_or_default();
    let ignored = ["name", "projectId", "zone", "clusterId", "nodePoolId", "etag"];
    let served = ["nodeVersion", "labels", "taints", "resourceLabels"];
    if let Some(other) =
        fields.keys().find(|f| !served.contains(&f.as_str()) && !ignored.contains(&f.as_str()))
    {
        return Err(Fault::Invalid(format!("The emulator does not serve UpdateNodePoolRequest.{other}.")));
    }
    if !served.iter().any(|f| fields.contains_key(*f)) {
        return Err(Fault::Invalid("UpdateNodePoolRequest names nothing to update.".into()));
    }
    let master = world.container.cluster(&project, path)?.json["currentMasterVersion"]
        .as_str()
        .unwrap_or(DEFAULT_VERSION)
        .to_owned();
    let version = match fields.get("nodeVersion").and_then(Value::as_str) {
        Some(wanted) => Some(version(wanted, &master, Some(&master), "Node")?),
        None => None,
    };
    let kind = if version.is_some() { "UPGRADE_NODES" } else { "UPDATE_CLUSTER" };
    change(world, path, kind, Some(pool), now, |after| {
        let json = &mut after.pool_mut(&project, path, pool)?.json;
        if let Some(version) = version {
            json.insert("version".into(), json!(version));
        }
        let config = json.entry("config").or_insert_with(|| json!({}));
        // Each a message holding the list or map of the config's field of that name.
        for (field, inner) in [("labels", "labels"), ("taints", "taints"), ("resourceLabels", "labels")] {
            if let Some(given) = fields.get(field) {
                config[field] = given.get(inner).cloned().unwrap_or_else(|| {
                    if inner == "taints" {
                        json!([])
                    } else {
                        json!({})
                    }
                });
            }
        }
        Ok(())
    })
}

/// Sets a pool's autoscaling to `autoscaling` (`{}`, none, when null), refusing bounds that
/// cross.
fn set_autoscaling(pool: &mut Pool, autoscaling: &Value) -> Result<(), Fault> {
    let bound = |field: &str| autoscaling[field].as_i64().unwrap_or(0);
    for (min, max) in [("minNodeCount", "maxNodeCount"), ("totalMinNodeCount", "totalMaxNodeCount")] {
        if bound(min) < 0 || (bound(min) > bound(max) && autoscaling.get(max).is_some()) {
            return Err(Fault::Invalid(format!(
                "Autoscaling: {min} ({}) must be from 0 to {max} ({}).",
                bound(min),
                bound(max)
            )));
        }
    }
    let enabled = autoscaling["enabled"] == true;
    if enabled && bound("maxNodeCount") < 1 && bound("totalMaxNodeCount") < 1 {
        return Err(Fault::Invalid("Autoscaling: maxNodeCount must be greater than zero.".into()));
    }
    let autoscaling = if autoscaling.is_null() { json!({}) } else { autoscaling.clone() };
    pool.json.insert("autoscaling".into(), autoscaling);
    Ok(())
}

/// The network and subnetwork a cluster of `region` names (by name or `projects/P/…`),
/// which must exist: their paths in the project (`default` if it names none), and those it
/// uses. A subnetwork alone names its network; a network alone is not enough, custom-mode
/// as the emulator's networks are.
fn networks(
    compute: &Compute,
    project: &str,
    region: &str,
    network: Option<String>,
    subnetwork: Option<String>,
) -> Result<(String, String, Vec<String>), Fault> {
    let Some(subnetwork) = subnetwork else {
        if let Some(network) = network {
            return Err(Fault::Invalid(format!(
                "Network \"{network}\" is a custom mode network: Cluster.subnetwork must be set."
            )));
        }
        return Ok((
            "global/networks/default".into(),
            format!("regions/{region}/subnetworks/default"),
            vec![],
        ));
    };
    let path = |text: &str, shape: &[&str], short: String| {
        if text.contains('/') {
            compute::reference(project, "", text, shape).ok()
        } else {
            Some(short)
        }
    };
    let subnet_path = path(&subnetwork, &SUBNETWORK, format!("regions/{region}/subnetworks/{subnetwork}"));
    let subnet = subnet_path.as_ref().and_then(|p| compute.resource(project, p).ok());
    let (Some(subnet_path), Some(subnet)) = (subnet_path, subnet) else {
        return Err(Fault::Invalid(format!("Subnetwork \"{subnetwork}\" does not exist.")));
    };
    if subnet_path.split('/').nth(1) != Some(region) {
        return Err(Fault::Invalid(format!(
            "Subnetwork \"{subnetwork}\" is not in the cluster's region {region}."
        )));
    }
    let own = subnet["network"].as_str().and_then(|l| compute::reference(project, "", l, &NETWORK).ok());
    let network_path = match network {
        None => own.clone().unwrap_or_default(),
        Some(network) => {
            let named = path(&network, &NETWORK, format!("global/networks/{network}"));
            if named.as_ref().is_none_or(|p| compute.resource(project, p).is_err()) {
                return Err(Fault::Invalid(format!("Network \"{network}\" does not exist.")));
            }
            if named != own {
                return Err(Fault::Invalid(format!(
                    "Subnetwork \"{subnetwork}\" is not in network \"{network}\"."
                )));
            }
            named.unwrap_or_default()
        }
    };
    Ok((network_path.clone(), subnet_path.clone(), vec![network_path, subnet_path]))
}

/// The zones `given` names, each of `region`.
fn zones_of(region: &str, given: &[Value]) -> Result<Vec<String>, Fault> {
    let zone = |z: &Value| z.as_str().filter(|z| compute::region_of(z) == Some(region)).map(str::to_owned);
    given
        .iter()
        .map(|z| {
            zone(z).ok_or_else(|| Fault::Invalid(format!("Location {z} is not a zone of region {region}.")))
        })
        .collect()
}

/// The version `wanted` names (one the emulator offers, `latest`, or a prefix of one:
/// `1.31`, `1.31.6`), the newest fitting, none newer than `newest`; `""` and `-` name
/// `default`. `what` names it in errors: `Master`, `Node`.
fn version(wanted: &str, default: &str, newest: Option<&str>, what: &str) -> Result<String, Fault> {
    if wanted.is_empty() || wanted == "-" {
        return Ok(default.to_owned());
    }
    let names = |v: &str| {
        wanted == "latest"
            || v == wanted
            || v.starts_with(&format!("{wanted}."))
            || v.starts_with(&format!("{wanted}-"))
    };
    let fits = |v: &str| newest.is_none_or(|newest| version_key(v) <= version_key(newest));
    match VERSIONS.iter().find(|v| names(v) && fits(v)) {
        Some(found) => Ok((*found).to_owned()),
        None if VERSIONS.iter().any(|v| names(v)) => Err(Fault::Invalid(format!(
            "{what} version \"{wanted}\" must not be newer than the master version \"{}\".",
            newest.unwrap_or_default()
        ))),
        None => Err(Fault::Invalid(format!("{what} version \"{wanted}\" is unsupported."))),
    }
}

/// A version's numbers, to order versions by: `1.31.6-gke.1020000` → 1, 31, 6, 1020000.
fn version_key(version: &str) -> Vec<u64> {
    version.split(['.', '-']).filter_map(|part| part.parse().ok()).collect()
}

/// A labels' fingerprint, as GKE writes it: eight hexadecimal digits.
fn label_fingerprint(labels: &Value) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, labels.to_string().as_bytes());
    digest.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// A count written as JSON writes an int64 (a string) or as a number; 0 if neither.
fn count(value: &Value) -> u64 {
    value.as_u64().or_else(|| value.as_str().and_then(|s| s.parse().ok())).unwrap_or(0)
}

/// Refuses a cluster or node pool name GKE refuses.
fn check_name(field: &str, name: &str) -> Result<(), Fault> {
    let valid = (1..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        return Ok(());
    }
    Err(Fault::Invalid(format!(
        "Invalid value for field \"{field}\": \"{name}\". Must be a match of regex '(?:[a-z](?:[-a-z0-9]{{0,38}}[a-z0-9])?)' (only alphanumerics and '-' allowed, must start with a letter and end with an alphanumeric, and must be no longer than 40 characters)."
    )))
}

/// Whether the cluster at `path` is in `location`.
fn in_location(path: &str, location: &str) -> bool {
    path.split('/').nth(1) == Some(location)
}

/// A list answer: `items` under `field`, nothing when there are none (as proto3's JSON).
fn listing(field: &str, items: Vec<Value>) -> Value {
    let mut answer = Map::new();
    if !items.is_empty() {
        answer.insert(field.to_owned(), Value::Array(items));
    }
    Value::Object(answer)
}

/// The URL of the resource at `path` (`locations/L/…`) of `project`: GKE's links name a
/// zone's resources `zones/Z/…`.
fn link(project: &str, path: &str) -> String {
    let zonal = path
        .strip_prefix("locations/")
        .filter(|rest| rest.split('/').next().and_then(compute::region_of).is_some());
    match zonal {
        Some(rest) => format!("{BASE}projects/{project}/zones/{rest}"),
        None => format!("{BASE}projects/{project}/{path}"),
    }
}

fn not_found(name: &str) -> Fault {
    Fault::NotFound(format!("Not found: {name}."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;
    use std::time::Duration;

    const P: &str = "p";
    const ZONE: &str = "europe-west1-b";

    fn world() -> World {
        let owner =
            keys::issue(P, "owner@p.iam.gserviceaccount.com", "1", "k".into(), crate::keys::TOKEN_URI)
                .unwrap();
        World::new(P, "owner@p.iam.gserviceaccount.com".into(), &owner)
    }

    /// `ms` milliseconds into the test.
    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_millis(ms)
    }

    /// Calls `container.projects.locations.<method>` at `ms`, in the zone unless `params`
    /// names a location, on the cluster `lab` unless it names another.
    fn call(
        world: &mut World,
        ms: u64,
        method: &str,
        params: &[(&str, &str)],
        body: Value,
    ) -> Result<Value, Fault> {
        let mut all: BTreeMap<String, String> =
            [("projectsId", P), ("locationsId", ZONE), ("clustersId", "lab")]
                .map(|(k, v)| (k.into(), v.into()))
                .into();
        all.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let method = format!("container.projects.locations.{method}");
        let call = Call { method: &method, params: &all, query: &BTreeMap::new(), body: &body };
        answer(world, &call, at(ms))
    }

    /// Calls Compute Engine's `compute.<method>` at `ms`.
    fn compute_call(world: &mut World, ms: u64, method: &str, params: &[(&str, &str)], body: Value) -> Value {
        let mut all: BTreeMap<String, String> =
            params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        all.insert("project".into(), P.into());
        let method = format!("compute.{method}");
        let call = Call { method: &method, params: &all, query: &BTreeMap::new(), body: &body };
        compute::answer(world, &call, at(ms)).unwrap()
    }

    /// The operation `operation` as it stands at `ms`.
    fn poll(world: &mut World, ms: u64, operation: &Value) -> Value {
        let params = [
            ("locationsId", operation["location"].as_str().unwrap()),
            ("operationsId", operation["name"].as_str().unwrap()),
        ];
        call(world, ms, "operations.get", &params, json!({})).unwrap()
    }

    /// The cluster `lab` at `ms`.
    fn get(world: &mut World, ms: u64) -> Result<Value, Fault> {
        call(world, ms, "clusters.get", &[], json!({}))
    }

    /// A pool's status in a cluster as `get` answers it.
    fn pool_status<'a>(cluster: &'a Value, pool: &str) -> &'a str {
        let pools = cluster["nodePools"].as_array().unwrap();
        pools.iter().find(|p| p["name"] == pool).unwrap()["status"].as_str().unwrap()
    }

    /// The lab's cluster: two CPU nodes, and GPU nodes scaling from none to two.
    fn lab() -> Value {
        json!({"cluster": {"name": "lab", "resourceLabels": {"labctl-lab": "x"}, "nodePools": [
            {"name": "cpu", "initialNodeCount": 2, "config": {"machineType": "e2-standard-4"}},
            {"name": "gpu", "config": {"machineType": "n1-standard-4",
                "accelerators": [{"acceleratorType": "nvidia-tesla-t4", "acceleratorCount": "1"}],
                "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]},
             "autoscaling": {"enabled": true, "minNodeCount": 0, "maxNodeCount": 2}}]}})
    }

    #[test]
    fn a_cluster_provisions_then_runs_with_its_pools() {
        let mut world = world();
        let operation = call(&mut world, 0, "clusters.create", &[], lab()).unwrap();
        assert_eq!(
            (&operation["status"], &operation["operationType"]),
            (&json!("PENDING"), &json!("CREATE_CLUSTER"))
        );
        assert!(operation["name"].as_str().unwrap().starts_with("operation-1700000000000-"));
        let number = "https://container.googleapis.com/v1/projects/424242424242/zones/europe-west1-b";
        assert!(operation["selfLink"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{number}/operations/operation-")));
        assert_eq!(operation["targetLink"], format!("{number}/clusters/lab"));

        let provisioning = get(&mut world, 50).unwrap();
        assert_eq!(provisioning["status"], "PROVISIONING");
        assert_eq!(
            (pool_status(&provisioning, "cpu"), pool_status(&provisioning, "gpu")),
            ("PROVISIONING", "PROVISIONING")
        );
        assert_eq!(
            provisioning["selfLink"],
            "https://container.googleapis.com/v1/projects/p/zones/europe-west1-b/clusters/lab"
        );
        assert_eq!(
            (&provisioning["endpoint"], &provisioning["locations"]),
            (&json!("203.0.113.1"), &json!([ZONE]))
        );
        let ca =
            STANDARD.decode(provisioning["masterAuth"]["clusterCaCertificate"].as_str().unwrap()).unwrap();
        assert!(String::from_utf8(ca).unwrap().starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert_eq!(provisioning["currentMasterVersion"], DEFAULT_VERSION);
        assert_eq!(provisioning["labelFingerprint"].as_str().unwrap().len(), 8);
        let gpu = &provisioning["nodePools"][1];
        assert_eq!(gpu["config"]["accelerators"][0]["acceleratorCount"], "1");
        assert_eq!((&gpu["config"]["diskSizeGb"], &gpu["version"]), (&json!(100), &json!(DEFAULT_VERSION)));
        assert_eq!(gpu["autoscaling"]["maxNodeCount"], 2);

        assert_eq!(poll(&mut world, 150, &operation)["status"], "RUNNING");
        let done = poll(&mut world, 200, &operation);
        assert_eq!((&done["status"], done.get("error")), (&json!("DONE"), None));
        assert_eq!(done["endTime"], rfc3339(at(200)));
        let running = get(&mut world, 200).unwrap();
        assert_eq!((&running["status"], &running["currentNodeCount"]), (&json!("RUNNING"), &json!(2)));
        assert_eq!((pool_status(&running, "cpu"), pool_status(&running, "gpu")), ("RUNNING", "RUNNING"));

        let regional = json!({"cluster": {"name": "big", "initialNodeCount": 3}});
        call(&mut world, 200, "clusters.create", &[("locationsId", "europe-west1")], regional).unwrap();
        let big = call(
            &mut world,
            400,
            "clusters.get",
            &[("locationsId", "europe-west1"), ("clustersId", "big")],
            json!({}),
        );
        let big = big.unwrap();
        assert_eq!(big["locations"], json!(["europe-west1-b", "europe-west1-c", "europe-west1-d"]));
        assert_eq!(
            (&big["nodePools"][0]["name"], &big["currentNodeCount"]),
            (&json!("default-pool"), &json!(9))
        );
        assert_eq!(big["endpoint"], "203.0.113.2");
        let names = |list: &Value| {
            list["clusters"].as_array().unwrap().iter().map(|c| c["name"].clone()).collect::<Vec<_>>()
        };
        let everywhere = call(&mut world, 400, "clusters.list", &[("locationsId", "-")], json!({})).unwrap();
        assert_eq!(names(&everywhere), ["lab", "big"]);
        assert_eq!(names(&call(&mut world, 400, "clusters.list", &[], json!({})).unwrap()), ["lab"]);
        let none = call(&mut world, 400, "clusters.list", &[("locationsId", "us-east1")], json!({})).unwrap();
        assert_eq!(none, json!({}));
    }

    #[test]
    fn a_cluster_runs_one_operation_at_a_time() {
        let mut world = world();
        let create = call(&mut world, 0, "clusters.create", &[], lab()).unwrap();
        let busy = format!("Cluster is running incompatible operation {}.", create["name"].as_str().unwrap());
        let cpu = [("nodePoolsId", "cpu")];
        let resize = json!({"nodeCount": 5});
        assert_eq!(
            call(&mut world, 50, "clusters.nodePools.setSize", &cpu, resize.clone()),
            Err(Fault::Precondition(busy.clone()))
        );
        assert_eq!(
            call(&mut world, 150, "clusters.delete", &[], json!({})),
            Err(Fault::Precondition(busy.clone()))
        );
        let extra = json!({"nodePool": {"name": "extra", "initialNodeCount": 1}});
        assert_eq!(
            call(&mut world, 199, "clusters.nodePools.create", &[], extra.clone()),
            Err(Fault::Precondition(busy))
        );

        let operation = call(&mut world, 200, "clusters.nodePools.setSize", &cpu, resize).unwrap();
        assert_eq!(operation["operationType"], "SET_NODE_POOL_SIZE");
        assert!(operation["targetLink"].as_str().unwrap().ends_with("/clusters/lab/nodePools/cpu"));
        let reconciling = get(&mut world, 250).unwrap();
        assert_eq!(
            (&reconciling["status"], &reconciling["currentNodeCount"]),
            (&json!("RECONCILING"), &json!(2))
        );
        assert_eq!(
            (pool_status(&reconciling, "cpu"), pool_status(&reconciling, "gpu")),
            ("RECONCILING", "RUNNING")
        );
        assert_eq!(get(&mut world, 400).unwrap()["currentNodeCount"], 5);

        let autoscaling = json!({"autoscaling": {"enabled": true, "minNodeCount": 1, "maxNodeCount": 4}});
        let operation = call(
            &mut world,
            400,
            "clusters.nodePools.setAutoscaling",
            &[("nodePoolsId", "gpu")],
            autoscaling,
        )
        .unwrap();
        assert_eq!(operation["operationType"], "UPDATE_CLUSTER");
        let update = json!({"labels": {"labels": {"gpu": "t4"}}, "taints": {}});
        call(&mut world, 600, "clusters.nodePools.update", &[("nodePoolsId", "gpu")], update).unwrap();
        let gpu =
            call(&mut world, 800, "clusters.nodePools.get", &[("nodePoolsId", "gpu")], json!({})).unwrap();
        assert_eq!((&gpu["autoscaling"]["maxNodeCount"], &gpu["status"]), (&json!(4), &json!("RUNNING")));
        assert_eq!((&gpu["config"]["labels"], &gpu["config"]["taints"]), (&json!({"gpu": "t4"}), &json!([])));

        let fingerprint = get(&mut world, 800).unwrap()["labelFingerprint"].clone();
        let stale = json!({"resourceLabels": {"labctl-lab": "y"}, "labelFingerprint": "0000000f"});
        let refused = call(&mut world, 800, "clusters.setResourceLabels", &[], stale).unwrap_err();
        assert_eq!(refused.message(), format!("Labels could not be set due to fingerprint mismatch; try again with the proper fingerprint: incorrect fingerprint supplied was \"0000000f\", the expected one is \"{}\".", fingerprint.as_str().unwrap()));
        let fresh = json!({"resourceLabels": {"labctl-lab": "y"}, "labelFingerprint": fingerprint});
        let operation = call(&mut world, 800, "clusters.setResourceLabels", &[], fresh).unwrap();
        assert_eq!(operation["operationType"], "SET_LABELS");
        let labelled = get(&mut world, 1000).unwrap();
        assert_eq!(labelled["resourceLabels"], json!({"labctl-lab": "y"}));
        assert_ne!(labelled["labelFingerprint"], fingerprint);

        call(&mut world, 1000, "clusters.nodePools.create", &[], extra.clone()).unwrap();
        assert_eq!(pool_status(&get(&mut world, 1050).unwrap(), "extra"), "PROVISIONING");
        assert_eq!(pool_status(&get(&mut world, 1200).unwrap(), "extra"), "RUNNING");
        let taken = call(&mut world, 1200, "clusters.nodePools.create", &[], extra);
        assert_eq!(
            taken,
            Err(Fault::AlreadyExists(
                "Already exists: projects/p/locations/europe-west1-b/clusters/lab/nodePools/extra.".into()
            ))
        );

        call(&mut world, 1200, "clusters.nodePools.delete", &[("nodePoolsId", "gpu")], json!({})).unwrap();
        assert_eq!(pool_status(&get(&mut world, 1250).unwrap(), "gpu"), "STOPPING");
        let gone = call(&mut world, 1400, "clusters.nodePools.get", &[("nodePoolsId", "gpu")], json!({}));
        assert_eq!(
            gone,
            Err(Fault::NotFound(
                "Not found: projects/p/locations/europe-west1-b/clusters/lab/nodePools/gpu.".into()
            ))
        );
        let pools = call(&mut world, 1400, "clusters.nodePools.list", &[], json!({})).unwrap();
        assert_eq!(pools["nodePools"].as_array().unwrap().len(), 2);

        let delete = call(&mut world, 1400, "clusters.delete", &[], json!({})).unwrap();
        assert_eq!(delete["operationType"], "DELETE_CLUSTER");
        let stopping = get(&mut world, 1450).unwrap();
        assert_eq!((&stopping["status"], pool_status(&stopping, "cpu")), (&json!("STOPPING"), "STOPPING"));
        assert_eq!(
            get(&mut world, 1600),
            Err(Fault::NotFound("Not found: projects/p/locations/europe-west1-b/clusters/lab.".into()))
        );
        let operations = call(&mut world, 1600, "operations.list", &[], json!({})).unwrap();
        let statuses: Vec<&Value> =
            operations["operations"].as_array().unwrap().iter().map(|o| &o["status"]).collect();
        assert_eq!(statuses, [&json!("DONE"); 8]);
    }

    #[test]
    fn what_gke_refuses_is_refused() {
        let mut world = world();
        call(&mut world, 0, "clusters.create", &[], lab()).unwrap();
        let mut refused = |method: &str, params: &[(&str, &str)], body: Value| {
            call(&mut world, 200, method, params, body).unwrap_err().message().to_owned()
        };
        let create = |cluster: Value| {
            let mut body =
                json!({"cluster": {"name": "other", "nodePools": [{"name": "a", "initialNodeCount": 1}]}});
            body["cluster"].as_object_mut().unwrap().extend(cluster.as_object().unwrap().clone());
            body
        };
        assert_eq!(
            refused("clusters.create", &[], lab()),
            "Already exists: projects/p/locations/europe-west1-b/clusters/lab."
        );
        let no_nodes = json!({"cluster": {"name": "other"}});
        assert_eq!(
            refused("clusters.create", &[], no_nodes),
            "Cluster.initial_node_count must be greater than zero."
        );
        assert!(refused("clusters.create", &[], create(json!({"name": "Lab_1"})))
            .contains("\"cluster.name\": \"Lab_1\""));
        let twice = json!({"nodePools": [{"name": "a"}, {"name": "a"}]});
        assert_eq!(refused("clusters.create", &[], create(twice)), "Duplicate node pool name \"a\".");
        let crossing = json!({"nodePools": [{"name": "a", "autoscaling": {"enabled": true, "minNodeCount": 3, "maxNodeCount": 2}}]});
        assert!(refused("clusters.create", &[], create(crossing)).contains("minNodeCount (3)"));
        let no_gpus = json!({"nodePools": [{"name": "a", "config": {"accelerators": [{"acceleratorType": "nvidia-tesla-t4"}]}}]});
        assert!(refused("clusters.create", &[], create(no_gpus))
            .ends_with("accelerator_count must be greater than zero."));
        let untyped =
            json!({"nodePools": [{"name": "a", "config": {"accelerators": [{"acceleratorCount": "1"}]}}]});
        assert!(refused("clusters.create", &[], create(untyped)).ends_with("accelerator_type must be set."));
        let nowhere = json!({"subnetwork": "none"});
        assert_eq!(refused("clusters.create", &[], create(nowhere)), "Subnetwork \"none\" does not exist.");
        assert_eq!(
            refused("clusters.create", &[], create(json!({"initialClusterVersion": "1.20"}))),
            "Master version \"1.20\" is unsupported."
        );
        let ahead = json!({"nodePools": [{"name": "a", "version": "1.32"}]});
        assert_eq!(
            refused("clusters.create", &[], create(ahead)),
            "Node version \"1.32\" must not be newer than the master version \"1.31.6-gke.1020000\"."
        );
        assert_eq!(
            refused("clusters.get", &[("locationsId", "mars")], json!({})),
            "Not found: projects/p/locations/mars."
        );
        assert_eq!(refused("clusters.get", &[("projectsId", "q")], json!({})), "Not found: projects/q.");
        let both = json!({"update": {"desiredMasterVersion": "latest", "desiredNodeVersion": "-"}});
        assert!(refused("clusters.update", &[], both).starts_with("Exactly one update"));
        let unserved = json!({"update": {"desiredLoggingService": "none"}});
        assert_eq!(
            refused("clusters.update", &[], unserved),
            "The emulator does not serve ClusterUpdate.desiredLoggingService."
        );
        let unknown = [("operationsId", "operation-1-2")];
        assert_eq!(
            refused("operations.get", &unknown, json!({})),
            "Not found: projects/p/locations/europe-west1-b/operations/operation-1-2."
        );
        let shrink = json!({"nodeCount": -1});
        assert!(refused("clusters.nodePools.setSize", &[("nodePoolsId", "cpu")], shrink)
            .contains("must not be negative"));
    }

    #[test]
    fn a_cluster_keeps_its_subnetwork_and_shares_addresses_with_vms() {
        let mut world = world();
        compute_call(
            &mut world,
            0,
            "networks.insert",
            &[],
            json!({"name": "lab", "autoCreateSubnetworks": false}),
        );
        let subnetwork =
            json!({"name": "lab-eu", "network": "global/networks/lab", "ipCidrRange": "10.0.0.0/24"});
        compute_call(&mut world, 200, "subnetworks.insert", &[("region", "europe-west1")], subnetwork);
        let mut cluster = lab();
        cluster["cluster"]["network"] = json!("lab");
        cluster["cluster"]["subnetwork"] = json!("lab-eu");
        let mut refused = cluster.clone();
        refused["cluster"]["network"] = json!("projects/p/global/networks/other");
        let refused = call(&mut world, 400, "clusters.create", &[], refused).unwrap_err();
        assert_eq!(refused.message(), "Network \"projects/p/global/networks/other\" does not exist.");
        call(&mut world, 400, "clusters.create", &[], cluster).unwrap();
        let made = get(&mut world, 600).unwrap();
        assert_eq!((&made["network"], &made["subnetwork"]), (&json!("lab"), &json!("lab-eu")));
        assert_eq!(made["networkConfig"]["subnetwork"], "projects/p/regions/europe-west1/subnetworks/lab-eu");

        let subnetwork = [("region", "europe-west1"), ("subnetwork", "lab-eu")];
        let delete = compute_call(&mut world, 600, "subnetworks.delete", &subnetwork, json!({}));
        let failed = compute_call(
            &mut world,
            800,
            "regionOperations.get",
            &[("region", "europe-west1"), ("operation", delete["name"].as_str().unwrap())],
            json!({}),
        );
        assert_eq!(failed["error"]["errors"][0]["message"], "The subnetwork resource 'projects/p/regions/europe-west1/subnetworks/lab-eu' is already being used by 'projects/p/locations/europe-west1-b/clusters/lab'");

        let vm = json!({"name": "vm", "machineType": "zones/europe-west1-b/machineTypes/e2-small",
            "disks": [{"boot": true, "initializeParams": {"sourceImage": "projects/debian-cloud/global/images/family/debian-12"}}],
            "networkInterfaces": [{"subnetwork": "regions/europe-west1/subnetworks/lab-eu", "accessConfigs": [{}]}]});
        compute_call(&mut world, 800, "instances.insert", &[("zone", ZONE)], vm);
        let vm =
            compute_call(&mut world, 1000, "instances.get", &[("zone", ZONE), ("instance", "vm")], json!({}));
        assert_eq!(
            (&made["endpoint"], &vm["networkInterfaces"][0]["accessConfigs"][0]["natIP"]),
            (&json!("203.0.113.1"), &json!("203.0.113.2"))
        );

        call(&mut world, 1000, "clusters.delete", &[], json!({})).unwrap();
        compute_call(&mut world, 1200, "instances.delete", &[("zone", ZONE), ("instance", "vm")], json!({}));
        let delete = compute_call(&mut world, 1400, "subnetworks.delete", &subnetwork, json!({}));
        let done = compute_call(
            &mut world,
            1600,
            "regionOperations.get",
            &[("region", "europe-west1"), ("operation", delete["name"].as_str().unwrap())],
            json!({}),
        );
        assert_eq!((&done["status"], done.get("error")), (&json!("DONE"), None));
    }

    #[test]
    fn more_gpus_than_the_quota_fail_their_operation() {
        let mut world = world();
        let mut greedy = lab();
        greedy["cluster"]["nodePools"][1]["initialNodeCount"] = json!(3);
        greedy["cluster"]["nodePools"][1]["config"]["accelerators"][0]["acceleratorCount"] = json!(4);
        let operation = call(&mut world, 0, "clusters.create", &[], greedy).unwrap();
        let failed = poll(&mut world, 200, &operation);
        assert_eq!(
            failed["error"],
            json!({"code": 8, "message": "Insufficient quota to satisfy the request: Quota 'NVIDIA_T4_GPUS' exceeded.  Limit: 8.0 in region europe-west1."})
        );
        let broken = get(&mut world, 200).unwrap();
        assert_eq!(
            (&broken["status"], pool_status(&broken, "gpu"), &broken["currentNodeCount"]),
            (&json!("ERROR"), "ERROR", &json!(0))
        );
        call(&mut world, 200, "clusters.delete", &[], json!({})).unwrap();

        call(&mut world, 400, "clusters.create", &[], lab()).unwrap();
        let gpu = [("nodePoolsId", "gpu")];
        call(&mut world, 600, "clusters.nodePools.setSize", &gpu, json!({"nodeCount": 8})).unwrap();
        assert_eq!(get(&mut world, 800).unwrap()["currentNodeCount"], 10);
        let operation =
            call(&mut world, 800, "clusters.nodePools.setSize", &gpu, json!({"nodeCount": 9})).unwrap();
        assert_eq!(poll(&mut world, 1000, &operation)["error"]["code"], 8);
        let unchanged = get(&mut world, 1000).unwrap();
        assert_eq!((pool_status(&unchanged, "gpu"), &unchanged["currentNodeCount"]), ("RUNNING", &json!(10)));
    }

    #[test]
    fn versions_go_up_masters_first() {
        let mut world = world();
        let mut old = lab();
        old["cluster"]["initialClusterVersion"] = json!("1.30");
        call(&mut world, 0, "clusters.create", &[], old).unwrap();
        assert_eq!(get(&mut world, 200).unwrap()["currentMasterVersion"], "1.30.10-gke.1070000");
        let update = |field: &str, version: &str, pool: Option<&str>| {
            let mut update = json!({ "update": {} });
            update["update"][field] = json!(version);
            if let Some(pool) = pool {
                update["update"]["desiredNodePoolId"] = json!(pool);
            }
            update
        };
        let ahead = call(
            &mut world,
            200,
            "clusters.update",
            &[],
            update("desiredNodeVersion", "1.31.6-gke.1020000", Some("cpu")),
        );
        assert_eq!(
            ahead.unwrap_err().message(),
            "Node version \"1.31.6-gke.1020000\" must not be newer than the master version \"1.30.10-gke.1070000\"."
        );
        let operation =
            call(&mut world, 200, "clusters.update", &[], update("desiredMasterVersion", "1.31", None))
                .unwrap();
        assert_eq!(operation["operationType"], "UPGRADE_MASTER");
        assert_eq!(get(&mut world, 250).unwrap()["status"], "RECONCILING");
        let upgraded = get(&mut world, 400).unwrap();
        assert_eq!(
            (&upgraded["currentMasterVersion"], &upgraded["currentNodeVersion"]),
            (&json!(DEFAULT_VERSION), &json!("1.30.10-gke.1070000"))
        );
        let down =
            call(&mut world, 400, "clusters.update", &[], update("desiredMasterVersion", "1.30", None));
        assert!(down.unwrap_err().message().starts_with("Master cannot be downgraded"));
        let which = call(&mut world, 400, "clusters.update", &[], update("desiredNodeVersion", "-", None));
        assert!(which.unwrap_err().message().contains("desired_node_pool_id"));
        let operation =
            call(&mut world, 400, "clusters.update", &[], update("desiredNodeVersion", "-", Some("cpu")))
                .unwrap();
        assert_eq!(operation["operationType"], "UPGRADE_NODES");
        assert_eq!(pool_status(&get(&mut world, 450).unwrap(), "cpu"), "RECONCILING");
        let operation = call(
            &mut world,
            600,
            "clusters.nodePools.update",
            &[("nodePoolsId", "gpu")],
            json!({"nodeVersion": "1.31.6"}),
        )
        .unwrap();
        assert_eq!(operation["operationType"], "UPGRADE_NODES");
        let current = get(&mut world, 800).unwrap();
        let versions: Vec<&Value> =
            current["nodePools"].as_array().unwrap().iter().map(|p| &p["version"]).collect();
        assert_eq!(versions, [&json!(DEFAULT_VERSION); 2]);
        assert_eq!(current["currentNodeVersion"], DEFAULT_VERSION);
    }
}
