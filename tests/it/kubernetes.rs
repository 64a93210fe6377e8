//! The Kubernetes provider end to end: the `labctl` binary through an ordinary kubeconfig
//! on the test cluster (`testing/cluster`: the upstream control plane and kubelets running
//! real containers), which `scripts/test.sh` builds and names in `LABCTL_TEST_CLUSTER_BIN`.
//! With `LABCTL_TEST_KUBECONFIG` set, the same tests run on that cluster instead
//! (`.github/workflows/kubernetes-kind.yml` does so on kind); with neither they fail, saying
//! how to get a cluster. What exists is checked by listing through the Kubernetes API, never
//! through labctl itself.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, ResourceQuota};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::json;
use std::path::Path;

use crate::conformance::{conformance, Drift, World};
use crate::support::*;

/// A cluster for one test: the test cluster (`testing/cluster`, the upstream control plane
/// and kubelets; started once for this test binary) when `LABCTL_TEST_CLUSTER_BIN` names its
/// binaries, or the cluster `LABCTL_TEST_KUBECONFIG` names; one test at a time on it.
pub(crate) struct Cluster {
    pub kubeconfig: String,
    /// The workers' image the lab names, where not the example's.
    pub image: Option<String>,
    runtime: tokio::runtime::Runtime,
    pub client: kube::Client,
    /// This test's turn on the shared cluster.
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Cluster {
    pub fn start() -> Self {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (kubeconfig, image) = if let Ok(path) = std::env::var("LABCTL_TEST_KUBECONFIG") {
            (std::fs::read_to_string(&path).unwrap(), std::env::var("LABCTL_TEST_KUBE_IMAGE").ok())
        } else if let Ok(bin) = std::env::var("LABCTL_TEST_CLUSTER_BIN") {
            (test_cluster(Path::new(&bin)), Some(TEST_CLUSTER_IMAGE.to_owned()))
        } else {
            panic!(
                "the Kubernetes tests need a cluster: run them through scripts/test.sh, which builds \
                 testing/cluster and names it in LABCTL_TEST_CLUSTER_BIN, or name a cluster's \
                 kubeconfig in LABCTL_TEST_KUBECONFIG"
            )
        };
        static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let client = runtime.block_on(async {
            let parsed = kube::config::Kubeconfig::from_yaml(&kubeconfig).unwrap();
            let config = kube::Config::from_custom_kubeconfig(parsed, &Default::default()).await.unwrap();
            kube::Client::try_from(config).unwrap()
        });
        let cluster = Self { kubeconfig, image, runtime, client, _turn: turn };
        cluster.sweep(std::env::var_os("LABCTL_TEST_KUBECONFIG").is_none());
        cluster
    }

    /// Clears what an earlier test on this shared cluster left behind when it failed midway:
    /// the refusal policy, and every namespace labctl labelled (with `every_namespace`, on the
    /// test cluster this binary owns, every namespace but the cluster's own); waits until the
    /// namespaces are gone, so that each test starts on an empty cluster.
    fn sweep(&self, every_namespace: bool) {
        let (policy, binding) = refusal_policy();
        for resource in [binding, policy] {
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
            match self.block_on(api.delete(REFUSE_PODS, &DeleteParams::default())) {
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                result => drop(result.unwrap()),
            }
        }
        // What labctl installs cluster-wide on a cluster the lab makes.
        use k8s_openapi::api::{apps::v1::DaemonSet, storage::v1::StorageClass};
        let labelled = ListParams::default().labels("labctl/lab");
        let daemon_sets = Api::<DaemonSet>::namespaced(self.client.clone(), "kube-system");
        self.block_on(daemon_sets.delete_collection(&DeleteParams::default(), &labelled)).unwrap();
        let classes = Api::<StorageClass>::all(self.client.clone());
        self.block_on(classes.delete_collection(&DeleteParams::default(), &labelled)).unwrap();
        let namespaces = Api::<Namespace>::all(self.client.clone());
        let params =
            if every_namespace { ListParams::default() } else { ListParams::default().labels("labctl/lab") };
        let left = || -> Vec<String> {
            let listed = self.block_on(namespaces.list(&params)).unwrap();
            listed
                .items
                .into_iter()
                .filter_map(|n| n.metadata.name)
                .filter(|n| n != "default" && !n.starts_with("kube-"))
                .collect()
        };
        let start = std::time::Instant::now();
        loop {
            let names = left();
            if names.is_empty() {
                return;
            }
            for name in &names {
                // (404 and 409: gone, or already on its way out.)
                match self.block_on(namespaces.delete(name, &DeleteParams::default())) {
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    result => drop(result.unwrap()),
                }
            }
            assert!(
                start.elapsed().as_secs() < 180,
                "namespaces left by earlier tests still there: {names:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Every object carrying `lab`'s label, as `kind namespace/name` lines, sorted.
    pub fn labelled(&self, lab: &str) -> Vec<String> {
        self.selected(&format!("labctl/lab={lab}"))
    }

    /// The namespaces and namespaced objects `selector` selects, as `Kind ns/name` lines.
    pub fn selected(&self, selector: &str) -> Vec<String> {
        let params = ListParams::default().labels(selector);
        let mut found = vec![];
        let namespaces = self.block_on(Api::<Namespace>::all(self.client.clone()).list(&params)).unwrap();
        found.extend(
            namespaces.items.iter().map(|n| format!("Namespace {}", n.metadata.name.clone().unwrap())),
        );
        for kind in labelled_kinds() {
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &kind);
            for o in self.block_on(api.list(&params)).unwrap().items {
                found.push(format!(
                    "{} {}/{}",
                    kind.kind,
                    o.metadata.namespace.unwrap_or_default(),
                    o.metadata.name.unwrap_or_default()
                ));
            }
        }
        found.sort();
        found
    }

    pub fn deployment(&self, namespace: &str, name: &str) -> Option<Deployment> {
        self.block_on(Api::<Deployment>::namespaced(self.client.clone(), namespace).get_opt(name)).unwrap()
    }

    /// Waits until Deployment `namespace/name` has rolled out its latest template: every
    /// replica updated and available, none of the old ones left.
    pub fn rolled_out(&self, namespace: &str, name: &str) {
        let start = std::time::Instant::now();
        loop {
            let d = self.deployment(namespace, name).unwrap();
            let (generation, status) = (d.metadata.generation, d.status.unwrap_or_default());
            let want = d.spec.and_then(|s| s.replicas).unwrap_or(1);
            if status.observed_generation >= generation
                && status.updated_replicas == Some(want)
                && status.available_replicas == Some(want)
                && status.replicas == Some(want)
            {
                return;
            }
            assert!(
                start.elapsed().as_secs() < 120,
                "{namespace}/{name} not rolled out after 120 s: {status:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }

    /// Has the API server refuse every pod in `namespace` (a ValidatingAdmissionPolicy), so
    /// that its Deployments never become ready.
    pub fn refuse_pods_in(&self, namespace: &str) {
        let (policy, binding) = refusal_policy();
        let objects = [
            json!({
                "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
                "metadata": { "name": REFUSE_PODS },
                "spec": {
                    "failurePolicy": "Fail",
                    "matchConstraints": { "resourceRules": [{ "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"] }] },
                    "validations": [{ "expression": "false", "message": "pods are held back by the test" }],
                },
            }),
            json!({
                "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
                "metadata": { "name": REFUSE_PODS },
                "spec": {
                    "policyName": REFUSE_PODS,
                    "validationActions": ["Deny"],
                    "matchResources": { "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": namespace } } },
                },
            }),
        ];
        for (resource, object) in [policy, binding].iter().zip(objects) {
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), resource);
            let object: DynamicObject = serde_json::from_value(object).unwrap();
            self.block_on(api.create(&Default::default(), &object)).unwrap();
        }
        // Policies take effect once the API server has read them.
        std::thread::sleep(std::time::Duration::from_secs(2));
    }

    /// Undoes [`Cluster::refuse_pods_in`].
    pub fn allow_pods_again(&self) {
        let (policy, binding) = refusal_policy();
        for resource in [binding, policy] {
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
            self.block_on(api.delete(REFUSE_PODS, &DeleteParams::default())).unwrap();
        }
    }

    /// The nodes the pods of `component` (e.g. `scheduler-workers`) in `namespace` run on,
    /// sorted, leaving out pods on their way out.
    pub fn pod_nodes(&self, namespace: &str, component: &str) -> Vec<String> {
        let params = ListParams::default().labels(&format!("labctl/component={component}"));
        let pods =
            self.block_on(Api::<Pod>::namespaced(self.client.clone(), namespace).list(&params)).unwrap();
        let mut nodes: Vec<String> = pods
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.spec?.node_name)
            .collect();
        nodes.sort();
        nodes
    }

