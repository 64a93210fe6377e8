//! The smoke workloads on VMs: run on each student's VM, against their own services, over
//! SSH as that student. Each first checks that the workload's systemd units are active and
//! names those that are not; `status` asks the VM the same. The notebook check runs from
//! here through an SSH tunnel to the student's Jupyter server, as the student would reach it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use labctl_notebook::check::Target;
use labctl_provider_api::lab::SmokeWorkload;
use labctl_provider_api::{ports, SmokeRunner, StudentResources};

use crate::ssh::{Login, SshClient};

/// Runs the smoke workloads on the students' VMs over SSH.
pub struct SshRunner {
    ssh: Arc<SshClient>,
}

/// Where a student's datasets are on their VM, in their home.
pub const DATASETS: &str = "datasets";

/// Waits for cloud-init to have installed the workers.
const WAIT_FOR_CLOUD_INIT: &str = "cloud-init status --wait >/dev/null 2>&1 || true\n";

/// How long the notebook check waits for a started JupyterLab to answer, in seconds.
const JUPYTER_START: u32 = 120;

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
            SmokeWorkload::Notebook => {
                return Err("the notebook check runs from here, through a tunnel".into())
            }
        };
        Ok(format!("{WAIT_FOR_CLOUD_INIT}{}{run}", units_active(units)))
    }

    /// The notebook check's script on the VM: once the notebook service is up and JupyterLab
    /// answers, it prints `dataset`, for labctl to count.
    fn notebook_script(dataset: &str) -> String {
        let units = format!("{}{}", units_active("lab-dask"), units_active("lab-jupyter"));
        // Active is started, not yet answering: JupyterLab takes seconds to load.
        let jupyter = format!(
            "i=0; until curl -fsS -o /dev/null http://127.0.0.1:{port}/api 2>/dev/null; do\n\
             i=$((i+1)); [ $i -lt {JUPYTER_START} ] || {{ echo 'JupyterLab does not answer on 127.0.0.1:{port} after {JUPYTER_START} s: see `journalctl -u lab-jupyter`' >&2; exit 3; }}; sleep 1\n\
             done\n",
            port = ports::JUPYTER
        );
        // Every file once, a line break after each (word boundaries stay).
        let print = format!("cd ~/{DATASETS}/{dataset} && for f in [!._]*; do cat \"$f\"; echo; done\n");
        format!("{WAIT_FOR_CLOUD_INIT}{units}{jupyter}{print}")
    }

    /// The notebook check: the dataset read over SSH and counted here, then the check
    /// notebook run through a tunnel to the student's Jupyter server, on the same files.
    async fn notebook(
        &self,
        student: &StudentResources,
        dataset: Option<&str>,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = std::time::Instant::now() + timeout;
        let dataset = dataset.ok_or("the notebook check needs a text dataset")?;
        let (login, token) = (Login::of(student)?, student.get("credential")?.attr("token")?.to_owned());
        let text = self.ssh.run(&login, &Self::notebook_script(dataset), timeout).await?;
        let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
        std::fs::write(scratch.path().join("dataset"), text).map_err(|e| e.to_string())?;
        let expected = labctl_datasets::check::count(scratch.path())?;
        let notebook = &student.get("vm")?.config["notebook"];
        let dask_workers = notebook["dask_workers"].as_u64().unwrap_or(1) as u32;
        let spark = notebook["spark"].as_bool().unwrap_or(false);
        let dataset = format!("/home/{}/{DATASETS}/{dataset}", student.student);
        let tunnel = self.ssh.tunnel(&login, ports::JUPYTER).await?;
        let jupyter = tunnel.local.clone();
        let checked = tokio::task::spawn_blocking(move || {
            let target = Target { jupyter: &jupyter, token: &token, dataset: &dataset, dask_workers, spark };
            labctl_notebook::check::run(&target, &expected, deadline)
        });
        let result = match tokio::time::timeout_at(deadline.into(), checked).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(format!("the notebook check panicked: {e}")),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        };
        drop(tunnel);
        result.map_err(|e| format!("{e} (logs: `journalctl -u 'lab-jupyter*' -u 'lab-dask*'` on the VM)"))
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
        dataset: Option<&str>,
        timeout: Duration,
    ) -> Result<(), String> {
        if workload == SmokeWorkload::Notebook {
            return self.notebook(student, dataset, timeout).await;
        }
        let token = student.get("credential")?.attr("token")?;
        self.ssh.run(&Login::of(student)?, &Self::script(workload, token)?, timeout).await.map(drop)
    }

    /// Each labctl unit on the VM and its state, as systemd reports it.
    async fn health(&self, student: &StudentResources) -> Vec<(String, String)> {
        let login = match Login::of(student) {
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
