//! The cluster's processes: each started inside the cluster's network namespace and cgroup
//! (so that everything it starts in turn — containerd's shims, the containers — is found
//! and stopped with it), its output in a log file of its own.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts processes in a namespace and cgroup; stops them, and all they started, on drop.
pub struct Supervisor {
    netns: File,
    /// `cgroup.procs` of the cluster's cgroup in each hierarchy.
    procs: Vec<CString>,
    /// The cluster's cgroup directories, to find what is left running.
    cgroups: Vec<PathBuf>,
    logs: PathBuf,
    children: Vec<(String, Child)>,
}

impl Supervisor {
    pub fn new(netns: &Path, cgroups: Vec<PathBuf>, logs: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&logs)?;
        let procs = cgroups
            .iter()
            .map(|c| CString::new(c.join("cgroup.procs").display().to_string()).map_err(io::Error::other))
            .collect::<io::Result<_>>()?;
        Ok(Self { netns: File::open(netns)?, procs, cgroups, logs, children: vec![] })
    }

    /// Where process `name`'s output goes.
    pub fn log(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }

    /// Starts `program` as `name`, inside the namespace and cgroup.
    pub fn start(&mut self, name: &str, program: &Path, args: &[String]) -> io::Result<()> {
        let log = File::create(self.log(name))?;
        let mut command = Command::new(program);
        command.args(args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let netns = self.netns.as_raw_fd();
        let procs = self.procs.clone();
        // SAFETY: between fork and exec the closure makes only async-signal-safe system calls
        // (open, write, close, setns) on memory prepared before the fork.
        unsafe {
            command.pre_exec(move || {
                for path in &procs {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
                    if fd >= 0 {
                        libc::write(fd, b"0".as_ptr().cast(), 1);
                        libc::close(fd);
                    }
                }
                if libc::setns(netns, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|e| io::Error::other(format!("starting {name}: {e}")))?;
        self.children.push((name.to_owned(), child));
        Ok(())
    }

    /// The first of the processes that has exited, with its status and last log lines.
    pub fn exited(&mut self) -> Option<String> {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(self.logs.join(format!("{name}.log"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Some(format!("{name} exited ({status}):\n{}", tail.join("\n")));
            }
        }
        None
    }
}

impl Drop for Supervisor {
    /// Asks each process to stop, newest first, then kills whatever is left in the cgroups
    /// (containerd's shims and the containers among them).
    fn drop(&mut self) {
        for (_, child) in self.children.iter_mut().rev() {
            // SAFETY: signalling a child this supervisor started.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let start = Instant::now();
            while matches!(child.try_wait(), Ok(None)) && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        labctl_test_host::cgroups::kill_all_in(&self.cgroups);
    }
}