    /// A scratch directory with this cluster's kubeconfig and `lab` (its provider block
    /// pointed at that kubeconfig) as `lab.toml`.
    pub fn env(&self, lab: &str) -> Env {
        let env = Env::new();
        env.write("kubeconfig.yaml", &self.kubeconfig);
        let mut lab = lab.replace(
            "# kubeconfig = \"~/.kube/config\"",
            &format!("kubeconfig = \"{}\"", env.path("kubeconfig.yaml").display()),
        );
        if let Some(image) = &self.image {
            lab = lab.replace("image = \"ghcr.io/labctl/workers:0.1.0\"", &format!("image = \"{image}\""));
        }
        // Small enough for five students on one CI node.
        // (The workers' `cpu` and the limit range's default; its maximum stays.)
        lab = lab
            .replace(" cpu = \"250m\"", " cpu = \"20m\"")
            .replace(" cpu = \"500m\"", " cpu = \"20m\"")
            .replace("default_cpu = \"250m\"", "default_cpu = \"20m\"");
        assert!(lab.contains("kubeconfig.yaml"), "the lab has the commented kubeconfig line");
        env.write("lab.toml", &lab);
        env
    }
}

/// The Kubernetes provider in the conformance suite: its example lab on a cluster of its own.
struct Kube(Cluster);

