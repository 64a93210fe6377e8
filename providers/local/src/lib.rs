//! The embedded `local` provider: everything a student gets, on this machine.
//!
//! A bucket is a directory, a dataset is files seeded into it, a credential is a token file
//! readable only by its owner. Every resource lives under `<data dir>/<lab>/` and records
//! its ownership tags in `tags/<kind>/<id>.json`, which is what `sweep` lists — so a lost
//! state file never means a lost resource.

#![warn(clippy::print_stdout)]

mod fsutil;
mod notebook;
mod plugin;
mod process;
mod services;
mod smoke;

use std::io::ErrorKind as IoKind;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use labctl_provider_api::configs::{config, BucketConfig, DatasetConfig};
use labctl_provider_api::{
    archive, attrs, Deps, Found, KindSchema, Observed, Provider, ProviderError, ResourceSpec,
    StudentResources, Tags,
};
use serde_json::{json, Value};

use fsutil::{io_error, prune_empty, read_json, write_atomic};
use labctl_notebook::stack::PythonEnv;
use notebook::NotebookConfig;
pub use plugin::LocalPlugin;
use plugin::{CredentialConfig, PythonEnvConfig, ServiceConfig};

const KINDS: &[KindSchema] = &[
    KindSchema { name: "bucket", replace_on: &["name"] },
    KindSchema { name: "dataset", replace_on: &["*"] },
    KindSchema { name: "credential", replace_on: &["*"] },
    KindSchema { name: "mapreduce", replace_on: &["*"] },
    KindSchema { name: "scheduler", replace_on: &["*"] },
    KindSchema { name: "python_env", replace_on: &["*"] },
    KindSchema { name: "notebook", replace_on: notebook::REPLACE_ON },
];

/// Kinds that carry a tag file (datasets live inside their bucket).
const TAGGED: &[&str] = &["bucket", "credential", "mapreduce", "scheduler", "python_env", "notebook"];

/// The id of the lab's one Python environment.
const PYTHON_ENV_ID: &str = "python";

/// Marks a fully seeded dataset; written last, so its presence means the data is complete.
const MANIFEST: &str = "_LABCTL_MANIFEST.json";

/// The local provider for one lab, rooted at `<data dir>/<lab>`.
#[derive(Debug, Clone)]
pub struct LocalProvider {
    root: PathBuf,
    /// Where `lab-mapreduce` and `lab-scheduler` are.
    bin_dir: PathBuf,
}

impl LocalProvider {
    /// A provider keeping lab `lab`'s resources under `data_dir/lab`, running the worker
    /// binaries found in `bin_dir`.
    pub fn new(data_dir: &Path, lab: &str, bin_dir: &Path) -> Self {
        Self { root: data_dir.join(lab), bin_dir: bin_dir.to_owned() }
    }

    fn service_dir(&self, student: &str, kind: &str) -> PathBuf {
        self.root.join("students").join(student).join(kind)
    }

    fn data_dir(&self) -> &Path {
        self.root.parent().unwrap_or(&self.root)
    }

    fn bucket_path(&self, name: &str) -> PathBuf {
        self.root.join("buckets").join(name)
    }

    fn tag_path(&self, kind: &str, id: &str) -> PathBuf {
        self.root.join("tags").join(kind).join(format!("{id}.json"))
    }

    fn python_env(&self) -> PythonEnv {
        PythonEnv::at(&self.root.join("python"))
    }

    /// Builds the lab's Python environment (or finds it built).
    fn create_python_env(&self, spec: &ResourceSpec) -> Result<Observed, ProviderError> {
        let PythonEnvConfig { requirements } = config(spec)?;
        self.claim("python_env", PYTHON_ENV_ID, &spec.tags)?;
        let env = self.python_env();
        let pins = env.build(&requirements).map_err(ProviderError::invalid)?;
        Ok(self.python_env_observed(&env, pins))
    }

