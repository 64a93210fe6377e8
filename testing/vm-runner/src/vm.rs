//! One VM: an overlay over the shared image, the instance's user data as a NoCloud seed,
//! its own cgroup and network namespace, and systemd booted in it by systemd-nspawn.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use labctl_test_host::cgroups::{Cgroups, INIT_HIERARCHIES};
use labctl_test_host::netns::{reserve_ssh_address, run, Netns, Relay};

/// A booted VM. Dropping it shuts it down (systemd-nspawn halts its systemd on SIGTERM;
/// killed after a grace period), then removes its relays, overlay mount, cgroups and
/// namespace; its disk (the overlay's upper layer in its directory) stays.
#[derive(Debug)]
pub struct Vm {
    pub instance_id: String,
    /// Where the host reaches the VM's sshd (port 22), on the host's loopback.
    pub address: Ipv4Addr,
    dir: PathBuf,
    nspawn: Child,
    // Held for their drop, in this order, once the VM is down.
    _relays: Vec<Relay>,
    overlay: Overlay,
    _cgroups: Cgroups,
    _netns: Arc<Netns>,
}

/// What a VM is booted with.
pub struct Boot<'a> {
    pub image: &'a Path,
    /// A directory of its own for the VM's disk and console log: a VM booted again in the
    /// same directory boots from the disk it had.
    pub dir: PathBuf,
    /// Unique on this host among running VMs: names its namespace and cgroups.
    pub name: String,
    pub instance_id: &'a str,
    pub user_data: &'a [u8],
    /// Host loopback ports the VM reaches at the same `127.0.0.1:PORT` (the emulator).
    pub forward: &'a [u16],
}

/// How long a VM may take to shut down before it is killed.
const GRACE: Duration = Duration::from_secs(10);

impl Vm {
    /// Boots a VM; on failure at any step, what the steps before made is removed again.
    pub fn boot(b: Boot) -> io::Result<Self> {
        let netns = Arc::new(Netns::create(&b.name)?);
        let (address, listener) = reserve_ssh_address()?;
        let mut relays =
            vec![Relay::inbound(netns.clone(), listener, SocketAddr::from((Ipv4Addr::LOCALHOST, 22)))?];
        for port in b.forward {
            let local = SocketAddr::from((Ipv4Addr::LOCALHOST, *port));
            relays.push(Relay::outbound(netns.clone(), local, local)?);
        }
        let overlay = Overlay::mount(b.image, &b.dir)?;
        let seed = overlay.merged.join("var/lib/cloud/seed/nocloud");
        fs::create_dir_all(&seed)?;
        fs::write(seed.join("user-data"), b.user_data)?;
        fs::write(
            seed.join("meta-data"),
            format!("instance-id: \"{0}\"\nlocal-hostname: \"{0}\"\n", b.instance_id),
        )?;
        let cgroups = Cgroups::create(&INIT_HIERARCHIES, &b.name)?;
        // The supervisor moves itself into the VM's cgroups, then becomes systemd-nspawn.
        let join: String =
            cgroups.paths().iter().map(|c| format!("echo $$ > {}/cgroup.procs && ", c.display())).collect();
        let console = fs::OpenOptions::new().create(true).append(true).open(b.dir.join("console.log"))?;
        let nspawn = Command::new("sh")
            .arg("-c")
            .arg(format!("{join}exec \"$@\""))
            .arg("sh")
            .arg("systemd-nspawn")
            .arg("--quiet")
            .arg("-D")
            .arg(&overlay.merged)
            .args(["-M", &format!("vm-{}", b.instance_id), "--boot", "--register=no", "--keep-unit"])
            .arg(format!("--network-namespace-path={}", netns.path().display()))
            .stdin(Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console)
            .spawn()?;
        Ok(Self {
            instance_id: b.instance_id.to_owned(),
            address,
            dir: b.dir,
            nspawn,
            _relays: relays,
            overlay,
            _cgroups: cgroups,
            _netns: netns,
        })
    }

    /// The VM's root filesystem, as the host sees it.
    pub fn root(&self) -> PathBuf {
        self.overlay.merged.clone()
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
}

impl Drop for Vm {
    fn drop(&mut self) {
        // SAFETY: signalling the child this VM spawned.
        unsafe { libc::kill(self.nspawn.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while self.running() && start.elapsed() < GRACE {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.running() {
            let _ = self.nspawn.kill();
        }
        let _ = self.nspawn.wait();
        let machine = format!("vm-{}", self.instance_id);
        let _ = fs::remove_dir_all(Path::new("/run/systemd/nspawn/propagate").join(machine));
    }
}

/// A VM's overlay over the image at `merged`, unmounted on drop.
#[derive(Debug)]
struct Overlay {
    merged: PathBuf,
}

impl Overlay {
    fn mount(image: &Path, dir: &Path) -> io::Result<Self> {
        for d in ["upper", "work", "merged"] {
            fs::create_dir_all(dir.join(d))?;
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            image.display(),
            dir.join("upper").display(),
            dir.join("work").display()
        );
        let merged = dir.join("merged");
        let overlay = Self { merged };
        run(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &options]).arg(&overlay.merged))?;
        Ok(overlay)
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        if run(Command::new("umount").arg(&self.merged)).is_err() {
            let _ = run(Command::new("umount").arg("-l").arg(&self.merged));
        }
    }
}
