//! Compute Engine v1 over REST (`compute.googleapis.com/compute/v1`): the custom-mode VPC
//! networks, subnetworks, firewalls and VM instances of labctl's labs. Every change is an
//! operation that goes PENDING → RUNNING → DONE (see operation.rs) and takes effect when DONE
//! (a name is taken at once); an effect that cannot happen then (deleting a network something
//! still uses, a GKE cluster included) fails the operation, as Google's does. Pure state and
//! answers: rest.rs authenticates, routes by the discovery document and checks every body
//! against it.

mod filter;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::operation::{done_at, running_at, Phase};
use crate::rest::{rfc3339, Call};
use crate::world::{Fault, World};
use filter::Filter;

/// What links to resources start with, as Google writes them.
const BASE: &str = "https://www.googleapis.com/compute/v1/";

/// Where ephemeral external addresses come from: TEST-NET-3, never routed.
const EXTERNAL: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 0);

/// The paths of networks and subnetworks, as [`reference`] takes them.
pub const NETWORK: [&str; 3] = ["global", "networks", "*"];
pub const SUBNETWORK: [&str; 4] = ["regions", "*", "subnetworks", "*"];

/// The project's Compute Engine resources and operations.
#[derive(Default)]
pub struct Compute {
    /// Each resource as `get` answers it, by its path in the project (`global/networks/n`,
    /// `regions/r/subnetworks/s`, `zones/z/instances/i`).
    resources: BTreeMap<String, Value>,
    /// Oldest first.
    operations: Vec<Operation>,
}

/// A change, under way or done.
struct Operation {
    /// Its fixed fields: `id`, `name`, `operationType`, `targetLink`, …
    json: Value,
    /// Where it lives: `global`, `regions/R` or `zones/Z`.
    scope: String,
    inserted: SystemTime,
    /// What it does once DONE; taken then.
    effect: Option<Effect>,
    /// Why it failed, if it did.
    error: Option<Fault>,
}

/// What an operation does to the resource at a path.
enum Effect {
    Insert(String, Value),
    Delete(String),
    /// Sets top-level fields.
    Update(String, Map<String, Value>),
}

impl Effect {
    fn path(&self) -> &str {
        match self {
            Self::Insert(path, _) | Self::Delete(path) | Self::Update(path, _) => path,
        }
    }
}

/// What a collection holds.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Network,
    Subnetwork,
    Firewall,
    Instance,
}

impl Kind {
    /// The kind of a collection (`networks`, …).
    fn of(collection: &str) -> Option<Self> {
        [Self::Network, Self::Subnetwork, Self::Firewall, Self::Instance]
            .into_iter()
            .find(|k| collection.strip_suffix('s') == Some(k.name()))
    }

    /// Its name in paths (plural), path parameters and `kind` fields: `network`, …
    fn name(self) -> &'static str {
        match self {
            Self::Network => "network",
            Self::Subnetwork => "subnetwork",
            Self::Firewall => "firewall",
            Self::Instance => "instance",
        }
    }
}

/// Answers `call` as the project stands `now`.
pub fn answer(world: &mut World, call: &Call, now: SystemTime) -> Result<Value, Fault> {
    let param = |name: &str| call.params.get(name).map(String::as_str).unwrap_or_default();
    let project = param("project");
    if project != world.project {
        return Err(Fault::NotFound(format!("The resource 'projects/{project}' was not found")));
    }
    world.settle(now);
    let scope = scope(call.params, project)?;
    let (collection, action) =
        call.method.strip_prefix("compute.").and_then(|m| m.split_once('.')).unwrap_or_default();
    let unserved = || Fault::NotFound(format!("the emulator does not serve {}", call.method));
    if collection.ends_with("Operations") {
        return match action {
            "get" | "wait" => world.compute.operation(project, &scope, param("operation"), now),
            _ => Err(unserved()),
        };
    }
    let kind = Kind::of(collection).ok_or_else(unserved)?;
    let Some(name) = call.params.get(kind.name()) else {
        return match action {
            "list" => list(&world.compute, project, kind, &scope, call.query),
            "insert" => insert(world, project, kind, &scope, call.body, now),
            _ => Err(unserved()),
        };
    };
    let path = format!("{scope}/{collection}/{name}");
    let update =
        |fields: Map<String, Value>| -> Result<Effect, Fault> { Ok(Effect::Update(path.clone(), fields)) };
    match (kind, action) {
        (_, "get") => world.compute.resource(project, &path).map(|r| world.compute.render(&path, r)),
        (_, "delete") => change(world, project, &path, action, now, |_, _| Ok(Effect::Delete(path.clone()))),
        (Kind::Firewall, "patch") => change(world, project, &path, action, now, |compute, current| {
            if call.body.get("name").is_some_and(|n| *n != current["name"]) {
                return Err(invalid("name", &call.body["name"].to_string(), "A firewall cannot be renamed."));
            }
            let mut patched = current.as_object().cloned().unwrap_or_default();
            patched.extend(call.body.as_object().cloned().unwrap_or_default());
            update(firewall(compute, project, patched)?)
        }),
        (Kind::Instance, "stop" | "start") => {
            let (status, stamp) = match action {
                "stop" => ("TERMINATED", "lastStopTimestamp"),
                _ => ("RUNNING", "lastStartTimestamp"),
            };
            let fields = Map::from_iter([
                ("status".to_owned(), json!(status)),
                (stamp.to_owned(), json!(rfc3339(done_at(now)))),
            ]);
            change(world, project, &path, action, now, |_, _| update(fields))
        }
        (Kind::Instance, "setLabels") => change(world, project, &path, action, now, |_, vm| {
            if call.body["labelFingerprint"] != vm["labelFingerprint"] {
                return Err(Fault::FailedPrecondition(
                    "Labels fingerprint either invalid or resource labels have changed".into(),
                ));
            }
            let labels = call.body.get("labels").cloned().unwrap_or_else(|| json!({}));
            check_labels(&labels)?;
            let fingerprint = fingerprint(&labels);
            update(Map::from_iter([
                ("labels".to_owned(), labels),
                ("labelFingerprint".to_owned(), json!(fingerprint)),
            ]))
        }),
        (Kind::Instance, "setMetadata") => change(world, project, &path, action, now, |_, vm| {
            if call.body["fingerprint"] != vm["metadata"]["fingerprint"] {
                return Err(Fault::FailedPrecondition(
                    "Supplied fingerprint does not match current metadata fingerprint.".into(),
                ));
            }
            update(Map::from_iter([("metadata".to_owned(), metadata(&call.body["items"])?)]))
        }),
        _ => Err(unserved()),
    }
}

