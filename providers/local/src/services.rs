//! The local "hosts": per student, the bundled MapReduce coordinator and scheduler with
//! their workers, as detached processes on loopback ports chosen by the kernel. What was
//! started is recorded in `processes.json` beside the logs as soon as it starts, so a crash
//! at any point leaves nothing running that the next create or delete cannot find.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use labctl_provider_api::WorkerService as Service;
use labctl_provider_api::{Attributes, Deps, Observed, ProviderError, ResourceSpec};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::fsutil::{io_error, read_json, write_atomic};
use crate::plugin::ServiceConfig;
use crate::process::{self, Proc};

/// What a service looks like once started: its processes, and once its head answers,
/// where it is (the resource's attributes).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    pub processes: Vec<Proc>,
    #[serde(default)]
    pub attributes: Attributes,
}

const STOP_GRACE: Duration = Duration::from_secs(3);
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Starts the student's service as `config` says, from scratch in `dir` (stopping whatever
/// an earlier incarnation left).
pub fn start(
    service: Service,
    config: &ServiceConfig,
    dir: &Path,
    bin_dir: &Path,
    spec: &ResourceSpec,
    deps: &Deps,
) -> Result<Observed, ProviderError> {
    stop(dir)?;
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let exe = bin_dir.join(service.binary());
    check_version(&exe, &config.version)?;
    let token = deps
        .values()
        .find_map(|o| o.attributes.get("token").and_then(Value::as_str))
        .ok_or_else(|| {
            ProviderError::invalid(format!("{} needs the student's credential as a dependency", spec.address))
        })?
        .to_owned();
    let env = [(service.token_env(), token.as_str())];
    let id = config.student.as_str();
    let mut record = Record::default();
    let fail = |record: &Record, e: String| failed(id, dir, record, e);

    let (role, args): (&str, Vec<String>) = match service {
        Service::MapReduce => {
            ("coordinator", vec!["coordinator".into(), "--listen".into(), "127.0.0.1:0".into()])
        }
        Service::Scheduler => (
            "scheduler",
            vec![
                "scheduler".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--http".into(),
                "127.0.0.1:0".into(),
            ],
        ),
    };
    let log = dir.join(format!("{role}.log"));
    let head = process::spawn(role, &exe, &args, &env, &log)
        .map_err(|e| fail(&record, format!("cannot start {}: {e}", exe.display())))?;
    record.processes.push(head.clone());
    save(dir, &record)?;
    let address =
        process::wait_for(&log, "listening on ", &head, START_TIMEOUT).map_err(|e| fail(&record, e))?;
    if service == Service::Scheduler {
        let http = process::wait_for(&log, "status on http://", &head, START_TIMEOUT)
            .map_err(|e| fail(&record, e))?;
        record.attributes.insert("status_url".into(), json!(format!("http://{http}")));
    }
    record.attributes.insert("address".into(), json!(address));
    save(dir, &record)?;

    for i in 0..config.workers {
        let mut args = match service {
            Service::MapReduce => vec!["worker".into(), "--coordinator".into(), address.clone()],
            Service::Scheduler => {
                let slots = config.slots.unwrap_or(1);
                vec![
                    "worker".into(),
                    "--scheduler".into(),
                    address.clone(),
                    "--slots".into(),
                    slots.to_string(),
                ]
            }
        };
        args.extend([
            "--name".into(),
            format!("{}-worker-{i}", spec.tags.student.as_deref().unwrap_or("lab")),
        ]);
        let log = dir.join(format!("worker-{i}.log"));
        let p = process::spawn("worker", &exe, &args, &env, &log)
            .map_err(|e| fail(&record, format!("cannot start a worker: {e}")))?;
        record.processes.push(p);
        save(dir, &record)?;
    }
    Ok(observed(id, dir, &record))
}

/// The service as it runs now; `None` if any of its processes is gone.
pub fn read(id: &str, dir: &Path) -> Result<Option<Observed>, ProviderError> {
    let Some(record) = read_json::<Record>(&record_path(dir))? else { return Ok(None) };
    let complete = !record.attributes.is_empty() && !record.processes.is_empty();
    Ok((complete && record.processes.iter().all(Proc::alive)).then(|| observed(id, dir, &record)))
}

/// Stops every recorded process and forgets them.
pub fn stop(dir: &Path) -> Result<(), ProviderError> {
    if let Some(record) = read_json::<Record>(&record_path(dir))? {
        // Workers first, so they do not report the coordinator's disappearance as errors.
        for p in record.processes.iter().rev() {
            p.stop(STOP_GRACE);
        }
        crate::fsutil::remove_file(&record_path(dir))?;
    }
    Ok(())
}

fn record_path(dir: &Path) -> PathBuf {
    dir.join("processes.json")
}

/// Records what was started, before anything else happens.
pub fn save(dir: &Path, record: &Record) -> Result<(), ProviderError> {
    write_atomic(&record_path(dir), &serde_json::to_vec_pretty(record).expect("records serialise"), 0o644)
}

/// The resource as `record` says, with where its logs are.
pub fn observed(id: &str, dir: &Path, record: &Record) -> Observed {
    let mut attributes = record.attributes.clone();
    attributes.insert("log_dir".into(), json!(dir));
    attributes.insert("processes".into(), json!(record.processes));
    Observed { id: id.to_owned(), attributes, sensitive: vec![] }
}

/// A start that failed with `error`, leaving what `record` holds (stopped by the next try).
pub fn failed(id: &str, dir: &Path, record: &Record, error: String) -> ProviderError {
    ProviderError::fatal(error).with_partial(observed(id, dir, record))
}

/// Refuses worker binaries from another build than the one the lab asks for.
fn check_version(exe: &Path, want: &str) -> Result<(), ProviderError> {
    let out = std::process::Command::new(exe).arg("--version").output().map_err(|e| {
        ProviderError::invalid(format!(
            "cannot run {}: {e}. Build the workers (cargo build --workspace) or set LABCTL_WORKER_BIN_DIR",
            exe.display()
        ))
    })?;
    let have = String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap_or_default().to_owned();
    if have != want {
        return Err(ProviderError::invalid(format!(
            "{} is version {have}, but this lab needs {want}: rebuild the workspace",
            exe.display()
        )));
    }
    Ok(())
}