impl World for Kube {
    const LAB: &'static str = "bigdata-k8s";
    const KILLS: usize = 4;
    const LEFT_BEHIND: &'static str = "kubernetes namespace `bigdata-k8s-ada`";

    fn env(&self) -> Env {
        self.0.env(&example())
    }

    /// What carries the lab's label, except pods: their controllers name them.
    fn inventory(&self, _env: &Env) -> Vec<String> {
        self.0.labelled(Self::LAB).into_iter().filter(|l| !l.starts_with("Pod ")).collect()
    }

    fn delete_by_hand(&self, _env: &Env) -> Drift {
        let deployments = Api::<Deployment>::namespaced(self.0.client.clone(), "bigdata-k8s-alan");
        self.0.block_on(deployments.delete("mapreduce-workers", &DeleteParams::default())).unwrap();
        Drift {
            address: "student[\"alan\"].mapreduce",
            plan_shows: &["changed outside labctl: deployment bigdata-k8s-alan/mapreduce-workers: deleted"],
        }
    }
}

conformance!(Kube(Cluster::start()));

/// The name of [`Cluster::refuse_pods_in`]'s policy and binding.
const REFUSE_PODS: &str = "labctl-test-refuse-pods";

fn refusal_policy() -> (kube::api::ApiResource, kube::api::ApiResource) {
    let gvk = |kind: &str| {
        kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            kind,
        ))
    };
    (gvk("ValidatingAdmissionPolicy"), gvk("ValidatingAdmissionPolicyBinding"))
}

/// The kinds of object labctl labels in a student's namespace, and those its controllers
/// make from them (pods, Jobs' pods): what [`Cluster::labelled`] lists.
fn labelled_kinds() -> Vec<kube::api::ApiResource> {
    use k8s_openapi::api::{batch::v1 as batch, core::v1 as core, networking::v1 as net, rbac::v1 as rbac};
    use kube::api::ApiResource;
    vec![
        ApiResource::erase::<Deployment>(&()),
        ApiResource::erase::<batch::Job>(&()),
        ApiResource::erase::<Pod>(&()),
        ApiResource::erase::<core::Secret>(&()),
        ApiResource::erase::<core::ConfigMap>(&()),
        ApiResource::erase::<core::PersistentVolumeClaim>(&()),
        ApiResource::erase::<core::Service>(&()),
        ApiResource::erase::<core::ServiceAccount>(&()),
        ApiResource::erase::<ResourceQuota>(&()),
        ApiResource::erase::<core::LimitRange>(&()),
        ApiResource::erase::<rbac::Role>(&()),
        ApiResource::erase::<rbac::RoleBinding>(&()),
        ApiResource::erase::<net::NetworkPolicy>(&()),
        // What labctl installs on a cluster the lab makes (EKS).
        ApiResource::erase::<k8s_openapi::api::apps::v1::DaemonSet>(&()),
        ApiResource::erase::<k8s_openapi::api::storage::v1::StorageClass>(&()),
    ]
}

/// The workers' image as the test cluster knows it (built from the workers next to labctl).
const TEST_CLUSTER_IMAGE: &str = "labctl.test/workers:dev";