    fn python_env_observed(&self, env: &PythonEnv, pins: Vec<String>) -> Observed {
        let attributes = attrs(json!({ "bin": env.bin(), "pinned": pins }));
        Observed { id: PYTHON_ENV_ID.to_owned(), attributes, sensitive: vec![] }
    }

    fn token_path(&self, student: &str) -> PathBuf {
        self.root.join("students").join(student).join("token")
    }

    /// The tags recorded for a resource, if its tag file exists.
    fn recorded_tags(&self, kind: &str, id: &str) -> Result<Option<Tags>, ProviderError> {
        read_json(&self.tag_path(kind, id))
    }

    /// Claims `id` for this lab before anything else is made, so a crash right after still
    /// leaves a trace that `sweep` finds. Refuses an id already claimed by another owner.
    fn claim(&self, kind: &str, id: &str, tags: &Tags) -> Result<(), ProviderError> {
        match self.recorded_tags(kind, id)? {
            Some(existing) if existing == *tags => Ok(()),
            Some(existing) if !existing.same_owner(tags) => Err(ProviderError::invalid(format!(
                "{kind} `{id}` already belongs to {}",
                describe_owner(&existing)
            ))),
            _ => self.record_tags(kind, id, tags),
        }
    }

    fn record_tags(&self, kind: &str, id: &str, tags: &Tags) -> Result<(), ProviderError> {
        let bytes = serde_json::to_vec_pretty(tags).expect("tags serialise");
        write_atomic(&self.tag_path(kind, id), &bytes, 0o644)
    }

    fn release(&self, kind: &str, id: &str) -> Result<(), ProviderError> {
        fsutil::remove_file(&self.tag_path(kind, id))?;
        prune_empty(self.data_dir(), &self.tag_path(kind, id));
        Ok(())
    }

    fn bucket_observed(&self, name: &str) -> Observed {
        let path = self.bucket_path(name);
        Observed {
            id: name.to_owned(),
            attributes: attrs(json!({
                "name": name,
                "path": path,
                "url": format!("file://{}", path.display()),
            })),
            sensitive: vec![],
        }
    }

    fn create_bucket(&self, spec: &ResourceSpec) -> Result<Observed, ProviderError> {
        let BucketConfig { name } = config(spec)?;
        let name = name.as_str();
        let path = self.bucket_path(name);
        if self.recorded_tags("bucket", name)?.is_none() && path.exists() {
            return Err(ProviderError::invalid(format!(
                "{} already exists and was not made by labctl; remove it or choose another lab name",
                path.display()
            )));
        }
        self.claim("bucket", name, &spec.tags)?;
        match std::fs::create_dir_all(&path) {
            Ok(()) => Ok(self.bucket_observed(name)),
            Err(e) => Err(io_error(&path, e).with_partial(self.bucket_observed(name))),
        }
    }

    fn create_credential(&self, spec: &ResourceSpec) -> Result<Observed, ProviderError> {
        let CredentialConfig { student } = config(spec)?;
        let student = student.as_str();
        self.claim("credential", student, &spec.tags)?;
        let path = self.token_path(student);
        let token = match std::fs::read_to_string(&path) {
            Ok(token) => token.trim().to_owned(),
            Err(e) if e.kind() == IoKind::NotFound => {
                let token = labctl_provider_api::random_token();
                write_atomic(&path, format!("{token}\n").as_bytes(), 0o600)?;
                token
            }
            Err(e) => return Err(io_error(&path, e)),
        };
        Ok(credential_observed(student, &path, Some(token)))
    }

