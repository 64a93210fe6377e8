//! Students' notebooks on their VMs, on any cloud: the lab's notebook stack in its artifacts
//! bucket (the wheelhouse of the lab's Python environment, built here once and pinned, and
//! the starter notebooks), and the user data's part that installs it on a student's VM and
//! fetches their datasets and the starters into their home.

use std::collections::BTreeMap;
use std::path::Path;

use async_trait::async_trait;
use base64::Engine;
use labctl_notebook::stack::{requirements, PythonEnv, Wheelhouse};
use labctl_provider_api::lab::{Lab, LabSections};
use labctl_provider_api::{attrs, Address, Deps, Findings, Observed, ProviderError, StudentResources};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::cloud_init::{Binary, Fetch, Notebook};
use crate::smoke::DATASETS;
use crate::ssh::{Login, SshClient};
use crate::NotebookService;

/// The lab-wide resource's address.
pub const ADDRESS: &str = "notebook_stack";

/// Where the stack lives in the artifacts bucket.
pub const PREFIX: &str = "notebook/";

/// The lab's notebook stack: the wheelhouse of `requirements` (pinned when first built), the
/// starter notebooks, and the students' datasets their VMs fetch.
#[derive(Debug, Serialize, Deserialize)]
pub struct NotebookStackConfig {
    pub artifacts: String,
    pub requirements: Vec<String>,
    /// Starter notebooks: name → text.
    pub starters: BTreeMap<String, String>,
    /// The students' datasets, in their buckets: name → its parts' file names.
    pub datasets: BTreeMap<String, Vec<String>>,
}

/// What a changed stack replaces: another environment. New starters are uploaded in place,
/// new datasets listed (VMs booted before keep what they fetched).
pub const REPLACE_ON: &[&str] = &["artifacts", "requirements"];

impl NotebookStackConfig {
    /// The lab's stack in bucket `artifacts`, when its students get notebooks on VMs.
    pub fn of(lab: &Lab, artifacts: &str) -> Option<Self> {
        let spec = lab.student.notebook.as_ref().filter(|_| lab.any_vms())?;
        Some(Self {
            artifacts: artifacts.to_owned(),
            requirements: requirements(spec),
            starters: lab.starters.clone(),
            datasets: lab
                .seeded()
                .map(|d| (d.to_owned(), lab.datasets[d].parts().into_iter().map(|p| p.name).collect()))
                .collect(),
        })
    }

    /// Each starter's key in the artifacts bucket, and its text.
    pub fn starter_objects(&self) -> impl Iterator<Item = (String, &str)> {
        self.starters.iter().map(|(name, text)| (starter_key(name), text.as_str()))
    }
}

/// A starter notebook's key in the artifacts bucket.
fn starter_key(name: &str) -> String {
    format!("{PREFIX}starters/{name}")
}

/// The artifacts bucket a recorded stack is in.
pub fn stack_bucket(stack: &Observed) -> &str {
    stack.attributes.get("bucket").and_then(Value::as_str).unwrap_or_default()
}

/// What a cloud refuses of a lab's notebooks: students on one of the lab's clusters
/// (`cluster`) get none yet.
pub fn refuse_on_cluster(lab: &LabSections<'_>, cluster: Option<&str>, findings: &mut Findings) {
    if let (Some(_), Some(cluster)) = (&lab.student.notebook, cluster) {
        findings.errors.push(lab.error(
            lab.spans.notebook.clone().unwrap_or(0..0),
            format!("students on cluster `{cluster}` get no notebook server yet: notebooks run on the students' VMs"),
            "allowed: [student.notebook] with students on VMs ([student] compute), not on a cluster",
        ));
    }
}

