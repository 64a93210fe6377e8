//! labctl's Kubernetes provider: on any cluster a kubeconfig reaches (kind, EKS, GKE), each
//! student gets a namespace with a quota, limits, a service account confined to it and a
//! network policy keeping other students out; their MapReduce and scheduler run in it as
//! Deployments. Objects are rendered from `templates/kubernetes/` and applied server-side
//! under the field manager `labctl`, so a re-apply is idempotent and takes back fields
//! edited by hand.
//!
//! `labctl verify` runs the smoke workloads as Jobs in each namespace ([`KubernetesProvider::smoke`]).
//! A cloud provider that makes the lab's cluster (EKS, GKE) puts the students on it through
//! [`HostedCluster`].
//!
//! Kinds: `namespace`, `credential` (the Secret with the workers' token), `mapreduce` and
//! `scheduler`; on a cluster the lab makes (EKS, GKE: [`KubernetesProvider::hosted`]),
//! also `addons` (the GPU device plugin and the default StorageClass) and `cloud_credential`
//! (a student's cloud key as a Secret in their namespace). Everything carries the
//! `labctl/lab`, `labctl/cohort` and `labctl/student` labels; deleting the namespace
//! deletes everything in it.

#![warn(clippy::print_stdout)]

mod cluster;
mod errors;
mod hosted;
mod manifests;
mod objects;
mod plugin;
mod smoke;
mod validate;
mod waits;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use labctl_provider_api::configs::config;
use labctl_provider_api::{
    attrs, random_token, Attributes, Deps, Found, KindSchema, Observed, Provider, ProviderError,
    ResourceSpec, Tags, WorkerService,
};
use serde_json::{json, Value};

pub use cluster::{
    exec_kubeconfig, test_stand_in, Access, ClusterAccess, KubernetesConfig, DEFAULT_READY_TIMEOUT_SECS,
};
pub use hosted::{Addons, CloudSecret, HostedCluster};
use manifests::{ObjectRef, Service, STUDENT_TOKEN_SECRET, TOKEN_SECRET};
use objects::{Applied, Stopped};
use plugin::{
    AddonsConfig, CloudCredentialConfig, CredentialConfig, NamespaceConfig, SeedConfig, ServiceConfig,
};
pub use plugin::{KubernetesPlugin, KubernetesSetup, StorageClassConfig, DEVICE_PLUGIN_IMAGE};

const KINDS: &[KindSchema] = &[
    KindSchema { name: "namespace", replace_on: &["namespace"] },
    KindSchema { name: "credential", replace_on: &["namespace"] },
    KindSchema { name: "mapreduce", replace_on: &["namespace"] },
    KindSchema { name: "scheduler", replace_on: &["namespace"] },
    KindSchema { name: "addons", replace_on: &[] },
    KindSchema { name: "cloud_credential", replace_on: &["namespace", "name"] },
    KindSchema { name: "dataset", replace_on: &["*"] },
];

/// The provider: one lab on one cluster.
pub struct KubernetesProvider {
    connection: cluster::Connection,
    lab: String,
}

impl KubernetesProvider {
    /// A provider for `lab` on the cluster `config` names; it connects on first use.
    pub fn new(config: KubernetesConfig, lab: &str) -> Self {
        Self { connection: cluster::Connection::new(config), lab: lab.to_owned() }
    }

    /// A provider for `lab` on a cluster the lab makes, reached as `access` says; while the
    /// cluster does not exist, nothing on it does.
    pub fn hosted(access: Arc<dyn ClusterAccess>, ready_timeout_secs: u64, lab: &str) -> Self {
        Self { connection: cluster::Connection::hosted(access, ready_timeout_secs), lab: lab.to_owned() }
    }

    /// Runs the smoke workload that proves `service` as a Job in the student's namespace,
    /// given the service resource's `config` and `tags` as applied; `Ok` when it gave the
    /// right answer within `timeout`, else why not.
    pub async fn smoke(
        &self,
        service: WorkerService,
        config: &Attributes,
        tags: &Tags,
        timeout: Duration,
    ) -> Result<(), String> {
        let config: ServiceConfig = serde_json::from_value(Value::Object(config.clone()))
            .map_err(|e| format!("the {} config as applied: {e}", service.name()))?;
        let client = self.client().await.map_err(|e| e.to_string())?;
        smoke::run(&client, service, &config, tags, timeout).await
    }

    fn timeout(&self) -> Duration {
        self.connection.ready_timeout()
    }

    async fn client(&self) -> Result<kube::Client, ProviderError> {
        Ok(self.connection.get().await?.client.clone())
    }

