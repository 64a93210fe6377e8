//! Test-only VM runner. The cloud emulators (moto's EC2, our GCE) record instances but run
//! nothing; this watches one ([`Cloud`]) and, for every instance carrying labctl's tags that
//! it reports running, boots a real VM — systemd and cloud-init reading that instance's user
//! data, in systemd-nspawn over an overlay of a Debian image (`image.sh`) — and powers it off
//! once the instance is stopped or ended. A stopped instance keeps its disk (the overlay's
//! upper layer): when it runs again, its VM boots from it, as a cloud VM keeps its boot
//! disk. Each VM has a network namespace with loopback only: the host reaches its sshd at an
//! address of its own on the host's loopback (`127.100.x.y:22`), and it reaches the emulator
//! at the lab's own endpoint (`127.0.0.1:PORT`), through relays. Needs root.

mod cloud;
mod vm;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use labctl_test_host::cgroups::INIT_HIERARCHIES;

pub use cloud::{Cloud, Ec2, Gce, Instance, State};
pub use vm::Vm;

/// What the runner knows of an instance's VM, for tests.
#[derive(Debug, Clone, PartialEq)]
pub struct VmInfo {
    pub instance_id: String,
    /// The instance's public address as the emulator reports it (never contacted).
    pub public_ip: Option<String>,
    /// Where its sshd is on the host.
    pub address: Ipv4Addr,
    pub root: PathBuf,
}

/// Boots and powers off VMs as the emulator's instances come and go; powers every VM off
/// on drop.
pub struct Runner {
    shared: Arc<Shared>,
    watcher: Option<JoinHandle<()>>,
}

struct Shared {
    image: PathBuf,
    /// This runner's directory; its name also names the VMs' namespaces and cgroups.
    work: PathBuf,
    name: String,
    /// The emulator's port, relayed into every VM.
    port: u16,
    vms: Mutex<BTreeMap<String, (Vm, Option<String>)>>,
    /// Instances that were terminated: their VMs are never booted again.
    ended: Mutex<Vec<String>>,
    errors: Mutex<Vec<String>>,
    /// Where to keep an ssh_config mapping the instances' public addresses to their VMs.
    ssh_config: Mutex<Option<PathBuf>>,
    stop: AtomicBool,
}

/// Where the kept ssh_config sends every address that is no running VM's: a loopback
/// address no VM gets (theirs are 127.100.0.0 to 127.115.255.255), where nothing listens.
const NOWHERE: Ipv4Addr = Ipv4Addr::new(127, 99, 0, 1);

impl Shared {
    /// Rewrites the kept ssh_config from the running VMs.
    fn write_ssh_config(&self) {
        let Some(path) = self.ssh_config.lock().unwrap_or_else(|e| e.into_inner()).clone() else { return };
        let vms = self.vms.lock().unwrap_or_else(|e| e.into_inner());
        let mut text: String = vms
            .values()
            .filter_map(|(vm, ip)| {
                Some(format!("Host {}\n  HostName {}\n  Port 22\n", ip.as_ref()?, vm.address))
            })
            .collect();
        drop(vms);
        // Any other address (a VM that is off) is not contacted: it leads where nothing listens.
        text.push_str(&format!("Host *\n  HostName {NOWHERE}\n  Port 22\n"));
        let _ = std::fs::write(&path, text);
    }
}

impl Runner {
    /// Watches `cloud`, whose emulator listens at `endpoint` (e.g. `http://127.0.0.1:5000`,
    /// relayed into every VM), booting VMs from `image` (the root filesystem `image.sh`
    /// prints).
    pub fn start(cloud: impl Cloud, endpoint: &str, image: &Path) -> io::Result<Self> {
        let port = endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .ok_or_else(|| io::Error::other(format!("no port in {endpoint}")))?;
        if !image.join("usr/bin/cloud-init").exists() {
            return Err(io::Error::other(format!("{} is not a VM image (run image.sh)", image.display())));
        }
        // Several runners may share a process (tests run in threads): each has its own name.
        static RUNNERS: AtomicU32 = AtomicU32::new(0);
        let name = format!("{}-{}", std::process::id(), RUNNERS.fetch_add(1, Ordering::Relaxed));
        sweep_stale();
        let work = std::env::temp_dir().join(format!("labctl-vm-runner-{name}"));
        std::fs::create_dir_all(&work)?;
        let shared = Arc::new(Shared {
            image: image.to_owned(),
            work,
            name,
            port,
            vms: Mutex::default(),
            ended: Mutex::default(),
            errors: Mutex::default(),
            ssh_config: Mutex::default(),
            stop: AtomicBool::new(false),
        });
        let watching = shared.clone();
        let cloud: Box<dyn Cloud> = Box::new(cloud);
        let watcher = std::thread::spawn(move || watch(&watching, cloud));
        Ok(Self { shared, watcher: Some(watcher) })
    }

    /// This runner's directory: every VM's overlay and the command lines of its processes
    /// are under it.
    pub fn work_dir(&self) -> &Path {
        &self.shared.work
    }

    /// Every running VM.
    pub fn vms(&self) -> Vec<VmInfo> {
        let vms = self.shared.vms.lock().unwrap_or_else(|e| e.into_inner());
        vms.values()
            .map(|(vm, ip)| VmInfo {
                instance_id: vm.instance_id.clone(),
                public_ip: ip.clone(),
                address: vm.address,
                root: vm.root(),
            })
            .collect()
    }

