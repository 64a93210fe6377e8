//! Removing what a runner left behind when its process was killed outright (a test killed
//! by its harness): the processes in its cgroups or started from its directory, the mounts
//! below it, its network namespaces and cgroups, and the directory.

use std::path::Path;
use std::process::Command;

use crate::cgroups::{kill_all_in, Cgroups};

/// Sweeps every runner directory `TMP/<dir_prefix><pid>-…` whose process is gone, with the
/// network namespaces and cgroups (in `hierarchies`) named `<name_prefix><pid>-…`.
pub fn stale(dir_prefix: &str, name_prefix: &str, hierarchies: &[impl AsRef<Path>]) {
    let alive = |pid: &str| Path::new("/proc").join(pid).exists();
    for entry in std::fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file_name.strip_prefix(dir_prefix) else { continue };
        let pid = name.split('-').next().unwrap_or_default();
        if pid.is_empty() || alive(pid) {
            continue;
        }
        let dir = entry.path();
        let prefix = format!("{name_prefix}{pid}-");
        let cgroups = Cgroups::named_like(hierarchies, &prefix);
        kill_all_in(cgroups.paths());
        let _ = Command::new("pkill").arg("-KILL").arg("-f").arg(dir.as_os_str()).status();
        unmount_below(&dir);
        drop(cgroups);
        delete_netns_named_like(&prefix);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Unmounts everything mounted at or below `dir`, deepest first (lazily where busy).
pub fn unmount_below(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        if !Command::new("umount").arg(point).status().is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(point).status();
        }
    }
}

/// Deletes every network namespace whose name starts with `prefix`.
pub fn delete_netns_named_like(prefix: &str) {
    let listed = Command::new("ip").args(["netns", "list"]).output();
    let listed = listed.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    for ns in listed.lines().filter_map(|l| l.split(' ').next()).filter(|n| n.starts_with(prefix)) {
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
    }
}