/// How long a `wait` on an operation waits before answering: until the operation is DONE
/// (Google waits up to two minutes; these take two steps). Other calls do not wait.
pub fn wait_time(world: &World, call: &Call, now: SystemTime) -> Duration {
    let name = call.params.get("operation").map(String::as_str);
    let operation = world.compute.operations.iter().find(|o| o.json["name"].as_str() == name);
    match operation {
        Some(o) if call.method.ends_with("Operations.wait") => {
            done_at(o.inserted).duration_since(now).unwrap_or_default()
        }
        _ => Duration::ZERO,
    }
}

impl Compute {
    /// Applies the effect of every operation DONE by `now`, oldest first. `outside` are
    /// the users of the project's resources outside Compute Engine (GKE clusters): the
    /// user's path and the path it uses.
    pub fn settle(&mut self, project: &str, now: SystemTime, outside: &[(String, String)]) {
        for i in 0..self.operations.len() {
            if Phase::at(self.operations[i].inserted, now) != Phase::Done {
                continue;
            }
            if let Some(effect) = self.operations[i].effect.take() {
                self.operations[i].error = self.apply(project, effect, outside).err();
            }
        }
    }

    fn apply(&mut self, project: &str, effect: Effect, outside: &[(String, String)]) -> Result<(), Fault> {
        match effect {
            Effect::Insert(path, resource) => {
                if let Some(gone) =
                    uses(&resource).into_iter().find(|used| !self.resources.contains_key(used))
                {
                    return Err(not_found(project, &gone));
                }
                self.resources.insert(path, resource);
            }
            Effect::Delete(path) => {
                let user = self.resources.iter().find(|(_, r)| uses(r).contains(&path)).map(|(user, _)| user);
                let user =
                    user.or_else(|| outside.iter().find(|(_, used)| *used == path).map(|(user, _)| user));
                if let Some(user) = user {
                    let kind = path.rsplit('/').nth(1).and_then(|c| c.strip_suffix('s')).unwrap_or_default();
                    return Err(Fault::InUse(format!(
                        "The {kind} resource 'projects/{project}/{path}' is already being used by 'projects/{project}/{user}'"
                    )));
                }
                self.resources.remove(&path).ok_or_else(|| not_found(project, &path))?;
            }
            Effect::Update(path, fields) => {
                let resource = self.resources.get_mut(&path).and_then(Value::as_object_mut);
                resource.ok_or_else(|| not_found(project, &path))?.extend(fields);
            }
        }
        Ok(())
    }

    /// The effects not applied yet.
    fn pending(&self) -> impl Iterator<Item = &Effect> {
        self.operations.iter().filter_map(|o| o.effect.as_ref())
    }

    /// Every resource and every one being inserted, by path.
    fn everything(&self) -> impl Iterator<Item = (&str, &Value)> {
        let inserting = self.pending().filter_map(|e| match e {
            Effect::Insert(path, resource) => Some((path.as_str(), resource)),
            _ => None,
        });
        self.resources.iter().map(|(p, r)| (p.as_str(), r)).chain(inserting)
    }

    /// The resource at `path`: Google's 404 if there is none, "not ready" while it is being
    /// inserted.
    pub fn resource(&self, project: &str, path: &str) -> Result<&Value, Fault> {
        if let Some(resource) = self.resources.get(path) {
            return Ok(resource);
        }
        if self.pending().any(|e| matches!(e, Effect::Insert(p, _) if p == path)) {
            return Err(not_ready(project, path));
        }
        Err(not_found(project, path))
    }

    /// The resource at `path`, if no operation on it is under way.
    fn ready(&self, project: &str, path: &str) -> Result<&Value, Fault> {
        if self.pending().any(|e| e.path() == path) {
            return Err(not_ready(project, path));
        }
        self.resource(project, path)
    }

    /// A resource as `get` and `list` answer it: a network lists its subnetworks.
    fn render(&self, path: &str, resource: &Value) -> Value {
        let mut answer = resource.clone();
        if path.starts_with("global/networks/") {
            let subnetworks: Vec<&Value> = self
                .resources
                .iter()
                .filter(|(p, s)| p.contains("/subnetworks/") && s["network"] == resource["selfLink"])
                .map(|(_, s)| &s["selfLink"])
                .collect();
            if !subnetworks.is_empty() {
                answer["subnetworks"] = json!(subnetworks);
            }
        }
        answer
    }

    /// The operation `name` of `scope`, as it stands `now`.
    fn operation(&self, project: &str, scope: &str, name: &str, now: SystemTime) -> Result<Value, Fault> {
        let operation = self.operations.iter().find(|o| o.scope == scope && o.json["name"] == name);
        operation
            .map(|o| o.render(now))
            .ok_or_else(|| not_found(project, &format!("{scope}/operations/{name}")))
    }
}

impl Operation {
    /// As `get` answers it `now`.
    fn render(&self, now: SystemTime) -> Value {
        let phase = Phase::at(self.inserted, now);
        let mut json = self.json.clone();
        json["status"] = json!(phase.status());
        json["progress"] = json!(match phase {
            Phase::Pending => 0,
            Phase::Running => 50,
            Phase::Done => 100,
        });
        if phase != Phase::Pending {
            json["startTime"] = json!(rfc3339(running_at(self.inserted)));
        }
        if phase == Phase::Done {
            json["endTime"] = json!(rfc3339(done_at(self.inserted)));
            if let (Some(error), Some(fields)) = (&self.error, json.as_object_mut()) {
                fields.extend(error.operation_error().as_object().cloned().unwrap_or_default());
            }
        }
        json
    }
}

/// Starts an operation `operation_type` on the resource at `path`, which must exist with no
/// operation under way: what `effect` makes of the project and the resource. Its answer.
fn change(
    world: &mut World,
    project: &str,
    path: &str,
    operation_type: &str,
    now: SystemTime,
    effect: impl FnOnce(&Compute, &Value) -> Result<Effect, Fault>,
) -> Result<Value, Fault> {
    let resource = world.compute.ready(project, path)?;
    let target_id = resource["id"].as_str().unwrap_or_default().to_owned();
    let effect = effect(&world.compute, resource)?;
    Ok(start(world, project, operation_type, &target_id, effect, now))
}

