//! The objects labctl applies, rendered from the tera templates in `templates/kubernetes/`
//! (built into the binary) and parsed into JSON documents ready for server-side apply.

use std::collections::BTreeMap;

pub(crate) use labctl_provider_api::WorkerService as Service;
use labctl_provider_api::{ports, ProviderError, Tags};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::plugin::{AddonsConfig, NamespaceConfig, SeedConfig, ServiceConfig, VolumeAccess};

const TEMPLATES: [(&str, &str); 13] = [
    ("labels.yaml.tera", include_str!("../../../templates/kubernetes/labels.yaml.tera")),
    ("pod-labels.yaml.tera", include_str!("../../../templates/kubernetes/pod-labels.yaml.tera")),
    ("token-env.yaml.tera", include_str!("../../../templates/kubernetes/token-env.yaml.tera")),
    ("volume.yaml.tera", include_str!("../../../templates/kubernetes/volume.yaml.tera")),
    ("volume-mount.yaml.tera", include_str!("../../../templates/kubernetes/volume-mount.yaml.tera")),
    ("smoke-job.yaml.tera", include_str!("../../../templates/kubernetes/smoke-job.yaml.tera")),
    ("namespace.yaml.tera", include_str!("../../../templates/kubernetes/namespace.yaml.tera")),
    ("credential.yaml.tera", include_str!("../../../templates/kubernetes/credential.yaml.tera")),
    ("workers.yaml.tera", include_str!("../../../templates/kubernetes/workers.yaml.tera")),
    ("kubeconfig.yaml.tera", include_str!("../../../templates/kubernetes/kubeconfig.yaml.tera")),
    ("addons.yaml.tera", include_str!("../../../templates/kubernetes/addons.yaml.tera")),
    ("cloud-credential.yaml.tera", include_str!("../../../templates/kubernetes/cloud-credential.yaml.tera")),
    ("seed-job.yaml.tera", include_str!("../../../templates/kubernetes/seed-job.yaml.tera")),
];

/// The Secret holding the token a student's workers share.
pub(crate) const TOKEN_SECRET: &str = "labctl-worker-token";
/// The Secret the token controller fills with the student's service-account token.
pub(crate) const STUDENT_TOKEN_SECRET: &str = "student-token";

/// The student's shared volume: its claim and where pods that share files mount it.
const DATA_CLAIM: &str = "labctl-data";
const DATA_PATH: &str = "/srv/lab";

/// The student's volume: its claim and where it is mounted.
pub(crate) fn volume() -> Value {
    json!({ "claim": DATA_CLAIM, "path": DATA_PATH })
}

/// The volume as templates mount it; one only a node at a time may mount (`ReadWriteOnce`)
/// keeps every pod using it on one node.
fn data_volume(access: Option<VolumeAccess>) -> Value {
    let mut volume = volume();
    volume["colocate"] = json!(access != Some(VolumeAccess::ReadWriteMany));
    volume
}

/// The student's volume claim in `namespace`.
pub(crate) fn data_claim(namespace: &str) -> ObjectRef {
    ObjectRef {
        api_version: "v1".into(),
        kind: "PersistentVolumeClaim".into(),
        namespace: Some(namespace.to_owned()),
        name: DATA_CLAIM.to_owned(),
    }
}

/// Where dataset `name` is in the student's volume.
pub(crate) fn dataset_path(name: &str) -> String {
    format!("{DATA_PATH}/datasets/{name}")
}

/// The Job that writes a dataset into the student's volume; it may run `deadline_secs`.
pub(crate) fn seed_job(
    config: &SeedConfig,
    tags: &Tags,
    deadline_secs: u64,
) -> Result<Vec<Value>, ProviderError> {
    let spec = serde_json::to_string(&config.dataset).map_err(|e| ProviderError::fatal(e.to_string()))?;
    let context = json!({
        "namespace": config.namespace,
        "dataset": config.name,
        "path": dataset_path(&config.name),
        "image": config.image,
        // A YAML string: JSON's quoting is YAML's.
        "spec": serde_json::to_string(&spec).unwrap_or_default(),
        "deadline": deadline_secs,
        "volume": data_volume(Some(config.storage_access)),
    });
    render("seed-job.yaml.tera", &with_labels(&context, tags))
}

