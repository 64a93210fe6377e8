//! The smoke workloads on VMs: run on each student's VM, against their own services, over
//! SSH as that student. Each first checks that the workload's systemd units are active and
//! names those that are not; `status` asks the VM the same.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use labctl_provider_api::lab::SmokeWorkload;
use labctl_provider_api::{ports, SmokeRunner, StudentResources, NO_NOTEBOOKS};

use crate::ssh::{Login, SshClient};
use crate::vm_address;

/// Runs the smoke workloads on the students' VMs over SSH.
pub struct SshRunner {
    ssh: Arc<SshClient>,
}

/// Waits for cloud-init to have installed the workers.
const WAIT_FOR_CLOUD_INIT: &str = "cloud-init status --wait >/dev/null 2>&1 || true\n";

/// How long `status` waits for a VM's answer.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(15);

impl SshRunner {
    pub fn new(ssh: Arc<SshClient>) -> Self {
        Self { ssh }
    }

    /// The shell script a workload is on the VM, read by `sh -s` from stdin (so the token
    /// is on no command line).
    fn script(workload: SmokeWorkload, token: &str) -> Result<String, String> {
        let (units, run) = match workload {
            SmokeWorkload::Wordcount => (
                "lab-mapreduce",
                format!(
                    "export LAB_MAPREDUCE_TOKEN='{token}'\n\
                     exec lab-mapreduce smoke --coordinator 127.0.0.1:{} --dir \"/tmp/labctl-smoke-$$\"\n",
                    ports::MAPREDUCE
                ),
            ),
            SmokeWorkload::Hpsearch => (
                "lab-scheduler",
                format!(
                    "export LAB_SCHEDULER_TOKEN='{token}'\n\
                     exec lab-scheduler hpsearch --scheduler 127.0.0.1:{} --epochs 30 --check\n",
                    ports::SCHEDULER
                ),
            ),
            SmokeWorkload::Notebook => return Err(NO_NOTEBOOKS.to_owned()),
        };
        Ok(format!("{WAIT_FOR_CLOUD_INIT}{}{run}", units_active(units)))
    }

    fn login<'a>(student: &'a StudentResources) -> Result<Login<'a>, String> {
        let vm = student.get("vm")?;
        let host = vm_address(&vm.attributes).ok_or("the VM has no address yet: run `labctl apply`")?;
        let key = student.get("credential")?.attr("ssh_private_key")?;
        Ok(Login { instance_id: &vm.id, host, user: &student.student, key })
    }
}

/// A script that fails, naming each one, unless every systemd unit named `prefix*` is active.
fn units_active(prefix: &str) -> String {
    format!(
        "units=$(systemctl list-units --all --plain --no-legend '{prefix}*')\n\
         [ -n \"$units\" ] || {{ echo 'no {prefix} service is installed: see `sudo cloud-init status --long`' >&2; exit 3; }}\n\
         down=$(echo \"$units\" | awk '$3 != \"active\" {{ printf \"%s%s is %s (%s)\", sep, $1, $3, $4; sep = \"; \" }}')\n\
         [ -z \"$down\" ] || {{ echo \"$down\" >&2; exit 3; }}\n"
    )
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
        let token = student.get("credential")?.attr("token")?;
        self.ssh.run(&Self::login(student)?, &Self::script(workload, token)?, timeout).await.map(drop)
    }

    /// Each labctl unit on the VM and its state, as systemd reports it.
    async fn health(&self, student: &StudentResources) -> Vec<(String, String)> {
        let login = match Self::login(student) {
            Ok(login) => login,
            Err(e) => return vec![("services".into(), e)],
        };
        let script = "systemctl list-units --all --plain --no-legend 'lab-*'\n";
        match self.ssh.run(&login, script, HEALTH_TIMEOUT).await {
            Ok(out) => out
                .lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace();
                    let unit = f.next()?.trim_end_matches(".service");
                    let (_load, active, sub) = (f.next()?, f.next()?, f.next()?);
                    Some((unit.to_owned(), format!("{active} ({sub})")))
                })
                .collect(),
            Err(e) => vec![("services".into(), e)],
        }
    }
}
