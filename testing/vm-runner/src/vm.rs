//! One VM: an overlay over the shared image, the instance's user data as a NoCloud seed,
//! its own cgroup and network namespace, and systemd booted in it by systemd-nspawn.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::netns::{run, Direction, Netns, Relay};

/// The cgroup hierarchies a VM gets a cgroup in (a host whose PID 1 is not systemd has
/// none for it): the named systemd one and the unified one of a hybrid host, or the root
/// of a unified host.
const CGROUP_ROOTS: [&str; 2] = ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"];

/// A booted VM.
#[derive(Debug)]
pub struct Vm {
    pub instance_id: String,
    /// Where the host reaches the VM's sshd (port 22), on the host's loopback.
    pub address: Ipv4Addr,
    dir: PathBuf,
    machine: String,
    nspawn: Child,
    cgroups: Vec<PathBuf>,
    relays: Vec<Relay>,
    netns: Arc<Netns>,
}

/// What a VM is booted with.
pub struct Boot<'a> {
    pub image: &'a Path,
    /// A directory of its own for the VM's overlay and logs.
    pub dir: PathBuf,
    /// Unique on this host among running VMs: names its namespace and cgroups.
    pub name: String,
    pub instance_id: &'a str,
    pub user_data: &'a [u8],
    pub address: Ipv4Addr,
    /// Host loopback ports the VM reaches at the same `127.0.0.1:PORT` (the emulator).
    pub forward: &'a [u16],
}

impl Vm {
    pub fn boot(b: Boot) -> io::Result<Self> {
        let merged = b.dir.join("merged");
        for d in ["upper", "work", "merged"] {
            fs::create_dir_all(b.dir.join(d))?;
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            b.image.display(),
            b.dir.join("upper").display(),
            b.dir.join("work").display()
        );
        run(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &options]).arg(&merged))?;
        let seed = merged.join("var/lib/cloud/seed/nocloud");
        fs::create_dir_all(&seed)?;
        fs::write(seed.join("user-data"), b.user_data)?;
        fs::write(seed.join("meta-data"), format!("instance-id: {0}\nlocal-hostname: {0}\n", b.instance_id))?;

        let netns = Arc::new(Netns::create(&b.name)?);
        let mut cgroups = vec![];
        for root in CGROUP_ROOTS.iter().map(Path::new).filter(|r| r.is_dir()) {
            let cgroup = root.join(&b.name);
            fs::create_dir_all(&cgroup)?;
            cgroups.push(cgroup);
        }
        // The supervisor moves itself into the VM's cgroups, then becomes systemd-nspawn.
        let join: String =
            cgroups.iter().map(|c| format!("echo $$ > {}/cgroup.procs && ", c.display())).collect();
        let machine = format!("vm-{}", b.instance_id);
        let console = fs::File::create(b.dir.join("console.log"))?;
        let nspawn = Command::new("sh")
            .arg("-c")
            .arg(format!("{join}exec \"$@\""))
            .arg("sh")
            .arg("systemd-nspawn")
            .arg("--quiet")
            .arg("-D")
            .arg(&merged)
            .args(["-M", &machine, "--boot", "--register=no", "--keep-unit"])
            .arg(format!("--network-namespace-path={}", netns.path().display()))
            .stdin(Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console)
            .spawn()?;

        let mut relays = vec![Relay::start(
            netns.clone(),
            Direction::In,
            SocketAddr::from((b.address, 22)),
            SocketAddr::from((Ipv4Addr::LOCALHOST, 22)),
        )?];
        for port in b.forward {
            let local = SocketAddr::from((Ipv4Addr::LOCALHOST, *port));
            relays.push(Relay::start(netns.clone(), Direction::Out, local, local)?);
        }
        Ok(Self {
            instance_id: b.instance_id.to_owned(),
            address: b.address,
            dir: b.dir,
            machine,
            nspawn,
            cgroups,
            relays,
            netns,
        })
    }

    /// The VM's root filesystem, as the host sees it.
    pub fn root(&self) -> PathBuf {
        self.dir.join("merged")
    }

    /// What the VM printed on its console.
    pub fn console(&self) -> String {
        fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
    }

    /// Whether cloud-init has finished (whatever its outcome).
    pub fn booted(&self) -> bool {
        self.root().join("var/lib/cloud/instances").join(&self.instance_id).join("boot-finished").exists()
    }

    /// The errors cloud-init reported in its stages (`status.json`), empty if none.
    pub fn cloud_init_errors(&self) -> Vec<String> {
        let text = fs::read_to_string(self.root().join("var/lib/cloud/data/status.json")).unwrap_or_default();
        let mut errors = vec![];
        // `"errors": [ ... ]` per stage; an empty list is `[]`.
        for part in text.split("\"errors\":").skip(1) {
            let list = part.split(']').next().unwrap_or_default().trim().trim_start_matches('[').trim();
            if !list.is_empty() {
                errors.push(list.to_owned());
            }
        }
        errors
    }

    /// Runs a command inside the VM (all of its namespaces, as root).
    pub fn exec(&self, args: &[&str]) -> io::Result<Output> {
        let leader = self.leader()?;
        Command::new("nsenter")
            .args(["-t", &leader.to_string(), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "--"])
            .args(args)
            .output()
    }

    /// The VM's PID 1 as the host sees it: systemd-nspawn's child.
    fn leader(&self) -> io::Result<u32> {
        let pid = self.nspawn.id();
        let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))?;
        children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| io::Error::other(format!("VM {} has no init process", self.instance_id)))
    }

    /// Whether systemd-nspawn still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.nspawn.try_wait(), Ok(None))
    }

    /// Shuts the VM down (systemd-nspawn halts its systemd on SIGTERM), killing it after
    /// `grace`; then removes its relays, overlay, namespace and cgroups.
    pub fn power_off(mut self, grace: Duration) -> io::Result<()> {
        // SAFETY: signalling the child this VM spawned.
        unsafe { libc::kill(self.nspawn.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while self.running() && start.elapsed() < grace {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.running() {
            let _ = self.nspawn.kill();
        }
        let _ = self.nspawn.wait();
        self.relays.clear();
        let merged = self.root();
        if run(Command::new("umount").arg(&merged)).is_err() {
            run(Command::new("umount").arg("-l").arg(&merged))?;
        }
        for cgroup in &self.cgroups {
            remove_cgroup(cgroup);
        }
        let _ = fs::remove_dir_all(Path::new("/run/systemd/nspawn/propagate").join(&self.machine));
        drop(self.netns);
        fs::remove_dir_all(&self.dir)
    }
}

/// Removes a cgroup and the ones systemd made below it, deepest first.
fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}
