//! The lab file's TOML format, as serde types. Field names here *are* the file format:
//! unknown keys are refused, and [`schemars`] turns these types into `labctl schema`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// A lab: one cohort (or several) of students and what each of them gets.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabFile {
    pub lab: LabSection,
    pub provider: ProviderSection,
    /// The students, in one or more cohorts (e.g. one per teaching group).
    #[serde(default)]
    pub cohort: Vec<CohortSection>,
    /// What every student gets.
    #[serde(default)]
    pub student: StudentSection,
    /// Named datasets that buckets are seeded with.
    #[serde(default)]
    pub datasets: BTreeMap<String, DatasetSection>,
    /// Shared network (cloud providers).
    pub network: Option<NetworkSection>,
    /// Shared Kubernetes clusters and their node pools (cloud providers).
    #[serde(default)]
    pub cluster: BTreeMap<String, ClusterSection>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabSection {
    /// Lab name: a DNS label of at most 30 characters; prefixes every resource name.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    pub description: Option<String>,
    /// When the lab must be gone (RFC 3339 date-time or date); plan and apply refuse a past one.
    #[schemars(with = "Option<String>")]
    pub expires: Option<Spanned<toml::value::Datetime>>,
    pub budget: Option<BudgetSection>,
    /// Where the state lives: a file (relative to the lab file), or `s3://bucket/key` so
    /// that several people can apply the lab (locked by conditional writes). Default:
    /// `.labctl/<name>.state.json` beside the lab file. `--state` overrides it.
    pub state: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetSection {
    /// Currency of the amounts below (default USD).
    pub currency: Option<String>,
    /// Refuse to apply when the estimated cost per student-hour exceeds this.
    #[schemars(with = "Option<f64>")]
    pub per_student_per_hour: Option<Spanned<f64>>,
    /// Refuse to apply when the estimated cost until `expires` exceeds this.
    #[schemars(with = "Option<f64>")]
    pub total: Option<Spanned<f64>>,
}

/// Where the lab is provisioned: exactly one of the tables below.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    pub local: Option<LocalSettings>,
    pub aws: Option<AwsSettings>,
    pub kubernetes: Option<KubernetesSettings>,
    pub gcp: Option<GcpSettings>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalSettings {
    /// Where buckets and worker data live (default: the user's data directory).
    pub data_dir: Option<String>,
    /// Maximum provider requests per second (default: unlimited).
    pub rate_limit: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    pub region: String,
    /// API endpoint override (an emulator, LocalStack).
    pub endpoint: Option<String>,
    pub profile: Option<String>,
    /// Maximum provider requests per second (default: unlimited; AWS throttling is retried).
    pub rate_limit: Option<f64>,
    /// Requests in flight per AWS service (EC2, S3, IAM, EKS); default 16.
    pub concurrency: Option<usize>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSettings {
    /// Kubeconfig file, relative to the lab file or under `~/` (default: `KUBECONFIG`, then
    /// `~/.kube/config`).
    pub kubeconfig: Option<String>,
    /// Context in it (default: its current context).
    pub context: Option<String>,
    /// The workers' image, built by the repository's Dockerfile and pushed where the cluster
    /// can pull it (kind: `kind load docker-image`). Required when students get workers.
    pub image: Option<String>,
    /// Maximum API requests per second (default: unlimited).
    pub rate_limit: Option<f64>,
    /// Seconds to wait for workers to become ready, or a namespace to be gone (default 300).
    pub ready_timeout: Option<u64>,
    /// Each student's shared volume, which the MapReduce pods and the smoke jobs mount.
    pub storage: Option<StorageSettings>,
}

/// A PersistentVolumeClaim per student namespace, mounted at `/srv/lab`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    /// Size (default "1Gi").
    #[schemars(with = "Option<String>")]
    pub size: Option<Spanned<String>>,
    /// Storage class (default: the cluster's default class).
    pub class: Option<String>,
    /// Who may mount it: `ReadWriteOnce` (default: one node at a time, so the pods that use
    /// it are kept on one node; every default class offers it) or `ReadWriteMany` (pods on
    /// any node; needs a class that offers it, such as EFS, Filestore or NFS).
    pub access: Option<VolumeAccess>,
}

/// A PersistentVolumeClaim's access mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VolumeAccess {
    #[default]
    ReadWriteOnce,
    ReadWriteMany,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GcpSettings {
    pub project: String,
    pub region: String,
    pub endpoint: Option<String>,
    pub rate_limit: Option<f64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CohortSection {
    /// Cohort name: a DNS label.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// A CSV roster with the header `id,name,email`, relative to the lab file.
    #[schemars(with = "Option<String>")]
    pub roster: Option<Spanned<String>>,
    /// The roster, inline.
    pub students: Option<Vec<StudentEntry>>,
    /// GPUs for this cohort's students, instead of `[student.gpu]`.
    #[schemars(with = "Option<GpuSpec>")]
    pub gpu: Option<Spanned<GpuSpec>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StudentEntry {
    /// Student id: a DNS label of at most 32 characters (it names their resources).
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    pub name: Option<String>,
    #[schemars(with = "Option<String>")]
    pub email: Option<Spanned<String>>,
}

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
}

/// What students get on Kubernetes when the lab file does not say: validation checks these
/// fit together, expansion puts them in the manifests.
pub mod kubernetes_defaults {
    pub const QUOTA_CPU: &str = "4";
    pub const QUOTA_MEMORY: &str = "8Gi";
    pub const QUOTA_PODS: u32 = 20;
    pub const DEFAULT_CPU: &str = "250m";
    pub const DEFAULT_MEMORY: &str = "256Mi";
    pub const MAX_CPU: &str = "2";
    pub const MAX_MEMORY: &str = "4Gi";
    pub const WORKER_CPU: &str = "250m";
    pub const WORKER_MEMORY: &str = "256Mi";
    pub const STORAGE: &str = "1Gi";
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
    pub workers: u32,
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
    pub workers: u32,
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
pub struct DatasetSection {
    #[schemars(with = "DatasetGenerator")]
    pub kind: Spanned<DatasetGenerator>,
    /// Text: total size in MiB (fractions allowed).
    #[schemars(with = "Option<f64>")]
    pub size_mb: Option<Spanned<f64>>,
    /// Tabular: number of rows.
    #[schemars(with = "Option<u64>")]
    pub rows: Option<Spanned<u64>>,
    /// Number of files (default 4 for text, 1 for tabular).
    #[schemars(with = "Option<u32>")]
    pub files: Option<Spanned<u32>>,
    /// Generator seed (default 7): the same seed gives the same bytes.
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DatasetGenerator {
    Text,
    Tabular,
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
    pub instance_type: String,
    #[serde(default)]
    pub min: u32,
    #[schemars(with = "u32")]
    pub max: Spanned<u32>,
    /// GPUs per node; a pool with GPUs is tainted `nvidia.com/gpu`.
    #[serde(default)]
    pub gpu: u32,
    /// Node labels that select this pool's nodes (default `labctl/pool = "<pool>"`, the
    /// label labctl gives pools it makes); GPU workers are scheduled with them.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}