/// The test cluster of this test binary, started on first use from the binaries in `bin`
/// and stopped when the binary exits; its admin kubeconfig.
fn test_cluster(bin: &Path) -> String {
    use labctl_test_cluster::{Cluster, Image};
    static CLUSTER: std::sync::Mutex<Option<Cluster>> = std::sync::Mutex::new(None);
    static STARTED: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    extern "C" fn stop() {
        drop(CLUSTER.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
    let started = STARTED.get_or_init(|| {
        let workers = worker_bin_dir();
        let image = Image {
            name: TEST_CLUSTER_IMAGE.into(),
            files: ["lab-mapreduce", "lab-scheduler"]
                .iter()
                .map(|b| (workers.join(b), format!("/usr/local/bin/{b}")))
                .collect(),
            entrypoint: vec![],
        };
        // No GPU here: a stand-in of the NVIDIA device plugin's name (it only idles) keeps
        // the DaemonSet labctl installs on EKS running, so that where it runs can be checked.
        let device_plugin = Image {
            name: labctl_provider_kubernetes::DEVICE_PLUGIN_IMAGE.into(),
            files: vec![(bin.join("pause"), "/pause".into())],
            entrypoint: vec!["/pause".into()],
        };
        let cluster = Cluster::start(bin, &[image, device_plugin]).map_err(|e| e.to_string())?;
        eprintln!("test cluster up in {:.1}s", cluster.started_in().as_secs_f64());
        let kubeconfig = cluster.kubeconfig().to_owned();
        *CLUSTER.lock().unwrap_or_else(|e| e.into_inner()) = Some(cluster);
        // SAFETY: registers a plain function to run at process exit.
        unsafe { libc::atexit(stop) };
        Ok(kubeconfig)
    });
    started.clone().unwrap_or_else(|e| panic!("the test cluster did not start: {e}"))
}

fn example() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/kubernetes.toml")).unwrap()
}

/// Two students with a MapReduce each; workers must be ready within `timeout` seconds.
fn small_lab(timeout: u32) -> String {
    format!(
        r#"
[lab]
name = "k8slab"

[provider.kubernetes]
# kubeconfig = "~/.kube/config"
image = "ghcr.io/labctl/workers:0.1.0"
ready_timeout = {timeout}

[[cohort]]
name = "c1"
students = [{{ id = "ann" }}, {{ id = "bob" }}]

[student]
workers = {{ mapreduce = {{ workers = 2 }} }}
"#
    )
}

#[test]
fn kubernetes_example_applies_replans_clean_and_destroys_without_leftovers() {
    let cluster = Cluster::start();
    let env = cluster.env(&example());
    let lab = "bigdata-k8s";

    let plan = env.run(&["plan", "lab.toml"]).ok();
    assert!(plan.stdout.contains("student[\"barbara\"].scheduler"), "{}", plan.stdout);
    let applied = env.run(&["apply", "lab.toml", "--yes"]).ok();
    // The smoke jobs ran in every namespace, against its workers, and passed.
    assert!(applied.stdout.contains("5 students, 10 of 10 checks passed."), "{}", applied.stdout);

    let found = cluster.labelled(lab);
    let count = |kind: &str| found.iter().filter(|l| l.starts_with(&format!("{kind} "))).count();
    assert_eq!(count("Namespace"), 5, "{found:#?}");
    assert_eq!(count("Deployment"), 5 * 4, "coordinator, scheduler and their workers: {found:#?}");
    assert_eq!(count("Service"), 5 * 2, "{found:#?}");
    assert_eq!(count("Secret"), 5 * 2, "worker token and service-account token: {found:#?}");
    assert_eq!(count("Job"), 0, "passed smoke jobs are deleted: {found:#?}");
    for kind in [
        "ServiceAccount",
        "ResourceQuota",
        "LimitRange",
        "Role",
        "RoleBinding",
        "NetworkPolicy",
        "PersistentVolumeClaim",
    ] {
        assert_eq!(count(kind), 5, "{kind}: {found:#?}");
    }

    // Barbara's scheduler workers (cohort `research`) get a GPU each on the GPU pool; Ada's none.
    let workers = |student: &str| {
        cluster
            .deployment(&format!("{lab}-{student}"), "scheduler-workers")
            .unwrap()
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
    };
    let gpu = workers("barbara");
    let limits = gpu.containers[0].resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["nvidia.com/gpu"].0, "1");
    assert_eq!(gpu.node_selector.unwrap()["labctl/pool"], "gpu");
    assert_eq!(gpu.tolerations.unwrap()[0].key.as_deref(), Some("nvidia.com/gpu"));
    let cpu = workers("ada");
    assert!(!cpu.containers[0]
        .resources
        .as_ref()
        .unwrap()
        .limits
        .as_ref()
        .unwrap()
        .contains_key("nvidia.com/gpu"));
    assert!(cpu.node_selector.is_none() && cpu.tolerations.is_none());
    let quota = |student: &str| {
        let ns = format!("{lab}-{student}");
        let q = cluster
            .block_on(Api::<ResourceQuota>::namespaced(cluster.client.clone(), &ns).get("labctl-quota"))
            .unwrap();
        q.spec.unwrap().hard.unwrap()["requests.nvidia.com/gpu"].0.clone()
    };
    assert_eq!((quota("barbara"), quota("ada")), ("2".to_owned(), "0".to_owned()));
    // Placed by the scheduler: Barbara's GPU workers on the GPU pool, nothing else.
    let gpu_node = labctl_test_cluster::GPU_NODE;
    assert_eq!(cluster.pod_nodes(&format!("{lab}-barbara"), "scheduler-workers"), vec![gpu_node; 2]);
    for student in ["ada", "alan", "grace", "edsger", "barbara"] {
        for component in ["mapreduce", "mapreduce-workers", "scheduler"] {
            let nodes = cluster.pod_nodes(&format!("{lab}-{student}"), component);
            assert!(
                !nodes.is_empty() && !nodes.iter().any(|n| n == gpu_node),
                "{student} {component}: {nodes:?}"
            );
        }
    }

    // Each student's handout carries a kubeconfig for their own namespace.
    env.run(&["output", "lab.toml", "--handout", "handouts"]).ok();
    let handout = std::fs::read_to_string(env.path("handouts/grace.md")).unwrap();
    assert!(handout.contains("namespace: bigdata-k8s-grace"), "{handout}");
    assert!(handout.contains("token: "), "{handout}");
    assert!(handout.contains("kubectl port-forward service/mapreduce 7070:7070"), "{handout}");
    assert!(handout.contains("share the volume `labctl-data`, mounted at\n`/srv/lab`"), "{handout}");

    let again = env.run(&["plan", "lab.toml"]).ok();
    assert!(again.stdout.contains("No changes"), "re-plan after apply:\n{}", again.stdout);

    // Moving the expiry relabels every object in place and rolls no pod; `reap` reads it.
    let generation = |student: &str| {
        cluster.deployment(&format!("{lab}-{student}"), "scheduler").unwrap().metadata.generation
    };
    let before = generation("ada");
    let text = std::fs::read_to_string(env.path("lab.toml")).unwrap();
    env.write("lab.toml", &text.replacen("[lab]", "[lab]\nexpires = 2031-06-30T17:00:00Z", 1));
    env.run(&["apply", "lab.toml", "--yes", "--no-verify"]).ok();
    // Every object but the pods, whose labels come from the unchanged pod templates.
    let objects: Vec<String> = cluster.labelled(lab).into_iter().filter(|o| !o.starts_with("Pod ")).collect();
    let moved = cluster.selected(&format!("labctl/lab={lab},labctl/expires=20310630t170000z"));
    assert_eq!(moved, objects, "every object carries the new expiry");
    assert_eq!(generation("ada"), before, "the pod template did not change");
    let listed = env.run(&["reap", "lab.toml"]).ok();
    assert!(
        listed
            .stdout
            .contains(&format!("  {lab} on kubernetes: expires at 2031-06-30T17:00:00Z, 5 resources")),
        "{}",
        listed.stdout
    );

    env.run(&["destroy", "lab.toml", "--yes"]).ok();
    assert_eq!(cluster.labelled(lab), Vec::<String>::new());
}

