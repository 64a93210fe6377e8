//! Compute Engine: the lab's VPC network and subnet, each student's firewall rule (SSH to
//! their VM, from where the lab allows) and VM, whose cloud-init installs and runs their
//! workers. VMs carry the ownership tags as labels; networks, subnets and firewall rules
//! take no labels, so their descriptions carry them. A create adopts what an interrupted
//! run made (names are unique in the project) and refuses what is someone else's.

use std::collections::BTreeMap;
use std::time::Duration;

use google_cloud_compute_v1::model::{
    access_config, firewall, AccessConfig, AttachedDisk, AttachedDiskInitializeParams, Firewall, Instance,
    InstancesSetLabelsRequest, Metadata, Network, NetworkInterface, Operation, Subnetwork,
    Tags as NetworkTags,
};
use google_cloud_gax::error::rpc::{Code, Status};
use google_cloud_gax::error::Error;
use google_cloud_lro::Poller;
use google_cloud_storage::builder::storage::SignedUrlBuilder;
use labctl_provider_api::configs::config;
use labctl_provider_api::{
    attrs, dep_attr, sha256, Deps, ErrorKind, Observed, ProviderError, ResourceSpec, Tags,
};
use labctl_provider_vm::cloud_init::{
    self, Binary, KeyFile, MapReduce, Scheduler, UserData, BINARY_URL_LIFETIME, PORTS,
};
use labctl_provider_vm::notebook::SignedUrls;
use labctl_provider_vm::rekey::{self, Key, USER_DATA_SHA256};
use labctl_provider_vm::ssh::{SshClient, VmStates};
use labctl_provider_vm::NotebookService;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::clients::{Clients, Gcp};
use crate::errors::{deleted, failed, found, http_code, is_conflict};
use crate::identity::workload_environment;
use crate::labels;
use crate::paging::every_page;
use crate::storage::resource;

/// The lab's VPC network and its one subnet, in the lab's region.
#[derive(Debug, Serialize, Deserialize)]
pub struct NetworkConfig {
    pub name: String,
    pub cidr: String,
}

/// A student's firewall rule: SSH to their VM (by its network tag) from `ssh_cidrs`.
#[derive(Debug, Serialize, Deserialize)]
pub struct FirewallConfig {
    pub name: String,
    /// The network tag of the VM it opens.
    pub target: String,
    pub ssh_cidrs: Vec<String>,
}

/// A student's VM, whose cloud-init installs and runs their workers.
#[derive(Debug, Serialize, Deserialize)]
pub struct VmConfig {
    pub name: String,
    pub student: String,
    pub machine_type: String,
    pub disk_gb: u32,
    /// A boot image or image family (`projects/<p>/global/images/family/<f>`).
    pub image: String,
    /// Instructors' public keys (instance metadata `ssh-keys`).
    pub ssh_keys: Option<Vec<String>>,
    pub mapreduce: Option<MapReduce>,
    pub scheduler: Option<Scheduler>,
    /// The student's notebook service, installed from the lab's notebook stack (absent
    /// without: a VM recorded before notebooks existed keeps its config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notebook: Option<NotebookService>,
    pub version: String,
}

/// `what` of this lab found under its name: adopted if its description (or labels) name
/// the same owner, refused otherwise.
fn adopt(owner: Option<Tags>, spec: &ResourceSpec, what: &str) -> Result<(), ProviderError> {
    if owner.is_some_and(|t| t.same_owner(&spec.tags)) {
        Ok(())
    } else {
        Err(ProviderError::invalid(format!(
            "{what} exists and is not labctl's for {} of lab {}: rename the lab or remove it",
            spec.address, spec.tags.lab
        )))
    }
}