/// Checks that this machine can build the wheelhouse for VMs of CPU `vm_arch` (`x86_64`,
/// `aarch64`): pip takes the wheels of this machine's system and CPU. Warns when VMs booted
/// from `image` have another Python than this machine's (the VMs would refuse the wheelhouse).
pub fn preflight(lab: &Lab, vm_arch: &str, image: &str) -> Result<Vec<String>, String> {
    if lab.student.notebook.is_none() || !lab.any_vms() {
        return Ok(vec![]);
    }
    let (os, arch) = (std::env::consts::OS, std::env::consts::ARCH);
    if (os, arch) != ("linux", vm_arch) {
        return Err(format!(
            "the students' notebooks are built here for the VMs ({vm_arch} Linux), but this machine is {arch} {os}: run labctl on {vm_arch} Linux, or choose VMs of this machine's CPU"
        ));
    }
    labctl_notebook::stack::preflight_python()?;
    let here = std::process::Command::new("python3")
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    let here = String::from_utf8_lossy(&here.stdout).trim().to_owned();
    let warning = image_python(image).filter(|there| *there != here).map(|there| {
        format!(
            "the students' notebooks are built here for Python {here}, but image `{image}` has Python {there}: their VMs will refuse to install them; choose an image with Python {here} in [student.compute] image, or run labctl where python3 is {there}"
        )
    });
    Ok(warning.into_iter().collect())
}

/// The `python3` (major.minor) that images named like this ship, on AWS or GCP: the releases
/// labctl knows.
fn image_python(image: &str) -> Option<&'static str> {
    const KNOWN: [(&str, &str); 10] = [
        ("ubuntu-noble-24.04", "3.12"),
        ("ubuntu-2404", "3.12"),
        ("ubuntu-jammy-22.04", "3.10"),
        ("ubuntu-2204", "3.10"),
        ("ubuntu-focal-20.04", "3.8"),
        ("debian-13", "3.13"),
        ("debian-12", "3.11"),
        ("al2023-ami-", "3.9"),
        ("amzn2-ami-", "3.7"),
        ("ubuntu-2004", "3.8"),
    ];
    KNOWN.iter().find(|(name, _)| image.contains(name)).map(|(_, v)| *v)
}

/// The wheelhouse's key in the artifacts bucket.
pub const WHEELHOUSE_KEY: &str = "notebook/wheelhouse.tar";

/// Builds the lab's Python environment in `dir` (or finds it built, at its pins) and packs
/// its wheelhouse: the pins and the wheelhouse.
pub async fn build(dir: &Path, requirements: &[String]) -> Result<(Vec<String>, Wheelhouse), ProviderError> {
    let (env, requirements) = (PythonEnv::at(dir), requirements.to_vec());
    tokio::task::spawn_blocking(move || {
        let pins = env.build(&requirements)?;
        env.wheelhouse().map(|w| (pins, w))
    })
    .await
    .map_err(|e| ProviderError::fatal(format!("building the wheelhouse: {e}")))?
    .map_err(ProviderError::invalid)
}

/// The stack as recorded, `id` naming where it is: the wheelhouse's key, hash and Python,
/// the pins, and the files each VM fetches (`from` the artifacts bucket or the student's).
pub fn observed(
    id: String,
    stack: &NotebookStackConfig,
    wheelhouse: &Wheelhouse,
    pins: Vec<String>,
) -> Observed {
    let starters = stack.starters.keys().map(
        |name| json!({ "from": "artifacts", "key": starter_key(name), "path": format!("notebooks/{name}") }),
    );
    let datasets = stack.datasets.iter().flat_map(|(name, parts)| {
        parts.iter().map(move |part| {
            let key = format!("{}{part}", labctl_provider_api::configs::dataset_prefix(name));
            json!({ "from": "student", "dataset": name, "key": key, "path": format!("{DATASETS}/{name}/{part}") })
        })
    });
    Observed {
        id,
        attributes: attrs(json!({
            "bucket": stack.artifacts,
            "wheelhouse": WHEELHOUSE_KEY,
            "wheelhouse_sha256": wheelhouse.sha256,
            "python": wheelhouse.python,
            "pinned": pins,
            "files": starters.chain(datasets).collect::<Vec<_>>(),
        })),
        sensitive: vec![],
    }
}

/// The dependencies a student's VM with a notebook needs besides its own: the stack, and
/// their datasets (which it fetches).
pub fn vm_deps(lab: &Lab, student: &str) -> Vec<String> {
    let base = Address::student(student);
    let datasets = lab.seeded().map(|d| base.keyed("dataset", d).to_string());
    std::iter::once(ADDRESS.to_owned()).chain(datasets).collect()
}

