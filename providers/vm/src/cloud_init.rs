//! A VM's cloud-init user data: the student's account, the worker binaries fetched from the
//! lab's artifacts bucket and checked, and systemd units that keep the workers running.
//! The cloud gives the workers' environment, any key file, and the `labctl-rekey` script
//! that installs a rotated key.

use std::collections::BTreeMap;

use labctl_provider_api::{ports, ProviderError};
use serde::{Deserialize, Serialize};

const TEMPLATE: &str = include_str!("cloud-init.yaml.tera");

/// The ports the workers listen on inside a VM (reached over SSH tunnels or from the
/// student's own VMs: the firewall lets nothing else in).
#[derive(Debug, Serialize)]
pub struct Ports {
    pub mapreduce: u16,
    pub scheduler: u16,
    pub scheduler_http: u16,
}

/// The workers' ports.
pub const PORTS: Ports =
    Ports { mapreduce: ports::MAPREDUCE, scheduler: ports::SCHEDULER, scheduler_http: ports::SCHEDULER_HTTP };

/// A VM's MapReduce: how many workers run beside the coordinator.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct MapReduce {
    pub workers: u32,
}

/// A VM's scheduler: how many workers, with how many task slots each.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Scheduler {
    pub workers: u32,
    pub slots: u32,
}

/// How long a VM's links to its worker binaries stay valid: cloud-init fetches them within
/// minutes of the VM's first boot.
pub const BINARY_URL_LIFETIME: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// A worker binary the VM fetches.
#[derive(Debug, Serialize)]
pub struct Binary {
    /// A signed GET of the binary in the artifacts bucket: the VM needs no cloud CLI.
    pub url: String,
    /// Checked after download.
    pub sha256: String,
}

/// A file only the student reads (their cloud key).
#[derive(Debug, Serialize)]
pub struct KeyFile {
    pub path: String,
    pub content: String,
}

/// A file fetched into the student's home at first boot, unless there.
#[derive(Debug, Serialize)]
pub struct Fetch {
    /// A signed GET, like the binaries'.
    pub url: String,
    /// Relative to their home directory.
    pub path: String,
}

/// Where the lab's Python environment is installed on a VM.
pub const PYTHON_ENV: &str = "/opt/labctl/python";

/// A student's notebook service on their VM: the lab's Python environment installed from its
/// wheelhouse with no package index, their datasets and starter notebooks in their home, and
/// systemd units running the Dask scheduler, its workers and JupyterLab as the student.
#[derive(Debug, Serialize)]
pub struct Notebook {
    pub wheelhouse: Binary,
    /// `3.11`: the Python the wheelhouse was built for, which the VM's must be.
    pub python: String,
    pub spark: bool,
    pub dask_workers: u32,
    pub files: Vec<Fetch>,
    /// The units' command lines.
    pub scheduler: String,
    pub worker: String,
    pub jupyter: String,
    /// What the kernels inherit.
    pub environment: BTreeMap<String, String>,
    /// How the wheelhouse installs once unpacked, and where.
    pub install: &'static str,
    pub python_env: &'static str,
}

impl Notebook {
    /// The notebook service of `student`, whose home is `/home/<student>`.
    pub fn new(
        student: &str,
        wheelhouse: Binary,
        python: &str,
        spark: bool,
        dask_workers: u32,
        files: Vec<Fetch>,
    ) -> Self {
        use labctl_notebook::serve;
        let home = format!("/home/{student}");
        let program = |name: &str, args: Vec<String>| format!("{PYTHON_ENV}/bin/{name} {}", args.join(" "));
        let address = format!("tcp://127.0.0.1:{}", ports::DASK_SCHEDULER);
        let scratch = format!("{home}/.dask-worker-%i");
        let python_exe = format!("{PYTHON_ENV}/bin/python");
        Self {
            wheelhouse,
            // `Python 3.11.2` → `3.11`.
            python: python.trim_start_matches("Python ").splitn(3, '.').take(2).collect::<Vec<_>>().join("."),
            spark,
            dask_workers,
            files,
            scheduler: program("dask", serve::scheduler(ports::DASK_SCHEDULER, ports::DASK_DASHBOARD)),
            worker: program("dask", serve::worker(&address, &format!("{student}-dask-%i"), &scratch)),
            jupyter: program("jupyter", serve::jupyter(ports::JUPYTER, &home, false)),
            environment: serve::kernel_environment(&address, &python_exe)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            install: labctl_notebook::stack::WHEELHOUSE_INSTALL,
            python_env: PYTHON_ENV,
        }
    }
}