/// A new operation doing `effect`, as it answers now (PENDING).
fn start(
    world: &mut World,
    project: &str,
    operation_type: &str,
    target_id: &str,
    effect: Effect,
    now: SystemTime,
) -> Value {
    let id = world.fresh_id();
    let millis = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    let name = format!("operation-{millis}-{id:x}");
    let path = effect.path();
    // `zones/z/instances/i` → `zones/z`.
    let scope = path.rsplitn(3, '/').nth(2).unwrap_or("global").to_owned();
    let mut json = json!({
        "kind": "compute#operation",
        "id": id.to_string(),
        "name": name,
        "operationType": operation_type,
        "targetLink": link(project, path),
        "targetId": target_id,
        "user": world.owner,
        "insertTime": rfc3339(now),
        "selfLink": link(project, &format!("{scope}/operations/{name}")),
    });
    if let Some((collection @ ("zones" | "regions"), _)) = scope.split_once('/') {
        json[collection.trim_end_matches('s')] = json!(link(project, &scope));
    }
    let operation = Operation { json, scope, inserted: now, effect: Some(effect), error: None };
    let answer = operation.render(now);
    world.compute.operations.push(operation);
    answer
}

/// `insert`: the resource `body` describes, once checked, its name taken at once.
fn insert(
    world: &mut World,
    project: &str,
    kind: Kind,
    scope: &str,
    body: &Value,
    now: SystemTime,
) -> Result<Value, Fault> {
    let name = body["name"].as_str().unwrap_or_default();
    check_name("name", name)?;
    let path = format!("{scope}/{}s/{name}", kind.name());
    if world.compute.everything().any(|(p, _)| p == path) {
        return Err(Fault::AlreadyExists(format!("The resource 'projects/{project}/{path}' already exists")));
    }
    let id = world.fresh_id().to_string();
    let mut resource = body.as_object().cloned().unwrap_or_default();
    resource.extend([
        ("kind".to_owned(), json!(format!("compute#{}", kind.name()))),
        ("id".to_owned(), json!(id)),
        ("creationTimestamp".to_owned(), json!(rfc3339(now))),
        ("selfLink".to_owned(), json!(link(project, &path))),
    ]);
    let resource = match kind {
        Kind::Network => network(resource)?,
        Kind::Subnetwork => subnetwork(&world.compute, project, scope, resource)?,
        Kind::Firewall => firewall(&world.compute, project, resource)?,
        Kind::Instance => instance(world, project, scope, resource, now)?,
    };
    Ok(start(world, project, "insert", &id, Effect::Insert(path, Value::Object(resource)), now))
}

/// A custom-mode VPC network, the only kind the emulator serves.
fn network(mut network: Map<String, Value>) -> Result<Map<String, Value>, Fault> {
    if network.get("autoCreateSubnetworks") != Some(&json!(false)) || network.contains_key("IPv4Range") {
        let auto = network.get("autoCreateSubnetworks").map(Value::to_string).unwrap_or_default();
        return Err(invalid(
            "autoCreateSubnetworks",
            &auto,
            "The emulator serves custom-mode networks only: set autoCreateSubnetworks to false.",
        ));
    }
    defaults(
        &mut network,
        [
            ("mtu", json!(1460)),
            ("routingConfig", json!({"routingMode": "REGIONAL"})),
            ("networkFirewallPolicyEnforcementOrder", json!("AFTER_CLASSIC_FIREWALL")),
        ],
    );
    Ok(network)
}

/// A subnetwork of `region` (`regions/R`): its range must not overlap another of its
/// network's.
fn subnetwork(
    compute: &Compute,
    project: &str,
    region: &str,
    mut subnetwork: Map<String, Value>,
) -> Result<Map<String, Value>, Fault> {
    let text = |field: &str| subnetwork.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
    let network = reference(project, "network", &text("network"), &NETWORK)?;
    compute.resource(project, &network)?;
    let range = text("ipCidrRange");
    let (base, length) = cidr(&range)
        .filter(|(base, length)| {
            range.contains('/') && (8..=29).contains(length) && base & !mask(*length) == 0
        })
        .ok_or_else(|| {
            invalid(
                "ipCidrRange",
                &range,
                "Must be an IPv4 CIDR range with a prefix length from 8 to 29 and no host bits set.",
            )
        })?;
    let network_link = link(project, &network);
    let siblings =
        compute.everything().filter(|(p, s)| p.contains("/subnetworks/") && s["network"] == network_link);
    for (path, sibling) in siblings {
        let Some((other, other_length)) = sibling["ipCidrRange"].as_str().and_then(cidr) else { continue };
        let shorter = mask(length.min(other_length));
        if base & shorter == other & shorter {
            let (name, region) = (sibling["name"].as_str().unwrap_or_default(), path.split('/').nth(1));
            return Err(Fault::Invalid(format!(
                "Invalid IPCidrRange: {range} conflicts with existing subnetwork '{name}' in region '{}'.",
                region.unwrap_or_default()
            )));
        }
    }
    let fingerprint = fingerprint(&json!([&network_link, &range]));
    subnetwork.extend([
        ("network".to_owned(), json!(network_link)),
        ("region".to_owned(), json!(link(project, region))),
        ("gatewayAddress".to_owned(), json!(Ipv4Addr::from(base + 1).to_string())),
        ("fingerprint".to_owned(), json!(fingerprint)),
    ]);
    defaults(
        &mut subnetwork,
        [
            ("stackType", json!("IPV4_ONLY")),
            ("purpose", json!("PRIVATE")),
            ("privateIpGoogleAccess", json!(false)),
        ],
    );
    Ok(subnetwork)
}

/// A firewall rule of an existing network: exactly one of `allowed` and `denied`, valid
/// ranges, Google's defaults (ingress from anywhere, priority 1000).
fn firewall(
    compute: &Compute,
    project: &str,
    mut firewall: Map<String, Value>,
) -> Result<Map<String, Value>, Fault> {
    let network = firewall.get("network").and_then(Value::as_str).unwrap_or("global/networks/default");
    let network = reference(project, "network", network, &NETWORK)?;
    compute.resource(project, &network)?;
    let rules: Vec<&str> = ["allowed", "denied"]
        .into_iter()
        .filter(|k| firewall.get(*k).and_then(Value::as_array).is_some_and(|a| !a.is_empty()))
        .collect();
    let [rules] = rules.as_slice() else {
        return Err(invalid("allowed", "", "Exactly one of allowed or denied must be specified."));
    };
    for (i, rule) in firewall.get(*rules).and_then(Value::as_array).into_iter().flatten().enumerate() {
        if rule["IPProtocol"].as_str().is_none_or(str::is_empty) {
            return Err(invalid(
                &format!("{rules}[{i}].IPProtocol"),
                "",
                "The IP protocol must be specified.",
            ));
        }
    }
    for field in ["sourceRanges", "destinationRanges"] {
        for (i, range) in firewall.get(field).and_then(Value::as_array).into_iter().flatten().enumerate() {
            if range.as_str().and_then(cidr).is_none() {
                return Err(invalid(
                    &format!("{field}[{i}]"),
                    &range.to_string(),
                    "Must be an IPv4 CIDR range.",
                ));
            }
        }
    }
    let egress = firewall.get("direction").is_some_and(|d| d == "EGRESS");
    let sources = ["sourceRanges", "sourceTags", "sourceServiceAccounts"];
    if !egress && !sources.iter().any(|s| firewall.contains_key(*s)) {
        firewall.insert("sourceRanges".into(), json!(["0.0.0.0/0"]));
    }
    if egress && !firewall.contains_key("destinationRanges") {
        firewall.insert("destinationRanges".into(), json!(["0.0.0.0/0"]));
    }
    firewall.insert("network".into(), json!(link(project, &network)));
    defaults(
        &mut firewall,
        [
            ("direction", json!("INGRESS")),
            ("priority", json!(1000)),
            ("disabled", json!(false)),
            ("logConfig", json!({"enable": false})),
        ],
    );
    Ok(firewall)
}

