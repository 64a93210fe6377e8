//! The provider plugin contract: what a provider crate adds to labctl besides CRUD — its
//! `[provider.<name>]` settings, the validation only it can do, the expansion of a lab into
//! resources, its capabilities, how the smoke workloads reach a student, and the endpoints
//! a student is handed. The core knows providers only through these traits; the registry
//! (in the CLI) is the one place that lists them.

use std::any::Any;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cost::{Billed, PriceTable};
use crate::lab::{Cohort, Diagnostic, Lab, LabSections, SmokeWorkload, Source, Student};
use crate::{Attributes, Provider, RemoteState, ResourceSpec, Tags};

/// A provider crate's entry point, registered once in labctl's registry.
pub trait Plugin: Send + Sync {
    /// The `[provider.<name>]` table it reads; also its name in addresses and state.
    fn name(&self) -> &'static str;

    /// The JSON Schema of its `[provider.<name>]` table, for `labctl schema`.
    fn settings_schema(&self) -> Value;

    /// What it can do, which the core's validation and commands consult.
    fn capabilities(&self) -> Capabilities;

    /// Log targets (crates) that warn about what labctl reports itself, such as each
    /// credential source an SDK tries: their warnings show only with `-vv`.
    fn quiet_log_targets(&self) -> &'static [&'static str] {
        &[]
    }

    /// Reads its settings from the lab file and judges what only it can (instance types,
    /// quotas, GPU pools, storage classes), adding problems to `findings`. `None` when its
    /// settings are unusable (the reason is in `findings`).
    fn configure(
        &self,
        settings: &Settings<'_>,
        lab: &LabSections<'_>,
        findings: &mut Findings,
    ) -> Option<Box<dyn ProviderSetup>>;

    /// A setup saved in a plan ([`ProviderSetup::save`]), back.
    fn restore(&self, saved: Value) -> Result<Box<dyn ProviderSetup>, String>;

    /// A state backend at `url` (such as `s3://bucket/key`), if this provider offers one
    /// for it. `lab` is the lab's own provider setup, whose connection settings it may
    /// reuse when it is this provider's.
    fn remote_state(
        &self,
        _url: &str,
        _lab: &dyn ProviderSetup,
    ) -> Option<Result<Arc<dyn RemoteState>, String>> {
        None
    }
}

/// What a provider offers, beyond the kinds it manages.
#[derive(Debug, Clone, Copy, Default)]
pub struct Capabilities {
    /// Students can be given GPUs (given a cluster with a GPU pool).
    pub gpus: bool,
    /// Credentials are access keys that `apply --rotate-keys` can replace.
    pub key_rotation: bool,
    /// The smoke workloads make their own data where they run (a volume), instead of
    /// reading the student's seeded datasets.
    pub smoke_data_generated: bool,
    /// `destroy --archive` can copy students' work out of their buckets
    /// ([`crate::Provider::archive`]).
    pub archive: bool,
    /// Students' namespaces can go on a cluster the lab makes (`[student] kubernetes`).
    pub hosts_kubernetes: bool,
    /// Students can get a Jupyter server with Dask and PySpark (`[student.notebook]`).
    pub notebooks: bool,
}

/// Problems and warnings found while reading a lab.
#[derive(Debug, Default)]
pub struct Findings {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<String>,
}

/// A provider's `[provider.<name>]` table in the lab file, and what the command line says
/// about this machine.
pub struct Settings<'a> {
    pub source: &'a Source,
    /// Where the table is written.
    pub span: Range<usize>,
    /// The lab file's path: relative paths in settings are taken from its directory.
    pub lab_path: &'a Path,
    /// `--data-dir`: where a provider that keeps data on this machine keeps it.
    pub data_dir: Option<PathBuf>,
}

impl Settings<'_> {
    /// Deserializes the table `[provider.<name>]` as `S`, keeping the spans of its values;
    /// an unknown or mistyped key is a diagnostic pointing at it.
    pub fn parse<S: DeserializeOwned>(&self, name: &str) -> Result<S, Diagnostic> {
        let seed = ProviderTable::<S> { name, table: std::marker::PhantomData };
        let deserializer = toml::Deserializer::new(&self.source.text);
        serde::de::DeserializeSeed::deserialize(seed, deserializer).map_err(|e| self.source.toml_error(&e))
    }

    /// [`Settings::parse`], its diagnostic added to `findings` (what a plugin's
    /// `configure` does first).
    pub fn parse_into<S: DeserializeOwned>(&self, name: &str, findings: &mut Findings) -> Option<S> {
        self.parse(name).map_err(|d| findings.errors.push(d)).ok()
    }

    /// `path` as written in the lab file: `~/` is the home directory, a relative path is
    /// taken from the lab file's directory (as rosters are).
    pub fn path_beside(&self, path: &str) -> PathBuf {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let path = match (path.strip_prefix("~/"), home) {
            (Some(rest), Some(home)) => home.join(rest),
            _ => self.lab_path.parent().unwrap_or(Path::new(".")).join(path),
        };
        std::path::absolute(&path).unwrap_or(path)
    }
}

