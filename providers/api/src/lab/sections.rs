//! The sections of the lab file that every provider reads (`[student]`, `[cluster]`,
//! `[network]`), as serde types. Field names here *are* the file format: unknown keys are
//! refused, and [`schemars`] turns these types into `labctl schema`. Values a provider may
//! point a diagnostic at keep their spans.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StudentSection {
    pub bucket: Option<BucketSpec>,
    pub compute: Option<ComputeSpec>,
    pub workers: Option<WorkersSpec>,
    /// Smoke workloads proving the environment works.
    #[serde(default)]
    #[schemars(with = "Vec<SmokeWorkload>")]
    pub smoke: Vec<Spanned<SmokeWorkload>>,
    #[schemars(with = "Option<GpuSpec>")]
    pub gpu: Option<Spanned<GpuSpec>>,
    /// Give every student an access credential (default true; workers need it).
    #[schemars(with = "Option<bool>")]
    pub credentials: Option<Spanned<bool>>,
    /// Placeholder resources that exist only in state, like Terraform's `terraform_data`.
    pub null: Option<NullSpec>,
    /// What each student's namespace may use in all (Kubernetes): its ResourceQuota.
    pub quota: Option<QuotaSpec>,
    /// Per-container defaults and ceilings in each namespace (Kubernetes): its LimitRange.
    pub limits: Option<LimitsSpec>,
    /// Students' namespaces on one of the lab's own clusters (`[cluster.<name>]`), where
    /// their workers and smoke Jobs run, with what the Kubernetes provider gives a student.
    pub kubernetes: Option<HostedKubernetesSpec>,
    /// A Jupyter server per student with a Dask cluster and PySpark beside it.
    pub notebook: Option<NotebookSpec>,
}

/// `[student.notebook]`: per student a Jupyter server (JupyterLab, the student's token as
/// its login), a Dask scheduler with workers, and PySpark in local mode in their kernels,
/// from one Python environment per lab.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotebookSpec {
    /// Python packages besides JupyterLab, Dask and PySpark, as pip requirements
    /// (e.g. "pandas", "scikit-learn==1.7.2").
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub packages: Vec<Spanned<String>>,
    /// Dask workers per student (default 2), one thread each.
    #[schemars(with = "Option<u32>")]
    pub dask_workers: Option<Spanned<u32>>,
    /// PySpark in the students' kernels (default true; it needs Java 17 or later).
    pub spark: Option<bool>,
    /// Notebooks (`.ipynb`, paths from the lab file's directory) put in each student's
    /// `notebooks/` once: a re-apply keeps what they wrote in them.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub starters: Vec<Spanned<String>>,
}

impl NotebookSpec {
    /// Dask workers per student.
    pub fn workers(&self) -> u32 {
        self.dask_workers.as_ref().map_or(2, |w| *w.get_ref())
    }

    /// Whether the students' kernels get PySpark.
    pub fn spark(&self) -> bool {
        self.spark.unwrap_or(true)
    }
}

/// `[student] kubernetes = { cluster = "shared", image = "…" }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostedKubernetesSpec {
    /// The `[cluster.<name>]` the namespaces go on.
    #[schemars(with = "String")]
    pub cluster: Spanned<String>,
    /// The workers' image, pullable by the cluster (the repository's Dockerfile builds it).
    /// Required when students get workers.
    pub image: Option<String>,
    /// The cohorts whose students go on the cluster (default: every cohort); the others get
    /// what `[student]` gives them elsewhere (on a cloud, VMs).
    #[schemars(with = "Option<Vec<String>>")]
    pub cohorts: Option<Vec<Spanned<String>>>,
}

impl StudentSection {
    /// Whether the students of cohort `cohort` go on the lab's cluster.
    pub fn on_cluster(&self, cohort: &str) -> bool {
        self.kubernetes.as_ref().is_some_and(|k| {
            k.cohorts.as_ref().is_none_or(|listed| listed.iter().any(|c| c.get_ref() == cohort))
        })
    }

    /// Whether the students of cohort `cohort` get VMs (on a cloud that makes them): asked
    /// for, or to run their workers or notebooks, unless they are on the lab's cluster.
    pub fn on_vms(&self, cohort: &str) -> bool {
        let services = self.workers.is_some() || self.notebook.is_some();
        !self.on_cluster(cohort) && (self.compute.is_some() || services)
    }
}

