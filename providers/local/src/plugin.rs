//! The local provider as a plugin: its `[provider.local]` settings, what each student gets
//! on this machine, and how the smoke workloads reach them (from here).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use labctl_provider_api::configs::bucket_nodes;
use labctl_provider_api::lab::{Cohort, Lab, LabSections, Student};
use labctl_provider_api::{
    Address, Capabilities, Connected, Endpoints, Findings, Node, Plugin, ProviderSetup, Settings,
    StudentResources,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use labctl_notebook::stack::requirements;

use crate::notebook::NotebookConfig;
use crate::smoke::Here;
use crate::LocalProvider;

/// `[provider.local]`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalSettings {
    /// Where buckets and worker data live (default: the user's data directory).
    pub data_dir: Option<String>,
    /// Maximum provider requests per second (default: unlimited).
    pub rate_limit: Option<f64>,
}

/// The embedded provider's plugin.
pub struct LocalPlugin;

impl Plugin for LocalPlugin {
    fn name(&self) -> &'static str {
        "local"
    }

    fn settings_schema(&self) -> Value {
        serde_json::to_value(schemars::schema_for!(LocalSettings)).unwrap_or_default()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { archive: true, notebooks: true, ..Capabilities::default() }
    }

    fn configure(
        &self,
        settings: &Settings<'_>,
        lab: &LabSections<'_>,
        findings: &mut Findings,
    ) -> Option<Box<dyn ProviderSetup>> {
        if lab.network.is_some() || !lab.clusters.is_empty() {
            findings.warnings.push(
                "the local provider ignores [network] and [cluster]: they apply on cloud providers".into(),
            );
        }
        let local: LocalSettings = settings.parse_into(self.name(), findings)?;
        let data_dir = settings
            .data_dir
            .clone()
            .or_else(|| local.data_dir.as_ref().map(PathBuf::from))
            .or_else(|| dirs::data_dir().map(|d| d.join("labctl")));
        let Some(data_dir) = data_dir else {
            let d = settings.source.error(settings.span.clone(), "no data directory");
            findings.errors.push(d.note("allowed: data_dir = \"<directory>\", or pass --data-dir"));
            return None;
        };
        let data_dir = std::path::absolute(&data_dir).unwrap_or(data_dir);
        Some(Box::new(LocalSetup { data_dir, rate_limit: local.rate_limit }))
    }

    fn restore(&self, saved: Value) -> Result<Box<dyn ProviderSetup>, String> {
        serde_json::from_value::<LocalSetup>(saved).map(|s| Box::new(s) as _).map_err(|e| e.to_string())
    }
}

/// The local provider configured for one lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalSetup {
    pub data_dir: PathBuf,
    pub rate_limit: Option<f64>,
}

/// The lab's Python environment for the students' notebooks.
#[derive(Debug, Serialize, Deserialize)]
pub struct PythonEnvConfig {
    pub requirements: Vec<String>,
}

/// The shared Python environment's address.
const PYTHON_ENV: &str = "python_env";

/// A student's credential: their worker token.
#[derive(Debug, Serialize, Deserialize)]
pub struct CredentialConfig {
    pub student: String,
}

/// A student's MapReduce coordinator and workers, or scheduler and workers.
#[derive(Debug, Serialize, Deserialize)]
pub struct ServiceConfig {
    pub student: String,
    pub workers: u32,
    /// Task slots per scheduler worker.
    pub slots: Option<u32>,
    /// The workers' version: a different one restarts them.
    pub version: String,
}

