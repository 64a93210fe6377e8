//! The Kubernetes provider as a plugin: its `[provider.kubernetes]` settings, what each
//! student gets (a namespace, a token Secret, their services as Deployments), and how the
//! smoke workloads reach them (Jobs in their namespace).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use labctl_provider_api::lab::{Cohort, HostedKubernetesSpec, Lab, LabSections, SmokeWorkload, Student};
use labctl_provider_api::{
    ports, Address, Capabilities, Connected, Endpoints, Findings, Node, Plugin, Provider, ProviderSetup,
    Settings, SmokeRunner, StudentResources, Tags, WorkerService, NO_NOTEBOOKS,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use toml::Spanned;

use crate::{ClusterAccess, KubernetesConfig, KubernetesProvider, DEFAULT_READY_TIMEOUT_SECS};

/// `[provider.kubernetes]`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
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

/// What students get on Kubernetes when the lab file does not say: validation checks these
/// fit together, expansion puts them in the manifests.
pub mod defaults {
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

/// The Kubernetes provider's plugin.
pub struct KubernetesPlugin;

impl Plugin for KubernetesPlugin {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn settings_schema(&self) -> Value {
        serde_json::to_value(schemars::schema_for!(KubernetesSettings)).unwrap_or_default()
    }

    fn capabilities(&self) -> Capabilities {
        // The smoke jobs generate their data in the student's volume; nothing copies a
        // volume out yet, so `destroy --archive` is refused.
        Capabilities { gpus: true, smoke_data_generated: true, ..Capabilities::default() }
    }

    fn configure(
        &self,
        settings: &Settings<'_>,
        lab: &LabSections<'_>,
        findings: &mut Findings,
    ) -> Option<Box<dyn ProviderSetup>> {
        let k8s: KubernetesSettings = settings.parse_into(self.name(), findings)?;
        crate::validate::check(&k8s, settings.span.clone(), lab, findings);
        let kubeconfig = k8s.kubeconfig.as_deref().map(|p| settings.path_beside(p));
        Some(Box::new(KubernetesSetup::from_settings(&k8s, kubeconfig, None)))
    }

    fn restore(&self, saved: Value) -> Result<Box<dyn ProviderSetup>, String> {
        serde_json::from_value::<KubernetesSetup>(saved).map(|s| Box::new(s) as _).map_err(|e| e.to_string())
    }
}

/// The Kubernetes provider configured for one lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KubernetesSetup {
    pub config: KubernetesConfig,
    pub rate_limit: Option<f64>,
    pub image: Option<String>,
    pub storage: StorageConfig,
    /// The lab's `[cluster.<name>]` it is on, when the lab makes the cluster: its GPU pools
    /// are the ones used, and the workers' token Secret is `worker_token` (the cloud
    /// credential is `credential`).
    #[serde(default)]
    pub hosted: Option<String>,
    /// A Secret in each namespace with the student's cloud credential, made by the provider
    /// of the cluster: the MapReduce pods get it as environment, so that they read and write
    /// the student's bucket (`s3://`).
    #[serde(default)]
    pub cloud_secret: Option<String>,
}

/// What labctl installs on a cluster it puts students on: the GPU device plugin on its GPU
/// pools, and a default StorageClass.
#[derive(Debug, Serialize, Deserialize)]
pub struct AddonsConfig {
    pub device_plugin: Option<DevicePluginConfig>,
    pub storage_class: Option<StorageClassConfig>,
}

/// The NVIDIA device plugin DaemonSet: it advertises each GPU node's `nvidia.com/gpu`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DevicePluginConfig {
    pub image: String,
    /// Each GPU pool's node labels: the DaemonSet runs on nodes matching any of them.
    pub pools: Vec<BTreeMap<String, String>>,
}

/// The default StorageClass, of the cluster's CSI driver.
#[derive(Debug, Serialize, Deserialize)]
pub struct StorageClassConfig {
    pub name: String,
    pub provisioner: String,
    pub parameters: BTreeMap<String, String>,
}

/// A Secret in a student's namespace with their cloud credential and where their data is,
/// for their pods: `values` as the lab says them, and `from` the attributes of resources it
/// depends on (variable → address and attribute: the access key of the student's cloud
/// credential).
#[derive(Debug, Serialize, Deserialize)]
pub struct CloudCredentialConfig {
    pub namespace: String,
    pub name: String,
    pub values: BTreeMap<String, String>,
    pub from: BTreeMap<String, (String, String)>,
}