    fn read_credential(&self, student: &str) -> Result<Option<Observed>, ProviderError> {
        let path = self.token_path(student);
        match std::fs::read_to_string(&path) {
            Ok(token) => Ok(Some(credential_observed(student, &path, Some(token.trim().to_owned())))),
            Err(e) if e.kind() == IoKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    fn dataset_dir(&self, bucket: &str, name: &str) -> PathBuf {
        self.bucket_path(bucket).join("datasets").join(name)
    }

    fn dataset_observed(&self, bucket: &str, name: &str, manifest: Value) -> Observed {
        let path = self.dataset_dir(bucket, name);
        let mut attributes = attrs(json!({ "bucket": bucket, "name": name, "path": path }));
        if let Value::Object(m) = manifest {
            attributes.extend(m);
        }
        Observed { id: format!("{bucket}/{name}"), attributes, sensitive: vec![] }
    }

    fn read_dataset(&self, id: &str) -> Result<Option<Observed>, ProviderError> {
        let (bucket, name) = split_dataset_id(id)?;
        let manifest: Option<Value> = read_json(&self.dataset_dir(bucket, name).join(MANIFEST))?;
        Ok(manifest.map(|m| self.dataset_observed(bucket, name, m)))
    }

    /// Writes every part (temporary name, then rename) and the manifest last.
    fn seed_dataset(&self, spec: &ResourceSpec) -> Result<Observed, ProviderError> {
        let DatasetConfig { bucket, name, dataset } = config(spec)?;
        let (bucket, name) = (bucket.as_str(), name.as_str());
        let manifest = json!({ "dataset": dataset });
        if let Some(found) = self.read_dataset(&format!("{bucket}/{name}"))? {
            if found.attributes.get("dataset") == manifest.get("dataset") {
                return Ok(found);
            }
        }
        if !self.bucket_path(bucket).is_dir() {
            return Err(ProviderError::invalid(format!("bucket `{bucket}` does not exist")));
        }
        let dir = self.dataset_dir(bucket, name);
        let partial = || self.dataset_observed(bucket, name, Value::Null);
        fsutil::remove_dir_all(&dir).map_err(|e| e.with_partial(partial()))?;
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e).with_partial(partial()))?;
        for part in dataset.parts() {
            let path = dir.join(&part.name);
            fsutil::write_with(&path, 0o644, |out| dataset.write_part(&part, out))
                .map_err(|e| e.with_partial(partial()))?;
        }
        let bytes = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
        write_atomic(&dir.join(MANIFEST), &bytes, 0o644).map_err(|e| e.with_partial(partial()))?;
        Ok(self.dataset_observed(bucket, name, manifest))
    }

    fn create_blocking(&self, spec: &ResourceSpec, deps: &Deps) -> Result<Observed, ProviderError> {
        match spec.kind.as_str() {
            "bucket" => self.create_bucket(spec),
            "dataset" => self.seed_dataset(spec),
            "credential" => self.create_credential(spec),
            "python_env" => self.create_python_env(spec),
            "notebook" => {
                let nb: NotebookConfig = config(spec)?;
                self.claim("notebook", &nb.student, &spec.tags)?;
                let dir = self.service_dir(&nb.student, "notebook");
                notebook::start(&nb, &dir, &self.bucket_path(&nb.bucket), deps)
            }
            kind => {
                let service = services::Service::from_kind(kind).ok_or_else(|| unknown_kind(kind))?;
                let svc: ServiceConfig = config(spec)?;
                self.claim(kind, &svc.student, &spec.tags)?;
                let dir = self.service_dir(&svc.student, kind);
                services::start(service, &svc, &dir, &self.bin_dir, spec, deps)
            }
        }
    }

    fn read_blocking(&self, kind: &str, id: &str) -> Result<Option<Observed>, ProviderError> {
        match kind {
            "bucket" => Ok((self.recorded_tags("bucket", id)?.is_some() && self.bucket_path(id).is_dir())
                .then(|| self.bucket_observed(id))),
            "dataset" => self.read_dataset(id),
            "credential" => self.read_credential(id),
            "mapreduce" | "scheduler" | "notebook" => services::read(id, &self.service_dir(id, kind)),
            "python_env" => {
                let env = self.python_env();
                Ok(env.ready().map(|pins| self.python_env_observed(&env, pins)))
            }
            other => Err(unknown_kind(other)),
        }
    }

