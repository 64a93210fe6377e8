//! `destroy --archive DIR`: before a student's bucket is deleted, what they wrote into it
//! is copied into `DIR/<student>/` (the seeded datasets left out), with what the provider
//! keeps elsewhere (a VM's notebooks). A student whose copy fails keeps their whole
//! environment: work is never lost silently.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use labctl_provider_api::Address;
use tokio::task::JoinSet;

use super::error::CliError;
use crate::engine::Providers;
use crate::plan::{ActionKind, Plan};
use crate::registry::{self, Registry};
use crate::state::State;

/// A student's environment left in place because their work could not be archived.
#[derive(Debug)]
pub struct Kept {
    pub student: String,
    /// Their resources' addresses, which the destroy leaves out.
    pub addresses: Vec<String>,
    pub error: String,
}

/// Refuses `--archive` before anything happens when the lab's provider cannot archive.
pub fn check_supported(provider: &str) -> Result<(), CliError> {
    if registry::plugin(provider).is_some_and(|p| p.capabilities().archive) {
        return Ok(());
    }
    Err(CliError::invalid(format!("the {provider} provider cannot archive students' work yet"))
        .with_hint("destroy without --archive after copying what the students need to keep"))
}

/// Copies the work of every student whose bucket `plan` deletes into `dir/<student>/`,
/// `parallelism` at a time, saying so for each (unless `json`); the students whose
/// environments must stay.
pub async fn archive_buckets(
    plan: &Plan,
    state: &State,
    registry: &Registry,
    dir: &Path,
    parallelism: usize,
    json: bool,
) -> Vec<Kept> {
    let mut students = crate::verify::students(state);
    let limit = Arc::new(tokio::sync::Semaphore::new(parallelism.max(1)));
    let mut copies = JoinSet::new();
    for action in plan.actions.iter().filter(|a| a.action == ActionKind::Delete) {
        let Some((student, "bucket")) = Address::split_student(&action.address) else { continue };
        let (Some(resources), Some(provider)) =
            (students.remove(student), registry.provider(&action.provider))
        else {
            continue;
        };
        let addresses: Vec<String> = state
            .resources
            .keys()
            .filter(|a| Address::split_student(a).is_some_and(|(s, _)| s == student))
            .cloned()
            .collect();
        let (into, limit) = (dir.join(student), limit.clone());
        copies.spawn(async move {
            let _slot = limit.acquire_owned().await.expect("the semaphore is never closed");
            let copied = provider.archive(&resources, &into).await;
            (resources.student, addresses, into, copied)
        });
    }
    let mut kept = vec![];
    let mut out = anstream::stdout();
    for (student, addresses, into, copied) in copies.join_all().await {
        match copied {
            Ok(_) if json => {}
            Ok(files) => {
                let _ = writeln!(out, "Archived {student}'s work: {files} files in {}.", into.display());
            }
            Err(e) => kept.push(Kept { student, addresses, error: e.to_string() }),
        }
    }
    kept.sort_by(|a, b| a.student.cmp(&b.student));
    kept
}

/// The error of a destroy that kept some buckets.
pub fn kept_error(kept: &[Kept], dir: &Path) -> CliError {
    let lines: Vec<String> = kept.iter().map(|k| format!("{}: {}", k.student, k.error)).collect();
    CliError::failed(format!(
        "kept the environment of {} student(s): their work could not be archived into {}:\n  {}",
        kept.len(),
        dir.display(),
        lines.join("\n  ")
    ))
    .with_hint("fix the cause and run the same destroy again; it archives and deletes what is left")
}