/// A VM of `zone` (`zones/Z`), RUNNING once inserted: a boot disk made from an image, each
/// network interface in an existing subnetwork of the zone's region with an address of its
/// range, and one from 203.0.113.0/24 when it asks for external access.
fn instance(
    world: &World,
    project: &str,
    zone: &str,
    mut vm: Map<String, Value>,
    now: SystemTime,
) -> Result<Map<String, Value>, Fault> {
    let zone_name = zone.trim_start_matches("zones/");
    let machine_type = vm.get("machineType").and_then(Value::as_str).unwrap_or_default();
    let machine_type =
        reference(project, "machineType", machine_type, &["zones", zone_name, "machineTypes", "*"])?;
    let array = |field: &str| vm.get(field).and_then(Value::as_array).cloned().unwrap_or_default();
    let name = vm.get("name").and_then(Value::as_str).unwrap_or_default();
    let disks = disks(project, zone, name, &array("disks"))?;
    let nics =
        interfaces(&world.compute, project, zone_name, &array("networkInterfaces"), addresses_in_use(world))?;
    let accounts = service_accounts(world, array("serviceAccounts"))?;
    let metadata = metadata(&vm.get("metadata").map_or(Value::Null, |m| m["items"].clone()))?;
    let labels = vm.get("labels").cloned().unwrap_or_else(|| json!({}));
    check_labels(&labels)?;
    let tags =
        vm.get("tags").map(|t| t["items"].clone()).filter(Value::is_array).unwrap_or_else(|| json!([]));
    for (i, tag) in tags.as_array().into_iter().flatten().enumerate() {
        check_name(&format!("tags.items[{i}]"), tag.as_str().unwrap_or_default())?;
    }
    vm.extend([
        ("status".to_owned(), json!("RUNNING")),
        ("zone".to_owned(), json!(link(project, zone))),
        ("machineType".to_owned(), json!(link(project, &machine_type))),
        ("disks".to_owned(), json!(disks)),
        ("networkInterfaces".to_owned(), json!(nics)),
        ("serviceAccounts".to_owned(), json!(accounts)),
        ("metadata".to_owned(), metadata),
        ("labelFingerprint".to_owned(), json!(fingerprint(&labels))),
        ("tags".to_owned(), json!({"items": tags, "fingerprint": fingerprint(&tags)})),
        ("lastStartTimestamp".to_owned(), json!(rfc3339(done_at(now)))),
    ]);
    defaults(&mut vm, [("canIpForward", json!(false)), ("deletionProtection", json!(false))]);
    Ok(vm)
}

/// The disks of the VM `vm` of `zone` as Google lists them: the first its boot disk made from
/// an image, every one new (`initializeParams`).
fn disks(project: &str, zone: &str, vm: &str, disks: &[Value]) -> Result<Vec<Value>, Fault> {
    if disks.first().is_none_or(|d| d["boot"] != true) || disks.iter().skip(1).any(|d| d["boot"] == true) {
        return Err(invalid("disks", "", "Boot disk must be the first disk attached to the instance."));
    }
    let mut attached = vec![];
    for (i, disk) in disks.iter().enumerate() {
        let init = &disk["initializeParams"];
        if init.is_null() || (i == 0 && init["sourceImage"].as_str().is_none_or(str::is_empty)) {
            return Err(invalid(
                &format!("disks[{i}].initializeParams"),
                "",
                "The emulator attaches new disks only: a boot disk needs initializeParams.sourceImage.",
            ));
        }
        let name = match init["diskName"].as_str() {
            Some(n) => n.to_owned(),
            None if i == 0 => vm.to_owned(),
            None => format!("{vm}-{i}"),
        };
        attached.push(json!({
            "kind": "compute#attachedDisk",
            "type": disk["type"].as_str().unwrap_or("PERSISTENT"),
            "mode": disk["mode"].as_str().unwrap_or("READ_WRITE"),
            "source": link(project, &format!("{zone}/disks/{name}")),
            "deviceName": disk["deviceName"].as_str().unwrap_or(&name),
            "index": i,
            "boot": i == 0,
            "autoDelete": disk["autoDelete"].as_bool().unwrap_or(false),
            "interface": disk["interface"].as_str().unwrap_or("SCSI"),
            "diskSizeGb": init["diskSizeGb"].as_str().unwrap_or("10"),
        }));
    }
    Ok(attached)
}

/// Every address in use, internal and external: VMs' (those being made too) and GKE
/// clusters' endpoints.
pub fn addresses_in_use(world: &World) -> BTreeSet<String> {
    let mut taken: BTreeSet<String> = world.container.endpoints().map(str::to_owned).collect();
    for (_, vm) in world.compute.everything().filter(|(p, _)| p.contains("/instances/")) {
        for nic in vm["networkInterfaces"].as_array().into_iter().flatten() {
            taken.extend(nic["networkIP"].as_str().map(str::to_owned));
            let configs = nic["accessConfigs"].as_array().into_iter().flatten();
            taken.extend(configs.filter_map(|c| c["natIP"].as_str().map(str::to_owned)));
        }
    }
    taken
}

/// Takes the first address of `hosts` not `taken`.
fn take(taken: &mut BTreeSet<String>, hosts: std::ops::RangeInclusive<u32>) -> Option<String> {
    let ip = hosts.map(|h| Ipv4Addr::from(h).to_string()).find(|ip| !taken.contains(ip))?;
    taken.insert(ip.clone());
    Some(ip)
}

/// Takes the first external address (203.0.113.1 to .254) not `taken`.
pub fn take_external(taken: &mut BTreeSet<String>) -> Option<String> {
    let base = u32::from(EXTERNAL);
    take(taken, base + 1..=base + 254)
}

