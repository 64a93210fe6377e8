//! The local smoke runner: the workloads run here, as clients of the student's services,
//! over their seeded datasets; and the services' health, asked the same way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use labctl_notebook::check::Target;
use labctl_provider_api::lab::SmokeWorkload;
use labctl_provider_api::{SmokeRunner, StudentResources, WorkerService};
use serde_json::Value;
use tokio::process::Command;

/// Runs the bundled workers in `bin_dir` as clients of the students' services.
pub struct Here {
    pub bin_dir: PathBuf,
}

/// What one workload needs, looked up in the student's resources.
struct Setup<'a> {
    address: &'a str,
    token: &'a str,
    log_dir: &'a str,
    dataset: PathBuf,
    bucket: PathBuf,
}

impl Here {
    fn setup<'a>(
        &self,
        service: WorkerService,
        student: &'a StudentResources,
        dataset: Option<&str>,
    ) -> Result<Setup<'a>, String> {
        let svc = student.get(service.name())?;
        let dataset = dataset.ok_or("no dataset of the right kind")?;
        Ok(Setup {
            address: svc.attr("address")?,
            log_dir: svc.attr("log_dir")?,
            token: student.get("credential")?.attr("token")?,
            dataset: PathBuf::from(student.get(&format!("dataset[\"{dataset}\"]"))?.attr("path")?),
            bucket: PathBuf::from(student.get("bucket")?.attr("path")?),
        })
    }

    /// Runs the service's workload from this machine.
    async fn workload(&self, service: WorkerService, s: &Setup<'_>) -> Result<(), String> {
        let Setup { address, token, dataset, bucket, .. } = s;
        match service {
            WorkerService::MapReduce => {
                let out = bucket.join("smoke").join("wordcount");
                let report = run_tool(
                    &self.bin_dir,
                    WorkerService::MapReduce,
                    token,
                    &[
                        "submit",
                        "--coordinator",
                        address,
                        "--wait",
                        "--json",
                        "--job",
                        "wordcount",
                        "--reduces",
                        "2",
                        "--input",
                        &dataset.display().to_string(),
                        "--output",
                        &out.display().to_string(),
                    ],
                )
                .await
                .map_err(|e| format!("word count through the MapReduce coordinator at {address}: {e}"))?;
                let report: Value =
                    serde_json::from_str(&report).map_err(|e| format!("unreadable job report: {e}"))?;
                if report["succeeded"] != Value::Bool(true) {
                    return Err(format!(
                        "the word count job failed: {}",
                        report["error"].as_str().unwrap_or("no error given")
                    ));
                }
                labctl_datasets::check::wordcount(dataset, &out)
            }
            WorkerService::Scheduler => {
                let data = dataset.join("part-00000.csv").display().to_string();
                run_tool(
                    &self.bin_dir,
                    WorkerService::Scheduler,
                    token,
                    &["hpsearch", "--data", &data, "--epochs", "30", "--check", "--scheduler", address],
                )
                .await
                .map(drop)
                .map_err(|e| format!("hyperparameter search through the scheduler at {address}: {e}"))
            }
        }
    }
}

#[async_trait]
impl SmokeRunner for Here {
    /// The checks share this machine's cores.
    fn parallel(&self) -> usize {
        2
    }

    async fn run(
        &self,
        workload: SmokeWorkload,
        student: &StudentResources,
        dataset: Option<&str>,
        timeout: Duration,
    ) -> Result<(), String> {
        let Some(service) = WorkerService::for_workload(workload) else {
            return notebook(student, dataset, timeout).await;
        };
        let setup = self.setup(service, student, dataset)?;
        match tokio::time::timeout(timeout, self.workload(service, &setup)).await {
            Ok(r) => r.map_err(|e| format!("{e} (worker logs: {})", setup.log_dir)),
            Err(_) => Err(format!("no answer within {timeout:?} (worker logs: {})", setup.log_dir)),
        }
    }

