//! Cgroups that test runners make for what they start, removed with everything made below.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The hierarchies an init system needs a cgroup in (a host whose PID 1 is not systemd has
/// none for it): the named systemd one and the unified one of a hybrid host, or the root of
/// a unified host.
pub const INIT_HIERARCHIES: [&str; 2] = ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"];

/// Every hierarchy mounted under `/sys/fs/cgroup`: each controller's on a cgroup v1 host
/// (where a kubelet needs a cgroup root in all of them), the root alone on a unified host.
pub fn all_hierarchies() -> Vec<String> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.display().to_string()];
    }
    let mut found: Vec<String> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path().display().to_string())
        .collect();
    found.sort();
    found
}

/// A cgroup of one name in several hierarchies, removed on drop (with those made below).
#[derive(Debug)]
pub struct Cgroups(Vec<PathBuf>);

impl Cgroups {
    /// Makes cgroup `name` (e.g. `a` or `a/b`) in each of `hierarchies` that is mounted.
    pub fn create(hierarchies: &[impl AsRef<Path>], name: &str) -> io::Result<Self> {
        let mut cgroups = Self(vec![]);
        for root in hierarchies.iter().map(AsRef::as_ref).filter(|r| r.is_dir()) {
            let mut cgroup = root.to_owned();
            for part in Path::new(name).iter() {
                cgroup.push(part);
                if !cgroup.is_dir() {
                    fs::create_dir(&cgroup)?;
                    inherit_cpuset(&cgroup)?;
                }
            }
            cgroups.0.push(cgroup);
        }
        Ok(cgroups)
    }

    /// The cgroup's directory in each hierarchy.
    pub fn paths(&self) -> &[PathBuf] {
        &self.0
    }

    /// The cgroups named with `prefix` at the top of `hierarchies`, e.g. those a runner that
    /// did not stop left behind.
    pub fn named_like(hierarchies: &[impl AsRef<Path>], prefix: &str) -> Self {
        let mut found = vec![];
        for root in hierarchies.iter().map(AsRef::as_ref) {
            for e in fs::read_dir(root).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().starts_with(prefix) {
                    found.push(e.path());
                }
            }
        }
        Self(found)
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for cgroup in &self.0 {
            remove_cgroup(cgroup);
        }
    }
}

/// Every process in `cgroups` and the cgroups below them.
pub fn processes_in(cgroups: &[PathBuf]) -> Vec<i32> {
    fn walk(dir: &Path, found: &mut Vec<i32>) {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        found.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path(), found);
            }
        }
    }
    let mut found = vec![];
    for cgroup in cgroups {
        walk(cgroup, &mut found);
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// Kills every process in `cgroups` and below, again until none is left (up to 20 s): what
/// a runner started and all they started in turn, including those reparented to init.
pub fn kill_all_in(cgroups: &[PathBuf]) {
    let start = Instant::now();
    loop {
        let left = processes_in(cgroups);
        if left.is_empty() || start.elapsed() > Duration::from_secs(20) {
            return;
        }
        for pid in left {
            // SAFETY: kill(2) has no memory effects; the process is one the runner started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A new cgroup v1 cpuset starts with no CPUs and no memory nodes, and no process can join
/// it: it takes its parent's, and so do the cgroups made below it (`cgroup.clone_children`).
fn inherit_cpuset(cgroup: &Path) -> io::Result<()> {
    let Some(parent) = cgroup.parent() else { return Ok(()) };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if cgroup.join(file).exists() {
            fs::write(cgroup.join(file), fs::read_to_string(parent.join(file))?.trim())?;
        }
    }
    if cgroup.join("cpuset.cpus").exists() {
        fs::write(cgroup.join("cgroup.clone_children"), "1")?;
    }
    Ok(())
}

/// Removes a cgroup and the ones made below it, deepest first.
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