/// One object of a rendered manifest, by identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    /// How messages name the object: `deployment ada/mapreduce`.
    pub fn describe(&self) -> String {
        let kind = self.kind.to_lowercase();
        match &self.namespace {
            Some(ns) => format!("{kind} {ns}/{}", self.name),
            None => format!("{kind} {}", self.name),
        }
    }

    /// The identity of a rendered document.
    pub fn of(doc: &Value) -> Result<Self, ProviderError> {
        let field = |path: &[&str]| {
            path.iter().try_fold(doc, |v, k| v.get(k)).and_then(Value::as_str).map(str::to_owned)
        };
        Ok(Self {
            api_version: field(&["apiVersion"])
                .ok_or_else(|| ProviderError::fatal("a manifest without apiVersion"))?,
            kind: field(&["kind"]).ok_or_else(|| ProviderError::fatal("a manifest without kind"))?,
            namespace: field(&["metadata", "namespace"]),
            name: field(&["metadata", "name"])
                .ok_or_else(|| ProviderError::fatal("a manifest without metadata.name"))?,
        })
    }
}

/// The labels every object of a student carries.
pub(crate) fn labels(tags: &Tags) -> BTreeMap<&'static str, String> {
    tags.pairs().into_iter().collect()
}

/// The templates, parsed once.
fn templates() -> Result<&'static tera::Tera, ProviderError> {
    static TERA: std::sync::LazyLock<Result<tera::Tera, String>> = std::sync::LazyLock::new(|| {
        let mut tera = tera::Tera::default();
        tera.add_raw_templates(TEMPLATES).map(|()| tera).map_err(|e| format!("kubernetes templates: {e:?}"))
    });
    TERA.as_ref().map_err(|e| ProviderError::fatal(e.clone()))
}

/// Renders `template` with `context` into its YAML text.
pub(crate) fn render_text(template: &str, context: &Value) -> Result<String, ProviderError> {
    let tera = templates()?;
    let context = tera::Context::from_value(context.clone())
        .map_err(|e| ProviderError::fatal(format!("{template}: {e}")))?;
    tera.render(template, &context).map_err(|e| ProviderError::fatal(format!("rendering {template}: {e:?}")))
}