impl ProviderSetup for LocalSetup {
    fn name(&self) -> &'static str {
        "local"
    }

    fn rate_limit(&self) -> Option<f64> {
        self.rate_limit
    }

    /// The lab's Python environment, when students get notebooks.
    fn expand_shared(&self, lab: &Lab) -> Vec<Node> {
        let Some(spec) = &lab.student.notebook else { return vec![] };
        let config = PythonEnvConfig { requirements: requirements(spec) };
        vec![Node::new("local", PYTHON_ENV, "python_env", &config, &lab.lab_tags(), vec![])]
    }

    fn preflight(&self, lab: &Lab, _bin_dir: &Path) -> Result<Vec<String>, String> {
        lab.student.notebook.as_ref().map_or(Ok(()), labctl_notebook::stack::preflight).map(|()| vec![])
    }

    fn expand_student(&self, lab: &Lab, cohort: &Cohort, student: &Student) -> Vec<Node> {
        let mut nodes = vec![];
        let base = Address::student(&student.id);
        let tags = lab.tags(cohort, student);
        let credential = base.child("credential");
        if lab.credentials() {
            let config = CredentialConfig { student: student.id.clone() };
            nodes.push(Node::new("local", credential.clone(), "credential", &config, &tags, vec![]));
        }
        nodes.extend(bucket_nodes("local", lab, cohort, student, &[]));
        let version = env!("CARGO_PKG_VERSION").to_owned();
        // The workers' shared secret is the student's credential token.
        if let Some(m) = lab.mapreduce() {
            let config = ServiceConfig {
                student: student.id.clone(),
                workers: *m.workers.get_ref(),
                slots: None,
                version: version.clone(),
            };
            nodes.push(Node::new(
                "local",
                base.child("mapreduce"),
                "mapreduce",
                &config,
                &tags,
                vec![credential.to_string()],
            ));
        }
        if let Some(s) = lab.scheduler() {
            let config = ServiceConfig {
                student: student.id.clone(),
                workers: *s.workers.get_ref(),
                slots: Some(s.slots.unwrap_or(1)),
                version,
            };
            nodes.push(Node::new(
                "local",
                base.child("scheduler"),
                "scheduler",
                &config,
                &tags,
                vec![credential.to_string()],
            ));
        }
        if let Some(spec) = &lab.student.notebook {
            // Validation requires the bucket: it is where their notebooks are saved.
            let config = NotebookConfig {
                student: student.id.clone(),
                dask_workers: spec.workers(),
                spark: spec.spark(),
                bucket: lab.resource_name(student),
                starters: lab.starters.clone(),
            };
            let deps = vec![credential.to_string(), PYTHON_ENV.to_owned(), base.child("bucket").to_string()];
            nodes.push(Node::new("local", base.child("notebook"), "notebook", &config, &tags, deps));
        }
        nodes
    }

    fn connect(&self, lab: &str, bin_dir: &Path) -> Connected {
        Connected {
            provider: Arc::new(LocalProvider::new(&self.data_dir, lab, bin_dir)),
            hosted: vec![],
            smoke: Ok(Arc::new(Here { bin_dir: bin_dir.to_owned() })),
        }
    }

    fn endpoints(&self, student: &StudentResources) -> Endpoints {
        let attr = |what: &str, key: &str| student.attr(what, key).map(str::to_owned);
        Endpoints {
            mapreduce: attr("mapreduce", "address"),
            scheduler: attr("scheduler", "address"),
            status_url: attr("scheduler", "status_url"),
            token: attr("credential", "token"),
            bucket: attr("bucket", "path").or_else(|| attr("bucket", "url")),
            datasets: student.dataset_paths(),
            access: notebook_access(student).into_iter().collect(),
        }
    }
}

/// The handout's `notebook` section: JupyterLab's address and the student's Dask cluster.
fn notebook_access(student: &StudentResources) -> Option<(String, Value)> {
    let notebook = student.get("notebook").ok()?;
    let attr = |key: &str| notebook.attributes.get(key).cloned().unwrap_or(Value::Null);
    let access = serde_json::json!({
        "url": attr("url"),
        "dask_scheduler": attr("dask_scheduler"),
        "dask_dashboard": attr("dask_dashboard"),
        "dask_workers": attr("dask_workers"),
        "spark": attr("spark"),
    });
    Some(("notebook".to_owned(), access))
}
