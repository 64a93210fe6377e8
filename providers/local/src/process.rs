//! Detached worker processes: started in their own process group so they outlive
//! `labctl apply` and ignore its Ctrl-C, identified by pid *and* start time so that a
//! reused pid is never mistaken for ours, stopped gracefully then forcefully, with little of
//! labctl's environment.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A process we started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    pub role: String,
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start: u64,
}

/// What a started process keeps of labctl's environment: where programs are, a home, the
/// locale, Java; not the instructor's cloud keys or SSH agent (students' code runs there).
const KEPT_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "JAVA_HOME",
    "RUST_LOG",
];

/// Starts `exe args` detached, with stdout and stderr in `log` (a previous log is kept as
/// `<log>.1`).
pub fn spawn(
    role: &str,
    exe: &Path,
    args: &[String],
    env: &[(&str, &str)],
    log: &Path,
) -> std::io::Result<Proc> {
    if log.exists() {
        let mut old = log.as_os_str().to_owned();
        old.push(".1");
        std::fs::rename(log, old)?;
    }
    let out = OpenOptions::new().create(true).write(true).truncate(true).open(log)?;
    let child = Command::new(exe)
        .args(args)
        .env_clear()
        .envs(KEPT_ENV.iter().filter_map(|k| std::env::var_os(k).map(|v| (k, v))))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()?;
    let pid = child.id();
    // The child is reaped by init once labctl exits; its start time pins its identity.
    std::mem::forget(child);
    let start = start_time(pid).ok_or_else(|| {
        std::io::Error::other(format!("{role} (pid {pid}) exited at once; see {}", log.display()))
    })?;
    Ok(Proc { role: role.to_owned(), pid, start })
}

/// The start time of `pid`, if it exists (and is not a zombie).
pub fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, start)| start)
}

/// `pid`'s parent and start time, if it exists (and is not a zombie).
fn stat(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields resume after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    Some((fields.get(1)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

/// Every living descendant of `pid`, including those in sessions of their own (Jupyter
/// starts each kernel so), which a signal to `pid`'s process group does not reach.
fn descendants(pid: u32) -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return vec![] };
    let all: Vec<(u32, u32, u64)> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| stat(p).map(|(parent, start)| (p, parent, start)))
        .collect();
    let mut family: Vec<Proc> = vec![];
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        for &(p, _, start) in all.iter().filter(|(_, pp, _)| *pp == parent) {
            family.push(Proc { role: "descendant".into(), pid: p, start });
            parents.push(p);
        }
    }
    family
}

impl Proc {
    /// Whether this very process is still running.
    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start)
    }

    /// SIGTERM, then SIGKILL after `grace`, to its whole process group (it leads one, so
    /// the programs its tasks started go too) and to its descendants in other groups.
    /// Returns once they are gone.
    pub fn stop(&self, grace: Duration) {
        if !self.alive() {
            return;
        }
        let family = descendants(self.pid);
        let signal = |sig| {
            if self.alive() {
                // SAFETY: signalling processes whose identity (pid + start time) was just checked.
                unsafe { libc::kill(-(self.pid as i32), sig) };
            }
            for p in family.iter().filter(|p| p.alive()) {
                // SAFETY: as above.
                unsafe { libc::kill(p.pid as i32, sig) };
            }
        };
        let gone = || !self.alive() && !family.iter().any(Proc::alive);
        signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while !gone() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !gone() {
            signal(libc::SIGKILL);
            while !gone() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Waits for a line containing `marker` in `log` and returns what follows it up to the
/// next whitespace (e.g. the address after "listening on ").
pub fn wait_for(log: &Path, marker: &str, proc: &Proc, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        // Only a complete line: the writer may be half-way through it.
        if let Some(after) = text.split(marker).nth(1).filter(|a| a.contains('\n')) {
            return Ok(after.split_whitespace().next().unwrap_or_default().to_owned());
        }
        if !proc.alive() {
            return Err(format!(
                "{} exited during start-up; its log ({}) ends with:\n{}",
                proc.role,
                log.display(),
                tail(&text)
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} did not report `{marker}` within {timeout:?}; see {}",
                proc.role,
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}