    /// Applies `docs`; a failure part of the way records what was applied as `id`.
    async fn apply(&self, id: &str, docs: &[Value]) -> Result<Vec<Applied>, ProviderError> {
        objects::apply(&self.client().await?, docs).await.map_err(|Stopped { error, applied }| {
            error.with_partial(observed(id, &applied, Attributes::new(), &[]))
        })
    }

    /// Applies the student's namespace and returns it with the student's kubeconfig. A
    /// namespace of that name that is not this lab's is refused, not taken over; one still
    /// terminating is waited for.
    async fn apply_namespace(&self, spec: &ResourceSpec) -> Result<Observed, ProviderError> {
        let ns: NamespaceConfig = config(spec)?;
        let namespace = ns.namespace.as_str();
        let cluster = self.connection.get().await?;
        let existing = namespace_ref(namespace);
        if let Some(found) = objects::get(&cluster.client, &existing).await? {
            let owner = found.metadata.labels.as_ref().and_then(|l| l.get(Tags::LAB));
            if owner != Some(&self.lab) {
                let whose = owner.map_or_else(
                    || "labctl did not create it".to_owned(),
                    |lab| format!("it belongs to lab `{lab}`"),
                );
                return Err(ProviderError::invalid(format!("namespace {namespace} already exists and {whose}: rename the lab or delete the namespace")));
            }
            if found.metadata.deletion_timestamp.is_some() {
                waits::gone(&cluster.client, &existing, self.timeout()).await?;
            }
        }
        let docs = manifests::namespace(&ns, &spec.tags)?;
        let applied = self.apply(namespace, &docs).await?;
        let partial = observed(namespace, &applied, Attributes::new(), &[]);
        let token = waits::token(&cluster.client, namespace, STUDENT_TOKEN_SECRET, self.timeout())
            .await
            .map_err(|e| e.with_partial(partial))?;
        let kubeconfig = manifests::student_kubeconfig(&manifests::StudentKubeconfig {
            cluster: &cluster.name,
            server: &cluster.server,
            ca: cluster.ca.as_deref(),
            student: spec.tags.student.as_deref().unwrap_or(namespace),
            namespace,
            token: &token,
        })?;
        let attributes =
            attrs(json!({ "namespace": namespace, "kubeconfig": kubeconfig, "volume": manifests::volume() }));
        Ok(observed(namespace, &applied, attributes, &["kubeconfig"]))
    }

    /// Applies the workers' token Secret, keeping the token it already holds.
    async fn apply_credential(
        &self,
        spec: &ResourceSpec,
        prior: Option<&Observed>,
    ) -> Result<Observed, ProviderError> {
        let CredentialConfig { namespace, .. } = config(spec)?;
        let namespace = namespace.as_str();
        let known = prior.and_then(|p| p.attributes.get("token")).and_then(Value::as_str).map(str::to_owned);
        let token = match known {
            Some(token) => token,
            None => objects::secret_value(&self.client().await?, namespace, TOKEN_SECRET, "token")
                .await?
                .unwrap_or_else(random_token),
        };
        let id = format!("{namespace}/{TOKEN_SECRET}");
        let applied = self.apply(&id, &manifests::credential(namespace, &token, &spec.tags)?).await?;
        Ok(observed(&id, &applied, attrs(json!({ "token": token })), &["token"]))
    }

    /// Applies a service's Deployments and Service and waits for them to be ready.
    async fn apply_service(&self, service: Service, spec: &ResourceSpec) -> Result<Observed, ProviderError> {
        let svc: ServiceConfig = config(spec)?;
        let namespace = svc.namespace.as_str();
        let id = format!("{namespace}/{}", service.name());
        let docs = manifests::workers(service, &svc, &spec.tags)?;
        let applied = self.apply(&id, &docs).await?;
        let mut attributes = attrs(json!({
            "namespace": namespace,
            "address": format!("{}.{namespace}.svc:{}", service.name(), service.port()),
        }));
        if service == Service::Scheduler {
            let url = format!(
                "http://{}.{namespace}.svc:{}/status",
                service.name(),
                labctl_provider_api::ports::SCHEDULER_HTTP
            );
            attributes.insert("status_url".into(), json!(url));
        }
        let result = observed(&id, &applied, attributes, &[]);
        let refs: Vec<ObjectRef> = applied.into_iter().map(|a| a.object).collect();
        waits::ready(&self.client().await?, &refs, self.timeout())
            .await
            .map_err(|e| e.with_partial(result.clone()))?;
        Ok(result)
    }