/// What the user data needs to know.
#[derive(Debug, Serialize)]
pub struct UserData<'a> {
    pub lab: &'a str,
    pub student: &'a str,
    /// The worker binaries by name.
    pub binaries: BTreeMap<String, Binary>,
    /// The student's worker token.
    pub token: &'a str,
    /// The workers' cloud access (the student's own key, scoped to their bucket), as
    /// environment variables.
    pub environment: BTreeMap<String, String>,
    /// Files the cloud access needs, owned by the student.
    pub files: Vec<KeyFile>,
    /// The body of `/usr/local/sbin/labctl-rekey` (after `#!/bin/sh`): reads the student's
    /// new key on stdin, installs it for the workers and restarts them.
    pub rekey: &'a str,
    pub mapreduce: Option<MapReduce>,
    pub scheduler: Option<Scheduler>,
    pub notebook: Option<Notebook>,
    pub ports: Ports,
    /// Public keys allowed to log in as the image's default user (the instructors').
    pub ssh_keys: Vec<String>,
    /// The student's own public key: they log in as themselves, and their workers run as
    /// them (reading what they bring to their VM).
    pub student_key: &'a str,
}

/// Renders the user data.
pub fn render(data: &UserData) -> Result<String, ProviderError> {
    let context =
        tera::Context::from_serialize(data).map_err(|e| ProviderError::fatal(format!("user data: {e}")))?;
    tera::Tera::one_off(TEMPLATE, &context, false)
        .map_err(|e| ProviderError::fatal(format!("user data template: {e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(mapreduce: Option<MapReduce>, scheduler: Option<Scheduler>, files: Vec<KeyFile>) -> String {
        sample_with(mapreduce, scheduler, files, None)
    }

    fn sample_with(
        mapreduce: Option<MapReduce>,
        scheduler: Option<Scheduler>,
        files: Vec<KeyFile>,
        notebook: Option<Notebook>,
    ) -> String {
        let binaries = [("lab-mapreduce", "aa11"), ("lab-scheduler", "bb22")]
            .map(|(name, sha256)| {
                let url = format!("https://storage.example/bigdata-artifacts/bin/{name}?Signature=5ig");
                (name.to_owned(), Binary { url, sha256: sha256.to_owned() })
            })
            .into();
        let environment = [("CLOUD_REGION", "eu-west-1"), ("CLOUD_KEY", "secretexample")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        render(&UserData {
            lab: "bigdata",
            student: "ada",
            binaries,
            token: "0123abcd",
            environment,
            files,
            rekey: "set -eu\nread -r key\necho \"CLOUD_KEY=$key\" > /etc/labctl/workers.env\n",
            mapreduce,
            scheduler,
            notebook,
            ports: PORTS,
            ssh_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKey instructor@example.edu".into()],
            student_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIStudentKey bigdata-ada",
        })
        .unwrap()
    }

    #[test]
    fn user_data_with_both_services() {
        insta::assert_snapshot!(sample(
            Some(MapReduce { workers: 2 }),
            Some(Scheduler { workers: 2, slots: 4 }),
            vec![]
        ));
    }

    #[test]
    fn user_data_with_a_notebook_installed_from_the_wheelhouse() {
        let signed = |key: &str| format!("https://storage.example/bigdata-artifacts/{key}?Signature=5ig");
        let wheelhouse = Binary { url: signed("notebook/wheelhouse.tar"), sha256: "cc33".into() };
        let files = ["datasets/corpus/part-00000.txt", "notebooks/evaluation.ipynb"]
            .map(|path| Fetch { url: signed(path), path: path.into() })
            .into();
        let notebook = Notebook::new("ada", wheelhouse, "Python 3.11.2", true, 2, files);
        insta::assert_snapshot!(sample_with(None, None, vec![], Some(notebook)));
    }

    #[test]
    fn user_data_with_mapreduce_only_and_a_key_file() {
        let key =
            KeyFile { path: "/etc/labctl/key.json".into(), content: "{\n  \"type\": \"key\"\n}\n".into() };
        insta::assert_snapshot!(sample(Some(MapReduce { workers: 1 }), None, vec![key]));
    }
}
