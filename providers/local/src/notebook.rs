//! A student's notebook service on this machine: a Dask scheduler and its workers, and a
//! Jupyter server (JupyterLab) whose kernels find that scheduler and run PySpark in local
//! mode, all from the lab's Python environment and on loopback ports chosen by the kernel.
//! The student's credential token is the server's login; their bucket is its root, so
//! what they save is their work (and `destroy --archive` keeps it).

use std::collections::BTreeMap;
use std::path::Path;

use labctl_notebook::serve;
use labctl_provider_api::{dep_attr, Deps, Observed, ProviderError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::fsutil::{io_error, write_atomic};
use crate::process::{self, Proc};
use crate::services::{failed, save, stop, Record, START_TIMEOUT};

/// A student's notebook service.
#[derive(Debug, Serialize, Deserialize)]
pub struct NotebookConfig {
    pub student: String,
    pub dask_workers: u32,
    /// PySpark in their kernels (the check runs it).
    pub spark: bool,
    /// The student's bucket: the server's root, where their notebooks are saved.
    pub bucket: String,
    /// Notebooks put in the student's `notebooks/` unless there already: name → text.
    /// A change reaches students who have no such file yet, without a restart.
    pub starters: BTreeMap<String, String>,
}

/// What a changed notebook config may do in place: deliver new starters.
pub const REPLACE_ON: &[&str] = &["student", "dask_workers", "spark", "bucket"];

/// Jupyter takes longer than the bundled workers to start (it loads its extensions).
const JUPYTER_START: std::time::Duration = std::time::Duration::from_secs(60);

/// Starts the student's Dask cluster and Jupyter server from scratch in `dir`, serving
/// `root`, with the token and the Python environment (`bin`) their dependencies hold.
pub fn start(
    config: &NotebookConfig,
    dir: &Path,
    root: &Path,
    deps: &Deps,
) -> Result<Observed, ProviderError> {
    stop(dir)?;
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    std::fs::create_dir_all(root).map_err(|e| io_error(root, e))?;
    put_starters(&config.starters, root)?;
    let (token, python) = (dep_attr(deps, "token")?, Path::new(dep_attr(deps, "bin")?));
    let id = config.student.as_str();
    let mut record = Record::default();
    let fail = |record: &Record, e: String| failed(id, dir, record, e);
    let spawn = |record: &mut Record, role: &str, program: &str, args: &[String], env: &[(&str, &str)]| {
        let log = dir.join(format!("{role}.log"));
        let p = process::spawn(role, &python.join(program), args, env, &log)
            .map_err(|e| fail(record, format!("cannot start {role}: {e}")))?;
        record.processes.push(p.clone());
        save(dir, record)?;
        Ok::<(Proc, std::path::PathBuf), ProviderError>((p, log))
    };

    let (head, log) = spawn(&mut record, "dask-scheduler", "dask", &serve::scheduler(0, 0), &[])?;
    let scheduler =
        process::wait_for(&log, "Scheduler at:", &head, START_TIMEOUT).map_err(|e| fail(&record, e))?;
    let dashboard =
        process::wait_for(&log, "dashboard at:", &head, START_TIMEOUT).map_err(|e| fail(&record, e))?;
    for i in 0..config.dask_workers {
        let scratch = dir.join(format!("dask-worker-{i}")).display().to_string();
        let args = serve::worker(&scheduler, &format!("{id}-dask-{i}"), &scratch);
        let (worker, log) = spawn(&mut record, &format!("dask-worker-{i}"), "dask", &args, &[])?;
        process::wait_for(&log, "Registered to:", &worker, START_TIMEOUT).map_err(|e| fail(&record, e))?;
    }

    let runtime = dir.join("jupyter");
    let mut env = serve::kernel_environment(&scheduler, &python.join("python").display().to_string());
    env.extend([
        ("JUPYTER_TOKEN", token.to_owned()),
        ("JUPYTER_RUNTIME_DIR", runtime.join("runtime").display().to_string()),
        ("JUPYTER_CONFIG_DIR", runtime.join("config").display().to_string()),
        // Not the instructor's own kernels and extensions (`~/.local/share/jupyter`).
        ("JUPYTER_DATA_DIR", runtime.join("data").display().to_string()),
        ("IPYTHONDIR", runtime.join("ipython").display().to_string()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // SAFETY: geteuid has no preconditions.
    let as_root = unsafe { libc::geteuid() } == 0;
    let jupyter_args = serve::jupyter(0, &root.display().to_string(), as_root);
    let (server, log) = spawn(&mut record, "jupyter", "jupyter", &jupyter_args, &env)?;
    let url = process::wait_for(&log, "ServerApp] http://", &server, JUPYTER_START)
        .map_err(|e| fail(&record, e))?;
    let address = url.split('/').next().unwrap_or_default().to_owned();

    record.attributes.insert("jupyter".into(), json!(address));
    record.attributes.insert("url".into(), json!(format!("http://{address}/lab")));
    record.attributes.insert("dask_scheduler".into(), json!(scheduler));
    record.attributes.insert("dask_dashboard".into(), json!(dashboard.trim_end_matches("/status")));
    record.attributes.insert("dask_workers".into(), json!(config.dask_workers));
    record.attributes.insert("spark".into(), json!(config.spark));
    save(dir, &record)?;
    Ok(crate::services::observed(id, dir, &record))
}

/// Writes each starter notebook into `root/notebooks` unless the student has one of that
/// name (theirs holds their answers).
pub fn put_starters(starters: &BTreeMap<String, String>, root: &Path) -> Result<(), ProviderError> {
    for (name, text) in starters {
        let path = root.join("notebooks").join(name);
        if !path.exists() {
            write_atomic(&path, text.as_bytes(), 0o644)?;
        }
    }
    Ok(())
}
