//! Reaching a student's VM over SSH, as that student with the key from their handout,
//! through the system OpenSSH client, so that the user's ssh_config, agents and bastions
//! work as they expect. Host keys are pinned on first contact (`.labctl/<lab>.known_hosts`
//! beside the lab file); a changed one fails loudly. When ssh cannot connect, the cloud says
//! whether the VM runs at all: a stopped VM fails at once, a running one is waited for (it
//! may still boot).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use labctl_provider_api::{ProviderError, StudentResources};

use crate::vm_address;
use serde::{Deserialize, Serialize};
use tokio::process::Command;

/// How labctl reaches the VMs, as configured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ssh {
    /// `ssh -F`: an ssh_config of the lab's own.
    pub config: Option<PathBuf>,
    /// Where each lab's pinned host keys are kept.
    pub known_hosts_dir: PathBuf,
}

/// Who logs in where.
pub struct Login<'a> {
    pub instance_id: &'a str,
    pub host: &'a str,
    pub user: &'a str,
    /// The private key, in OpenSSH format.
    pub key: &'a str,
}

impl<'a> Login<'a> {
    /// The student on their VM, with the key of their credential.
    pub fn of(student: &'a StudentResources) -> Result<Self, String> {
        let vm = student.get("vm")?;
        let host = vm_address(&vm.attributes).ok_or("the VM has no address yet: run `labctl apply`")?;
        let key = student.get("credential")?.attr("ssh_private_key")?;
        Ok(Login { instance_id: &vm.id, host, user: &student.student, key })
    }
}

/// What the cloud says of a VM that SSH cannot reach.
#[async_trait]
pub trait VmStates: Send + Sync {
    /// The VM's state if it is neither running nor starting (`stopped`, `gone`, …): no use
    /// waiting for it. `None` when it runs, or when the cloud cannot say.
    async fn not_running(&self, instance_id: &str) -> Option<String>;
}

/// Runs shell scripts on the lab's VMs.
pub struct SshClient {
    config: Option<PathBuf>,
    known_hosts: PathBuf,
    states: Arc<dyn VmStates>,
}

/// ssh's own exit code for a failure to connect or log in (the remote command's are its own).
const SSH_FAILED: i32 = 255;

impl SshClient {
    pub fn new(ssh: &Ssh, lab: &str, states: Arc<dyn VmStates>) -> Self {
        Self {
            config: ssh.config.clone(),
            known_hosts: ssh.known_hosts_dir.join(format!("{lab}.known_hosts")),
            states,
        }
    }

    /// Runs `script` (read by `sh -s` from stdin, so that secrets in it are on no command
    /// line) and returns what it printed. While ssh cannot connect to a VM that the cloud says is
    /// running, tries again until `timeout`. `Err` is the last words of what failed.
    pub async fn run(&self, login: &Login<'_>, script: &str, timeout: Duration) -> Result<String, String> {
        let host = login.host;
        if let Some(dir) = self.known_hosts.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let key_file = key_file(login)?;
        // The script goes to ssh's stdin from a file: writing it into a pipe that ssh may
        // have closed (it could not connect) would end labctl with SIGPIPE.
        let script_file = tempfile::tempfile().map_err(|e| e.to_string())?;
        (&script_file).write_all(script.as_bytes()).map_err(|e| format!("writing the script: {e}"))?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut stdin = script_file.try_clone().map_err(|e| e.to_string())?;
            std::io::Seek::rewind(&mut stdin).map_err(|e| e.to_string())?;
            let mut cmd = self.command(login, key_file.path());
            cmd.args(["sh", "-s"]).stdin(Stdio::from(stdin)).stdout(Stdio::piped()).stderr(Stdio::piped());
            let child = cmd.spawn().map_err(|e| format!("cannot run ssh: {e}"))?;
            let out = tokio::time::timeout_at(deadline, child.wait_with_output())
                .await
                .map_err(|_| format!("{host} is unreachable: no answer within {timeout:?}"))?
                .map_err(|e| format!("ssh: {e}"))?;
            if out.status.success() {
                return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("failed without a message");
            if out.status.code() != Some(SSH_FAILED) {
                return Err(format!("on {host}: {}", last.trim()));
            }
            if let Some(state) = self.states.not_running(login.instance_id).await {
                return Err(format!("{host} is unreachable: VM {} is {state}", login.instance_id));
            }
            if tokio::time::Instant::now() + Duration::from_secs(2) >= deadline {
                return Err(format!("{host} is unreachable: {}", last.trim()));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// ssh to `login` with the key in `key`, before the remote command.
    fn command(&self, login: &Login<'_>, key: &std::path::Path) -> Command {
        let mut cmd = Command::new("ssh");
        if let Some(config) = &self.config {
            cmd.arg("-F").arg(config);
        }
        cmd.arg("-i")
            .arg(key)
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"])
            .args(["-o", "StrictHostKeyChecking=accept-new", "-o"])
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .arg(format!("{}@{}", login.user, login.host))
            .kill_on_drop(true);
        cmd
    }

    /// Forwards a port of this machine's loopback to `remote_port` on the VM's, as the
    /// handout's tunnel does, until the tunnel is dropped.
    pub async fn tunnel(&self, login: &Login<'_>, remote_port: u16) -> Result<Tunnel, String> {
        let key = key_file(login)?;
        let local = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free local port: {e}"))?
            .port();
        let mut stderr = tempfile::tempfile().map_err(|e| e.to_string())?;
        let mut child = self
            .command(login, key.path())
            .args(["-N", "-o", "ExitOnForwardFailure=yes", "-L"])
            .arg(format!("127.0.0.1:{local}:127.0.0.1:{remote_port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr.try_clone().map_err(|e| e.to_string())?))
            .spawn()
            .map_err(|e| format!("cannot run ssh: {e}"))?;
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], local));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok() {
                return Ok(Tunnel { local: address.to_string(), _ssh: child, _key: key });
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                std::io::Seek::rewind(&mut stderr).map_err(|e| e.to_string())?;
                std::io::Read::read_to_string(&mut stderr, &mut err).map_err(|e| e.to_string())?;
                let last = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("no message");
                return Err(format!("the SSH tunnel to {} ended ({status}): {}", login.host, last.trim()));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("the SSH tunnel to {} did not open within 30 s", login.host));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A port of a VM forwarded to this machine's loopback; closed on drop.
pub struct Tunnel {
    /// `127.0.0.1:PORT`, here.
    pub local: String,
    _ssh: tokio::process::Child,
    _key: tempfile::NamedTempFile,
}

/// The student's private key in a file only this user reads, removed on drop.
fn key_file(login: &Login<'_>) -> Result<tempfile::NamedTempFile, String> {
    let file = tempfile::Builder::new().prefix("labctl-key-").tempfile().map_err(|e| e.to_string())?;
    std::fs::OpenOptions::new()
        .write(true)
        .mode(0o600)
        .open(file.path())
        .and_then(|mut f| f.write_all(login.key.as_bytes()))
        .map_err(|e| format!("writing the student's key: {e}"))?;
    Ok(file)
}

/// A fresh ed25519 key pair in OpenSSH's formats: `(public, private)`.
pub fn key_pair(comment: &str) -> Result<(String, String), ProviderError> {
    let fail = |e: ssh_key::Error| ProviderError::fatal(format!("making an SSH key: {e}"));
    let mut private =
        ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519).map_err(fail)?;
    private.set_comment(comment);
    let public = private.public_key().to_openssh().map_err(fail)?;
    let private = private.to_openssh(ssh_key::LineEnding::LF).map_err(fail)?;
    Ok((public, private.to_string()))
}
