//! The smoke workloads on AWS: run on each student's VM, against their own services, over
//! SSH as that student with the key from their handout — through the system OpenSSH client,
//! so that the user's ssh_config, agents and bastions work as they expect. Host keys are
//! pinned on first contact (`.labctl/<lab>.known_hosts` beside the lab file); a changed one
//! fails that student's check.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use labctl_provider_api::lab::SmokeWorkload;
use labctl_provider_api::{ports, SmokeRunner, StudentResources};
use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::plugin::vm_address;

/// How labctl reaches the VMs, as configured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ssh {
    /// `ssh -F`: an ssh_config of the lab's own.
    pub config: Option<PathBuf>,
    /// Where each lab's pinned host keys are kept.
    pub known_hosts_dir: PathBuf,
}

/// Runs the smoke workloads on the students' VMs over SSH.
pub(crate) struct SshRunner {
    config: Option<PathBuf>,
    known_hosts: PathBuf,
}

/// ssh's own exit code for a failure to connect or log in (the remote command's are its own).
const SSH_FAILED: i32 = 255;

impl SshRunner {
    pub fn new(ssh: &Ssh, lab: &str) -> Self {
        Self {
            config: ssh.config.clone(),
            known_hosts: ssh.known_hosts_dir.join(format!("{lab}.known_hosts")),
        }
    }

    /// The shell script a workload is on the VM, read by `sh -s` from stdin (so the token
    /// is on no command line). It waits for cloud-init to have installed the workers.
    fn script(workload: SmokeWorkload, token: &str) -> String {
        let wait = "cloud-init status --wait >/dev/null 2>&1 || true";
        match workload {
            SmokeWorkload::Wordcount => format!(
                "{wait}\nexport LAB_MAPREDUCE_TOKEN='{token}'\n\
                 exec lab-mapreduce smoke --coordinator 127.0.0.1:{} --dir \"/tmp/labctl-smoke-$$\"\n",
                ports::MAPREDUCE
            ),
            SmokeWorkload::Hpsearch => format!(
                "{wait}\nexport LAB_SCHEDULER_TOKEN='{token}'\n\
                 exec lab-scheduler hpsearch --scheduler 127.0.0.1:{} --epochs 30 --check\n",
                ports::SCHEDULER
            ),
        }
    }

    /// Runs `script` on `host` as `user` with `key`; retries while ssh cannot connect (the
    /// VM still boots) until `timeout`. Ok, or the last words of what failed.
    async fn run_script(
        &self,
        user: &str,
        host: &str,
        key: &str,
        script: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        if let Some(dir) = self.known_hosts.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let key_file =
            tempfile::Builder::new().prefix("labctl-key-").tempfile().map_err(|e| e.to_string())?;
        std::fs::OpenOptions::new()
            .write(true)
            .mode(0o600)
            .open(key_file.path())
            .and_then(|mut f| f.write_all(key.as_bytes()))
            .map_err(|e| format!("writing the student's key: {e}"))?;
        // The script goes to ssh's stdin from a file: writing it into a pipe that ssh may
        // have closed (it could not connect) would end labctl with SIGPIPE.
        let script_file = tempfile::tempfile().map_err(|e| e.to_string())?;
        (&script_file).write_all(script.as_bytes()).map_err(|e| format!("writing the script: {e}"))?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut stdin = script_file.try_clone().map_err(|e| e.to_string())?;
            std::io::Seek::rewind(&mut stdin).map_err(|e| e.to_string())?;
            let mut cmd = Command::new("ssh");
            if let Some(config) = &self.config {
                cmd.arg("-F").arg(config);
            }
            cmd.arg("-i")
                .arg(key_file.path())
                .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"])
                .args(["-o", "StrictHostKeyChecking=accept-new", "-o"])
                .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
                .arg(format!("{user}@{host}"))
                .args(["sh", "-s"])
                .stdin(Stdio::from(stdin))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            let child = cmd.spawn().map_err(|e| format!("cannot run ssh: {e}"))?;
            let out = tokio::time::timeout_at(deadline, child.wait_with_output())
                .await
                .map_err(|_| format!("no answer from {host} within {timeout:?}"))?
                .map_err(|e| format!("ssh: {e}"))?;
            if out.status.success() {
                return Ok(());
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("failed without a message");
            let unreachable = out.status.code() == Some(SSH_FAILED);
            if !unreachable || tokio::time::Instant::now() + Duration::from_secs(2) >= deadline {
                let what = if unreachable { format!("{host} is unreachable") } else { format!("on {host}") };
                return Err(format!("{what}: {}", last.trim()));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

#[async_trait]
impl SmokeRunner for SshRunner {
    /// The work runs on the VMs; here only ssh clients wait.
    fn parallel(&self) -> usize {
        8
    }

    async fn run(
        &self,
        workload: SmokeWorkload,
        student: &StudentResources,
        _dataset: Option<&str>,
        timeout: Duration,
    ) -> Result<(), String> {
        let vm = student.get("vm")?;
        let host = vm_address(vm).ok_or("the VM has no address yet: run `labctl apply`")?;
        let credential = student.get("credential")?;
        let (key, token) = (credential.attr("ssh_private_key")?, credential.attr("token")?);
        let script = Self::script(workload, token);
        self.run_script(&student.student, host, key, &script, timeout).await
    }
}
