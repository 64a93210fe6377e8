//! Functional verification: an environment is ready only when the smoke workloads have
//! run in it and given the right answer. Per student: word count through their MapReduce,
//! checked against an independent count; the hyperparameter search through their
//! scheduler, checked against a sequential run of the same search. Locally the workloads
//! run here over the student's seeded datasets; on Kubernetes as Jobs in their namespace
//! over generated data in their volume.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::process::Command;
use tokio::sync::Semaphore;

use labctl_provider_api::{Attributes, Tags, WorkerService};
use labctl_provider_kubernetes::KubernetesProvider;

use crate::lab::Lab;
use crate::lab::SmokeWorkload;
use crate::providers::SmokeRunner;
use crate::state::State;

/// One check of one student.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub student: String,
    pub check: &'static str,
    pub passed: bool,
    pub seconds: f64,
    /// Why it failed: which step, the worker's error, where the logs are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// How long one smoke workload may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs every smoke workload of `lab` for the students in `only` (all if empty).
pub async fn verify(lab: &Lab, state: &State, runner: &SmokeRunner, only: &[String]) -> Vec<Check> {
    let permits = Arc::new(Semaphore::new(runner.parallel()));
    let mut tasks = tokio::task::JoinSet::new();
    let mut order = vec![];
    for (_, student) in lab.students().filter(|(_, s)| only.is_empty() || only.contains(&s.id)) {
        for smoke in &lab.student.smoke {
            let check = Smoke::new(*smoke.get_ref(), &student.id, lab, state, runner);
            order.push((student.id.clone(), check.name()));
            let permits = permits.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await.expect("open");
                check.run().await
            });
        }
    }
    let mut checks = vec![];
    while let Some(done) = tasks.join_next().await {
        checks.push(done.expect("checks do not panic"));
    }
    checks.sort_by_key(|c| order.iter().position(|(s, n)| *s == c.student && *n == c.check));
    checks
}

/// One smoke workload of one student, with what it needs looked up in state beforehand
/// (or why it is missing).
struct Smoke {
    kind: SmokeWorkload,
    student: String,
    setup: Result<Setup, String>,
}

enum Setup {
    /// On this machine, as a client of the service, over the student's seeded dataset.
    Here(Local),
    /// As a Job beside the service, in the student's namespace.
    Job { cluster: Arc<KubernetesProvider>, service: WorkerService, config: Attributes, tags: Tags },
}

struct Local {
    bin_dir: PathBuf,
    address: String,
    token: String,
    log_dir: String,
    dataset: PathBuf,
    bucket: PathBuf,
}

impl Smoke {
    fn new(kind: SmokeWorkload, student: &str, lab: &Lab, state: &State, runner: &SmokeRunner) -> Self {
        let setup = (|| {
            let get = |what: &str| {
                state
                    .resources
                    .get(&format!("student[\"{student}\"].{what}"))
                    .ok_or_else(|| format!("`{what}` is not created yet: run `labctl apply`"))
            };
            let attr = |r: &crate::state::ResourceState, key: &str| {
                r.attributes
                    .get(key)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{} has no `{key}`", r.kind))
            };
            let service = match kind {
                SmokeWorkload::Wordcount => WorkerService::MapReduce,
                SmokeWorkload::Hpsearch => WorkerService::Scheduler,
            };
            let svc = get(service.name())?;
            let bin_dir = match runner {
                SmokeRunner::Jobs(cluster) => {
                    return Ok(Setup::Job {
                        cluster: cluster.clone(),
                        service,
                        config: svc.config.clone(),
                        tags: svc.tags.clone(),
                    })
                }
                SmokeRunner::Here { bin_dir } => bin_dir.clone(),
            };
            let name = lab
                .student
                .bucket
                .iter()
                .flat_map(|b| &b.datasets)
                .map(|d| d.get_ref())
                .find(|d| lab.datasets.get(*d).is_some_and(|ds| feeds(kind, ds)))
                .ok_or("no dataset of the right kind")?;
            let dataset = get(&format!("dataset[\"{name}\"]"))?;
            Ok(Setup::Here(Local {
                bin_dir,
                address: attr(svc, "address")?,
                log_dir: attr(svc, "log_dir")?,
                token: attr(get("credential")?, "token")?,
                dataset: PathBuf::from(attr(dataset, "path")?),
                bucket: PathBuf::from(attr(get("bucket")?, "path")?),
            }))
        })();
        Self { kind, student: student.to_owned(), setup }
    }