/// The network interfaces of a VM of the zone `zone` as Google lists them: each in an
/// existing subnetwork of the zone's region, with the next free address of its range and,
/// for a ONE_TO_ONE_NAT access config, the next free one of 203.0.113.0/24; `taken` the
/// addresses in use.
fn interfaces(
    compute: &Compute,
    project: &str,
    zone: &str,
    interfaces: &[Value],
    mut taken: BTreeSet<String>,
) -> Result<Vec<Value>, Fault> {
    if interfaces.is_empty() {
        return Err(invalid("networkInterfaces", "", "At least one network interface is required."));
    }
    let region = region_of(zone).unwrap_or(zone);
    let mut nics = vec![];
    for (i, nic) in interfaces.iter().enumerate() {
        let field = |f: &str| format!("networkInterfaces[{i}]{f}");
        let Some(subnetwork_text) = nic["subnetwork"].as_str() else {
            let why = "Subnetwork should be specified for custom subnetmode network";
            return Err(invalid(&field(""), "", why));
        };
        let subnetwork = reference(project, &field(".subnetwork"), subnetwork_text, &SUBNETWORK)?;
        let subnet = compute.resource(project, &subnetwork)?;
        if subnetwork.split('/').nth(1) != Some(region) {
            let why = format!("The subnetwork must be in the instance's region {region}.");
            return Err(invalid(&field(".subnetwork"), subnetwork_text, &why));
        }
        if let Some(network) = nic["network"].as_str() {
            let network_link = link(project, &reference(project, &field(".network"), network, &NETWORK)?);
            if network_link != subnet["network"] {
                return Err(invalid(&field(".network"), network, "The subnetwork is not in this network."));
            }
        }
        if nic.get("networkIP").is_some() {
            return Err(invalid(&field(".networkIP"), "", "The emulator assigns internal addresses itself."));
        }
        let (base, length) = subnet["ipCidrRange"].as_str().and_then(cidr).unwrap_or_default();
        // Google keeps a range's first two and last two addresses.
        let internal = take(&mut taken, base + 2..=(base | !mask(length)) - 2)
            .ok_or_else(|| Fault::Invalid(format!("IP space of '{subnetwork_text}' is exhausted.")))?;
        let configs = nic["accessConfigs"].as_array().cloned().unwrap_or_default();
        if configs.len() > 1 {
            let why = "At most one access config currently supported.";
            return Err(invalid(&field(".accessConfigs"), "", why));
        }
        let mut out = json!({
            "kind": "compute#networkInterface",
            "name": format!("nic{i}"),
            "network": subnet["network"],
            "subnetwork": link(project, &subnetwork),
            "networkIP": internal,
            "stackType": "IPV4_ONLY",
            "fingerprint": fingerprint(&json!([&subnetwork, &internal])),
        });
        if let Some(config) = configs.first() {
            let kind = config["type"].as_str().unwrap_or("ONE_TO_ONE_NAT");
            if kind != "ONE_TO_ONE_NAT" || config.get("natIP").is_some() {
                let why = "The emulator serves ONE_TO_ONE_NAT access with an ephemeral address only.";
                return Err(invalid(&field(".accessConfigs[0]"), "", why));
            }
            let external = take_external(&mut taken).ok_or_else(|| {
                Fault::Invalid("The emulator's 203.0.113.0/24 addresses are all in use.".into())
            })?;
            out["accessConfigs"] = json!([{
                "kind": "compute#accessConfig",
                "type": kind,
                "name": config["name"].as_str().unwrap_or("External NAT"),
                "natIP": external,
                "networkTier": config["networkTier"].as_str().unwrap_or("PREMIUM"),
            }]);
        }
        nics.push(out);
    }
    Ok(nics)
}

/// A VM's service accounts: the project's default one (`default`) or accounts of the
/// project.
fn service_accounts(world: &World, mut accounts: Vec<Value>) -> Result<Vec<Value>, Fault> {
    let default_account = format!("{}-compute@developer.gserviceaccount.com", world.project_number);
    for (i, account) in accounts.iter_mut().enumerate() {
        let email = match account["email"].as_str().unwrap_or_default() {
            "default" => default_account.clone(),
            email if email == default_account || world.accounts.contains_key(email) => email.to_owned(),
            email => {
                let field = format!("serviceAccounts[{i}].email");
                return Err(invalid(&field, email, "The service account does not exist."));
            }
        };
        account["email"] = json!(email);
    }
    Ok(accounts)
}

/// An instance's metadata of `items` (`[{key, value}]`), its fingerprint that of its items.
fn metadata(items: &Value) -> Result<Value, Fault> {
    let items = if items.is_null() { json!([]) } else { items.clone() };
    let mut keys = BTreeSet::new();
    for (i, item) in items.as_array().into_iter().flatten().enumerate() {
        let key = item["key"].as_str().unwrap_or_default();
        let valid = (1..=128).contains(&key.len())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(invalid(
                &format!("metadata.items[{i}].key"),
                key,
                "Must be a match of regex '[a-zA-Z0-9-_]{1,128}'",
            ));
        }
        if !keys.insert(key) {
            return Err(invalid("metadata", key, "Duplicate keys in metadata."));
        }
    }
    Ok(json!({"kind": "compute#metadata", "fingerprint": fingerprint(&items), "items": items}))
}

/// Refuses labels Compute Engine refuses.
fn check_labels(labels: &Value) -> Result<(), Fault> {
    let fits = |s: &str| {
        s.chars().count() <= 63
            && s.chars().all(|c| c.is_lowercase() || c.is_numeric() || c == '_' || c == '-')
    };
    for (key, value) in labels.as_object().into_iter().flatten() {
        if !key.starts_with(char::is_lowercase) || !fits(key) {
            return Err(invalid("labels", "", &format!("Label key '{key}' violates format constraints. The key must start with a lowercase character, can only contain lowercase letters, numeric characters, underscores and dashes. The key can be at most 63 characters long. International characters are allowed.")));
        }
        let value = value.as_str().unwrap_or_default();
        if !fits(value) {
            return Err(invalid("labels", "", &format!("Label value '{value}' violates format constraints. The value can only contain lowercase letters, numeric characters, underscores and dashes. The value can be at most 63 characters long. International characters are allowed.")));
        }
    }
    Ok(())
}

/// Refuses a resource name (or network tag) Compute Engine refuses.
fn check_name(field: &str, name: &str) -> Result<(), Fault> {
    let valid = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(invalid(field, name, "Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'"))
    }
}