#[test]
fn a_ready_timeout_longer_than_an_operation_may_take_is_refused_before_anything_is_made() {
    let cluster = Cluster::start();
    let env = cluster.env(&small_lab(600));
    let refused = env.run(&["apply", "lab.toml", "--yes"]);
    assert_eq!(refused.code, 2, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("ready_timeout is 600 s, but an operation may take 600 s (--timeout)"),
        "{}",
        refused.stderr
    );
    assert_eq!(cluster.labelled("k8slab"), Vec::<String>::new());
    env.run(&["apply", "lab.toml", "--yes", "--timeout", "601"]).ok();
    assert_eq!(env.run(&["destroy", "lab.toml", "--yes"]).code, 2);
    env.run(&["destroy", "lab.toml", "--yes", "--timeout", "900"]).ok();
}

#[test]
fn a_failing_smoke_job_fails_that_students_check_with_its_last_words() {
    let cluster = Cluster::start();
    let env = cluster.env(&small_lab(60).replace("[student]\n", "[student]\nsmoke = [\"wordcount\"]\n"));
    env.run(&["apply", "lab.toml", "--yes", "--no-verify"]).ok();
    // Bob's coordinator now wants another token than his workers and smoke job hold.
    let deployments = Api::<Deployment>::namespaced(cluster.client.clone(), "k8slab-bob");
    let wrong = json!([{ "op": "replace", "path": "/spec/template/spec/containers/0/env", "value": [{ "name": "LAB_MAPREDUCE_TOKEN", "value": "not-the-token" }] }]);
    let patch = Patch::<()>::Json(serde_json::from_value(wrong).unwrap());
    cluster.block_on(deployments.patch("mapreduce", &PatchParams::default(), &patch)).unwrap();
    cluster.rolled_out("k8slab-bob", "mapreduce");

    let verify = env.run(&["verify", "lab.toml"]);
    assert_eq!(verify.code, 1, "{}", verify.stdout);
    let line =
        |student: &str| verify.stdout.lines().find(|l| l.starts_with(student)).unwrap_or_default().to_owned();
    assert!(line("ann").contains("pass") && line("bob").contains("FAIL"), "{}", verify.stdout);
    // The smoke client's own words, and where to read the rest.
    assert!(verify.stdout.contains("bob / wordcount: error: the coordinator refused us: wrong token (job k8slab-bob/labctl-smoke-wordcount-"), "{}", verify.stdout);
    assert!(
        verify.stdout.contains("kubectl logs -n k8slab-bob job/labctl-smoke-wordcount-"),
        "{}",
        verify.stdout
    );
    let jobs = cluster.labelled("k8slab").into_iter().filter(|o| o.starts_with("Job ")).collect::<Vec<_>>();
    assert_eq!(jobs.len(), 1, "bob's failed job is kept, ann's passed one deleted: {jobs:?}");
    assert!(jobs[0].starts_with("Job k8slab-bob/labctl-smoke-wordcount-"), "{jobs:?}");

    // The edit is drift that apply takes back, though server-side apply alone cannot: it
    // would keep the edit's `value` beside labctl's `valueFrom`, which the API refuses.
    let plan = env.run(&["plan", "lab.toml"]).ok();
    assert!(
        plan.stdout.contains("changed outside labctl: deployment k8slab-bob/mapreduce: spec.template.spec.containers[0].env[0]"),
        "{}",
        plan.stdout
    );
    env.run(&["apply", "lab.toml", "--yes"]).ok();
    assert!(env.run(&["plan", "lab.toml"]).ok().stdout.contains("No changes"));
    env.run(&["destroy", "lab.toml", "--yes"]).ok();
    assert_eq!(cluster.labelled("k8slab"), Vec::<String>::new());
}