/// Waits for an operation to end. Compute Engine reports a failure in the operation, not in
/// the answer: a failed one is returned as its error (a resource still in use by another,
/// or busy with another operation, as one worth trying again).
async fn finished(poller: impl Poller<Operation, Operation>) -> Result<(), Error> {
    let op = poller.until_done().await?;
    if op.error.is_none() && op.http_error_status_code.is_none() {
        return Ok(());
    }
    let errors = op.error.iter().flat_map(|e| &e.errors);
    let transient = ["RESOURCE_IN_USE_BY_ANOTHER_RESOURCE", "RESOURCE_NOT_READY"];
    let busy = errors.clone().any(|e| e.code.as_deref().is_some_and(|c| transient.contains(&c)));
    let messages: Vec<String> = errors.filter_map(|e| e.message.clone()).collect();
    let status = op.http_error_status_code.and_then(|s| u16::try_from(s).ok()).unwrap_or(500);
    let code = if busy { Code::Unavailable } else { http_code(status) };
    let message = op.http_error_message.into_iter().chain(messages).collect::<Vec<_>>().join(": ");
    Err(Error::service(Status::default().set_code(code).set_message(message)))
}

/// An insert's end: `true` once made, `false` if the name is taken (`adopt` decides), or
/// the error.
fn made(result: Result<(), Error>, what: &str) -> Result<bool, ProviderError> {
    match result {
        Ok(_) => Ok(true),
        Err(e) if is_conflict(&e) => Ok(false),
        Err(e) => Err(failed(format!("creating {what}"))(e)),
    }
}