/// `list`: a page of the resources of `kind` in `scope` that pass the filter, by name.
fn list(
    compute: &Compute,
    project: &str,
    kind: Kind,
    scope: &str,
    query: &BTreeMap<String, String>,
) -> Result<Value, Fault> {
    let filter = Filter::parse(query.get("filter").map_or("", String::as_str))?;
    if let Some(order) = query.get("orderBy").filter(|o| *o != "name") {
        return Err(Fault::Invalid(format!(
            "Invalid value for orderBy: '{order}'. The emulator orders by name only."
        )));
    }
    let max = match query.get("maxResults") {
        None => 500,
        Some(m) => match m.parse::<usize>() {
            Ok(0) => 500,
            Ok(m) if m <= 500 => m,
            _ => {
                return Err(Fault::Invalid(format!(
                    "Invalid value for maxResults: '{m}'. Must be from 0 to 500."
                )))
            }
        },
    };
    let start = match query.get("pageToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t.parse().map_err(|_| Fault::Invalid(format!("Invalid value for pageToken: '{t}'.")))?,
    };
    let collection = format!("{scope}/{}s", kind.name());
    let prefix = format!("{collection}/");
    let passing: Vec<Value> = compute
        .resources
        .iter()
        .filter(|(path, _)| path.starts_with(&prefix))
        .map(|(path, resource)| compute.render(path, resource))
        .filter(|resource| filter.matches(resource))
        .collect();
    let mut answer = json!({
        "kind": format!("compute#{}List", kind.name()),
        "id": format!("projects/{project}/{collection}"),
        "selfLink": link(project, &collection),
    });
    let page: Vec<&Value> = passing.iter().skip(start).take(max).collect();
    if !page.is_empty() {
        answer["items"] = json!(page);
    }
    if start + max < passing.len() {
        answer["nextPageToken"] = json!((start + max).to_string());
    }
    Ok(answer)
}

/// The scope the path parameters name: `zones/Z`, `regions/R` or `global`. A zone or
/// region not named as Google names them (`europe-west1`, `europe-west1-b`) is not found.
fn scope(params: &BTreeMap<String, String>, project: &str) -> Result<String, Fault> {
    let (scope, valid) = match (params.get("zone"), params.get("region")) {
        (Some(zone), _) => (format!("zones/{zone}"), region_of(zone).is_some()),
        (None, Some(region)) => (format!("regions/{region}"), is_region(region)),
        (None, None) => ("global".to_owned(), true),
    };
    if valid {
        Ok(scope)
    } else {
        Err(not_found(project, &scope))
    }
}

/// Whether `name` is a region's name as Google names them (`europe-west1`).
pub fn is_region(name: &str) -> bool {
    name.split_once('-').is_some_and(|(area, place)| {
        let digits = place.trim_start_matches(|c: char| c.is_ascii_lowercase());
        !area.is_empty()
            && area.chars().all(|c| c.is_ascii_lowercase())
            && digits.len() < place.len()
            && !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit())
    })
}

/// The region of `zone` if it is a zone's name as Google names them (`europe-west1-b`).
pub fn region_of(zone: &str) -> Option<&str> {
    let (region, letter) = zone.rsplit_once('-')?;
    let valid = is_region(region) && letter.len() == 1 && letter.chars().all(|c| c.is_ascii_lowercase());
    valid.then_some(region)
}

/// The path in the project of what `text` links to (a full URL, `projects/P/…`, or the
/// path itself), which must be of `shape` (`*` any one segment).
pub fn reference(project: &str, field: &str, text: &str, shape: &[&str]) -> Result<String, Fault> {
    let partial = match text.split_once("/compute/v1/") {
        Some((host, partial)) if host.starts_with("https://") || host.starts_with("http://") => partial,
        _ => text,
    };
    let path = match partial.strip_prefix("projects/") {
        Some(rest) => match rest.split_once('/') {
            Some((p, path)) if p == project => path,
            _ => return Err(Fault::NotFound(format!("The resource '{partial}' was not found"))),
        },
        None => partial,
    };
    let segments: Vec<&str> = path.split('/').collect();
    let fits = segments.len() == shape.len()
        && segments.iter().zip(shape).all(|(s, want)| !s.is_empty() && (*want == "*" || s == want));
    if fits {
        Ok(path.to_owned())
    } else {
        Err(invalid(field, text, "Must be a URL to a valid Compute resource of the correct type."))
    }
}

/// The paths of the resources `resource` uses: its network, its interfaces' networks and
/// subnetworks.
fn uses(resource: &Value) -> Vec<String> {
    let nics = resource["networkInterfaces"].as_array().into_iter().flatten();
    let links = std::iter::once(&resource["network"])
        .chain(nics.flat_map(|nic| [&nic["network"], &nic["subnetwork"]]))
        .filter_map(Value::as_str);
    let path = |link: &str| {
        link.strip_prefix(BASE)?.strip_prefix("projects/")?.split_once('/').map(|(_, p)| p.to_owned())
    };
    links.filter_map(path).collect()
}

/// The URL of the resource at `path` of `project`.
fn link(project: &str, path: &str) -> String {
    format!("{BASE}projects/{project}/{path}")
}

/// `a.b.c.d/n` (a bare address is a /32): the address and the prefix length.
fn cidr(text: &str) -> Option<(u32, u32)> {
    let (address, length) = text.split_once('/').unwrap_or((text, "32"));
    let length = length.parse().ok().filter(|l| *l <= 32)?;
    Some((u32::from(address.parse::<Ipv4Addr>().ok()?), length))
}

/// The network mask of a prefix length.
fn mask(length: u32) -> u32 {
    u32::MAX.checked_shl(32 - length).unwrap_or(0)
}

/// A fingerprint of `value`, as Google's: eight bytes, URL-safe base64.
fn fingerprint(value: &Value) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.to_string().as_bytes());
    URL_SAFE.encode(&digest.as_ref()[..8])
}

/// Sets the fields `resource` lacks.
fn defaults<const N: usize>(resource: &mut Map<String, Value>, fields: [(&str, Value); N]) {
    for (field, value) in fields {
        resource.entry(field).or_insert(value);
    }
}

fn invalid(field: &str, value: &str, why: &str) -> Fault {
    Fault::Invalid(format!("Invalid value for field 'resource.{field}': '{value}'. {why}"))
}

fn not_found(project: &str, path: &str) -> Fault {
    Fault::NotFound(format!("The resource 'projects/{project}/{path}' was not found"))
}