    /// Applies what labctl installs on a cluster the lab makes; what an earlier apply
    /// installed and the lab no longer wants (a GPU pool's device plugin) goes.
    async fn apply_addons(
        &self,
        spec: &ResourceSpec,
        prior: Option<&Observed>,
    ) -> Result<Observed, ProviderError> {
        let addons: AddonsConfig = config(spec)?;
        let id = spec.tags.lab.as_str();
        let applied = self.apply(id, &manifests::addons(&addons, &spec.tags)?).await?;
        let wanted: Vec<&ObjectRef> = applied.iter().map(|a| &a.object).collect();
        let before = prior.map(recorded).unwrap_or_default().into_iter().map(|a| a.object);
        let stale: Vec<ObjectRef> = before.filter(|o| !wanted.contains(&o)).collect();
        objects::delete(&self.client().await?, &stale).await?;
        Ok(observed(id, &applied, Attributes::new(), &[]))
    }

    /// Writes a dataset into the student's volume with a Job, waits for it to finish and
    /// deletes it (a failed one stays a day, for `kubectl logs`).
    async fn seed(&self, spec: &ResourceSpec) -> Result<Observed, ProviderError> {
        let seed: SeedConfig = config(spec)?;
        let client = self.client().await?;
        let docs = manifests::seed_job(&seed, &spec.tags, self.timeout().as_secs())?;
        let job = ObjectRef::of(&docs[0])?;
        // A run that failed, or was cut short, before this one.
        objects::delete(&client, std::slice::from_ref(&job)).await?;
        waits::gone(&client, &job, self.timeout()).await?;
        self.apply(&job.describe(), &docs).await?;
        let namespace = seed.namespace.as_str();
        match waits::finished(&client, namespace, &job.name, self.timeout()).await? {
            Ok(()) => objects::delete(&client, std::slice::from_ref(&job)).await?,
            Err(why) => {
                return Err(ProviderError::invalid(format!(
                    "seeding {} failed: {why} (kubectl logs -n {namespace} job/{})",
                    seed.name, job.name
                )))
            }
        }
        let path = manifests::dataset_path(&seed.name);
        let attributes = attrs(json!({ "namespace": namespace, "path": path }));
        Ok(Observed { id: format!("{namespace}/{path}"), attributes, sensitive: vec![] })
    }

    /// Applies a student's cloud credential Secret, its secret values taken from the
    /// resources it depends on (or, when they are not given, as in a retag, as last applied).
    async fn apply_cloud_credential(
        &self,
        spec: &ResourceSpec,
        prior: Option<&Observed>,
        deps: &Deps,
    ) -> Result<Observed, ProviderError> {
        let CloudCredentialConfig { namespace, name, mut values, from } = config(spec)?;
        let known = prior.and_then(|p| p.attributes.get("values"));
        for (key, (address, attribute)) in from {
            let value = match deps.get(&address) {
                Some(dep) => dep.attributes.get(&attribute),
                None => known.and_then(|k| k.get(&key)),
            };
            let value = value.and_then(Value::as_str).ok_or_else(|| {
                ProviderError::invalid(format!(
                    "{address} has no `{attribute}` for the Secret {namespace}/{name}"
                ))
            })?;
            values.insert(key, value.to_owned());
        }
        let id = format!("{namespace}/{name}");
        let applied =
            self.apply(&id, &manifests::cloud_credential(&namespace, &name, &values, &spec.tags)?).await?;
        Ok(observed(&id, &applied, attrs(json!({ "values": values })), &["values"]))
    }

    async fn upsert(
        &self,
        spec: &ResourceSpec,
        prior: Option<&Observed>,
        deps: &Deps,
    ) -> Result<Observed, ProviderError> {
        match spec.kind.as_str() {
            "namespace" => self.apply_namespace(spec).await,
            "addons" => self.apply_addons(spec, prior).await,
            "cloud_credential" => self.apply_cloud_credential(spec, prior, deps).await,
            "dataset" => self.seed(spec).await,
            "credential" => self.apply_credential(spec, prior).await,
            kind => match Service::from_kind(kind) {
                Some(service) => self.apply_service(service, spec).await,
                None => {
                    Err(ProviderError::invalid(format!("the kubernetes provider has no `{kind}` resources")))
                }
            },
        }
    }
}

/// A resource as applied: its id, the objects it is made of (with the fields labctl set,
/// to tell edits made by hand), and its attributes.
fn observed(id: &str, applied: &[Applied], mut attributes: Attributes, sensitive: &[&str]) -> Observed {
    attributes.insert("objects".into(), json!(applied));
    Observed { id: id.to_owned(), attributes, sensitive: sensitive.iter().map(|s| (*s).to_owned()).collect() }
}