/// A cloud's signed links to objects: a VM fetches them with no cloud CLI or key.
#[async_trait]
pub trait SignedUrls: Send + Sync {
    /// A GET of `key` in `bucket`, valid for [`crate::cloud_init::BINARY_URL_LIFETIME`].
    async fn signed_url(&self, bucket: &str, key: &str) -> Result<String, ProviderError>;
}

/// The user data's notebook part for `student`'s VM, with links signed by `urls`; `deps`
/// are the VM's, holding the stack and the student's datasets.
pub async fn user_data(
    student: &str,
    service: NotebookService,
    deps: &Deps,
    urls: &dyn SignedUrls,
) -> Result<Notebook, ProviderError> {
    let stack =
        deps.get(ADDRESS).ok_or_else(|| ProviderError::invalid("a notebook VM needs the notebook stack"))?;
    let attr = |key: &str| stack.attributes.get(key).and_then(Value::as_str).unwrap_or_default();
    let artifacts = attr("bucket");
    let wheelhouse = Binary {
        url: urls.signed_url(artifacts, attr("wheelhouse")).await?,
        sha256: attr("wheelhouse_sha256").to_owned(),
    };
    let mut files = vec![];
    let listed = stack.attributes.get("files").and_then(Value::as_array);
    for file in listed.into_iter().flatten() {
        let field = |k: &str| file[k].as_str().unwrap_or_default();
        let bucket = match field("from") {
            "student" => {
                let dataset = Address::student(student).keyed("dataset", field("dataset")).to_string();
                let bucket =
                    deps.get(&dataset).and_then(|d| d.attributes.get("bucket")).and_then(Value::as_str);
                bucket.ok_or_else(|| ProviderError::invalid(format!("the VM needs {dataset}")))?.to_owned()
            }
            _ => artifacts.to_owned(),
        };
        files.push(Fetch {
            url: urls.signed_url(&bucket, field("key")).await?,
            path: field("path").to_owned(),
        });
    }
    Ok(Notebook::new(student, wheelhouse, attr("python"), service.spark, service.dask_workers, files))
}

/// How long archiving a student's home may take.
const ARCHIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Copies what a student with a notebook made on their VM (their home but its dot files and
/// the datasets fetched into it) into `into/vm-home/`, over SSH: that work is on the VM's
/// disk, not in their bucket. The number of files; none without a notebook.
pub async fn archive_home(
    ssh: &SshClient,
    student: &StudentResources,
    into: &Path,
) -> Result<usize, ProviderError> {
    let Ok(vm) = student.get("vm") else { return Ok(0) };
    if vm.config.get("notebook").is_none_or(Value::is_null) {
        return Ok(0);
    }
    let fail = |e: String| ProviderError::fatal(format!("archiving {}'s VM: {e}", student.student));
    let login = Login::of(student).map_err(fail)?;
    // Through a file, so that tar's failure is the script's (a pipe would hide it).
    let script = format!(
        "set -e\nt=$(mktemp)\ntrap 'rm -f \"$t\"' EXIT\ncd ~\ntar --exclude='./.*' --exclude=./{DATASETS} -cf \"$t\" .\nbase64 -w0 \"$t\"\n"
    );
    let encoded = ssh.run(&login, &script, ARCHIVE_TIMEOUT).await.map_err(fail)?;
    let tar =
        base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|e| fail(e.to_string()))?;
    let dir = into.join("vm-home");
    std::fs::create_dir_all(&dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
    let mut file = tempfile::NamedTempFile::new().map_err(|e| fail(e.to_string()))?;
    std::io::Write::write_all(&mut file, &tar).map_err(|e| fail(e.to_string()))?;
    let out = tokio::process::Command::new("tar")
        .args(["--no-same-owner", "-xvf"])
        .arg(file.path())
        .arg("-C")
        .arg(&dir)
        .output()
        .await
        .map_err(|e| fail(format!("cannot run tar: {e}")))?;
    if !out.status.success() {
        return Err(fail(format!("tar: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    // `tar -v` names each member; directories end with `/`.
    Ok(String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.ends_with('/')).count())
}