#[test]
fn an_object_edited_by_hand_is_drift_that_apply_repairs() {
    // (A Deployment deleted by hand is the conformance suite's drift case.)
    let cluster = Cluster::start();
    let env = cluster.env(&small_lab(60));
    env.run(&["apply", "lab.toml", "--yes"]).ok();
    let deployments = Api::<Deployment>::namespaced(cluster.client.clone(), "k8slab-bob");

    // Scaled by hand: the plan names the field, apply takes it back.
    let scale = serde_json::json!({ "spec": { "replicas": 5 } });
    cluster
        .block_on(deployments.patch(
            "mapreduce-workers",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&scale),
        ))
        .unwrap();
    let plan = env.run(&["plan", "lab.toml"]).ok();
    assert!(plan.stdout.contains("~ student[\"bob\"].mapreduce"), "{}", plan.stdout);
    assert!(
        plan.stdout.contains("changed outside labctl: deployment k8slab-bob/mapreduce-workers: spec.replicas is 5, labctl set 2"),
        "{}",
        plan.stdout
    );
    assert!(!plan.stdout.contains("student[\"ann\"]"), "{}", plan.stdout);
    env.run(&["apply", "lab.toml", "--yes"]).ok();
    assert_eq!(
        cluster.deployment("k8slab-bob", "mapreduce-workers").unwrap().spec.unwrap().replicas,
        Some(2)
    );
    assert!(env.run(&["plan", "lab.toml"]).ok().stdout.contains("No changes"));

    // The workers' token changed by hand: the plan says so without showing either value, and
    // apply puts back the one in state.
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(cluster.client.clone(), "k8slab-bob");
    let token = |secrets: &Api<k8s_openapi::api::core::v1::Secret>| {
        cluster.block_on(secrets.get("labctl-worker-token")).unwrap().data.unwrap()["token"].0.clone()
    };
    let before = token(&secrets);
    let other = serde_json::json!({ "data": { "token": "b3RoZXI=" } });
    cluster
        .block_on(secrets.patch(
            "labctl-worker-token",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&other),
        ))
        .unwrap();
    let plan = env.run(&["plan", "lab.toml"]).ok();
    assert!(
        plan.stdout.contains(
            "changed outside labctl: secret k8slab-bob/labctl-worker-token: data.token holds another value"
        ),
        "{}",
        plan.stdout
    );
    assert!(
        !plan.stdout.contains("b3RoZXI=")
            && !plan.stdout.contains(&String::from_utf8_lossy(&before).into_owned()),
        "{}",
        plan.stdout
    );
    env.run(&["apply", "lab.toml", "--yes"]).ok();
    assert_eq!(token(&secrets), before);
    assert!(env.run(&["plan", "lab.toml"]).ok().stdout.contains("No changes"));

    // A namespace deleted by hand takes everything in it: the plan makes it again and replaces
    // what lived in it.
    let namespaces = Api::<Namespace>::all(cluster.client.clone());
    cluster.block_on(namespaces.delete("k8slab-ann", &DeleteParams::default())).unwrap();
    let plan = env.run(&["plan", "lab.toml"]).ok();
    assert!(plan.stdout.contains("+ student[\"ann\"].namespace"), "{}", plan.stdout);
    assert!(plan.stdout.contains("deleted outside labctl"), "{}", plan.stdout);
    assert!(plan.stdout.contains("+ student[\"ann\"].mapreduce"), "{}", plan.stdout);
    env.run(&["apply", "lab.toml", "--yes"]).ok();
    assert!(cluster.deployment("k8slab-ann", "mapreduce-workers").is_some());
    assert!(env.run(&["plan", "lab.toml"]).ok().stdout.contains("No changes"));

    env.run(&["destroy", "lab.toml", "--yes"]).ok();
    assert_eq!(cluster.labelled("k8slab"), Vec::<String>::new());
}