/// The objects recorded for a resource, as applied.
fn recorded(prior: &Observed) -> Vec<Applied> {
    prior.attributes.get("objects").and_then(|o| serde_json::from_value(o.clone()).ok()).unwrap_or_default()
}

/// The object a resource stands or falls with: the first it applied (the Namespace, the
/// Secret, the service's own Deployment); for a namespace found by a sweep, its name.
fn primary(kind: &str, prior: &Observed) -> Option<ObjectRef> {
    if kind == "dataset" {
        // Its files are in the student's volume: there while the claim is.
        let namespace = prior.attributes.get("namespace").and_then(Value::as_str)?;
        return Some(manifests::data_claim(namespace));
    }
    let first = recorded(prior).into_iter().next().map(|a| a.object);
    first.or_else(|| (kind == "namespace").then(|| namespace_ref(&prior.id)))
}

fn namespace_ref(name: &str) -> ObjectRef {
    ObjectRef { api_version: "v1".into(), kind: "Namespace".into(), namespace: None, name: name.to_owned() }
}

#[async_trait]
impl Provider for KubernetesProvider {
    fn name(&self) -> &str {
        "kubernetes"
    }

    fn kinds(&self) -> &[KindSchema] {
        KINDS
    }

    /// Gone when its primary object is gone or terminating; any other missing object is an
    /// edit, which an update puts back.
    async fn read(&self, kind: &str, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
        let Some(primary) = primary(kind, prior) else { return Ok(None) };
        let Some(cluster) = self.connection.find().await? else { return Ok(None) };
        let live = objects::get(&cluster.client, &primary).await?;
        Ok(live.filter(|o| o.metadata.deletion_timestamp.is_none()).map(|_| prior.clone()))
    }

    async fn edits(&self, _kind: &str, prior: &Observed) -> Result<Vec<String>, ProviderError> {
        objects::edits(&self.client().await?, &recorded(prior)).await
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Deps) -> Result<Observed, ProviderError> {
        self.upsert(spec, None, deps).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        prior: &Observed,
        deps: &Deps,
    ) -> Result<Observed, ProviderError> {
        self.upsert(spec, Some(prior), deps).await
    }

    /// Gone with its cluster, if that is gone. A dataset's files go with the student's
    /// volume: deleting one alone leaves them there.
    async fn delete(&self, kind: &str, prior: &Observed) -> Result<(), ProviderError> {
        let Some(cluster) = self.connection.find().await? else { return Ok(()) };
        if kind == "dataset" {
            return Ok(());
        }
        let client = &cluster.client;
        if kind == "namespace" {
            // The namespace takes everything in it along; wait until it has.
            let namespace = namespace_ref(&prior.id);
            objects::delete(client, std::slice::from_ref(&namespace)).await?;
            return waits::gone(client, &namespace, self.timeout()).await;
        }
        let objects: Vec<ObjectRef> = recorded(prior).into_iter().map(|a| a.object).collect();
        objects::delete(client, &objects).await
    }

    async fn sweep(&self, lab: &str) -> Result<Vec<Found>, ProviderError> {
        self.namespaces(&format!("{}={lab}", Tags::LAB)).await
    }

    /// Applies the resource's objects again: their labels carry the tags (the pods' do not,
    /// so moving the expiry restarts nothing).
    async fn retag(&self, spec: &ResourceSpec, prior: &Observed) -> Result<Observed, ProviderError> {
        self.upsert(spec, Some(prior), &Deps::new()).await
    }

    async fn labs(&self) -> Result<Vec<String>, ProviderError> {
        let found = self.namespaces(Tags::LAB).await?;
        let labs: std::collections::BTreeSet<String> = found.into_iter().map(|f| f.tags.lab).collect();
        Ok(labs.into_iter().collect())
    }
}

impl KubernetesProvider {
    /// The namespaces `selector` selects that carry labctl's labels.
    async fn namespaces(&self, selector: &str) -> Result<Vec<Found>, ProviderError> {
        use k8s_openapi::api::core::v1::Namespace;
        let Some(cluster) = self.connection.find().await? else { return Ok(vec![]) };
        let namespaces: kube::Api<Namespace> = kube::Api::all(cluster.client.clone());
        let params = kube::api::ListParams::default().labels(selector);
        let list = namespaces.list(&params).await.map_err(|e| errors::failed("listing namespaces", e))?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|n| {
                let labels = n.metadata.labels.unwrap_or_default();
                let tags = Tags::from_pairs(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
                Some(Found { kind: "namespace".into(), id: n.metadata.name?, tags })
            })
            .collect())
    }
}