/// Kubernetes quantities are strings like `"500m"`, `"2"`, `"512Mi"`, `"8Gi"`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaSpec {
    /// CPU for the whole namespace (default "4").
    #[schemars(with = "Option<String>")]
    pub cpu: Option<Spanned<String>>,
    /// Memory for the whole namespace (default "8Gi").
    #[schemars(with = "Option<String>")]
    pub memory: Option<Spanned<String>>,
    /// Pods at once (default 20).
    pub pods: Option<u32>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// CPU of a container that asks for none (default "250m").
    #[schemars(with = "Option<String>")]
    pub default_cpu: Option<Spanned<String>>,
    /// Memory of a container that asks for none (default "256Mi").
    #[schemars(with = "Option<String>")]
    pub default_memory: Option<Spanned<String>>,
    /// Most CPU one container may have (default "2").
    #[schemars(with = "Option<String>")]
    pub max_cpu: Option<Spanned<String>>,
    /// Most memory one container may have (default "4Gi").
    #[schemars(with = "Option<String>")]
    pub max_memory: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketSpec {
    /// Datasets (names from `[datasets]`) seeded into the bucket.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub datasets: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComputeSpec {
    /// Cloud instance type (ignored by the local provider).
    pub instance_type: Option<String>,
    pub disk_gb: Option<u32>,
    /// Machine image: an id (`ami-…`), or a name pattern (`*` wildcards; the newest match).
    pub image: Option<String>,
    /// Account that publishes `image` when it is a pattern (default: Canonical's Ubuntu).
    pub image_owner: Option<String>,
    /// SSH public keys that may log in to the VMs as the image's default user (the
    /// instructor's; students reach their workers through SSH tunnels).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub ssh_keys: Vec<Spanned<String>>,
    /// Where SSH to the VMs may come from: IPv4 CIDR blocks (your campus, your VPN).
    /// Default: anywhere (`0.0.0.0/0`), with a warning.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub ssh_cidrs: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkersSpec {
    pub mapreduce: Option<MapReduceWorkers>,
    pub scheduler: Option<SchedulerWorkers>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MapReduceWorkers {
    /// Number of MapReduce workers beside the coordinator.
    #[schemars(with = "u32")]
    pub workers: Spanned<u32>,
    /// CPU per worker container on Kubernetes (default "250m"; requests = limits).
    #[schemars(with = "Option<String>")]
    pub cpu: Option<Spanned<String>>,
    /// Memory per worker container on Kubernetes (default "256Mi").
    #[schemars(with = "Option<String>")]
    pub memory: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchedulerWorkers {
    /// Number of scheduler workers beside the scheduler.
    #[schemars(with = "u32")]
    pub workers: Spanned<u32>,
    /// Task slots per worker (default 1).
    pub slots: Option<u32>,
    /// CPU per worker container on Kubernetes (default "250m"; requests = limits).
    #[schemars(with = "Option<String>")]
    pub cpu: Option<Spanned<String>>,
    /// Memory per worker container on Kubernetes (default "256Mi").
    #[schemars(with = "Option<String>")]
    pub memory: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmokeWorkload {
    /// Word count through the student's MapReduce over their text dataset.
    Wordcount,
    /// Hyperparameter search through the student's scheduler over their tabular dataset.
    Hpsearch,
    /// A notebook run through the student's Jupyter server: word count over their text
    /// dataset on their Dask cluster and with PySpark.
    Notebook,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    pub count: u32,
    /// Accelerator type, e.g. `nvidia-tesla-t4`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NullSpec {
    /// How many per student.
    #[schemars(with = "u32")]
    pub count: Spanned<u32>,
    /// Stored as is; changing it updates in place.
    #[schemars(with = "Option<serde_json::Value>")]
    pub input: Option<toml::Value>,
    /// Changing it replaces the resources.
    #[schemars(with = "Option<serde_json::Value>")]
    pub triggers_replace: Option<toml::Value>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    pub cidr: Option<String>,
    /// Availability zones to spread subnets over (default 2).
    pub zones: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    pub version: Option<String>,
    #[serde(default)]
    pub node_pool: BTreeMap<String, NodePoolSection>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodePoolSection {
    /// The cloud's machine type for the pool's nodes.
    #[schemars(with = "String")]
    pub instance_type: Spanned<String>,
    #[serde(default)]
    pub min: u32,
    #[schemars(with = "u32")]
    pub max: Spanned<u32>,
    /// Nodes to run now, between `min` and `max` (default: `min` when the pool is made,
    /// then whatever the cluster autoscaler or `labctl scale` sets).
    #[schemars(with = "Option<u32>")]
    pub desired: Option<Spanned<u32>>,
    /// GPUs per node; a pool with GPUs is tainted `nvidia.com/gpu`.
    #[serde(default)]
    pub gpu: u32,
    /// Node labels that select this pool's nodes (default `labctl/pool = "<pool>"`, the
    /// label labctl gives pools it makes, [`crate::POOL_LABEL`]); GPU workers are scheduled
    /// with them.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl NodePoolSection {
    /// The node labels that select pool `name`'s nodes: its `labels`, else
    /// `labctl/pool = "<name>"`.
    pub fn selector(&self, name: &str) -> BTreeMap<String, String> {
        if self.labels.is_empty() {
            [(crate::POOL_LABEL.to_owned(), name.to_owned())].into()
        } else {
            self.labels.clone()
        }
    }
}