    fn delete_blocking(&self, kind: &str, id: &str) -> Result<(), ProviderError> {
        match kind {
            "bucket" => {
                let path = self.bucket_path(id);
                fsutil::remove_dir_all(&path)?;
                prune_empty(self.data_dir(), &path);
                self.release("bucket", id)
            }
            "dataset" => {
                let (bucket, name) = split_dataset_id(id)?;
                let dir = self.dataset_dir(bucket, name);
                fsutil::remove_dir_all(&dir)?;
                prune_empty(&self.bucket_path(bucket), &dir);
                Ok(())
            }
            "credential" => {
                let path = self.token_path(id);
                fsutil::remove_file(&path)?;
                prune_empty(self.data_dir(), &path);
                self.release("credential", id)
            }
            "python_env" => {
                let dir = self.root.join("python");
                fsutil::remove_dir_all(&dir)?;
                self.release(kind, id)
            }
            "mapreduce" | "scheduler" | "notebook" => {
                let dir = self.service_dir(id, kind);
                services::stop(&dir)?;
                fsutil::remove_dir_all(&dir)?;
                prune_empty(self.data_dir(), &dir);
                self.release(kind, id)
            }
            other => Err(unknown_kind(other)),
        }
    }

    fn sweep_blocking(&self) -> Result<Vec<Found>, ProviderError> {
        let mut found = vec![];
        for kind in TAGGED {
            let dir = self.root.join("tags").join(kind);
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == IoKind::NotFound => continue,
                Err(e) => return Err(io_error(&dir, e)),
            };
            for entry in entries {
                let path = entry.map_err(|e| io_error(&dir, e))?.path();
                let Some(id) =
                    path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".json"))
                else {
                    continue;
                };
                if let Some(tags) = read_json::<Tags>(&path)? {
                    found.push(Found { kind: (*kind).to_owned(), id: id.to_owned(), tags });
                }
            }
        }
        found.sort_by(|a, b| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)));
        Ok(found)
    }

    /// Copies every file of bucket directory `bucket` that [`archive::destination`] keeps
    /// into `into`; how many.
    fn archive_blocking(bucket: &Path, datasets: &[&str], into: &Path) -> Result<usize, ProviderError> {
        let mut copied = 0;
        let mut dirs = vec![bucket.to_owned()];
        while let Some(dir) = dirs.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Err(e) if e.kind() == IoKind::NotFound && dir == bucket => return Ok(0),
                entries => entries.map_err(|e| io_error(&dir, e))?,
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_error(&dir, e))?;
                let (path, kind) = (entry.path(), entry.file_type().map_err(|e| io_error(&dir, e))?);
                if kind.is_dir() {
                    dirs.push(path);
                    continue;
                } else if !kind.is_file() {
                    return Err(ProviderError::invalid(format!(
                        "{} is not a regular file: archive cannot keep it",
                        path.display()
                    )));
                }
                let key = path.strip_prefix(bucket).expect("walked from the bucket").to_string_lossy();
                let Some(to) = archive::destination(into, &key, datasets)? else { continue };
                let mut from = std::fs::File::open(&path).map_err(|e| io_error(&path, e))?;
                fsutil::write_with(&to, 0o644, |out| std::io::copy(&mut from, out).map(drop))?;
                copied += 1;
            }
        }
        Ok(copied)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, ProviderError> + Send + 'static,
    ) -> Result<T, ProviderError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| ProviderError::fatal(format!("local provider task failed: {e}")))?
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &str {
        "local"
    }

    fn kinds(&self) -> &[KindSchema] {
        KINDS
    }

    async fn read(&self, kind: &str, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
        let (kind, id) = (kind.to_owned(), prior.id.clone());
        self.blocking(move |p| p.read_blocking(&kind, &id)).await
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Deps) -> Result<Observed, ProviderError> {
        let (spec, deps) = (spec.clone(), deps.clone());
        self.blocking(move |p| p.create_blocking(&spec, &deps)).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        prior: &Observed,
        deps: &Deps,
    ) -> Result<Observed, ProviderError> {
        if spec.kind == "notebook" {
            // Only its starters changed: the new ones go to the students without a restart.
            let (nb, prior) = (config::<NotebookConfig>(spec)?, prior.clone());
            return self
                .blocking(move |p| {
                    notebook::put_starters(&nb.starters, &p.bucket_path(&nb.bucket)).map(|()| prior)
                })
                .await;
        }
        // Every other attribute of every local kind forces replacement, so an update only
        // re-records the config; creating again adopts what exists.
        self.create(spec, deps).await
    }

    async fn delete(&self, kind: &str, prior: &Observed) -> Result<(), ProviderError> {
        let (kind, id) = (kind.to_owned(), prior.id.clone());
        self.blocking(move |p| p.delete_blocking(&kind, &id)).await
    }

    async fn archive(&self, student: &StudentResources, into: &Path) -> Result<usize, ProviderError> {
        let bucket =
            PathBuf::from(student.get("bucket").and_then(|b| b.attr("path")).map_err(ProviderError::fatal)?);
        let datasets: Vec<String> = student.dataset_paths().into_keys().collect();
        let into = into.to_owned();
        self.blocking(move |_| {
            let datasets: Vec<&str> = datasets.iter().map(String::as_str).collect();
            Self::archive_blocking(&bucket, &datasets, &into)
        })
        .await
    }

    async fn sweep(&self, lab: &str) -> Result<Vec<Found>, ProviderError> {
        let lab = lab.to_owned();
        let found = self.blocking(|p| p.sweep_blocking()).await?;
        Ok(found.into_iter().filter(|f| f.tags.lab == lab).collect())
    }

    async fn retag(&self, spec: &ResourceSpec, prior: &Observed) -> Result<Observed, ProviderError> {
        if TAGGED.contains(&spec.kind.as_str()) {
            let (kind, id, tags) = (spec.kind.clone(), prior.id.clone(), spec.tags.clone());
            self.blocking(move |p| p.claim(&kind, &id, &tags)).await?;
        } // a dataset is part of its bucket
        Ok(prior.clone())
    }

    /// Every directory of the data directory holding tag files is a lab's.
    async fn labs(&self) -> Result<Vec<String>, ProviderError> {
        let data_dir = self.data_dir().to_owned();
        self.blocking(move |_| {
            let entries = match std::fs::read_dir(&data_dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == IoKind::NotFound => return Ok(vec![]),
                Err(e) => return Err(io_error(&data_dir, e)),
            };
            let mut labs = vec![];
            for entry in entries {
                let path = entry.map_err(|e| io_error(&data_dir, e))?.path();
                if path.join("tags").is_dir() {
                    labs.extend(path.file_name().and_then(|n| n.to_str()).map(str::to_owned));
                }
            }
            labs.sort();
            Ok(labs)
        })
        .await
    }
}

fn credential_observed(student: &str, path: &Path, token: Option<String>) -> Observed {
    let mut attributes = attrs(json!({ "student": student, "path": path }));
    if let Some(token) = token {
        attributes.insert("token".into(), Value::String(token));
    }
    Observed { id: student.to_owned(), attributes, sensitive: vec!["token".into()] }
}

fn describe_owner(tags: &Tags) -> String {
    let mut s = format!("lab `{}`", tags.lab);
    if let Some(student) = &tags.student {
        s.push_str(&format!(", student `{student}`"));
    }
    s
}

fn split_dataset_id(id: &str) -> Result<(&str, &str), ProviderError> {
    id.split_once('/').ok_or_else(|| ProviderError::invalid(format!("malformed dataset id `{id}`")))
}

fn unknown_kind(kind: &str) -> ProviderError {
    ProviderError::invalid(format!("the local provider has no resource kind `{kind}`"))
}

#[cfg(test)]
mod tests;
