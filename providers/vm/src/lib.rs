//! What labctl's VM-providing clouds share. A student's VM is booted with
//! [`cloud_init`] user data that installs and supervises their workers; labctl reaches it
//! over [`ssh`] as the student, with the key pair from [`ssh::key_pair`], to run the
//! [`smoke`] workloads and to hand it a rotated cloud key. Each cloud supplies only what is
//! its own: where the binaries are fetched from, the workers' cloud access, and whether a VM
//! it cannot reach is running at all ([`ssh::VmStates`]).

pub mod cloud_init;
pub mod notebook;
pub mod rekey;
pub mod smoke;
pub mod ssh;

use std::path::Path;

use cloud_init::{MapReduce, Scheduler};
use labctl_provider_api::lab::{Lab, LabSections, StudentSection};
use labctl_provider_api::{ports, sha256, Attributes, Endpoints, Findings, ProviderError, StudentResources};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Whether workers run on students' VMs: the lab gives workers, and some students VMs.
pub fn vm_workers(lab: &Lab) -> bool {
    lab.student.workers.is_some() && lab.any_vms()
}

/// Where SSH to the VMs may come from unless the lab says: anywhere.
const ANYWHERE: &str = "0.0.0.0/0";

/// Where SSH to the students' VMs may come from: the lab's `ssh_cidrs`, else anywhere.
pub fn ssh_cidrs(student: &StudentSection) -> Vec<String> {
    let listed: Vec<String> =
        student.compute.iter().flat_map(|c| &c.ssh_cidrs).map(|c| c.get_ref().clone()).collect();
    if listed.is_empty() {
        vec![ANYWHERE.to_owned()]
    } else {
        listed
    }
}

/// Warns when the students' VMs take SSH from the whole internet.
pub fn warn_open_ssh(lab: &LabSections<'_>, findings: &mut Findings) {
    if lab.any_vms() && ssh_cidrs(lab.student).iter().any(|c| c == ANYWHERE) {
        findings.warnings.push(format!(
            "SSH to the students' VMs is open to the whole internet ({ANYWHERE}): set [student.compute] ssh_cidrs to where students and labctl connect from, e.g. [\"203.0.113.0/24\"]"
        ));
    }
}

/// The workers a student's VM runs.
pub fn services(lab: &Lab) -> (Option<MapReduce>, Option<Scheduler>) {
    (
        lab.mapreduce().map(|m| MapReduce { workers: *m.workers.get_ref() }),
        lab.scheduler().map(|s| Scheduler { workers: *s.workers.get_ref(), slots: s.slots.unwrap_or(1) }),
    )
}

/// A VM's notebook service, as its config records it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct NotebookService {
    pub dask_workers: u32,
    pub spark: bool,
}

/// The students' notebook service on their VMs, if the lab gives them one.
pub fn notebook_service(lab: &Lab) -> Option<NotebookService> {
    lab.student.notebook.as_ref().map(|n| NotebookService { dask_workers: n.workers(), spark: n.spark() })
}

/// The worker binaries a VM runs, uploaded to `bin/` of the lab's artifacts bucket.
pub const WORKER_BINARIES: [&str; 2] = ["lab-mapreduce", "lab-scheduler"];

/// A worker binary of `bin_dir` and its SHA-256, which the VM checks after download.
pub async fn worker_binary(bin_dir: &Path, name: &str) -> Result<(Vec<u8>, String), ProviderError> {
    let path = bin_dir.join(name);
    let bytes = tokio::fs::read(&path).await.map_err(|e| {
        ProviderError::fatal(format!(
            "cannot read the worker binary {}: {e} (build the workspace, or set LABCTL_WORKER_BIN_DIR)",
            path.display()
        ))
    })?;
    let hash = sha256(&bytes);
    Ok((bytes, hash))
}

/// A student's workers on their VM as their handout shows them: the addresses an SSH
/// tunnel gives, their token, and the VM (`access["vm"]`: its address, the workers' ports,
/// the student's SSH key).
pub fn endpoints(student: &StudentResources) -> Endpoints {
    let attr = |what: &str, key: &str| student.attr(what, key).map(str::to_owned);
    let vm = student.resources.get("vm");
    let ports = vm.and_then(|vm| vm.attributes.get("ports")).cloned();
    let port = |service: &str| {
        let port = ports.as_ref().and_then(|p| p.get(service)).and_then(Value::as_u64);
        port.map(|p| format!("127.0.0.1:{p}"))
    };
    let access = vm.map(|vm| {
        let access = json!({
            "vm_ip": vm_address(&vm.attributes),
            "ssh_private_key": attr("credential", "ssh_private_key"),
            "ports": ports,
        });
        ("vm".to_owned(), access)
    });
    Endpoints {
        mapreduce: port("mapreduce"),
        scheduler: port("scheduler"),
        status_url: port("scheduler_http").map(|a| format!("http://{a}/status")),
        token: attr("credential", "token"),
        access: access.into_iter().chain(notebook_access(student)).collect(),
        ..Endpoints::default()
    }
}

/// The handout's `notebook` section for a VM's notebook service: the addresses its SSH
/// tunnel (`tunnel`: the ports it forwards) gives.
fn notebook_access(student: &StudentResources) -> Option<(String, Value)> {
    let notebook = student.resources.get("vm")?.config.get("notebook").filter(|n| !n.is_null())?;
    let access = json!({
        "url": format!("http://127.0.0.1:{}/lab", ports::JUPYTER),
        "dask_scheduler": format!("tcp://127.0.0.1:{}", ports::DASK_SCHEDULER),
        "dask_dashboard": format!("http://127.0.0.1:{}", ports::DASK_DASHBOARD),
        "dask_workers": notebook["dask_workers"],
        "spark": notebook["spark"],
        "tunnel": [ports::JUPYTER, ports::DASK_SCHEDULER, ports::DASK_DASHBOARD],
        "saved": format!("on your VM, in /home/{}", student.student),
    });
    Some(("notebook".to_owned(), access))
}

/// A student's VM as `labctl status` shows it: its id, address and state as last seen.
pub fn describe(student: &StudentResources) -> Option<(String, String)> {
    let vm = student.resources.get("vm")?;
    let state = vm.attributes.get("state").and_then(Value::as_str).unwrap_or("?");
    let ip = vm_address(&vm.attributes).unwrap_or("?");
    Some(("vm".to_owned(), format!("{} {ip} ({state})", vm.id)))
}

/// Where a student's VM is reached (given its attributes): its public address, else its
/// private one.
pub fn vm_address(vm: &Attributes) -> Option<&str> {
    let attribute = |k: &str| vm.get(k).and_then(Value::as_str);
    attribute("public_ip").or_else(|| attribute("private_ip"))
}
