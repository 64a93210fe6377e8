//! EC2: each student's VM, whose cloud-init installs and runs their workers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, HttpTokensState, IamInstanceProfileSpecification, Instance,
    InstanceMetadataOptionsRequest, InstanceStateName, InstanceType, ResourceType, VolumeType,
};
use aws_sdk_s3::presigning::PresigningConfig;
use base64::Engine;
use labctl_provider_api::configs::config;
use labctl_provider_api::dep_attr;
use labctl_provider_api::{attrs, sha256, Deps, ErrorKind, Observed, ProviderError, ResourceSpec};
use labctl_provider_vm::cloud_init::{self, Binary, UserData, BINARY_URL_LIFETIME, PORTS};
use labctl_provider_vm::notebook::SignedUrls;
use labctl_provider_vm::rekey::{self, Key, USER_DATA_SHA256};
use labctl_provider_vm::ssh::{SshClient, VmStates};
use serde_json::{json, Value};

use crate::clients::{Aws, Clients, Service::Ec2};
use crate::dep_list;
use crate::errors::{code, failed, ignore_missing, is_missing};
use crate::plugin::VmConfig;
use crate::tagging::{ec2_filter, ec2_owned, ec2_spec};

/// States of an instance that still exists (and bills).
pub(crate) const LIVE: [&str; 4] = ["pending", "running", "stopping", "stopped"];

/// How long to wait for an instance to start running or to be terminated.
const TERMINATE_WAIT: Duration = Duration::from_secs(300);

pub(crate) async fn create(c: &Aws, spec: &ResourceSpec, deps: &Deps) -> Result<Observed, ProviderError> {
    let vm: VmConfig = config(spec)?;
    if let Some(found) = find(c, spec).await? {
        return start_if_stopped(c, found).await;
    }
    let (name, student, instance_type) = (vm.name.as_str(), vm.student.as_str(), vm.instance_type.as_str());
    let image = image_id(c, &vm.image, vm.image_owner.as_deref()).await?;
    let subnets = dep_list(deps, "subnets");
    // Spread students over the zones, the same way on every run.
    let subnet = subnets
        .get(student.bytes().map(usize::from).sum::<usize>() % subnets.len().max(1))
        .ok_or_else(|| ProviderError::invalid(format!("{} needs the network's subnets", spec.address)))?;
    let user_data = render_user_data(c, spec, deps, &vm).await?;
    let disk = BlockDeviceMapping::builder()
        .device_name("/dev/sda1")
        .ebs(
            EbsBlockDevice::builder()
                .volume_size(vm.disk_gb as i32)
                .volume_type(VolumeType::Gp3)
                .delete_on_termination(true)
                .build(),
        )
        .build();
    // Idempotent across retries: the same request gets the same instance. A token whose
    // instance has ended since (this address destroyed and made again) is salted with it.
    let mut token = sha256(format!("{}/{}", spec.tags.lab, spec.address).as_bytes());
    let out = loop {
        let out = c
            .call(
                Ec2,
                c.ec2
                    .run_instances()
                    .client_token(&token[..64])
                    .image_id(&image)
                    .instance_type(InstanceType::from(instance_type))
                    .min_count(1)
                    .max_count(1)
                    .subnet_id(subnet)
                    .security_group_ids(dep_attr(deps, "group_id")?)
                    .iam_instance_profile(
                        IamInstanceProfileSpecification::builder()
                            .name(dep_attr(deps, "instance_profile")?)
                            .build(),
                    )
                    // IMDSv2 only: no unauthenticated metadata requests from the student's code.
                    .metadata_options(
                        InstanceMetadataOptionsRequest::builder()
                            .http_tokens(HttpTokensState::Required)
                            .build(),
                    )
                    .user_data(base64::engine::general_purpose::STANDARD.encode(&user_data))
                    .block_device_mappings(disk.clone())
                    .tag_specifications(ec2_spec(ResourceType::Instance, spec, name))
                    .tag_specifications(ec2_spec(ResourceType::Volume, spec, name))
                    .send(),
            )
            .await
            .map_err(failed(format!("starting VM {name} ({instance_type})")))?;
        match out.instances().first() {
            Some(old) if is_ended(old) => {
                token = sha256(format!("{token}/{}", old.instance_id().unwrap_or_default()).as_bytes());
            }
            _ => break out,
        }
    };
    let instance = out
        .instances()
        .first()
        .ok_or_else(|| ProviderError::fatal(format!("no instance returned for {name}")))?;
    let id = instance.instance_id().unwrap_or_default().to_owned();
    // The addresses are known once the instance runs; the handout needs them.
    let running = wait_running(c, &id).await.map_err(|e| e.with_partial(observed(instance)))?;
    let mut observed = observed(&running);
    observed.attributes.insert(USER_DATA_SHA256.into(), Value::String(sha256(user_data.as_bytes())));
    observed.attributes.insert(DELIVERED_KEY.into(), dep_attr(deps, "access_key_id")?.into());
    Ok(observed)
}