/// The name in a Compute Engine id (`global/networks/<name>`, `zones/<z>/instances/<name>`):
/// ids name the kind and the place, so that no two of a lab's resources share one.
pub fn name_of(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// The place (zone or region) in an id of the form `<zones|regions>/<place>/<kind>/<name>`;
/// `default` for a bare name.
fn place_of<'a>(id: &'a str, default: &'a str) -> &'a str {
    match id.split('/').collect::<Vec<_>>().as_slice() {
        [_, place, _, _] => place,
        _ => default,
    }
}

fn network_path(c: &Gcp, name: &str) -> String {
    format!("projects/{}/global/networks/{name}", c.project)
}

fn subnetwork_path(c: &Gcp, name: &str) -> String {
    format!("projects/{}/regions/{}/subnetworks/{name}", c.project, c.region)
}

fn network_observed(c: &Gcp, name: &str, cidr: &str) -> Observed {
    Observed {
        id: format!("global/networks/{name}"),
        attributes: attrs(json!({
            "network": network_path(c, name),
            "subnetwork": subnetwork_path(c, name),
            "cidr": cidr,
        })),
        sensitive: vec![],
    }
}

/// Makes (or adopts) the network, custom mode, and its subnet.
pub async fn create_network(c: &Gcp, spec: &ResourceSpec) -> Result<Observed, ProviderError> {
    let NetworkConfig { name, cidr } = config(spec)?;
    // Without the expiry: Compute Engine does not let it move with the lab file, and `reap`
    // would read a stale one.
    let description = labels::description(&Tags { expires: None, ..spec.tags.clone() });
    let network =
        Network::new().set_name(&name).set_auto_create_subnetworks(false).set_description(&description);
    let insert = finished(c.networks.insert().set_project(&c.project).set_body(network).poller()).await;
    if !made(insert, &format!("network {name}"))? {
        let existing = get_network(c, &name).await?;
        adopt(
            existing.and_then(|n| labels::described(n.description.as_deref()?)),
            spec,
            &format!("network {name}"),
        )?;
    }
    let subnet = Subnetwork::new()
        .set_name(&name)
        .set_network(network_path(c, &name))
        .set_ip_cidr_range(&cidr)
        .set_description(&description);
    let insert = finished(
        c.subnetworks.insert().set_project(&c.project).set_region(&c.region).set_body(subnet).poller(),
    )
    .await;
    let partial = |e: ProviderError| e.with_partial(network_observed(c, &name, &cidr));
    if !made(insert, &format!("subnet {name}")).map_err(partial)? {
        let existing = get_subnetwork(c, &name).await.map_err(partial)?;
        let owner = existing.and_then(|s| labels::described(s.description.as_deref()?));
        adopt(owner, spec, &format!("subnet {name}")).map_err(partial)?;
    }
    Ok(network_observed(c, &name, &cidr))
}

async fn get_network(c: &Gcp, name: &str) -> Result<Option<Network>, ProviderError> {
    let got = c.networks.get().set_project(&c.project).set_network(name).send().await;
    found(got, format!("reading network {name}"))
}

async fn get_subnetwork(c: &Gcp, name: &str) -> Result<Option<Subnetwork>, ProviderError> {
    let got =
        c.subnetworks.get().set_project(&c.project).set_region(&c.region).set_subnetwork(name).send().await;
    found(got, format!("reading subnet {name}"))
}

/// The network as it is: gone if it or its subnet is.
pub async fn read_network(c: &Gcp, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
    let name = name_of(&prior.id);
    let both = get_network(c, name).await?.is_some() && get_subnetwork(c, name).await?.is_some();
    Ok(both.then(|| prior.clone()))
}

/// Deletes the subnet, then the network; what is already gone is fine.
pub async fn delete_network(c: &Gcp, id: &str) -> Result<(), ProviderError> {
    let name = name_of(id);
    delete_subnetwork(c, &format!("regions/{}/subnetworks/{name}", c.region)).await?;
    let gone = finished(c.networks.delete().set_project(&c.project).set_network(name).poller()).await;
    deleted(gone, format!("deleting network {name}"))
}

/// Deletes a subnet; one already gone is fine.
pub async fn delete_subnetwork(c: &Gcp, id: &str) -> Result<(), ProviderError> {
    let (region, name) = (place_of(id, &c.region), name_of(id));
    let gone = finished(
        c.subnetworks.delete().set_project(&c.project).set_region(region).set_subnetwork(name).poller(),
    )
    .await;
    deleted(gone, format!("deleting subnet {name}"))
}

/// Makes (or adopts) the student's firewall rule on the lab's network.
pub async fn create_firewall(c: &Gcp, spec: &ResourceSpec, deps: &Deps) -> Result<Observed, ProviderError> {
    let FirewallConfig { name, target, ssh_cidrs } = config(spec)?;
    let rule = Firewall::new()
        .set_name(&name)
        .set_network(dep_attr(deps, "network")?)
        .set_direction(firewall::Direction::Ingress)
        .set_source_ranges(ssh_cidrs)
        .set_target_tags([target])
        .set_allowed([firewall::Allowed::new().set_ip_protocol("tcp").set_ports(["22"])])
        .set_description(labels::description(&spec.tags));
    let insert = finished(c.firewalls.insert().set_project(&c.project).set_body(rule).poller()).await;
    if !made(insert, &format!("firewall rule {name}"))? {
        let existing = get_firewall(c, &name).await?;
        let owner = existing.and_then(|f| labels::described(f.description.as_deref()?));
        adopt(owner, spec, &format!("firewall rule {name}"))?;
    }
    Ok(Observed {
        id: format!("global/firewalls/{name}"),
        attributes: attrs(json!({ "firewall": name })),
        sensitive: vec![],
    })
}

async fn get_firewall(c: &Gcp, name: &str) -> Result<Option<Firewall>, ProviderError> {
    let got = c.firewalls.get().set_project(&c.project).set_firewall(name).send().await;
    found(got, format!("reading firewall rule {name}"))
}

pub async fn read_firewall(c: &Gcp, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
    Ok(get_firewall(c, name_of(&prior.id)).await?.map(|_| prior.clone()))
}

pub async fn delete_firewall(c: &Gcp, id: &str) -> Result<(), ProviderError> {
    let name = name_of(id);
    let gone = finished(c.firewalls.delete().set_project(&c.project).set_firewall(name).poller()).await;
    deleted(gone, format!("deleting firewall rule {name}"))
}

/// Puts `tags` in the firewall rule's description (the expiry moves with the lab file).
/// Networks and subnets, whose descriptions Compute Engine does not change, carry no expiry.
pub async fn describe_firewall(c: &Gcp, id: &str, tags: &Tags) -> Result<(), ProviderError> {
    let name = name_of(id);
    let patch = Firewall::new().set_description(labels::description(tags));
    let patched =
        finished(c.firewalls.patch().set_project(&c.project).set_firewall(name).set_body(patch).poller())
            .await;
    deleted(patched, format!("describing firewall rule {name}"))
}

/// Every labctl network, subnet and firewall rule of the project with its owner's tags,
/// by kind, in the order they can be deleted in.
pub async fn described(c: &Gcp) -> Result<Vec<(&'static str, String, Tags)>, ProviderError> {
    let ours = |name: Option<String>, description: Option<String>| {
        Some((name?, labels::described(description.as_deref()?)?))
    };
    let mut found = vec![];
    let firewalls = every_page(|token| async move {
        let page = c.firewalls.list().set_project(&c.project).set_page_token(token).send().await;
        let page = page.map_err(failed("listing firewall rules"))?;
        Ok((
            page.items.into_iter().filter_map(|f| ours(f.name, f.description)).collect(),
            page.next_page_token.unwrap_or_default(),
        ))
    })
    .await?;
    found.extend(
        firewalls.into_iter().map(|(name, tags)| ("firewall", format!("global/firewalls/{name}"), tags)),
    );
    let subnets = every_page(|token| async move {
        let page = c
            .subnetworks
            .list()
            .set_project(&c.project)
            .set_region(&c.region)
            .set_page_token(token)
            .send()
            .await;
        let page = page.map_err(failed("listing subnets"))?;
        Ok((
            page.items.into_iter().filter_map(|s| ours(s.name, s.description)).collect(),
            page.next_page_token.unwrap_or_default(),
        ))
    })
    .await?;
    let region = &c.region;
    found.extend(
        subnets
            .into_iter()
            .map(|(name, tags)| ("subnetwork", format!("regions/{region}/subnetworks/{name}"), tags)),
    );
    let networks = every_page(|token| async move {
        let page = c.networks.list().set_project(&c.project).set_page_token(token).send().await;
        let page = page.map_err(failed("listing networks"))?;
        Ok((
            page.items.into_iter().filter_map(|n| ours(n.name, n.description)).collect(),
            page.next_page_token.unwrap_or_default(),
        ))
    })
    .await?;
    found.extend(
        networks.into_iter().map(|(name, tags)| ("network", format!("global/networks/{name}"), tags)),
    );
    Ok(found)
}

/// Every labctl VM of the lab's zone with its owner's tags.
pub async fn labelled_vms(c: &Gcp) -> Result<Vec<(String, Tags)>, ProviderError> {
    every_page(|token| async move {
        let page = c
            .instances
            .list()
            .set_project(&c.project)
            .set_zone(&c.zone)
            .set_filter("labels.labctl-lab:*")
            .set_page_token(token)
            .send()
            .await;
        let page = page.map_err(failed("listing VMs"))?;
        // GKE's nodes carry their cluster's labels too: they go with their cluster.
        let students = page.items.into_iter().filter(|i| !i.labels.contains_key(GKE_NODE_LABEL));
        let ours = students.filter_map(|i| Some((vm_id(&c.zone, &i.name?), labels::tags(&i.labels)?)));
        Ok((ours.collect(), page.next_page_token.unwrap_or_default()))
    })
    .await
}

/// The label GKE gives its nodes' VMs.
const GKE_NODE_LABEL: &str = "goog-gke-node";

/// Where the student's key is on their VM (theirs to read; `labctl-rekey` replaces it).
const KEY_FILE: &str = "/etc/labctl/gcp-key.json";

/// `labctl-rekey` on GCP: installs the student's new service-account key (a JSON key
/// file on stdin) for their workers and restarts them.
fn rekey() -> String {
    format!("set -eu\nkey={KEY_FILE}\n{REKEY}")
}

/// [`rekey`] after naming the key file.
const REKEY: &str = r#"umask 077
cat > "$key.new"
python3 -c 'import json, sys; assert json.load(open(sys.argv[1]))["type"] == "service_account"' "$key.new" 2>/dev/null \
  || { rm -f "$key.new"; echo "labctl-rekey: not a service-account key file" >&2; exit 2; }
chown --reference="$key" "$key.new"
mv "$key.new" "$key"
systemctl try-restart 'lab-*.service'
"#;

/// The attribute recording which key the VM's workers hold.
const DELIVERED_KEY: &str = "key_id";

async fn render_user_data(
    c: &Gcp,
    spec: &ResourceSpec,
    deps: &Deps,
    vm: &VmConfig,
) -> Result<String, ProviderError> {
    let hashes = deps.values().find_map(|d| d.attributes.get("binaries").and_then(Value::as_object));
    let mut binaries = BTreeMap::new();
    for (name, sha256) in hashes.into_iter().flatten() {
        let url = c.signed_url(dep_attr(deps, "artifacts_bucket")?, &format!("bin/{name}")).await?;
        let sha256 = sha256.as_str().unwrap_or_default().to_owned();
        binaries.insert(name.clone(), Binary { url, sha256 });
    }
    let notebook = match vm.notebook {
        Some(service) => Some(labctl_provider_vm::notebook::user_data(&vm.student, service, deps, c).await?),
        None => None,
    };
    // The workers (and the student's own tools) reach the bucket with the student's key.
    // Google's client libraries read the first; object_store (the workers'), the second.
    let bucket = dep_attr(deps, "bucket").ok();
    let mut environment = workload_environment(&c.project, c.storage_endpoint.as_deref(), bucket);
    environment.insert("GOOGLE_APPLICATION_CREDENTIALS".to_owned(), KEY_FILE.to_owned());
    environment.insert("GOOGLE_SERVICE_ACCOUNT".to_owned(), KEY_FILE.to_owned());
    cloud_init::render(&UserData {
        lab: &spec.tags.lab,
        student: &vm.student,
        binaries,
        token: dep_attr(deps, "token")?,
        environment,
        files: vec![KeyFile { path: KEY_FILE.to_owned(), content: dep_attr(deps, "key")?.to_owned() }],
        rekey: &rekey(),
        mapreduce: vm.mapreduce,
        scheduler: vm.scheduler,
        notebook,
        ports: PORTS,
        ssh_keys: vm.ssh_keys.clone().unwrap_or_default(),
        student_key: dep_attr(deps, "ssh_public_key").map_err(|_| {
            ProviderError::invalid(format!(
                "{}'s credential was made before labctl gave students SSH keys: run `labctl apply --rotate-keys` once",
                vm.student
            ))
        })?,
    })
}

#[async_trait::async_trait]
impl SignedUrls for Gcp {
    /// A V4 signed URL, signed with labctl's own credentials.
    async fn signed_url(&self, bucket: &str, key: &str) -> Result<String, ProviderError> {
        let mut url = SignedUrlBuilder::for_object(resource(bucket), key)
            .with_method(http::Method::GET)
            .with_expiration(BINARY_URL_LIFETIME);
        if let Some(endpoint) = &self.storage_endpoint {
            url = url.with_endpoint(endpoint);
        }
        url.sign_with(self.signer().await?)
            .await
            .map_err(|e| ProviderError::fatal(format!("signing the link to gs://{bucket}/{key}: {e}")))
    }
}

/// Statuses of a VM that runs or is on its way to.
const STARTING: [&str; 3] = ["provisioning", "staging", "running"];

/// How long to wait for a VM to have stopped before starting it again, or to run.
const STATE_WAIT: Duration = Duration::from_secs(300);

fn status(i: &Instance) -> String {
    i.status
        .as_ref()
        .map(|s| s.name().unwrap_or("unknown").to_lowercase())
        .unwrap_or_else(|| "unknown".into())
}

/// A VM's id: `zones/<zone>/instances/<name>`.
fn vm_id(zone: &str, name: &str) -> String {
    format!("zones/{zone}/instances/{name}")
}

/// The VM of `id`, if it exists.
async fn get_instance(c: &Gcp, id: &str) -> Result<Option<Instance>, ProviderError> {
    let (zone, name) = (place_of(id, &c.zone), name_of(id));
    let got = c.instances.get().set_project(&c.project).set_zone(zone).set_instance(name).send().await;
    found(got, format!("reading VM {name}"))
}

fn observed(id: &str, i: &Instance) -> Observed {
    let nic = i.network_interfaces.first();
    Observed {
        id: id.to_owned(),
        attributes: attrs(json!({
            "instance_id": i.id.map(|id| id.to_string()),
            "machine_type": i.machine_type.as_deref().and_then(|m| m.rsplit('/').next()),
            "private_ip": nic.and_then(|n| n.network_ip.clone()),
            "public_ip": nic.and_then(|n| n.access_configs.first()).and_then(|a| a.nat_ip.clone()),
            "state": status(i),
            "ports": { "mapreduce": PORTS.mapreduce, "scheduler": PORTS.scheduler, "scheduler_http": PORTS.scheduler_http },
        })),
        sensitive: vec![],
    }
}

/// The instance as `create` wants it.
fn instance(
    c: &Gcp,
    spec: &ResourceSpec,
    vm: &VmConfig,
    deps: &Deps,
    user_data: String,
) -> Result<Instance, ProviderError> {
    let zone = &c.zone;
    // Instructors log in as the image's default user (cloud-init) or as `labctl` (the guest
    // agent, from `ssh-keys`), sudoers both; the student's key goes through cloud-init only,
    // so that they get no sudo. Project-wide keys do not apply.
    let mut metadata =
        vec![("user-data".to_owned(), user_data), ("block-project-ssh-keys".to_owned(), "TRUE".to_owned())];
    if let Some(keys) = vm.ssh_keys.as_ref().filter(|k| !k.is_empty()) {
        let lines: Vec<String> = keys.iter().map(|k| format!("labctl:{k}")).collect();
        metadata.push(("ssh-keys".to_owned(), lines.join("\n")));
    }
    let items = metadata
        .into_iter()
        .map(|(k, v)| google_cloud_compute_v1::model::metadata::Items::new().set_key(k).set_value(v));
    Ok(Instance::new()
        .set_name(&vm.name)
        .set_machine_type(format!("zones/{zone}/machineTypes/{}", vm.machine_type))
        .set_labels(labels::of(&spec.tags))
        .set_tags(NetworkTags::new().set_items([vm.name.clone()]))
        .set_metadata(Metadata::new().set_items(items))
        .set_disks([AttachedDisk::new().set_boot(true).set_auto_delete(true).set_initialize_params(
            AttachedDiskInitializeParams::new()
                .set_source_image(&vm.image)
                .set_disk_size_gb(i64::from(vm.disk_gb)),
        )])
        .set_network_interfaces([NetworkInterface::new()
            .set_subnetwork(dep_attr(deps, "subnetwork")?)
            .set_access_configs([AccessConfig::new()
                .set_name("External NAT")
                .set_type(access_config::Type::OneToOneNat)])])
        // No service account: the VM has no grant of its own; the student's key is theirs.
        .set_service_accounts(Vec::<google_cloud_compute_v1::model::ServiceAccount>::new()))
}

/// Makes the student's VM, or adopts (and starts, if it was stopped) the one an earlier
/// run made.
pub async fn create_vm(c: &Gcp, spec: &ResourceSpec, deps: &Deps) -> Result<Observed, ProviderError> {
    let vm: VmConfig = config(spec)?;
    let (name, id) = (vm.name.as_str(), vm_id(&c.zone, &vm.name));
    if get_instance(c, &id).await?.is_none() {
        let user_data = render_user_data(c, spec, deps, &vm).await?;
        let digest = sha256(user_data.as_bytes());
        let body = instance(c, spec, &vm, deps, user_data)?;
        let insert =
            finished(c.instances.insert().set_project(&c.project).set_zone(&c.zone).set_body(body).poller())
                .await;
        if made(insert, &format!("VM {name} ({})", vm.machine_type))? {
            let mut now = start_if_stopped(c, spec, &id).await?;
            now.attributes.insert(USER_DATA_SHA256.into(), json!(digest));
            now.attributes.insert(DELIVERED_KEY.into(), json!(dep_attr(deps, "key_id")?));
            return Ok(now);
        }
    }
    start_if_stopped(c, spec, &id).await
}

/// The VM as found (this lab's, or refused), started first if it was stopped, once it runs
/// (its public address is known then: a VM started again may have another).
async fn start_if_stopped(c: &Gcp, spec: &ResourceSpec, id: &str) -> Result<Observed, ProviderError> {
    let (zone, name) = (place_of(id, &c.zone), name_of(id));
    let wait = tokio::time::Instant::now();
    loop {
        let found = get_instance(c, id)
            .await?
            .ok_or_else(|| ProviderError::new(ErrorKind::Unavailable, format!("VM {name} is gone again")))?;
        adopt(labels::tags(&found.labels), spec, &format!("VM {name}"))?;
        match status(&found).as_str() {
            "running" => return Ok(observed(id, &found)),
            "terminated" | "stopped" => {}
            "provisioning" | "staging" | "stopping" | "pending_stop" if wait.elapsed() < STATE_WAIT => {
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            other => return Err(ProviderError::new(ErrorKind::Unavailable, format!("VM {name} is {other}"))),
        }
        let started =
            finished(c.instances.start().set_project(&c.project).set_zone(zone).set_instance(name).poller())
                .await;
        started.map_err(failed(format!("starting stopped VM {name}")))?;
    }
}

/// Converges an existing VM: started if it was stopped; given the student's new key over
/// SSH if their credential was rotated (the VM keeps its disk and address).
pub async fn update_vm(
    c: &Gcp,
    ssh: &SshClient,
    spec: &ResourceSpec,
    prior: &Observed,
    deps: &Deps,
) -> Result<Observed, ProviderError> {
    let vm: VmConfig = config(spec)?;
    let mut now = create_vm(c, spec, deps).await?;
    let key = Key { attribute: DELIVERED_KEY, id: dep_attr(deps, "key_id")?, stdin: dep_attr(deps, "key")? };
    rekey::deliver(ssh, prior, &mut now, &vm.student, dep_attr(deps, "ssh_private_key")?, key).await?;
    Ok(now)
}

/// The VM as it is (its record's own attributes kept), or `None` if it is gone.
pub async fn read_vm(c: &Gcp, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
    Ok(get_instance(c, &prior.id).await?.map(|i| {
        let mut now = observed(&prior.id, &i);
        rekey::carry(prior, &mut now, &[USER_DATA_SHA256, DELIVERED_KEY]);
        now
    }))
}

/// What was changed by hand: a VM that was stopped.
pub async fn vm_edits(c: &Gcp, prior: &Observed) -> Result<Vec<String>, ProviderError> {
    let state = get_instance(c, &prior.id).await?.map(|i| status(&i));
    Ok(match state {
        Some(s) if !STARTING.contains(&s.as_str()) => vec![format!("VM {} is {s}", prior.id)],
        _ => vec![],
    })
}

/// Deletes the VM (its boot disk goes with it) and waits until it is gone.
pub async fn delete_vm(c: &Gcp, id: &str) -> Result<(), ProviderError> {
    let (zone, name) = (place_of(id, &c.zone), name_of(id));
    let gone =
        finished(c.instances.delete().set_project(&c.project).set_zone(zone).set_instance(name).poller())
            .await;
    deleted(gone, format!("deleting VM {name}"))
}

/// Puts `tags` on the VM as labels (the expiry moves with the lab file).
pub async fn label_vm(c: &Gcp, id: &str, tags: &Tags) -> Result<(), ProviderError> {
    let Some(vm) = get_instance(c, id).await? else { return Ok(()) };
    let (zone, name) = (place_of(id, &c.zone), name_of(id));
    let mut labels = vm.labels;
    labels.retain(|k, _| !k.starts_with("labctl-"));
    labels.extend(labels::of(tags));
    let mut request = InstancesSetLabelsRequest::new().set_labels(labels);
    if let Some(fingerprint) = vm.label_fingerprint {
        request = request.set_label_fingerprint(fingerprint);
    }
    let labelled = finished(
        c.instances
            .set_labels()
            .set_project(&c.project)
            .set_zone(zone)
            .set_instance(name)
            .set_body(request)
            .poller(),
    )
    .await;
    deleted(labelled, format!("labelling VM {name}"))
}

/// Compute Engine's word on a VM that SSH cannot reach.
pub struct GceStates(pub std::sync::Arc<Clients>);

#[async_trait::async_trait]
impl VmStates for GceStates {
    async fn not_running(&self, name: &str) -> Option<String> {
        let c = self.0.get().await.ok()?;
        let state = get_instance(c, name).await.ok()?.map(|i| status(&i));
        match state {
            Some(s) if STARTING.contains(&s.as_str()) => None,
            other => Some(other.unwrap_or_else(|| "gone".into())),
        }
    }
}