    /// Asks each running service how many workers it has.
    async fn health(&self, student: &StudentResources) -> Vec<(String, String)> {
        let token = student.attr("credential", "token").unwrap_or_default();
        let mut out = vec![];
        for service in [WorkerService::MapReduce, WorkerService::Scheduler] {
            let attr = |key: &str| student.attr(service.name(), key);
            let (flag, target) = match service {
                WorkerService::MapReduce => ("--coordinator", attr("address").map(str::to_owned)),
                WorkerService::Scheduler => (
                    "--http",
                    attr("status_url")
                        .map(|u| u.trim_start_matches("http://").trim_end_matches("/status").to_owned()),
                ),
            };
            let Some(target) = target else { continue };
            let args = ["status", flag, &target];
            let asked = run_tool(&self.bin_dir, service, token, &args);
            let answer = match tokio::time::timeout(Duration::from_secs(5), asked).await {
                Ok(Ok(text)) => workers_in(&text).map_or_else(|| "up".to_owned(), |n| format!("{n} workers")),
                Ok(Err(e)) => format!("down ({e})"),
                Err(_) => "no answer".to_owned(),
            };
            out.push((service.name().to_owned(), answer));
        }
        if let Ok(notebook) = student.get("notebook") {
            let attr = |key: &str| notebook.attr(key).unwrap_or_default().to_owned();
            let (jupyter, dashboard, token) = (attr("jupyter"), attr("dask_dashboard"), token.to_owned());
            let asked =
                tokio::task::spawn_blocking(move || labctl_notebook::health(&jupyter, &token, &dashboard));
            let answer = match tokio::time::timeout(Duration::from_secs(5), asked).await {
                Ok(Ok(answer)) => answer,
                _ => "no answer".to_owned(),
            };
            out.push(("notebook".to_owned(), answer));
        }
        out
    }
}

/// Runs the check notebook through the student's Jupyter server, from here.
async fn notebook(
    student: &StudentResources,
    dataset: Option<&str>,
    timeout: Duration,
) -> Result<(), String> {
    let nb = student.get("notebook")?;
    let (jupyter, log_dir) = (nb.attr("jupyter")?.to_owned(), nb.attr("log_dir")?.to_owned());
    let token = student.get("credential")?.attr("token")?.to_owned();
    let dataset = dataset.ok_or("no text dataset")?;
    let dataset = student.get(&format!("dataset[\"{dataset}\"]"))?.attr("path")?.to_owned();
    let dask_workers = nb.config.get("dask_workers").and_then(Value::as_u64).unwrap_or(1) as u32;
    let spark = nb.config.get("spark").and_then(Value::as_bool).unwrap_or(false);
    let deadline = std::time::Instant::now() + timeout;
    let checked = tokio::task::spawn_blocking(move || {
        let expected = labctl_datasets::check::count(Path::new(&dataset))?;
        let target = Target { jupyter: &jupyter, token: &token, dataset: &dataset, dask_workers, spark };
        labctl_notebook::check::run(&target, &expected, deadline)
    });
    match tokio::time::timeout(timeout, checked).await {
        Ok(Ok(result)) => result.map_err(|e| format!("{e} (logs: {log_dir})")),
        Ok(Err(e)) => Err(format!("the notebook check panicked: {e}")),
        Err(_) => Err(format!("no answer within {timeout:?} (logs: {log_dir})")),
    }
}

/// Runs `service`'s binary as a client; its stdout, or the last line of its stderr as the
/// error.
async fn run_tool(
    bin_dir: &Path,
    service: WorkerService,
    token: &str,
    args: &[&str],
) -> Result<String, String> {
    let exe = bin_dir.join(service.binary());
    let out = Command::new(&exe)
        .args(args)
        .env(service.token_env(), token)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(err.lines().last().unwrap_or("failed without a message").trim().to_owned())
    }
}

/// The worker count in a status answer (JSON from lab-mapreduce, text from lab-scheduler).
fn workers_in(text: &str) -> Option<u64> {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => v["workers"].as_u64(),
        Err(_) => text.lines().find_map(|l| l.strip_prefix("workers:")).and_then(|n| n.trim().parse().ok()),
    }
}
