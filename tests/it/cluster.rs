//! What only a real cluster proves (`testing/cluster`: the upstream API server, controllers,
//! scheduler and kubelets, real containers): that a student's kubeconfig opens their own
//! namespace and nothing else, that admission holds pods to the limit range, the quota and
//! PodSecurity `baseline` as `validate` predicts, and that server-side apply removes what
//! the lab no longer sets.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::kubernetes::Cluster;

/// Two students with a MapReduce each, in namespaces fenced by a limit range of at most
/// 500m CPU per container and a quota of 2Gi of memory.
const FENCED: &str = r#"
[lab]
name = "fenced"

[provider.kubernetes]
# kubeconfig = "~/.kube/config"
image = "ghcr.io/labctl/workers:0.1.0"
ready_timeout = 120

[[cohort]]
name = "c1"
students = [{ id = "ann" }, { id = "bob" }]

[student]
workers = { mapreduce = { workers = 1, cpu = "20m", memory = "64Mi" } }
quota = { cpu = "2", memory = "2Gi", pods = 10 }
limits = { default_cpu = "20m", default_memory = "64Mi", max_cpu = "500m", max_memory = "4Gi" }
"#;

/// A pod of the workers' image that prints the MapReduce engine's help, with the keys of
/// `container` added to its container.
fn pod(cluster: &Cluster, name: &str, container: serde_json::Value) -> Pod {
    let mut c = json!({
        "name": "main",
        "image": cluster.image.clone().unwrap_or_else(|| "ghcr.io/labctl/workers:0.1.0".into()),
        "command": ["lab-mapreduce", "--help"],
    });
    c.as_object_mut().unwrap().extend(container.as_object().unwrap().clone());
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "restartPolicy": "Never", "containers": [c] },
    }))
    .unwrap()
}

/// The error an API call failed with, as `CODE message`.
fn refusal<T: std::fmt::Debug>(result: kube::Result<T>) -> String {
    match result {
        Err(kube::Error::Api(e)) => format!("{} {}", e.code, e.message),
        other => panic!("expected the API to refuse, got {other:?}"),
    }
}

#[test]
fn a_students_kubeconfig_opens_their_namespace_and_admission_holds_them_to_the_lab() {
    let cluster = Cluster::start();
    let env = cluster.env(FENCED);
    env.run(&["apply", "lab.toml", "--yes", "--no-verify"]).ok();
    env.run(&["output", "lab.toml", "--handout", "handouts"]).ok();
    let handout = std::fs::read_to_string(env.path("handouts/ann.md")).unwrap();
    let kubeconfig = handout.split("```yaml\n").nth(1).unwrap().split("```").next().unwrap();
    env.write("ann.yaml", kubeconfig);
    let ann = cluster.block_on(async {
        let parsed = kube::config::Kubeconfig::from_yaml(kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(parsed, &Default::default()).await.unwrap();
        kube::Client::try_from(config).unwrap()
    });
    let pods = |namespace: &str| Api::<Pod>::namespaced(ann.clone(), namespace);

    // Her own namespace is open to her; Bob's and the cluster's are not (the real authorizer).
    let own = cluster.block_on(pods("fenced-ann").list(&ListParams::default())).unwrap();
    assert_eq!(own.items.len(), 2, "her coordinator and worker: {:?}", own.items.len());
    let listed = refusal(cluster.block_on(pods("fenced-bob").list(&ListParams::default())));
    assert!(listed.starts_with("403 "), "{listed}");
    assert!(listed.contains("cannot list resource \"pods\""), "{listed}");
    let mut note = ConfigMap::default();
    note.metadata.name = Some("from-ann".into());
    let written = refusal(cluster.block_on(
        Api::<ConfigMap>::namespaced(ann.clone(), "fenced-bob").create(&PostParams::default(), &note),
    ));
    assert!(written.starts_with("403 "), "{written}");
    let namespaces = refusal(cluster.block_on(
        Api::<k8s_openapi::api::core::v1::Namespace>::all(ann.clone()).list(&ListParams::default()),
    ));
    assert!(namespaces.starts_with("403 "), "{namespaces}");
    // The same with kubectl, a second client, from the handout's kubeconfig as saved.
    let kubectl = |args: &[&str]| {
        std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(env.path("ann.yaml"))
            .args(args)
            .output()
            .unwrap()
    };
    let own = kubectl(&["get", "deployments"]);
    assert!(own.status.success(), "{}", String::from_utf8_lossy(&own.stderr));
    assert!(String::from_utf8_lossy(&own.stdout).contains("mapreduce-workers"));
    let other = kubectl(&["get", "pods", "--namespace", "fenced-bob"]);
    assert!(!other.status.success());
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("Forbidden"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );

    // She can run a pod of her own (the limit range gives it its resources), and it runs.
    cluster
        .block_on(pods("fenced-ann").create(&PostParams::default(), &pod(&cluster, "hello", json!({}))))
        .unwrap();
    let start = Instant::now();
    loop {
        let phase = cluster.block_on(pods("fenced-ann").get("hello")).unwrap().status.and_then(|s| s.phase);
        if phase.as_deref() == Some("Succeeded") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "her pod is {phase:?} after 90 s");
        std::thread::sleep(Duration::from_millis(500));
    }

    // Admission: PodSecurity baseline, the limit range's maximum, the quota.
    let privileged = pod(&cluster, "root", json!({ "securityContext": { "privileged": true } }));
    let refused = refusal(cluster.block_on(pods("fenced-ann").create(&PostParams::default(), &privileged)));
    assert!(refused.contains("violates PodSecurity \"baseline:latest\": privileged"), "{refused}");
    let resources =
        |cpu: &str, memory: &str| json!({ "resources": { "limits": { "cpu": cpu, "memory": memory } } });
    let greedy = pod(&cluster, "greedy", resources("1", "64Mi"));
    let refused = refusal(cluster.block_on(pods("fenced-ann").create(&PostParams::default(), &greedy)));
    assert!(refused.contains("maximum cpu usage per Container is 500m, but limit is 1"), "{refused}");
    let hungry = pod(&cluster, "hungry", resources("100m", "3Gi"));
    let refused = refusal(cluster.block_on(pods("fenced-ann").create(&PostParams::default(), &hungry)));
    assert!(refused.contains("exceeded quota: labctl-quota"), "{refused}");
    // ... which `validate` predicts for workers that ask as much.
    let lab = FENCED.replace("cpu = \"20m\", memory = \"64Mi\" }", "cpu = \"1\", memory = \"3Gi\" }");
    env.write("greedy.toml", &lab);
    let validated = env.run(&["validate", "greedy.toml"]);
    assert_eq!(validated.code, 2, "{}", validated.all());
    assert!(
        validated.all().contains(
            "mapreduce containers get 1 CPU, above the limit range's maximum of 500m per container"
        ),
        "{}",
        validated.all()
    );
    assert!(validated.all().contains("above the namespace quota of 2Gi"), "{}", validated.all());

    env.run(&["destroy", "lab.toml", "--yes"]).ok();
    assert_eq!(cluster.labelled("fenced"), Vec::<String>::new());
}