/// Renders `template` and parses its documents.
pub(crate) fn render(template: &str, context: &Value) -> Result<Vec<Value>, ProviderError> {
    let text = render_text(template, context)?;
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .map_err(|e| ProviderError::fatal(format!("{template} rendered invalid YAML: {e}")))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// The student's namespace: the Namespace, its quota and limits, their volume, the
/// student's service account with a role bound to it, a token for it, and the network
/// policy.
pub(crate) fn namespace(config: &NamespaceConfig, tags: &Tags) -> Result<Vec<Value>, ProviderError> {
    let mut context = with_labels(&json!(config), tags);
    context["volume"] = volume();
    render("namespace.yaml.tera", &context)
}

/// What labctl installs on a cluster it makes: the GPU device plugin, the default class.
pub(crate) fn addons(config: &AddonsConfig, tags: &Tags) -> Result<Vec<Value>, ProviderError> {
    render("addons.yaml.tera", &with_labels(&json!(config), tags))
}

/// The Secret with a student's cloud credential, `values` by variable name.
pub(crate) fn cloud_credential(
    namespace: &str,
    name: &str,
    values: &BTreeMap<String, String>,
    tags: &Tags,
) -> Result<Vec<Value>, ProviderError> {
    let base64 =
        |v: &String| serde_json::to_value(k8s_openapi::ByteString(v.as_bytes().to_vec())).unwrap_or_default();
    let data: BTreeMap<&String, Value> = values.iter().map(|(k, v)| (k, base64(v))).collect();
    let context = json!({ "namespace": namespace, "name": name, "data": data });
    render("cloud-credential.yaml.tera", &with_labels(&context, tags))
}

/// The Secret with the workers' shared token.
pub(crate) fn credential(namespace: &str, token: &str, tags: &Tags) -> Result<Vec<Value>, ProviderError> {
    let token_base64 =
        serde_json::to_value(k8s_openapi::ByteString(token.as_bytes().to_vec())).unwrap_or_default();
    let context =
        json!({ "namespace": namespace, "token_secret": TOKEN_SECRET, "token_base64": token_base64 });
    render("credential.yaml.tera", &with_labels(&context, tags))
}

/// What `workers.yaml.tera` needs to render `service` with its resource's `config`.
fn workers_context(service: Service, config: &ServiceConfig) -> Value {
    let listen = |port: u16| format!("0.0.0.0:{port}");
    let head = head_address(service);
    let (head_args, head_ports, mut worker_args) = match service {
        Service::MapReduce => (
            vec!["coordinator".to_owned(), "--listen".into(), listen(ports::MAPREDUCE)],
            json!([{ "name": "rpc", "port": ports::MAPREDUCE }]),
            vec!["worker".to_owned(), "--coordinator".into(), head],
        ),
        Service::Scheduler => (
            vec![
                "scheduler".to_owned(),
                "--listen".into(),
                listen(ports::SCHEDULER),
                "--http".into(),
                listen(ports::SCHEDULER_HTTP),
            ],
            json!([{ "name": "rpc", "port": ports::SCHEDULER }, { "name": "http", "port": ports::SCHEDULER_HTTP }]),
            vec![
                "worker".to_owned(),
                "--scheduler".into(),
                head,
                "--slots".into(),
                config.slots.unwrap_or(1).to_string(),
            ],
        ),
    };
    if let Some(gpus) = config.gpu.as_ref().map(|g| g.count) {
        // The scheduler places GPU tasks by what each worker says it has.
        worker_args.extend(["--gpus".to_owned(), gpus.to_string()]);
    }
    let mut context = service_context(service, config);
    context["head"] =
        json!({ "args": head_args, "ports": head_ports, "cpu": config.cpu, "memory": config.memory });
    context["workers"] = json!({
        "replicas": config.workers, "args": worker_args, "cpu": config.cpu, "memory": config.memory,
    });
    context["gpu"] = json!(config.gpu);
    context
}

/// What every template running `service`'s binary needs, from its resource's `config`:
/// where, which image and binary, the token, the volume.
fn service_context(service: Service, config: &ServiceConfig) -> Value {
    json!({
        "namespace": config.namespace,
        "image": config.image,
        "service": service.name(),
        "binary": service.binary(),
        "token_env": service.token_env(),
        "token_secret": TOKEN_SECRET,
        "volume": shares_files(service).then(|| data_volume(config.storage_access)),
        "env_from": config.env_from,
    })
}

/// Where pods in the namespace reach `service`: its Service's name and port.
fn head_address(service: Service) -> String {
    format!("{}:{}", service.name(), service.port())
}

/// Whether a service's pods share files: the MapReduce coordinator and workers read inputs
/// and hand intermediate files over through the student's volume.
fn shares_files(service: Service) -> bool {
    service == Service::MapReduce
}

/// The name of the smoke workload that proves `service` works.
pub(crate) fn smoke_check(service: Service) -> &'static str {
    match service {
        Service::MapReduce => "wordcount",
        Service::Scheduler => "hpsearch",
    }
}

/// The arguments of run `run` of `service`'s smoke workload (the word count works in a
/// directory of its own on the student's volume).
fn smoke_args(service: Service, run: &str) -> Vec<String> {
    let head = head_address(service);
    match service {
        Service::MapReduce => vec![
            "smoke".into(),
            "--coordinator".into(),
            head,
            "--dir".into(),
            format!("{DATA_PATH}/smoke/{run}"),
        ],
        Service::Scheduler => vec![
            "hpsearch".into(),
            "--scheduler".into(),
            head,
            "--epochs".into(),
            "30".into(),
            "--check".into(),
        ],
    }
}

