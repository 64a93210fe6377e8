//! What students' notebook environments share on every provider: the lab's Python stack
//! (JupyterLab, Dask, PySpark and the lab's packages, pinned; packed as a wheelhouse for
//! VMs), how its services run, a client of a Jupyter server's kernels, and the `notebook`
//! smoke check run through it.

pub mod check;
pub mod jupyter;
pub mod serve;
pub mod stack;

use std::time::Duration;

/// How a student's notebook service answers, for `labctl status`: the Jupyter server
/// (asked with their token) and the Dask workers its scheduler has.
pub fn health(jupyter: &str, token: &str, dask_dashboard: &str) -> String {
    let jupyter = match jupyter::Jupyter::new(jupyter, token).status() {
        Ok((version, kernels)) => format!("Jupyter Server {version} ({kernels} kernels)"),
        Err(e) => format!("Jupyter down ({e})"),
    };
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(5))).build().into();
    let counts = agent
        .get(format!("{dask_dashboard}/json/counts.json"))
        .call()
        .and_then(|mut r| r.body_mut().read_json::<serde_json::Value>());
    let dask = match counts {
        Ok(counts) => format!("Dask {} workers", counts["workers"]),
        Err(e) => format!("Dask down ({e})"),
    };
    format!("{jupyter}, {dask}")
}
