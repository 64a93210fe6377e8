//! Students on one of the lab's own clusters (EKS, GKE): how a cloud provider composes the
//! Kubernetes provider with a cluster it makes. The cloud makes the cluster and its node
//! pools; this puts what goes on the cluster after them (the addons, then each student's
//! namespace, workers and the Secret with their cloud key), in one plan and one walk.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use labctl_provider_api::lab::{Cohort, Lab, LabSections, SmokeWorkload, Student};
use labctl_provider_api::{
    Address, Endpoints, Findings, Node, Provider, ProviderSetup, SmokeRunner, StudentResources, Tags,
};
use serde::{Deserialize, Serialize};

use crate::plugin::{AddonsConfig, CloudCredentialConfig, DevicePluginConfig};
use crate::{ClusterAccess, KubernetesSetup, StorageClassConfig, DEVICE_PLUGIN_IMAGE};

/// Students' namespaces on one of the lab's clusters, through the Kubernetes provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostedCluster {
    /// The cluster's name in the lab file (`[cluster.<name>]`).
    pub cluster: String,
    pub kubernetes: KubernetesSetup,
    /// The cohorts on it (`None`: every cohort); the others are elsewhere (on VMs).
    #[serde(default)]
    pub cohorts: Option<Vec<String>>,
}

/// What a student's cloud Secret holds: variables as the lab says them, and variables taken
/// from attributes of the student's credential (variable → attribute).
pub struct CloudSecret {
    pub values: BTreeMap<String, String>,
    pub from: BTreeMap<String, String>,
}

/// What labctl installs on the cluster besides the students: a default StorageClass of the
/// cloud's CSI driver, and the NVIDIA device plugin on the GPU pools unless the cloud runs
/// its own.
pub struct Addons {
    pub storage_class: StorageClassConfig,
    pub device_plugin: bool,
}

impl HostedCluster {
    /// `[student] kubernetes`, when it names one of the lab's clusters (an error in
    /// `findings` when it names none). `secret`: the name of the Secret with each student's
    /// cloud key, which their MapReduce pods get when students have credentials and a bucket.
    pub fn configure(lab: &LabSections, secret: &str, findings: &mut Findings) -> Option<Self> {
        let spec = lab.student.kubernetes.as_ref()?;
        let cluster = spec.cluster.get_ref();
        if !lab.clusters.contains_key(cluster) {
            let known: Vec<String> = lab.clusters.keys().map(|c| format!("\"{c}\"")).collect();
            let allowed = if known.is_empty() {
                "allowed: a cluster described under [cluster.<name>]".to_owned()
            } else {
                format!("allowed: cluster = {}", known.join(" or "))
            };
            let message = format!("there is no [cluster.{cluster}] to put the students on");
            findings.errors.push(lab.error(spec.cluster.span(), message, allowed));
            return None;
        }
        let mut kubernetes = KubernetesSetup::hosted(spec, lab, findings);
        let credentials = lab.student.credentials.as_ref().is_none_or(|c| *c.get_ref());
        kubernetes.cloud_secret = (credentials && lab.student.bucket.is_some()).then(|| secret.to_owned());
        let cohorts = spec.cohorts.as_ref().map(|c| c.iter().map(|c| c.get_ref().clone()).collect());
        Some(Self { cluster: cluster.clone(), kubernetes, cohorts })
    }

    /// The cluster's address in the plan.
    pub fn address(&self) -> Address {
        Address::top("cluster", &self.cluster)
    }

    /// The cluster-wide objects labctl installs, after the cluster's node pools.
    pub fn addons(&self, lab: &Lab, addons: Addons) -> Node {
        let cluster = self.address();
        let pools = lab.clusters.get(&self.cluster).into_iter().flat_map(|c| &c.node_pool);
        let gpu_pools: Vec<_> = pools.filter(|(_, p)| p.gpu > 0).map(|(name, p)| p.selector(name)).collect();
        let config = AddonsConfig {
            device_plugin: (addons.device_plugin && !gpu_pools.is_empty())
                .then(|| DevicePluginConfig { image: DEVICE_PLUGIN_IMAGE.to_owned(), pools: gpu_pools }),
            storage_class: Some(addons.storage_class),
        };
        let mut node = self.kubernetes.addons(
            cluster.child("addons").to_string(),
            &config,
            &lab.lab_tags(),
            vec![cluster.to_string()],
        );
        node.after = self.pools(lab);
        node
    }