#[test]
fn a_deployment_that_never_becomes_ready_fails_that_student_only() {
    let cluster = Cluster::start();
    cluster.refuse_pods_in("k8slab-bob");
    // Long enough for Ann's real pods to start.
    let timeout = 45;
    let env = cluster.env(&small_lab(timeout));
    let apply = env.run(&["apply", "lab.toml", "--yes"]);
    assert_ne!(apply.code, 0, "{}", apply.all());
    // Why, in the words of the controllers and of admission.
    let why = "0 of 1 replicas updated (Deployment does not have minimum availability.; pods \"mapreduce-";
    assert!(
        apply
            .all()
            .contains(&format!("deployment k8slab-bob/mapreduce is not ready after {timeout}s: {why}")),
        "{}",
        apply.all()
    );
    assert!(apply.all().contains("denied request: pods are held back by the test"), "{}", apply.all());
    assert!(!apply.all().contains("k8slab-ann/"), "ann's workers are fine: {}", apply.all());

    let state = env.state("k8slab");
    let resource = |address: &str| &state["resources"][address];
    assert!(resource("student[\"ann\"].mapreduce").is_object(), "{state:#}");
    assert_eq!(resource("student[\"ann\"].mapreduce").get("tainted"), None, "{state:#}");
    assert_eq!(resource("student[\"bob\"].mapreduce")["tainted"], true, "{state:#}");
    env.run(&["destroy", "lab.toml", "--yes"]).ok();
    assert_eq!(cluster.labelled("k8slab"), Vec::<String>::new());
    cluster.allow_pods_again();
}