/// Deserializes `provider.<name>` out of a whole lab file, ignoring everything else.
struct ProviderTable<'n, S> {
    name: &'n str,
    table: std::marker::PhantomData<S>,
}

impl<'de, S: DeserializeOwned> serde::de::DeserializeSeed<'de> for ProviderTable<'_, S> {
    type Value = S;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<S, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, S: DeserializeOwned> serde::de::Visitor<'de> for ProviderTable<'_, S> {
    type Value = S;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "a lab file with [provider.{}]", self.name)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<S, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "provider" {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            }
            found =
                Some(map.next_value_seed(Entry::<S> { name: self.name, table: std::marker::PhantomData })?);
        }
        found.flatten().ok_or_else(|| serde::de::Error::missing_field("provider"))
    }
}

/// The `[provider]` table: `<name>` deserialized as `S`, the others skipped.
struct Entry<'n, S> {
    name: &'n str,
    table: std::marker::PhantomData<S>,
}

impl<'de, S: DeserializeOwned> serde::de::DeserializeSeed<'de> for Entry<'_, S> {
    type Value = Option<S>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Option<S>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, S: DeserializeOwned> serde::de::Visitor<'de> for Entry<'_, S> {
    type Value = Option<S>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "provider tables")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Option<S>, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == self.name {
                found = Some(map.next_value::<S>()?);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// What every setup is, whatever its plugin: saved as its serde form, recognised by type.
/// Implemented for every serialisable setup.
pub trait SetupValue {
    /// What a saved plan records, so that applying it needs no lab file.
    fn save(&self) -> Value;

    /// This setup as [`Any`], for a plugin to recognise its own.
    fn as_any(&self) -> &dyn Any;
}

impl<T: serde::Serialize + Any> SetupValue for T {
    fn save(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A provider configured for one lab: it expands the lab into resources and connects.
pub trait ProviderSetup: SetupValue + Send + Sync + std::fmt::Debug {
    /// Which plugin made it.
    fn name(&self) -> &'static str;

    /// Requests per second allowed against the provider's API, if limited.
    fn rate_limit(&self) -> Option<f64>;

    /// The lab-wide resources the lab wants from this provider (a network, a cluster),
    /// dependencies before dependents.
    fn expand_shared(&self, _lab: &Lab) -> Vec<Node> {
        vec![]
    }

    /// The resources one student gets from this provider, dependencies before dependents.
    fn expand_student(&self, lab: &Lab, cohort: &Cohort, student: &Student) -> Vec<Node>;

    /// Checks what the lab file cannot tell before anything is planned (e.g. that the worker
    /// binaries in `bin_dir` run on the provider's VMs): warnings, or why not, with the fix.
    fn preflight(&self, _lab: &Lab, _bin_dir: &Path) -> Result<Vec<String>, String> {
        Ok(vec![])
    }

    /// Refuses an engine timeout per operation shorter than this provider's own waits
    /// (whose message would be lost to a bare timeout).
    fn check_timeout(&self, _operation: Duration) -> Result<(), String> {
        Ok(())
    }

    /// The live provider for lab `lab`, and how the smoke workloads reach its students.
    fn connect(&self, lab: &str, bin_dir: &Path) -> Connected;

    /// What a student is handed: where their services and data are.
    fn endpoints(&self, student: &StudentResources) -> Endpoints;

    /// Lines for `status` that state alone can tell (a VM's address, a namespace).
    fn describe(&self, _student: &StudentResources) -> Vec<(String, String)> {
        vec![]
    }

    /// What `spec` bills per hour, in items of [`ProviderSetup::prices`] (none: free, or
    /// billed only at rates the lab file gives).
    fn billed(&self, _spec: &ResourceSpec) -> Vec<Billed> {
        vec![]
    }

    /// The prices this provider ships for the lab's region.
    fn prices(&self) -> PriceTable {
        PriceTable::default()
    }
}

/// A connected provider.
pub struct Connected {
    pub provider: Arc<dyn Provider>,
    /// Providers configured from this one's resources (the Kubernetes API of a cluster the
    /// lab makes), under their own names: the lab's nodes may name them.
    pub hosted: Vec<Arc<dyn Provider>>,
    /// How the smoke workloads reach a student, or why they cannot yet.
    pub smoke: Result<Arc<dyn SmokeRunner>, String>,
}

/// One desired resource and the addresses it depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Which provider manages it: the lab's, or `null` for placeholder resources.
    pub provider: String,
    pub spec: ResourceSpec,
    /// What it is made from: made first, deleted after it, and when one is made anew, so is
    /// this.
    pub deps: Vec<String>,
    /// What only goes first: made before it and deleted after it, but made anew without it
    /// (a student's namespace after the cluster's node pools).
    pub after: Vec<String>,
}

impl Node {
    /// A node of `provider` whose config is the typed `config`, its top-level `None` fields
    /// left out (nested ones stay, as `null`).
    pub fn new(
        provider: &str,
        address: impl Into<String>,
        kind: &str,
        config: &impl serde::Serialize,
        tags: &Tags,
        deps: Vec<String>,
    ) -> Self {
        let config: Attributes = match serde_json::to_value(config) {
            Ok(Value::Object(m)) => m.into_iter().filter(|(_, v)| !v.is_null()).collect(),
            _ => Attributes::new(),
        };
        Self {
            provider: provider.to_owned(),
            spec: ResourceSpec { address: address.into(), kind: kind.to_owned(), config, tags: tags.clone() },
            deps,
            after: vec![],
        }
    }
}

/// A student's resources as state records them, by address within the student
/// (`credential`, `mapreduce`, `dataset["corpus"]`).
#[derive(Debug, Default, Clone)]
pub struct StudentResources {
    pub student: String,
    pub resources: BTreeMap<String, Recorded>,
}

/// One resource as last applied: what was asked and what the provider reported.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The provider's id for it.
    pub id: String,
    pub kind: String,
    pub config: Attributes,
    pub attributes: Attributes,
    pub tags: Tags,
}

impl StudentResources {
    /// The resource at `what`, or why it is missing.
    pub fn get(&self, what: &str) -> Result<&Recorded, String> {
        self.resources.get(what).ok_or_else(|| format!("`{what}` is not created yet: run `labctl apply`"))
    }

    /// The string attribute `key` of the resource at `what`, if both exist.
    pub fn attr(&self, what: &str, key: &str) -> Option<&str> {
        self.resources.get(what)?.attributes.get(key)?.as_str()
    }
}

impl StudentResources {
    /// Each `dataset["<name>"]` resource's `path`, by name.
    pub fn dataset_paths(&self) -> BTreeMap<String, Option<String>> {
        self.resources
            .iter()
            .filter_map(|(within, r)| {
                let name = within.strip_prefix("dataset[\"")?.strip_suffix("\"]")?;
                Some((name.to_owned(), r.attributes.get("path").and_then(Value::as_str).map(str::to_owned)))
            })
            .collect()
    }
}

impl Recorded {
    /// A string attribute the provider reported, or why it is missing.
    pub fn attr(&self, key: &str) -> Result<&str, String> {
        self.attributes
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{} has no `{key}`", self.kind))
    }
}

/// Where a student's services and data are, for their handout.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Endpoints {
    /// The MapReduce coordinator's address, as the student reaches it.
    pub mapreduce: Option<String>,
    /// The scheduler's address.
    pub scheduler: Option<String>,
    /// The scheduler's status page.
    pub status_url: Option<String>,
    /// Their credential's token (their workers' shared secret).
    pub token: Option<String>,
    /// Their bucket: a path or a URL.
    pub bucket: Option<String>,
    /// Each seeded dataset's path or URL, by name.
    pub datasets: BTreeMap<String, Option<String>>,
    /// How they get in, in each provider's terms (a namespace and kubeconfig, an access
    /// key), by provider, and `vm` for their VM on whichever cloud: the handout templates'
    /// section of that name.
    pub access: BTreeMap<String, Value>,
}

/// How the smoke workloads reach a student: from here, as Jobs in their namespace, over
/// SSH on their VM.
#[async_trait]
pub trait SmokeRunner: Send + Sync {
    /// How many checks run at once.
    fn parallel(&self) -> usize;

    /// Runs one workload for one student; `dataset` is the seeded dataset it reads, if the
    /// provider's workloads read seeded data. `Err` says why it failed.
    async fn run(
        &self,
        workload: SmokeWorkload,
        student: &StudentResources,
        dataset: Option<&str>,
        timeout: Duration,
    ) -> Result<(), String>;

    /// Live health of a student's services for `status`: `(service, answer)`.
    async fn health(&self, _student: &StudentResources) -> Vec<(String, String)> {
        vec![]
    }
}