    /// A student's objects on the cluster: made anew with it, after its pools and addons
    /// (and deleted before them), with the Secret `secret` when students have one.
    pub fn expand_student(
        &self,
        lab: &Lab,
        cohort: &Cohort,
        student: &Student,
        secret: Option<CloudSecret>,
    ) -> Vec<Node> {
        let base = Address::student(&student.id);
        let mut nodes = self.kubernetes.expand_student(lab, cohort, student);
        if let (Some(name), Some(secret)) = (&self.kubernetes.cloud_secret, secret) {
            // Pods given the Secret as environment start once it is there.
            let access = cloud_credential(
                name,
                &lab.resource_name(student),
                &base,
                &lab.tags(cohort, student),
                secret,
            );
            for node in nodes.iter_mut().filter(|n| n.spec.config.contains_key("env_from")) {
                node.deps.push(access.spec.address.clone());
            }
            nodes.push(access);
        }
        let mut after = self.pools(lab);
        after.push(self.address().child("addons").to_string());
        for node in &mut nodes {
            node.deps.push(self.address().to_string());
            node.after.extend(after.iter().cloned());
        }
        nodes
    }

    /// Where a lab's students' smoke workloads run: as Jobs for those on `hosted`, the
    /// cluster `access` reaches (with the Kubernetes provider working there), else through
    /// `own` (their VMs).
    pub fn connect(
        hosted: Option<&Self>,
        lab: &str,
        access: impl FnOnce(&Self) -> Arc<dyn ClusterAccess>,
        own: impl FnOnce() -> Arc<dyn SmokeRunner>,
    ) -> (Vec<Arc<dyn Provider>>, Arc<dyn SmokeRunner>) {
        match hosted {
            Some(h) => {
                let (kubernetes, jobs) = h.kubernetes.connect_hosted(lab, access(h));
                (vec![kubernetes], Arc::new(Placed { hosted: h.clone(), jobs, own: own() }))
            }
            None => (vec![], own()),
        }
    }

    /// A student's endpoints: their namespace and services on `hosted`, if they are there,
    /// with the cloud's own (`own`: their bucket, datasets and keys, or their VM).
    pub fn endpoints(hosted: Option<&Self>, student: &StudentResources, own: Endpoints) -> Endpoints {
        let Some(hosted) = hosted.filter(|h| h.hosts(student)) else { return own };
        let mut endpoints = hosted.kubernetes.endpoints(student);
        endpoints.bucket = own.bucket;
        endpoints.datasets = own.datasets;
        endpoints.access.extend(own.access);
        endpoints
    }

    /// A student's lines in `status`: their namespace on `hosted`, if there, then the
    /// cloud's own (`own`).
    pub fn describe(
        hosted: Option<&Self>,
        student: &StudentResources,
        own: Vec<(String, String)>,
    ) -> Vec<(String, String)> {
        let hosted = hosted.filter(|h| h.hosts(student));
        let mut lines = hosted.map(|h| h.kubernetes.describe(student)).unwrap_or_default();
        lines.extend(own);
        lines
    }

    /// Whether `student` is on the cluster: their cohort (as their resources are tagged) is.
    fn hosts(&self, student: &StudentResources) -> bool {
        let cohort = student.resources.values().find_map(|r| r.tags.cohort.as_deref());
        self.cohorts.as_ref().is_none_or(|listed| cohort.is_some_and(|c| listed.iter().any(|l| l == c)))
    }

    /// The cluster's node pools: the addons and the students' namespaces go after them.
    fn pools(&self, lab: &Lab) -> Vec<String> {
        let cluster = self.address();
        let pools = lab.clusters.get(&self.cluster).into_iter().flat_map(|c| c.node_pool.keys());
        pools.map(|pool| cluster.keyed("node_pool", pool).to_string()).collect()
    }
}

/// The smoke runner of a lab whose students are on its cluster and elsewhere (their VMs):
/// each student's workloads run where they are.
struct Placed {
    hosted: HostedCluster,
    jobs: Arc<dyn SmokeRunner>,
    own: Arc<dyn SmokeRunner>,
}

impl Placed {
    fn of(&self, student: &StudentResources) -> &dyn SmokeRunner {
        if self.hosted.hosts(student) {
            self.jobs.as_ref()
        } else {
            self.own.as_ref()
        }
    }
}

#[async_trait]
impl SmokeRunner for Placed {
    fn parallel(&self) -> usize {
        self.jobs.parallel().min(self.own.parallel())
    }

    async fn run(
        &self,
        workload: SmokeWorkload,
        student: &StudentResources,
        dataset: Option<&str>,
        timeout: Duration,
    ) -> Result<(), String> {
        self.of(student).run(workload, student, dataset, timeout).await
    }

    async fn health(&self, student: &StudentResources) -> Vec<(String, String)> {
        self.of(student).health(student).await
    }
}

/// The Secret `name` in the student's namespace with their cloud key, after their namespace
/// and credential.
fn cloud_credential(name: &str, namespace: &str, base: &Address, tags: &Tags, secret: CloudSecret) -> Node {
    let credential = base.child("credential").to_string();
    let from =
        secret.from.into_iter().map(|(key, attribute)| (key, (credential.clone(), attribute))).collect();
    let config = CloudCredentialConfig {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        values: secret.values,
        from,
    };
    let deps = vec![base.child("namespace").to_string(), credential];
    Node::new("kubernetes", base.child("bucket_access"), "cloud_credential", &config, tags, deps)
}