/// The Job that runs `service`'s smoke workload in its namespace (run `run`, a short
/// unique suffix), given the service's resource `config`; it may run `deadline_secs`.
pub(crate) fn smoke_job(
    service: Service,
    run: &str,
    config: &ServiceConfig,
    tags: &Tags,
    deadline_secs: u64,
) -> Result<Vec<Value>, ProviderError> {
    let mut context = service_context(service, config);
    for (key, value) in [
        ("check", json!(smoke_check(service))),
        ("run", json!(run)),
        ("args", json!(smoke_args(service, run))),
        ("deadline", json!(deadline_secs)),
        ("cpu", json!(config.cpu)),
        ("memory", json!(config.memory)),
    ] {
        context[key] = value;
    }
    render("smoke-job.yaml.tera", &with_labels(&context, tags))
}

/// A service's Deployments and Service.
pub(crate) fn workers(
    service: Service,
    config: &ServiceConfig,
    tags: &Tags,
) -> Result<Vec<Value>, ProviderError> {
    render("workers.yaml.tera", &with_labels(&workers_context(service, config), tags))
}

/// What a student's kubeconfig needs.
#[derive(Debug, Serialize)]
pub(crate) struct StudentKubeconfig<'a> {
    pub cluster: &'a str,
    pub server: &'a str,
    pub ca: Option<&'a str>,
    pub student: &'a str,
    pub namespace: &'a str,
    pub token: &'a str,
}

/// A kubeconfig that opens the student's namespace with their service account's token.
pub(crate) fn student_kubeconfig(k: &StudentKubeconfig) -> Result<String, ProviderError> {
    render_text("kubeconfig.yaml.tera", &json!(k))
}