/// A lab whose `research` cohort's scheduler workers have a GPU each, on the GPU pool.
const GPU: &str = r#"
[lab]
name = "gpus"

[provider.kubernetes]
# kubeconfig = "~/.kube/config"
image = "ghcr.io/labctl/workers:0.1.0"
ready_timeout = 120

[[cohort]]
name = "research"
students = [{ id = "bea" }]
gpu = { count = 1 }

[student]
workers = { scheduler = { workers = 2, slots = 1, cpu = "20m", memory = "64Mi" } }

[cluster.course.node_pool.gpu]
instance_type = "g4dn.xlarge"
max = 2
gpu = 1
labels = { "labctl/pool" = "gpu" }
"#;

#[test]
fn a_gpu_removed_from_the_lab_goes_from_the_live_deployment_and_its_pods_leave_the_gpu_pool() {
    let cluster = Cluster::start();
    let env = cluster.env(GPU);
    env.run(&["apply", "lab.toml", "--yes", "--no-verify"]).ok();
    let nodes = || cluster.pod_nodes("gpus-bea", "scheduler-workers");
    assert_eq!(nodes(), vec![labctl_test_cluster::GPU_NODE; 2], "GPU workers run on the GPU pool");

    env.write(
        "lab.toml",
        &std::fs::read_to_string(env.path("lab.toml")).unwrap().replace("gpu = { count = 1 }\n", ""),
    );
    let plan = env.run(&["plan", "lab.toml"]).ok();
    assert!(plan.stdout.contains("~ student[\"bea\"].scheduler"), "{}", plan.stdout);
    env.run(&["apply", "lab.toml", "--yes", "--no-verify"]).ok();
    let live: Deployment = cluster.deployment("gpus-bea", "scheduler-workers").unwrap();
    let spec = live.spec.unwrap().template.spec.unwrap();
    let limits = spec.containers[0].resources.as_ref().unwrap().limits.clone().unwrap();
    assert!(!limits.contains_key("nvidia.com/gpu"), "{limits:?}");
    assert_eq!((spec.node_selector, spec.tolerations), (None, None), "server-side apply removed them");
    let start = Instant::now();
    while nodes() != vec![labctl_test_cluster::CPU_NODE; 2] {
        assert!(start.elapsed() < Duration::from_secs(90), "workers still on {:?}", nodes());
        std::thread::sleep(Duration::from_millis(500));
    }

    // Drift made with kubectl: shown by plan, taken back by apply.
    env.write("admin.yaml", &cluster.kubeconfig);
    let scaled = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(env.path("admin.yaml"))
        .args(["scale", "deployment/scheduler-workers", "--replicas=3", "--namespace", "gpus-bea"])
        .output()
        .unwrap();
    assert!(scaled.status.success(), "{}", String::from_utf8_lossy(&scaled.stderr));
    let plan = env.run(&["plan", "lab.toml"]).ok();
    assert!(
        plan.stdout.contains("deployment gpus-bea/scheduler-workers: spec.replicas is 3, labctl set 2"),
        "{}",
        plan.stdout
    );
    env.run(&["apply", "lab.toml", "--yes", "--no-verify"]).ok();
    assert!(env.run(&["plan", "lab.toml"]).ok().stdout.contains("No changes"));

    env.run(&["destroy", "lab.toml", "--yes"]).ok();
    assert_eq!(cluster.labelled("gpus"), Vec::<String>::new());
}