    fn name(&self) -> &'static str {
        match self.kind {
            SmokeWorkload::Wordcount => "wordcount",
            SmokeWorkload::Hpsearch => "hpsearch",
        }
    }

    async fn run(self) -> Check {
        let start = Instant::now();
        let result = match &self.setup {
            Err(e) => Err(e.clone()),
            Ok(Setup::Job { cluster, service, config, tags }) => {
                cluster.smoke(*service, config, tags, CHECK_TIMEOUT).await
            }
            Ok(Setup::Here(local)) => match tokio::time::timeout(CHECK_TIMEOUT, self.here(local)).await {
                Ok(r) => r.map_err(|e| format!("{e} (worker logs: {})", local.log_dir)),
                Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?} (worker logs: {})", local.log_dir)),
            },
        };
        let check = self.name();
        Check {
            student: self.student,
            check,
            passed: result.is_ok(),
            seconds: start.elapsed().as_secs_f64(),
            detail: result.err(),
        }
    }

    /// Runs the workload from this machine.
    async fn here(&self, local: &Local) -> Result<(), String> {
        let Local { bin_dir, address, token, dataset, bucket, .. } = local;
        match self.kind {
            SmokeWorkload::Wordcount => {
                let out = bucket.join("smoke").join("wordcount");
                let report = run_tool(
                    bin_dir,
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
            SmokeWorkload::Hpsearch => {
                let data = dataset.join("part-00000.csv").display().to_string();
                run_tool(
                    bin_dir,
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

/// Asks a student's running services how many workers they have: `(service, answer)`.
pub async fn service_health(state: &State, student: &str, bin_dir: &Path) -> Vec<(&'static str, String)> {
    let token = state
        .resources
        .get(&format!("student[\"{student}\"].credential"))
        .and_then(|r| r.attributes.get("token"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut out = vec![];
    if let Some(vm) = state.resources.get(&format!("student[\"{student}\"].vm")) {
        // A cloud VM: its workers are behind SSH; show what the provider reported.
        let attribute = |k: &str| vm.attributes.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
        let ip = vm
            .attributes
            .get("public_ip")
            .and_then(Value::as_str)
            .map_or_else(|| attribute("private_ip"), str::to_owned);
        out.push(("vm", format!("{} {} ({})", vm.id, ip, attribute("state"))));
    }
    if let Some(ns) = state.resources.get(&format!("student[\"{student}\"].namespace")) {
        // Kubernetes: the services answer inside the cluster only (apply waited for them).
        let name = ns.attributes.get("namespace").and_then(Value::as_str).unwrap_or("?");
        out.push(("namespace", format!("{name} (services in-cluster: kubectl port-forward)")));
        return out;
    }
    for service in [WorkerService::MapReduce, WorkerService::Scheduler] {
        let Some(r) = state.resources.get(&format!("student[\"{student}\"].{}", service.name())) else {
            continue;
        };
        let attr = |key: &str| r.attributes.get(key).and_then(Value::as_str);
        let (flag, target) = match service {
            WorkerService::MapReduce => ("--coordinator", attr("address").map(str::to_owned)),
            WorkerService::Scheduler => (
                "--http",
                attr("status_url")
                    .map(|u| u.trim_start_matches("http://").trim_end_matches("/status").to_owned()),
            ),
        };
        let Some(target) = target else { continue };
        let answer = match tokio::time::timeout(
            Duration::from_secs(5),
            run_tool(bin_dir, service, token, &["status", flag, &target]),
        )
        .await
        {
            Ok(Ok(text)) => workers_in(&text).map_or_else(|| "up".to_owned(), |n| format!("{n} workers")),
            Ok(Err(e)) => format!("down ({e})"),
            Err(_) => "no answer".to_owned(),
        };
        out.push((service.name(), answer));
    }
    out
}

/// The worker count in a status answer (JSON from lab-mapreduce, text from lab-scheduler).
fn workers_in(text: &str) -> Option<u64> {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => v["workers"].as_u64(),
        Err(_) => text.lines().find_map(|l| l.strip_prefix("workers:")).and_then(|n| n.trim().parse().ok()),
    }
}

/// Whether a dataset is what a smoke workload reads.
fn feeds(kind: SmokeWorkload, dataset: &labctl_datasets::Dataset) -> bool {
    use labctl_datasets::DatasetKind;
    matches!(
        (kind, &dataset.kind),
        (SmokeWorkload::Wordcount, DatasetKind::Text { .. })
            | (SmokeWorkload::Hpsearch, DatasetKind::Tabular { .. })
    )
}