fn with_labels(context: &Value, tags: &Tags) -> Value {
    let mut context = context.clone();
    context["labels"] = json!(labels(tags));
    // A pod template's labels roll its pods when they change: the expiry stays off them.
    context["pod_labels"] = json!(labels(&Tags { expires: None, ..tags.clone() }));
    context["lab"] = json!(tags.lab);
    context["student"] = json!(tags.student);
    context
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::{
        apps::v1 as apps, batch::v1 as batch, core::v1 as core, networking::v1 as net, rbac::v1 as rbac,
    };

    use super::*;
    use crate::plugin::{GpuPlacement, LimitsConfig, QuotaConfig, StorageConfig};

    fn tags(student: &str) -> Tags {
        Tags { cohort: Some("tuesday".into()), student: Some(student.into()), ..Tags::lab("bigdata", None) }
    }

    fn namespace_config(student: &str, gpu: u32) -> NamespaceConfig {
        NamespaceConfig {
            namespace: format!("bigdata-{student}"),
            quota: QuotaConfig { cpu: "4".into(), memory: "8Gi".into(), pods: 20, gpu },
            limits: LimitsConfig {
                default_cpu: "250m".into(),
                default_memory: "256Mi".into(),
                max_cpu: "2".into(),
                max_memory: "4Gi".into(),
            },
            storage: StorageConfig {
                size: "2Gi".into(),
                class: Some("nfs".into()),
                access: VolumeAccess::ReadWriteMany,
            },
        }
    }

    fn scheduler_config(student: &str, gpu: bool) -> ServiceConfig {
        ServiceConfig {
            student: student.into(),
            workers: 2,
            slots: Some(2),
            version: "0.1.0".into(),
            namespace: format!("bigdata-{student}"),
            image: Some("ghcr.io/labctl/workers:0.1.0".into()),
            cpu: "500m".into(),
            memory: "512Mi".into(),
            storage_access: None,
            env_from: None,
            gpu: gpu.then(|| GpuPlacement {
                count: 1,
                node_selector: [("labctl/pool".to_owned(), "gpu".to_owned())].into(),
            }),
        }
    }

    /// Every document, parsed into its typed object and serialised again, is unchanged: a
    /// misspelt or misplaced field would be dropped on the way and fail this.
    fn assert_round_trips(docs: &[Value]) {
        fn check<T: serde::de::DeserializeOwned + Serialize>(doc: &Value) {
            let typed: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{e}: {doc:#}"));
            assert_eq!(&serde_json::to_value(typed).unwrap(), doc);
        }
        for doc in docs {
            match doc["kind"].as_str().unwrap() {
                "Namespace" => check::<core::Namespace>(doc),
                "ResourceQuota" => check::<core::ResourceQuota>(doc),
                "LimitRange" => check::<core::LimitRange>(doc),
                "ServiceAccount" => check::<core::ServiceAccount>(doc),
                "Secret" => check::<core::Secret>(doc),
                "Service" => check::<core::Service>(doc),
                "Role" => check::<rbac::Role>(doc),
                "RoleBinding" => check::<rbac::RoleBinding>(doc),
                "NetworkPolicy" => check::<net::NetworkPolicy>(doc),
                "Deployment" => check::<apps::Deployment>(doc),
                "PersistentVolumeClaim" => check::<core::PersistentVolumeClaim>(doc),
                "Job" => check::<batch::Job>(doc),
                other => panic!("no typed check for {other}"),
            }
        }
    }

    fn snapshot(docs: &[Value]) -> String {
        docs.iter().map(|d| serde_json::to_string_pretty(d).unwrap()).collect::<Vec<_>>().join("\n---\n")
    }

    #[test]
    fn cpu_student() {
        let mut docs = namespace(&namespace_config("ada", 0), &tags("ada")).unwrap();
        docs.extend(credential("bigdata-ada", "t0ken", &tags("ada")).unwrap());
        docs.extend(workers(Service::MapReduce, &scheduler_config("ada", false), &tags("ada")).unwrap());
        docs.extend(workers(Service::Scheduler, &scheduler_config("ada", false), &tags("ada")).unwrap());
        for service in [Service::MapReduce, Service::Scheduler] {
            docs.extend(
                smoke_job(service, "r1", &scheduler_config("ada", false), &tags("ada"), 300).unwrap(),
            );
        }
        assert_round_trips(&docs);
        insta::assert_snapshot!(snapshot(&docs));
    }

    #[test]
    fn gpu_student() {
        let mut docs = namespace(&namespace_config("grace", 2), &tags("grace")).unwrap();
        docs.extend(workers(Service::Scheduler, &scheduler_config("grace", true), &tags("grace")).unwrap());
        assert_round_trips(&docs);
        let workers = docs.iter().find(|d| d["metadata"]["name"] == "scheduler-workers").unwrap();
        let pod = &workers["spec"]["template"]["spec"];
        assert_eq!(pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"], "1");
        assert_eq!(pod["nodeSelector"]["labctl/pool"], "gpu");
        assert_eq!(pod["tolerations"][0]["key"], "nvidia.com/gpu");
        insta::assert_snapshot!(snapshot(&docs));
    }

    #[test]
    fn pods_get_the_cloud_credential_as_environment_when_the_lab_gives_one() {
        let config =
            ServiceConfig { env_from: Some("aws-credentials".into()), ..scheduler_config("ada", false) };
        let docs = workers(Service::MapReduce, &config, &tags("ada")).unwrap();
        assert_round_trips(&docs);
        let containers = |docs: &[Value]| -> Vec<Value> {
            let deployments = docs.iter().filter(|d| d["kind"] == "Deployment");
            deployments.map(|d| d["spec"]["template"]["spec"]["containers"][0].clone()).collect()
        };
        let given = containers(&docs);
        assert_eq!(given.len(), 2, "the coordinator and the workers");
        for container in given {
            assert_eq!(container["envFrom"][0]["secretRef"]["name"], "aws-credentials");
        }
        let plain = workers(Service::MapReduce, &scheduler_config("ada", false), &tags("ada")).unwrap();
        assert!(containers(&plain).iter().all(|c| c.get("envFrom").is_none()));
    }

    #[test]
    fn student_kubeconfig_parses() {
        let text = student_kubeconfig(&StudentKubeconfig {
            cluster: "prod",
            server: "https://k8s.example:6443",
            ca: Some("Q0E="),
            student: "ada",
            namespace: "bigdata-ada",
            token: "abc",
        })
        .unwrap();
        let parsed: kube::config::Kubeconfig = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(parsed.current_context.as_deref(), Some("prod-ada"));
        assert_eq!(parsed.contexts[0].context.as_ref().unwrap().namespace.as_deref(), Some("bigdata-ada"));
        assert_eq!(parsed.auth_infos[0].name, "ada");
        let raw: Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(raw["users"][0]["user"]["token"], "abc");
    }
}