/// The NVIDIA device plugin's image, as its project publishes it.
pub const DEVICE_PLUGIN_IMAGE: &str = "nvcr.io/nvidia/k8s-device-plugin:v0.17.0";

/// The student's volume claim.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StorageConfig {
    pub size: String,
    pub class: Option<String>,
    pub access: VolumeAccess,
}

/// A student's namespace with its quota, limits and volume.
#[derive(Debug, Serialize, Deserialize)]
pub struct NamespaceConfig {
    pub namespace: String,
    pub quota: QuotaConfig,
    pub limits: LimitsConfig,
    pub storage: StorageConfig,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct QuotaConfig {
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    pub gpu: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LimitsConfig {
    pub default_cpu: String,
    pub default_memory: String,
    pub max_cpu: String,
    pub max_memory: String,
}

/// The Secret with the student's workers' token.
#[derive(Debug, Serialize, Deserialize)]
pub struct CredentialConfig {
    pub student: String,
    pub namespace: String,
}

/// A dataset in a student's volume, at `/srv/lab/datasets/<name>`, written by a Job running
/// the workers' image: on Kubernetes the student's volume is where their data is.
#[derive(Debug, Serialize, Deserialize)]
pub struct SeedConfig {
    pub namespace: String,
    pub name: String,
    pub dataset: labctl_provider_api::lab::Dataset,
    pub image: Option<String>,
    pub storage_access: VolumeAccess,
}

/// A student's MapReduce or scheduler: a head Deployment and a workers' Deployment.
#[derive(Debug, Serialize, Deserialize)]
pub struct ServiceConfig {
    pub student: String,
    pub workers: u32,
    pub slots: Option<u32>,
    pub version: String,
    pub namespace: String,
    pub image: Option<String>,
    pub cpu: String,
    pub memory: String,
    /// The MapReduce pods' shared volume's access mode.
    pub storage_access: Option<VolumeAccess>,
    /// A Secret whose values the pods get as environment (the student's cloud credential).
    pub env_from: Option<String>,
    pub gpu: Option<GpuPlacement>,
}

/// Where a cohort's GPU workers go: how many GPUs each, and the GPU pool's node labels.
#[derive(Debug, Serialize, Deserialize)]
pub struct GpuPlacement {
    pub count: u32,
    pub node_selector: BTreeMap<String, String>,
}

impl ProviderSetup for KubernetesSetup {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn rate_limit(&self) -> Option<f64> {
        self.rate_limit
    }

    fn check_timeout(&self, operation: Duration) -> Result<(), String> {
        if self.config.ready_timeout_secs < operation.as_secs() {
            return Ok(());
        }
        Err(format!(
            "[provider.kubernetes] ready_timeout is {} s, but an operation may take {} s (--timeout)\n  Give --timeout more than ready_timeout, or lower ready_timeout.",
            self.config.ready_timeout_secs,
            operation.as_secs()
        ))
    }

    fn expand_student(&self, lab: &Lab, cohort: &Cohort, student: &Student) -> Vec<Node> {
        let base = Address::student(&student.id);
        let tags = lab.tags(cohort, student);
        let namespace = lab.resource_name(student);
        let namespace_address = base.child("namespace");
        let mut nodes = vec![Node::new(
            "kubernetes",
            namespace_address.clone(),
            "namespace",
            &self.namespace(lab, cohort, &namespace),
            &tags,
            vec![],
        )];
        let credential = base.child(self.token_within());
        if lab.credentials() {
            let config = CredentialConfig { student: student.id.clone(), namespace: namespace.clone() };
            nodes.push(Node::new(
                "kubernetes",
                credential.clone(),
                "credential",
                &config,
                &tags,
                vec![namespace_address.to_string()],
            ));
        }
        // On a cluster the lab makes, the datasets are in the student's bucket; here they go
        // into their volume.
        if self.hosted.is_none() {
            for dataset in lab.seeded() {
                let config = SeedConfig {
                    namespace: namespace.clone(),
                    name: dataset.to_owned(),
                    dataset: lab.datasets[dataset].clone(),
                    image: self.image.clone(),
                    storage_access: self.storage.access,
                };
                let deps = vec![namespace_address.to_string()];
                nodes.push(Node::new(
                    "kubernetes",
                    base.keyed("dataset", dataset),
                    "dataset",
                    &config,
                    &tags,
                    deps,
                ));
            }
        }
        // The workers' shared secret is the student's credential token.
        let deps = vec![credential.to_string(), namespace_address.to_string()];
        let service = |workers: u32,
                       slots,
                       cpu: &Option<Spanned<String>>,
                       memory: &Option<Spanned<String>>| ServiceConfig {
            student: student.id.clone(),
            workers,
            slots,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            namespace: namespace.clone(),
            image: self.image.clone(),
            cpu: quantity(cpu, defaults::WORKER_CPU),
            memory: quantity(memory, defaults::WORKER_MEMORY),
            storage_access: None,
            env_from: None,
            gpu: None,
        };
        if let Some(m) = lab.mapreduce() {
            // Its pods share the student's volume.
            let config = ServiceConfig {
                storage_access: Some(self.storage.access),
                env_from: self.cloud_secret.clone(),
                ..service(*m.workers.get_ref(), None, &m.cpu, &m.memory)
            };
            nodes.push(Node::new(
                "kubernetes",
                base.child("mapreduce"),
                "mapreduce",
                &config,
                &tags,
                deps.clone(),
            ));
        }
        if let Some(s) = lab.scheduler() {
            let config = ServiceConfig {
                gpu: gpu_placement(lab, cohort, self.hosted.as_deref()),
                ..service(*s.workers.get_ref(), Some(s.slots.unwrap_or(1)), &s.cpu, &s.memory)
            };
            nodes.push(Node::new("kubernetes", base.child("scheduler"), "scheduler", &config, &tags, deps));
        }
        nodes
    }

    fn connect(&self, lab: &str, _bin_dir: &Path) -> Connected {
        // The smoke jobs use the engine's connection to the cluster.
        let provider = Arc::new(KubernetesProvider::new(self.config.clone(), lab));
        Connected { provider: provider.clone(), hosted: vec![], smoke: Ok(Arc::new(Jobs(provider))) }
    }

    /// The services answer on their fixed ports through `kubectl port-forward`.
    fn endpoints(&self, student: &StudentResources) -> Endpoints {
        let attr = |what: &str, key: &str| student.attr(what, key).map(str::to_owned);
        let forwarded = |kind: &str, port: u16| attr(kind, "address").map(|_| format!("127.0.0.1:{port}"));
        Endpoints {
            mapreduce: forwarded("mapreduce", ports::MAPREDUCE),
            scheduler: forwarded("scheduler", ports::SCHEDULER),
            status_url: forwarded("scheduler", ports::SCHEDULER_HTTP).map(|a| format!("http://{a}/status")),
            token: attr(self.token_within(), "token"),
            bucket: None,
            datasets: student.dataset_paths(),
            access: attr("namespace", "namespace")
                .map(|namespace| {
                    let volume =
                        student.resources.get("namespace").and_then(|ns| ns.attributes.get("volume"));
                    let kubeconfig = attr("namespace", "kubeconfig");
                    let access =
                        json!({ "namespace": namespace, "kubeconfig": kubeconfig, "volume": volume });
                    ("kubernetes".to_owned(), access)
                })
                .into_iter()
                .collect(),
        }
    }

    /// The services answer inside the cluster only (apply waited for them).
    fn describe(&self, student: &StudentResources) -> Vec<(String, String)> {
        student
            .resources
            .get("namespace")
            .map(|ns| {
                let name = ns.attributes.get("namespace").and_then(Value::as_str).unwrap_or("?");
                ("namespace".to_owned(), format!("{name} (services in-cluster: kubectl port-forward)"))
            })
            .into_iter()
            .collect()
    }
}

impl KubernetesSetup {
    fn from_settings(
        k8s: &KubernetesSettings,
        kubeconfig: Option<std::path::PathBuf>,
        hosted: Option<String>,
    ) -> Self {
        let storage = k8s.storage.clone().unwrap_or_default();
        KubernetesSetup {
            config: KubernetesConfig {
                kubeconfig,
                context: k8s.context.clone(),
                ready_timeout_secs: k8s.ready_timeout.unwrap_or(DEFAULT_READY_TIMEOUT_SECS),
            },
            rate_limit: k8s.rate_limit,
            image: k8s.image.clone(),
            storage: StorageConfig {
                size: quantity(&storage.size, defaults::STORAGE),
                class: storage.class,
                access: storage.access.unwrap_or_default(),
            },
            hosted,
            cloud_secret: None,
        }
    }

    /// The Kubernetes provider on a cluster the lab makes (`[student] kubernetes`), the
    /// students' part of the lab judged as on any cluster (an image for the workers,
    /// quantities that fit their namespace).
    pub(crate) fn hosted(spec: &HostedKubernetesSpec, lab: &LabSections, findings: &mut Findings) -> Self {
        let settings = KubernetesSettings { image: spec.image.clone(), ..Default::default() };
        crate::validate::check_students(&settings, spec.cluster.span(), lab, findings);
        Self::from_settings(&settings, None, Some(spec.cluster.get_ref().clone()))
    }

    /// This provider on the cluster `access` reaches, and its smoke Jobs.
    pub(crate) fn connect_hosted(
        &self,
        lab: &str,
        access: Arc<dyn ClusterAccess>,
    ) -> (Arc<dyn Provider>, Arc<dyn SmokeRunner>) {
        let provider = Arc::new(KubernetesProvider::hosted(access, self.config.ready_timeout_secs, lab));
        (provider.clone(), Arc::new(Jobs(provider)))
    }

    /// The cluster-wide objects at `address` (a lab-wide resource depending on `deps`).
    pub(crate) fn addons(
        &self,
        address: String,
        config: &AddonsConfig,
        tags: &Tags,
        deps: Vec<String>,
    ) -> Node {
        Node::new("kubernetes", address, "addons", config, tags, deps)
    }

    /// Where within a student their workers' token Secret is.
    fn token_within(&self) -> &'static str {
        if self.hosted.is_some() {
            "worker_token"
        } else {
            "credential"
        }
    }

    fn namespace(&self, lab: &Lab, cohort: &Cohort, namespace: &str) -> NamespaceConfig {
        let quota = lab.student.quota.as_ref();
        let limits = lab.student.limits.as_ref();
        let gpu_workers = lab.scheduler().map_or(0, |s| *s.workers.get_ref());
        NamespaceConfig {
            namespace: namespace.to_owned(),
            quota: QuotaConfig {
                cpu: quantity(&quota.and_then(|q| q.cpu.clone()), defaults::QUOTA_CPU),
                memory: quantity(&quota.and_then(|q| q.memory.clone()), defaults::QUOTA_MEMORY),
                pods: quota.and_then(|q| q.pods).unwrap_or(defaults::QUOTA_PODS),
                gpu: lab.gpus(cohort) * gpu_workers,
            },
            limits: LimitsConfig {
                default_cpu: quantity(&limits.and_then(|l| l.default_cpu.clone()), defaults::DEFAULT_CPU),
                default_memory: quantity(
                    &limits.and_then(|l| l.default_memory.clone()),
                    defaults::DEFAULT_MEMORY,
                ),
                max_cpu: quantity(&limits.and_then(|l| l.max_cpu.clone()), defaults::MAX_CPU),
                max_memory: quantity(&limits.and_then(|l| l.max_memory.clone()), defaults::MAX_MEMORY),
            },
            storage: self.storage.clone(),
        }
    }
}

/// Where a cohort's GPU workers go (validation made sure the cluster has a GPU pool).
/// (On the cluster `on`, when the lab makes it.)
fn gpu_placement(lab: &Lab, cohort: &Cohort, on: Option<&str>) -> Option<GpuPlacement> {
    let count = lab.gpus(cohort);
    if count == 0 {
        return None;
    }
    let clusters = lab.clusters.iter().filter(|(name, _)| on.is_none_or(|on| on == *name));
    let (name, pool) = clusters.flat_map(|(_, c)| &c.node_pool).find(|(_, p)| p.gpu > 0)?;
    Some(GpuPlacement { count, node_selector: pool.selector(name) })
}

fn quantity(value: &Option<Spanned<String>>, default: &str) -> String {
    value.as_ref().map_or_else(|| default.to_owned(), |v| v.get_ref().clone())
}

/// The smoke workloads as Jobs beside the student's services.
struct Jobs(Arc<KubernetesProvider>);

#[async_trait]
impl SmokeRunner for Jobs {
    /// Jobs run on the cluster's cores.
    fn parallel(&self) -> usize {
        8
    }

    async fn run(
        &self,
        workload: SmokeWorkload,
        student: &StudentResources,
        _dataset: Option<&str>,
        timeout: Duration,
    ) -> Result<(), String> {
        let service = WorkerService::for_workload(workload).ok_or(NO_NOTEBOOKS)?;
        let svc = student.get(service.name())?;
        self.0.smoke(service, &svc.config, &svc.tags, timeout).await
    }
}