/// A namespace of the same name that labctl did not make is not taken over (nor, later,
/// deleted): that student fails with the reason, the others are made.
#[test]
fn a_namespace_labctl_did_not_make_is_not_taken_over() {
    let cluster = Cluster::start();
    let mut foreign = Namespace::default();
    foreign.metadata.name = Some("k8slab-ann".into());
    cluster
        .block_on(Api::<Namespace>::all(cluster.client.clone()).create(&Default::default(), &foreign))
        .unwrap();
    let env = cluster.env(&small_lab(60));
    let apply = env.run(&["apply", "lab.toml", "--yes"]);
    assert_ne!(apply.code, 0, "{}", apply.all());
    assert!(
        apply.all().contains("namespace k8slab-ann already exists and labctl did not create it"),
        "{}",
        apply.all()
    );
    assert!(cluster.deployment("k8slab-bob", "mapreduce").is_some());
    env.run(&["destroy", "lab.toml", "--yes"]).ok();
    let left = cluster.block_on(Api::<Namespace>::all(cluster.client.clone()).get_opt("k8slab-ann")).unwrap();
    assert!(left.is_some(), "the foreign namespace is left alone");
    assert_eq!(cluster.labelled("k8slab"), Vec::<String>::new());
}

/// `labs/<file>` on Kubernetes: its provider block switched, its workers small enough for
/// the test cluster; in a directory of its own with the roster beside it.
fn course_lab_on_kubernetes(cluster: &Cluster, file: &str) -> Env {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/labs");
    let text = std::fs::read_to_string(format!("{dir}/{file}")).unwrap();
    let block =
        "[provider.kubernetes]\n# kubeconfig = \"~/.kube/config\"\nimage = \"ghcr.io/labctl/workers:0.1.0\"";
    let switched = crate::support::without_notebooks(&text)
        .replace("\n[provider.local]\n", &format!("\n{block}\n"))
        .replace("workers = 3 }", "workers = 3, cpu = \"20m\" }")
        .replace("workers = 2 }", "workers = 2, cpu = \"20m\" }")
        .replace("slots = 2 }", "slots = 2, cpu = \"20m\" }");
    assert!(switched.contains(block), "{file} is on the local provider");
    let env = cluster.env(&switched);
    std::fs::copy(format!("{dir}/roster-example.csv"), env.path("roster-example.csv")).unwrap();
    env
}

#[test]
fn the_course_labs_switch_to_kubernetes_with_their_datasets_in_each_students_volume() {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    use labctl_provider_api::lab::Dataset;

    let cluster = Cluster::start();
    for file in ["mapreduce-spark.toml", "kubernetes-dask.toml", "evaluation.toml"] {
        let env = course_lab_on_kubernetes(&cluster, file);
        let plan = env.run(&["plan", "lab.toml"]).ok();
        assert!(
            plan.stdout.contains(".dataset[\""),
            "{file}: the datasets go into the volumes\n{}",
            plan.stdout
        );
    }

    let env = course_lab_on_kubernetes(&cluster, "kubernetes-dask.toml");
    let lab = "k8s-dask-2026";
    let applied = env.run(&["apply", "lab.toml", "--yes"]).ok();
    assert!(applied.stdout.contains("3 of 3 checks passed"), "{}", applied.all());
    let state = env.state(lab);
    let students = ["ada", "alan", "grace"];
    for student in students {
        // Byte for byte what labctl generates, in the student's volume.
        let resource = &state["resources"][format!("student[\"{student}\"].dataset[\"measurements\"]")];
        let dataset: Dataset = serde_json::from_value(resource["config"]["dataset"].clone()).unwrap();
        let namespace = format!("{lab}-{student}");
        let claim = cluster
            .block_on(
                Api::<PersistentVolumeClaim>::namespaced(cluster.client.clone(), &namespace)
                    .get("labctl-data"),
            )
            .unwrap();
        let volume = claim.spec.unwrap().volume_name.unwrap();
        let volume =
            cluster.block_on(Api::<PersistentVolume>::all(cluster.client.clone()).get(&volume)).unwrap();
        let root = Path::new(&volume.spec.unwrap().host_path.unwrap().path).join("datasets/measurements");
        for part in dataset.parts() {
            let mut expected = vec![];
            dataset.write_part(&part, &mut expected).unwrap();
            let found = std::fs::read(root.join(&part.name)).unwrap();
            assert!(found == expected, "{student}'s {} differs from the generator's", part.name);
        }
    }
    env.run(&["output", "lab.toml", "--handout", "handouts"]).ok();
    let handout = std::fs::read_to_string(env.path("handouts/ada.md")).unwrap();
    assert!(handout.contains("/srv/lab/datasets/measurements"), "{handout}");
    assert!(env.run(&["plan", "lab.toml"]).ok().stdout.contains("No changes"));
    env.run(&["destroy", "lab.toml", "--yes"]).ok();
    assert_eq!(cluster.labelled(lab), Vec::<String>::new());
}