fn not_ready(project: &str, path: &str) -> Fault {
    Fault::NotReady(format!("The resource 'projects/{project}/{path}' is not ready"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;
    use crate::operation::STEP;

    const P: &str = "p";

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

    /// Calls `method` with path parameters `params` (and `project`), `query` and `body`.
    fn call(
        world: &mut World,
        ms: u64,
        method: &str,
        params: &[(&str, &str)],
        body: Value,
    ) -> Result<Value, Fault> {
        call_with(world, ms, method, params, &[], body)
    }

    fn call_with(
        world: &mut World,
        ms: u64,
        method: &str,
        params: &[(&str, &str)],
        query: &[(&str, &str)],
        body: Value,
    ) -> Result<Value, Fault> {
        let own =
            |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut params: BTreeMap<String, String> = own(params);
        params.insert("project".into(), P.into());
        let call = Call { method, params: &params, query: &own(query), body: &body };
        answer(world, &call, at(ms))
    }

    /// The operation `operation` as it stands at `ms`.
    fn poll(world: &mut World, ms: u64, operation: &Value) -> Value {
        let scope = operation["selfLink"].as_str().unwrap().split("/projects/p/").nth(1).unwrap();
        let (method, params) = match scope.split('/').collect::<Vec<_>>().as_slice() {
            ["zones", zone, ..] => ("compute.zoneOperations.get", vec![("zone", *zone)]),
            ["regions", region, ..] => ("compute.regionOperations.get", vec![("region", *region)]),
            _ => ("compute.globalOperations.get", vec![]),
        };
        let mut params = params;
        params.push(("operation", operation["name"].as_str().unwrap()));
        call(world, ms, method, &params, json!({})).unwrap()
    }

    /// The lab's network, its subnetwork 10.0.0.0/24 and a VM in it, all DONE by `ms` + 200.
    fn lab(world: &mut World, ms: u64) {
        let network = json!({"name": "lab", "autoCreateSubnetworks": false});
        call(world, ms, "compute.networks.insert", &[], network).unwrap();
        let subnetwork =
            json!({"name": "lab-eu", "network": "global/networks/lab", "ipCidrRange": "10.0.0.0/24"});
        call(world, ms + 200, "compute.subnetworks.insert", &[("region", "europe-west1")], subnetwork)
            .unwrap();
        call(world, ms + 400, "compute.instances.insert", &[("zone", "europe-west1-b")], vm("vm-1")).unwrap();
    }

    fn vm(name: &str) -> Value {
        json!({
            "name": name,
            "machineType": "zones/europe-west1-b/machineTypes/e2-small",
            "labels": {"labctl-lab": "x"},
            "metadata": {"items": [{"key": "user-data", "value": "#cloud-config"}]},
            "disks": [{"boot": true, "autoDelete": true,
                "initializeParams": {"sourceImage": "projects/debian-cloud/global/images/family/debian-12"}}],
            "networkInterfaces": [{"subnetwork": "regions/europe-west1/subnetworks/lab-eu",
                "accessConfigs": [{"type": "ONE_TO_ONE_NAT"}]}],
        })
    }

    #[test]
    fn an_operation_goes_pending_running_done_and_takes_effect_when_done() {
        let mut world = world();
        let network = json!({"name": "lab", "autoCreateSubnetworks": false, "description": "a lab"});
        let operation = call(&mut world, 0, "compute.networks.insert", &[], network.clone()).unwrap();
        assert_eq!(
            (operation["status"].as_str(), operation["operationType"].as_str()),
            (Some("PENDING"), Some("insert"))
        );
        assert!(operation["name"].as_str().unwrap().starts_with("operation-"));
        assert!(operation["id"].as_str().unwrap().parse::<u64>().is_ok());
        let get =
            |world: &mut World, ms| call(world, ms, "compute.networks.get", &[("network", "lab")], json!({}));
        assert!(matches!(get(&mut world, 50), Err(Fault::NotReady(_))));
        let taken = call(&mut world, 60, "compute.networks.insert", &[], network);
        assert_eq!(
            taken,
            Err(Fault::AlreadyExists("The resource 'projects/p/global/networks/lab' already exists".into()))
        );
        assert_eq!(poll(&mut world, 150, &operation)["status"], "RUNNING");
        assert!(get(&mut world, 150).is_err());
        let done = poll(&mut world, 200, &operation);
        assert_eq!((done["status"].as_str(), done["progress"].as_i64()), (Some("DONE"), Some(100)));
        assert!(done.get("error").is_none());
        let network = get(&mut world, 200).unwrap();
        assert_eq!(
            (network["description"].as_str(), network["id"] == operation["targetId"]),
            (Some("a lab"), true)
        );

        let call_wait = Call {
            method: "compute.globalOperations.wait",
            params: &[("operation".to_owned(), operation["name"].as_str().unwrap().to_owned())].into(),
            query: &BTreeMap::new(),
            body: &json!({}),
        };
        assert_eq!(wait_time(&world, &call_wait, at(0)), 2 * STEP);
        assert_eq!(wait_time(&world, &call_wait, at(500)), Duration::ZERO);
    }

    #[test]
    fn a_vm_gets_addresses_and_is_running_then_terminated() {
        let mut world = world();
        lab(&mut world, 0);
        call(&mut world, 600, "compute.instances.insert", &[("zone", "europe-west1-b")], vm("vm-2")).unwrap();
        let get = |world: &mut World, ms, name| {
            call(
                world,
                ms,
                "compute.instances.get",
                &[("zone", "europe-west1-b"), ("instance", name)],
                json!({}),
            )
        };
        let one = get(&mut world, 800, "vm-1").unwrap();
        let two = get(&mut world, 800, "vm-2").unwrap();
        let addresses = |vm: &Value| {
            let nic = &vm["networkInterfaces"][0];
            (
                nic["networkIP"].as_str().unwrap().to_owned(),
                nic["accessConfigs"][0]["natIP"].as_str().unwrap().to_owned(),
            )
        };
        assert_eq!(addresses(&one), ("10.0.0.2".to_owned(), "203.0.113.1".to_owned()));
        assert_eq!(addresses(&two), ("10.0.0.3".to_owned(), "203.0.113.2".to_owned()));
        assert_eq!(one["status"], "RUNNING");
        assert_eq!(one["metadata"]["items"][0]["key"], "user-data");

        let vm_1 = [("zone", "europe-west1-b"), ("instance", "vm-1")];
        call(&mut world, 1000, "compute.instances.stop", &vm_1, json!({})).unwrap();
        let busy = call(&mut world, 1050, "compute.instances.start", &vm_1, json!({}));
        assert!(matches!(busy, Err(Fault::NotReady(_))), "{busy:?}");
        assert_eq!(get(&mut world, 1100, "vm-1").unwrap()["status"], "RUNNING");
        assert_eq!(get(&mut world, 1200, "vm-1").unwrap()["status"], "TERMINATED");
        call(&mut world, 1200, "compute.instances.start", &vm_1, json!({})).unwrap();
        assert_eq!(get(&mut world, 1400, "vm-1").unwrap()["status"], "RUNNING");

        let stale = json!({"fingerprint": "c3RhbGU=", "items": []});
        let refused = call(&mut world, 1400, "compute.instances.setMetadata", &vm_1, stale);
        assert!(matches!(refused, Err(Fault::FailedPrecondition(_))), "{refused:?}");
        let fresh =
            json!({"fingerprint": one["metadata"]["fingerprint"], "items": [{"key": "a", "value": "b"}]});
        call(&mut world, 1400, "compute.instances.setMetadata", &vm_1, fresh).unwrap();
        assert_eq!(get(&mut world, 1600, "vm-1").unwrap()["metadata"]["items"][0]["key"], "a");
    }

    #[test]
    fn a_network_in_use_is_not_deleted_and_its_operation_says_why() {
        let mut world = world();
        lab(&mut world, 0);
        let network = [("network", "lab")];
        let operation = call(&mut world, 600, "compute.networks.delete", &network, json!({})).unwrap();
        let failed = poll(&mut world, 800, &operation);
        assert_eq!(failed["status"], "DONE");
        assert_eq!(failed["httpErrorStatusCode"], 400);
        assert_eq!(failed["error"]["errors"][0]["code"], "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE");
        assert_eq!(
            failed["error"]["errors"][0]["message"],
            "The network resource 'projects/p/global/networks/lab' is already being used by 'projects/p/regions/europe-west1/subnetworks/lab-eu'"
        );
        let subnetwork = [("region", "europe-west1"), ("subnetwork", "lab-eu")];
        let operation = call(&mut world, 800, "compute.subnetworks.delete", &subnetwork, json!({})).unwrap();
        assert!(poll(&mut world, 1000, &operation)["error"]["errors"][0]["message"]
            .as_str()
            .unwrap()
            .ends_with("is already being used by 'projects/p/zones/europe-west1-b/instances/vm-1'"));

        call(
            &mut world,
            1000,
            "compute.instances.delete",
            &[("zone", "europe-west1-b"), ("instance", "vm-1")],
            json!({}),
        )
        .unwrap();
        call(&mut world, 1200, "compute.subnetworks.delete", &subnetwork, json!({})).unwrap();
        let operation = call(&mut world, 1400, "compute.networks.delete", &network, json!({})).unwrap();
        assert!(poll(&mut world, 1600, &operation).get("error").is_none());
        let gone = call(&mut world, 1600, "compute.networks.get", &network, json!({}));
        assert_eq!(
            gone,
            Err(Fault::NotFound("The resource 'projects/p/global/networks/lab' was not found".into()))
        );
    }

    #[test]
    fn what_google_refuses_is_refused() {
        let mut world = world();
        lab(&mut world, 0);
        let zone = [("zone", "europe-west1-b")];
        let refused = |world: &mut World, method, params: &[(&str, &str)], body| {
            call(world, 600, method, params, body).unwrap_err().message().to_owned()
        };
        let auto = json!({"name": "auto", "autoCreateSubnetworks": true});
        assert!(refused(&mut world, "compute.networks.insert", &[], auto).contains("custom-mode"));
        let overlap = json!({"name": "b", "network": "global/networks/lab", "ipCidrRange": "10.0.0.128/25"});
        assert_eq!(
            refused(&mut world, "compute.subnetworks.insert", &[("region", "europe-west1")], overlap),
            "Invalid IPCidrRange: 10.0.0.128/25 conflicts with existing subnetwork 'lab-eu' in region 'europe-west1'."
        );
        let host_bits = json!({"name": "b", "network": "global/networks/lab", "ipCidrRange": "10.1.0.1/24"});
        assert!(refused(&mut world, "compute.subnetworks.insert", &[("region", "europe-west1")], host_bits)
            .contains("ipCidrRange"));
        let no_network =
            json!({"name": "b", "network": "global/networks/none", "ipCidrRange": "10.1.0.0/24"});
        assert_eq!(
            refused(&mut world, "compute.subnetworks.insert", &[("region", "europe-west1")], no_network),
            "The resource 'projects/p/global/networks/none' was not found"
        );
        let mut bad_label = vm("vm-3");
        bad_label["labels"] = json!({"labctl/lab": "x"});
        assert!(refused(&mut world, "compute.instances.insert", &zone, bad_label)
            .contains("Label key 'labctl/lab'"));
        let mut elsewhere = vm("vm-3");
        elsewhere["machineType"] = json!("zones/us-east1-b/machineTypes/e2-small");
        assert!(refused(&mut world, "compute.instances.insert", &zone, elsewhere).contains("machineType"));
        let no_rules = json!({"name": "fw", "network": "global/networks/lab"});
        assert!(refused(&mut world, "compute.firewalls.insert", &[], no_rules).contains("allowed or denied"));
        let unknown_zone = call(&mut world, 600, "compute.instances.list", &[("zone", "mars")], json!({}));
        assert_eq!(
            unknown_zone,
            Err(Fault::NotFound("The resource 'projects/p/zones/mars' was not found".into()))
        );
    }

    #[test]
    fn lists_filter_and_page() {
        let mut world = world();
        lab(&mut world, 0);
        let mut other = vm("vm-2");
        other["labels"] = json!({"labctl-lab": "y"});
        call(&mut world, 600, "compute.instances.insert", &[("zone", "europe-west1-b")], other).unwrap();
        call(&mut world, 600, "compute.instances.insert", &[("zone", "europe-west1-b")], vm("vm-3")).unwrap();
        let list = |world: &mut World, query: &[(&str, &str)]| {
            let page = call_with(
                world,
                800,
                "compute.instances.list",
                &[("zone", "europe-west1-b")],
                query,
                json!({}),
            )?;
            let names = page["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| i["name"].as_str().unwrap().to_owned());
            Ok::<_, Fault>((names.collect::<Vec<_>>(), page["nextPageToken"].as_str().map(str::to_owned)))
        };
        assert_eq!(list(&mut world, &[]).unwrap().0, ["vm-1", "vm-2", "vm-3"]);
        let lab_x = list(&mut world, &[("filter", r#"labels.labctl-lab = "x""#)]).unwrap();
        assert_eq!(lab_x, (vec!["vm-1".to_owned(), "vm-3".to_owned()], None));
        let (first, token) =
            list(&mut world, &[("filter", "labels.labctl-lab:*"), ("maxResults", "2")]).unwrap();
        assert_eq!(first, ["vm-1", "vm-2"]);
        let rest = list(
            &mut world,
            &[("filter", "labels.labctl-lab:*"), ("maxResults", "2"), ("pageToken", &token.unwrap())],
        );
        assert_eq!(rest.unwrap(), (vec!["vm-3".to_owned()], None));
        assert!(matches!(list(&mut world, &[("filter", "labels.a ~ b")]), Err(Fault::Invalid(_))));
        let networks =
            call(&mut world, 800, "compute.networks.get", &[("network", "lab")], json!({})).unwrap();
        assert_eq!(networks["subnetworks"][0], link(P, "regions/europe-west1/subnetworks/lab-eu"));
    }
}
