//! How a student's notebook service runs, wherever it runs (labctl's own processes here,
//! systemd units on a VM): the Dask scheduler, its workers and JupyterLab, as programs of
//! the lab's environment with their arguments, and the environment their kernels inherit.
//! Everything listens on loopback only: a Dask worker runs whatever a client sends it,
//! unauthenticated, and students reach Jupyter through labctl's address or an SSH tunnel.

/// `dask scheduler`'s arguments; port 0 lets the kernel choose.
pub fn scheduler(port: u16, dashboard_port: u16) -> Vec<String> {
    let (port, dashboard) = (port.to_string(), format!("127.0.0.1:{dashboard_port}"));
    strings(&["scheduler", "--host", "127.0.0.1", "--port", &port, "--dashboard-address", &dashboard])
}

/// `dask worker`'s arguments: one thread, no nanny, no dashboard, scratch in `local_dir`.
pub fn worker(scheduler: &str, name: &str, local_dir: &str) -> Vec<String> {
    strings(&[
        "worker",
        scheduler,
        "--host",
        "127.0.0.1",
        "--nthreads",
        "1",
        "--no-nanny",
        "--no-dashboard",
        "--dashboard-address",
        "127.0.0.1:0",
        "--name",
        name,
        "--local-directory",
        local_dir,
    ])
}

/// `jupyter`'s arguments for JupyterLab serving `root` (its token comes from `JUPYTER_TOKEN`);
/// `as_root` when it runs as root, which Jupyter refuses unless told. JupyterLab asks PyPI for
/// its updates and extensions unless told not to.
pub fn jupyter(port: u16, root: &str, as_root: bool) -> Vec<String> {
    let mut args = strings(&[
        "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        "--LabApp.extension_manager=readonly",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]);
    args.push(format!("--ServerApp.port={port}"));
    args.push(format!("--ServerApp.root_dir={root}"));
    if as_root {
        args.push("--allow-root".into());
    }
    args
}

/// What the kernels inherit: Dask's `Client()` finds the student's scheduler, PySpark runs
/// the lab's Python (`python`) and binds loopback only.
pub fn kernel_environment(scheduler: &str, python: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DASK_SCHEDULER_ADDRESS", scheduler.to_owned()),
        ("PYSPARK_PYTHON", python.to_owned()),
        ("PYSPARK_DRIVER_PYTHON", python.to_owned()),
        ("SPARK_LOCAL_IP", "127.0.0.1".to_owned()),
    ]
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}