    /// Runs `f` on the VM of `instance_id`, if it runs.
    pub fn with_vm<T>(&self, instance_id: &str, f: impl FnOnce(&Vm) -> T) -> Option<T> {
        let vms = self.shared.vms.lock().unwrap_or_else(|e| e.into_inner());
        vms.get(instance_id).map(|(vm, _)| f(vm))
    }

    /// Waits until `count` VMs run and cloud-init has finished in each; the VMs' consoles
    /// on failure.
    pub fn wait_booted(&self, count: usize, timeout: Duration) -> Result<Vec<VmInfo>, String> {
        let start = Instant::now();
        loop {
            let booted = {
                let vms = self.shared.vms.lock().unwrap_or_else(|e| e.into_inner());
                vms.values().filter(|(vm, _)| vm.booted()).count()
            };
            if booted >= count {
                return Ok(self.vms());
            }
            if start.elapsed() > timeout {
                let vms = self.shared.vms.lock().unwrap_or_else(|e| e.into_inner());
                let consoles: Vec<String> =
                    vms.values().map(|(vm, _)| format!("--- {}\n{}", vm.instance_id, vm.console())).collect();
                return Err(format!(
                    "{booted} of {count} VMs booted after {timeout:?}; errors: {:?}\n{}",
                    self.errors(),
                    consoles.join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Keeps an ssh_config at `path` that maps each instance's public address to its VM,
    /// rewritten as VMs come and go (what a user's ~/.ssh/config would do for a bastion).
    pub fn keep_ssh_config(&self, path: &Path) {
        *self.shared.ssh_config.lock().unwrap_or_else(|e| e.into_inner()) = Some(path.to_owned());
        self.shared.write_ssh_config();
    }

    /// What went wrong booting or powering off VMs.
    pub fn errors(&self) -> Vec<String> {
        self.shared.errors.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
        let vms = std::mem::take(&mut *self.shared.vms.lock().unwrap_or_else(|e| e.into_inner()));
        drop(vms);
        let _ = std::fs::remove_dir_all(&self.shared.work);
    }
}

/// Removes what runners of processes that are gone left behind (a test killed outright):
/// their VMs' processes, overlays, cgroups, namespaces and directories.
fn sweep_stale() {
    labctl_test_host::sweep::stale("labctl-vm-runner-", "lvm-", &INIT_HIERARCHIES);
}

/// Polls the cloud until stopped, booting and powering off VMs to match its instances.
fn watch(shared: &Shared, mut cloud: Box<dyn Cloud>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
    let (mut next, mut seen) = (1u32, BTreeSet::new());
    while !shared.stop.load(Ordering::Relaxed) {
        if let Err(e) = runtime.block_on(reconcile(shared, cloud.as_mut(), &mut next, &mut seen)) {
            shared.errors.lock().unwrap_or_else(|e| e.into_inner()).push(e);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// One look at the cloud: `seen` holds every instance listed so far.
async fn reconcile(
    shared: &Shared,
    cloud: &mut dyn Cloud,
    next: &mut u32,
    seen: &mut BTreeSet<String>,
) -> Result<(), String> {
    let instances = cloud.instances().await?;
    // An instance no longer listed has ended (GCE forgets a deleted VM at once), running or
    // stopped.
    let listed: BTreeSet<String> = instances.iter().map(|i| i.id.clone()).collect();
    let gone: Vec<String> = seen.difference(&listed).cloned().collect();
    seen.extend(listed);
    let ended =
        gone.into_iter().map(|id| Instance { id, state: State::Ended, public_ip: None, user_data: None });
    for instance in instances.into_iter().chain(ended) {
        let id = instance.id.as_str();
        let known = shared.vms.lock().unwrap_or_else(|e| e.into_inner()).contains_key(id);
        let ended = shared.ended.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|e| e == id);
        match instance.state {
            State::Running if !known && !ended => {
                let user_data = match instance.user_data {
                    Some(data) => data,
                    None => cloud.user_data(id).await?,
                };
                let n = *next;
                *next += 1;
                let name = format!("lvm-{}-{n}", shared.name);
                let vm = Vm::boot(vm::Boot {
                    image: &shared.image,
                    dir: shared.work.join(id),
                    name,
                    instance_id: id,
                    user_data: &user_data,
                    forward: &[shared.port],
                })
                .map_err(|e| format!("booting {id}: {e}"))?;
                let ip = instance.public_ip.clone();
                shared.vms.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_owned(), (vm, ip));
                shared.write_ssh_config();
            }
            State::Ended if !ended => {
                shared.ended.lock().unwrap_or_else(|e| e.into_inner()).push(id.to_owned());
                let vm = shared.vms.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
                shared.write_ssh_config();
                drop(vm);
                // Its disk goes with it.
                let disk = shared.work.join(id);
                if disk.exists() {
                    std::fs::remove_dir_all(&disk).map_err(|e| format!("{}: {e}", disk.display()))?;
                }
            }
            State::Stopped if known => {
                let vm = shared.vms.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
                shared.write_ssh_config();
                drop(vm);
            }
            _ => {}
        }
    }
    Ok(())
}
