//! Functional verification: an environment is ready only when the smoke workloads have
//! run in it and given the right answer. Per student: word count through their MapReduce,
//! checked against an independent count; the hyperparameter search through their
//! scheduler, checked against a sequential run of the same search. How a workload reaches
//! a student is the provider's [`SmokeRunner`]; this module schedules the checks and
//! gathers the matrix.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use labctl_datasets::DatasetKind;
use labctl_provider_api::{Address, Recorded, SmokeRunner, StudentResources};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::lab::{Lab, SmokeWorkload};
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
pub async fn verify(lab: &Lab, state: &State, runner: Arc<dyn SmokeRunner>, only: &[String]) -> Vec<Check> {
    let permits = Arc::new(Semaphore::new(runner.parallel().max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut order = vec![];
    let mut by_student = students(state);
    for (_, student) in lab.students().filter(|(_, s)| only.is_empty() || only.contains(&s.id)) {
        let resources =
            Arc::new(by_student.remove(&student.id).unwrap_or_else(|| StudentResources {
                student: student.id.clone(),
                resources: BTreeMap::new(),
            }));
        for smoke in &lab.student.smoke {
            let workload = *smoke.get_ref();
            order.push((student.id.clone(), name(workload)));
            let dataset = dataset_for(lab, workload).map(str::to_owned);
            let (permits, runner, resources) = (permits.clone(), runner.clone(), resources.clone());
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let start = Instant::now();
                let result = runner.run(workload, &resources, dataset.as_deref(), CHECK_TIMEOUT).await;
                Check {
                    student: resources.student.clone(),
                    check: name(workload),
                    passed: result.is_ok(),
                    seconds: start.elapsed().as_secs_f64(),
                    detail: result.err(),
                }
            });
        }
    }
    let mut checks = vec![];
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(check) => checks.push(check),
            Err(e) => tracing::error!("a smoke check panicked: {e}"),
        }
    }
    checks.sort_by_key(|c| order.iter().position(|(s, n)| *s == c.student && *n == c.check));
    checks
}

/// The check's name in the matrix.
fn name(workload: SmokeWorkload) -> &'static str {
    match workload {
        SmokeWorkload::Wordcount => "wordcount",
        SmokeWorkload::Hpsearch => "hpsearch",
        SmokeWorkload::Notebook => "notebook",
    }
}

/// The first seeded dataset a workload reads (text for word count, tabular for the search).
fn dataset_for(lab: &Lab, workload: SmokeWorkload) -> Option<&str> {
    lab.seeded().find(|d| {
        lab.datasets.get(*d).is_some_and(|ds| {
            matches!(
                (workload, &ds.kind),
                (SmokeWorkload::Wordcount | SmokeWorkload::Notebook, DatasetKind::Text { .. })
                    | (SmokeWorkload::Hpsearch, DatasetKind::Tabular { .. })
            )
        })
    })
}

/// State's resources grouped by student, as providers read them.
pub fn students(state: &State) -> BTreeMap<String, StudentResources> {
    let mut out: BTreeMap<String, StudentResources> = BTreeMap::new();
    for (address, r) in &state.resources {
        let Some((student, within)) = Address::split_student(address) else { continue };
        let entry = out
            .entry(student.to_owned())
            .or_insert_with(|| StudentResources { student: student.to_owned(), resources: BTreeMap::new() });
        let recorded = Recorded {
            id: r.id.clone(),
            kind: r.kind.clone(),
            config: r.config.clone(),
            attributes: r.attributes.clone(),
            tags: r.tags.clone(),
        };
        entry.resources.insert(within.to_owned(), recorded);
    }
    out
}