/// The attribute recording which access key the VM's workers hold.
const DELIVERED_KEY: &str = "access_key_id";

/// Converges an existing VM: started if it was stopped; given the student's new access key
/// over SSH if their credential was rotated (the VM keeps its disk and address).
pub(crate) async fn update(
    c: &Aws,
    ssh: &SshClient,
    spec: &ResourceSpec,
    prior: &Observed,
    deps: &Deps,
) -> Result<Observed, ProviderError> {
    let vm: VmConfig = config(spec)?;
    let mut now = create(c, spec, deps).await?;
    let id = dep_attr(deps, "access_key_id")?;
    let stdin = format!("{id}\n{}", dep_attr(deps, "secret_access_key")?);
    let key = Key { attribute: DELIVERED_KEY, id, stdin: &stdin };
    rekey::deliver(ssh, prior, &mut now, &vm.student, dep_attr(deps, "ssh_private_key")?, key).await?;
    Ok(now)
}

/// A VM as found, started first if it was stopped (by hand, or by AWS).
async fn start_if_stopped(c: &Aws, found: Instance) -> Result<Observed, ProviderError> {
    let id = found.instance_id().unwrap_or_default().to_owned();
    match found.state().and_then(|s| s.name()) {
        Some(InstanceStateName::Stopped | InstanceStateName::Stopping) => {}
        _ => return Ok(observed(&found)),
    }
    // A VM that is still stopping cannot start yet: wait for it to have stopped.
    let start = tokio::time::Instant::now();
    while state(c, &id).await?.as_deref() == Some("stopping") {
        if start.elapsed() > TERMINATE_WAIT {
            return Err(ProviderError::new(ErrorKind::Timeout, format!("VM {id} is still stopping")));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    c.call(Ec2, c.ec2.start_instances().instance_ids(&id).send())
        .await
        .map_err(failed(format!("starting stopped VM {id}")))?;
    Ok(observed(&wait_running(c, &id).await?))
}

/// The state EC2 reports for a VM (`running`, `stopped`, …); `None` if it is gone.
pub(crate) async fn state(c: &Aws, id: &str) -> Result<Option<String>, ProviderError> {
    Ok(describe(c, id).await?.and_then(|i| i.state().and_then(|s| s.name()).map(|s| s.as_str().to_owned())))
}

/// What was changed by hand: a VM that was stopped.
pub(crate) async fn edits(c: &Aws, prior: &Observed) -> Result<Vec<String>, ProviderError> {
    Ok(match state(c, &prior.id).await?.as_deref() {
        Some(s @ ("stopped" | "stopping")) => vec![format!("VM {} is {s}", prior.id)],
        _ => vec![],
    })
}

/// Whether an instance has ended (or is ending): what a reused client token returns.
fn is_ended(instance: &Instance) -> bool {
    matches!(
        instance.state().and_then(|s| s.name()),
        Some(InstanceStateName::ShuttingDown | InstanceStateName::Terminated)
    )
}

async fn wait_running(c: &Aws, id: &str) -> Result<Instance, ProviderError> {
    let start = tokio::time::Instant::now();
    loop {
        if let Some(i) = describe(c, id).await? {
            match i.state().and_then(|s| s.name()) {
                Some(InstanceStateName::Running) => return Ok(i),
                Some(InstanceStateName::Pending) | None => {}
                Some(other) => {
                    return Err(ProviderError::invalid(format!(
                        "VM {id} is {} instead of running",
                        other.as_str()
                    )))
                }
            }
        }
        if start.elapsed() > TERMINATE_WAIT {
            return Err(ProviderError::new(
                ErrorKind::Timeout,
                format!("VM {id} is not running after {} s", TERMINATE_WAIT.as_secs()),
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn render_user_data(
    c: &Aws,
    spec: &ResourceSpec,
    deps: &Deps,
    vm: &VmConfig,
) -> Result<String, ProviderError> {
    let artifacts = dep_attr(deps, "artifacts_bucket")?;
    let hashes = deps.values().find_map(|d| d.attributes.get("binaries").and_then(Value::as_object));
    let mut binaries = BTreeMap::new();
    for (name, sha256) in hashes.into_iter().flatten() {
        let url = c.signed_url(artifacts, &format!("bin/{name}")).await?;
        let sha256 = sha256.as_str().unwrap_or_default().to_owned();
        binaries.insert(name.clone(), Binary { url, sha256 });
    }
    let notebook = match vm.notebook {
        Some(service) => Some(labctl_provider_vm::notebook::user_data(&vm.student, service, deps, c).await?),
        None => None,
    };
    // The workers read and write the student's bucket with the student's own key.
    let mut environment = BTreeMap::from([
        ("AWS_REGION".to_owned(), c.region.clone()),
        ("AWS_ACCESS_KEY_ID".to_owned(), dep_attr(deps, "access_key_id")?.to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), dep_attr(deps, "secret_access_key")?.to_owned()),
    ]);
    if let Some(endpoint) = &c.endpoint {
        environment.insert("AWS_ENDPOINT".to_owned(), endpoint.clone());
        if endpoint.starts_with("http://") {
            environment.insert("AWS_ALLOW_HTTP".to_owned(), "true".to_owned());
        }
    }
    cloud_init::render(&UserData {
        lab: &spec.tags.lab,
        student: &vm.student,
        binaries,
        token: dep_attr(deps, "token")?,
        environment,
        files: vec![],
        rekey: REKEY,
        mapreduce: vm.mapreduce,
        scheduler: vm.scheduler,
        notebook,
        ports: PORTS,
        ssh_keys: vm.ssh_keys.clone().unwrap_or_default(),
        student_key: dep_attr(deps, "ssh_public_key")?,
    })
}

#[async_trait::async_trait]
impl SignedUrls for Aws {
    /// A presigned GET.
    async fn signed_url(&self, bucket: &str, key: &str) -> Result<String, ProviderError> {
        let fail = |e: String| ProviderError::fatal(format!("presigning s3://{bucket}/{key}: {e}"));
        let lifetime = PresigningConfig::expires_in(BINARY_URL_LIFETIME).map_err(|e| fail(e.to_string()))?;
        let request = self.s3.get_object().bucket(bucket).key(key).presigned(lifetime).await;
        Ok(request.map_err(|e| fail(e.to_string()))?.uri().to_owned())
    }
}

/// `labctl-rekey` on AWS: installs the student's new access key (id, then secret, on stdin)
/// for their workers and restarts them.
const REKEY: &str = r#"set -eu
read -r id
read -r secret
echo "$id" | grep -Eqx '[A-Z0-9]{16,128}' || { echo "labctl-rekey: not an access key id" >&2; exit 2; }
echo "$secret" | grep -Eqx '[A-Za-z0-9/+=]{16,128}' || { echo "labctl-rekey: not a secret key" >&2; exit 2; }
env=/etc/labctl/workers.env
grep -v -e '^AWS_ACCESS_KEY_ID=' -e '^AWS_SECRET_ACCESS_KEY=' "$env" > "$env.new" || true
printf 'AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n' "$id" "$secret" >> "$env.new"
chmod 0600 "$env.new"
mv "$env.new" "$env"
systemctl try-restart 'lab-*.service'
"#;

/// An explicit `ami-…` id, or the newest image whose name matches the pattern.
async fn image_id(c: &Aws, image: &str, owner: Option<&str>) -> Result<String, ProviderError> {
    if image.starts_with("ami-") {
        return Ok(image.to_owned());
    }
    let out = c
        .call(
            Ec2,
            c.ec2
                .describe_images()
                .filters(ec2_filter("name", image))
                .set_owners(owner.map(|o| vec![o.to_owned()]))
                .send(),
        )
        .await
        .map_err(failed(format!("looking up image `{image}`")))?;
    out.images()
        .iter()
        .max_by_key(|i| i.creation_date().unwrap_or_default())
        .and_then(|i| i.image_id())
        .map(str::to_owned)
        .ok_or_else(|| {
            ProviderError::invalid(format!(
                "no machine image named like `{image}`{} in {}",
                owner.map(|o| format!(" owned by {o}")).unwrap_or_default(),
                c.region
            ))
        })
}

/// The live instance an earlier (maybe interrupted) create made for this address.
async fn find(c: &Aws, spec: &ResourceSpec) -> Result<Option<Instance>, ProviderError> {
    let mut filters = ec2_owned(spec);
    filters.push(
        aws_sdk_ec2::types::Filter::builder()
            .name("instance-state-name")
            .set_values(Some(LIVE.map(String::from).to_vec()))
            .build(),
    );
    let out = c
        .call(Ec2, c.ec2.describe_instances().set_filters(Some(filters)).send())
        .await
        .map_err(failed(format!("looking for the VM of {}", spec.address)))?;
    Ok(out.reservations().iter().flat_map(|r| r.instances()).next().cloned())
}

fn observed(i: &Instance) -> Observed {
    Observed {
        id: i.instance_id().unwrap_or_default().to_owned(),
        attributes: attrs(json!({
            "instance_id": i.instance_id(),
            "instance_type": i.instance_type().map(|t| t.as_str()),
            "image_id": i.image_id(),
            "subnet_id": i.subnet_id(),
            "private_ip": i.private_ip_address(),
            "public_ip": i.public_ip_address(),
            "state": i.state().and_then(|s| s.name()).map(|s| s.as_str()),
            "ports": { "mapreduce": PORTS.mapreduce, "scheduler": PORTS.scheduler, "scheduler_http": PORTS.scheduler_http },
        })),
        sensitive: vec![],
    }
}

/// EC2's word on a VM that SSH cannot reach.
pub(crate) struct Ec2States(pub Arc<Clients>);

#[async_trait::async_trait]
impl VmStates for Ec2States {
    async fn not_running(&self, id: &str) -> Option<String> {
        let c = self.0.get().await.ok()?;
        let state = state(c, id).await.ok()?;
        (!matches!(state.as_deref(), Some("running" | "pending"))).then(|| state.unwrap_or("gone".into()))
    }
}

async fn describe(c: &Aws, id: &str) -> Result<Option<Instance>, ProviderError> {
    match c.call(Ec2, c.ec2.describe_instances().instance_ids(id).send()).await {
        Ok(out) => Ok(out.reservations().iter().flat_map(|r| r.instances()).next().cloned()),
        Err(e) if is_missing(&e, &["InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"]) => Ok(None),
        Err(e) => Err(failed(format!("reading VM {id}"))(e)),
    }
}

pub(crate) async fn read(c: &Aws, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
    Ok(describe(c, &prior.id).await?.filter(|i| !is_ended(i)).map(|i| {
        let mut now = observed(&i);
        rekey::carry(prior, &mut now, &[USER_DATA_SHA256, DELIVERED_KEY]);
        now
    }))
}

/// Terminates the VM and waits until it is gone (its security group can go only then).
pub(crate) async fn delete(c: &Aws, id: &str) -> Result<(), ProviderError> {
    ignore_missing(
        c.call(Ec2, c.ec2.terminate_instances().instance_ids(id).send()).await,
        &["InvalidInstanceID.NotFound"],
        &format!("terminating VM {id}"),
    )?;
    let start = tokio::time::Instant::now();
    while let Some(i) = describe(c, id).await? {
        if i.state().and_then(|s| s.name()) == Some(&InstanceStateName::Terminated) {
            return Ok(());
        }
        if start.elapsed() > TERMINATE_WAIT {
            return Err(ProviderError::new(ErrorKind::Timeout, format!("VM {id} is still shutting down")));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(())
}

pub(crate) async fn delete_volume(c: &Aws, id: &str) -> Result<(), ProviderError> {
    match c.call(Ec2, c.ec2.delete_volume().volume_id(id).send()).await {
        Err(e) if code(&e) == Some("VolumeInUse") => {
            Err(ProviderError::new(ErrorKind::Unavailable, format!("volume {id} is still attached")))
        }
        result => ignore_missing(result, &["InvalidVolume.NotFound"], &format!("deleting volume {id}")),
    }
}
