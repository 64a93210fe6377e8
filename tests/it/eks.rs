//! One AWS lab from cloud to cluster: its students' namespaces on its own EKS cluster, in
//! one lab file (`examples/aws-eks.toml`). moto serves AWS; the test cluster
//! (`testing/cluster`) stands in for the EKS cluster's Kubernetes API, through the
//! test-only `LABCTL_TEST_KUBECONFIGS` (moto's EKS serves no Kubernetes API). Its GPU
//! node carries what the GPU node group's would: the `labctl/pool=gpu` label, the
//! `nvidia.com/gpu` taint and capacity.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::{Api, ListParams};

use crate::aws::{aws_command, Moto};
use crate::kubernetes::Cluster;
use crate::support::*;

const LAB: &str = "bigdata-eks";
const EKS_CLUSTER: &str = "bigdata-eks-shared";

/// `examples/aws-eks.toml` pointed at `moto`, its workers' image the test cluster's, small
/// enough for one CI node; the cluster's kubeconfig beside it.
fn eks_example(moto: &Moto, cluster: &Cluster) -> Env {
    let env = Env::new();
    env.write("kubeconfig.yaml", &cluster.kubeconfig);
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/aws-eks.toml")).unwrap();
    let image = cluster.image.as_deref().expect("the test cluster's workers' image");
    let text = text
        .replace("# endpoint = \"http://127.0.0.1:5000\"", &format!("endpoint = \"{}\"", moto.endpoint))
        .replace("image = \"ghcr.io/labctl/workers:0.1.0\"", &format!("image = \"{image}\""))
        .replace(" cpu = \"250m\"", " cpu = \"20m\"")
        .replace("default_cpu = \"250m\"", "default_cpu = \"20m\"");
    assert!(text.contains(&moto.endpoint) && text.contains(image), "the example has the lines replaced");
    env.write("lab.toml", &text);
    env
}

/// `labctl` with moto's credentials, the test cluster standing in for the EKS cluster's API.
fn run(env: &Env, args: &[&str]) -> Run {
    let mut cmd = aws_command(env, args);
    let kubeconfig = env.path("kubeconfig.yaml");
    cmd.env("LABCTL_TEST_KUBECONFIGS", format!("{EKS_CLUSTER}={}", kubeconfig.display()));
    Run::from(cmd.output().unwrap())
}

/// The node group's size as EKS reports it.
fn desired_size(moto: &Moto, pool: &str) -> Option<i32> {
    let eks = aws_sdk_eks::Client::new(&moto.sdk("testing", "testing"));
    crate::support::block_on(async {
        let found =
            eks.describe_nodegroup().cluster_name(EKS_CLUSTER).nodegroup_name(pool).send().await.unwrap();
        found.nodegroup()?.scaling_config()?.desired_size()
    })
}

/// Where a line naming `what` is in `text` (for the order of a plan or a walk).
fn position(text: &str, what: &str) -> usize {
    text.find(what).unwrap_or_else(|| panic!("`{what}` is not in:\n{text}"))
}

#[test]
fn students_on_the_labs_own_eks_cluster_in_one_apply_and_gone_in_one_destroy() {
    let moto = Moto::start();
    let cluster = Cluster::start();
    let env = eks_example(&moto, &cluster);

    // One plan: the cluster and its pools first, then what goes on it.
    let plan = run(&env, &["plan", "lab.toml"]).ok();
    let (eks, gpu_pool) =
        (position(&plan.stdout, "+ cluster[\"shared\"] "), position(&plan.stdout, "node_pool[\"gpu\"]"));
    let namespace = position(&plan.stdout, "+ student[\"ada\"].namespace");
    assert!(eks < gpu_pool && gpu_pool < namespace, "{}", plan.stdout);

    // One apply: node groups, then every namespace with its workers running; smoke Jobs pass.
    let applied = run(&env, &["apply", "lab.toml", "--yes"]).ok();
    assert!(applied.stdout.contains("5 students, 10 of 10 checks passed"), "{}", applied.all());
    let labelled = cluster.labelled(LAB);
    for student in ["ada", "alan", "grace", "edsger", "barbara"] {
        assert!(labelled.contains(&format!("Namespace {LAB}-{student}")), "{labelled:#?}");
    }
    // The GPU cohort's workers on the GPU node; a CPU student's never there.
    for student in ["edsger", "barbara"] {
        let nodes = cluster.pod_nodes(&format!("{LAB}-{student}"), "scheduler-workers");
        assert_eq!(nodes, ["labctl-gpu"], "{student}'s GPU workers");
    }
    for component in ["scheduler-workers", "mapreduce-workers", "scheduler", "mapreduce"] {
        let nodes = cluster.pod_nodes(&format!("{LAB}-ada"), component);
        assert!(
            !nodes.is_empty() && !nodes.contains(&"labctl-gpu".to_owned()),
            "ada's {component}: {nodes:?}"
        );
    }
    // The device plugin runs on the GPU pool's node only.
    assert_eq!(cluster.pod_nodes("kube-system", "nvidia-device-plugin"), ["labctl-gpu"]);
    // The student's volume bound through the StorageClass labctl made for EBS.
    let claims = Api::<PersistentVolumeClaim>::namespaced(cluster.client.clone(), &format!("{LAB}-ada"));
    let claim = cluster.block_on(claims.get("labctl-data")).unwrap();
    assert_eq!(claim.spec.unwrap().storage_class_name.as_deref(), Some("labctl-gp3"));
    assert_eq!(claim.status.unwrap().phase.as_deref(), Some("Bound"));
    assert_eq!(desired_size(&moto, "gpu"), Some(1));
    // Her key, region and bucket for her pods, as a Secret in her namespace; her handout
    // says so beside her kubeconfig.
    let secrets = Api::<Secret>::namespaced(cluster.client.clone(), &format!("{LAB}-ada"));
    let data = cluster.block_on(secrets.get("aws-credentials")).unwrap().data.unwrap();
    let value = |key: &str| String::from_utf8(data[key].0.clone()).unwrap();
    let state = env.state(LAB);
    let credential = &state["resources"]["student[\"ada\"].credential"]["attributes"];
    assert_eq!(value("AWS_ACCESS_KEY_ID"), credential["access_key_id"].as_str().unwrap());
    assert_eq!(value("AWS_SECRET_ACCESS_KEY"), credential["secret_access_key"].as_str().unwrap());
    assert_eq!(
        (value("LABCTL_BUCKET"), value("AWS_ENDPOINT_URL")),
        (format!("{LAB}-ada"), moto.endpoint.clone())
    );
    assert_eq!(value("AWS_ALLOW_HTTP"), "true");
    // Her MapReduce pods get it as environment (their `s3://` client reads it).
    for deployment in ["mapreduce", "mapreduce-workers"] {
        let found = cluster.deployment(&format!("{LAB}-ada"), deployment).unwrap();
        let pod = serde_json::to_value(found.spec.unwrap().template.spec.unwrap()).unwrap();
        assert_eq!(
            pod["containers"][0]["envFrom"][0]["secretRef"]["name"], "aws-credentials",
            "{deployment}"
        );
    }
    run(&env, &["output", "lab.toml", "--handout", "handouts"]).ok();
    let handout = std::fs::read_to_string(env.path("handouts/ada.md")).unwrap();
    assert!(
        handout.contains("namespace `bigdata-eks-ada`") && handout.contains("Secret `aws-credentials`"),
        "{handout}"
    );

    let again = run(&env, &["plan", "lab.toml"]).ok();
    assert!(again.stdout.contains("No changes"), "re-plan after apply:\n{}", again.all());

    // Resizing the GPU pool: through EKS, written in the lab file, shown as a plan.
    let scaled = run(&env, &["scale", "lab.toml", "gpu", "2", "--yes"]).ok();
    assert!(scaled.stdout.contains("desired: 1 → 2"), "{}", scaled.all());
    assert_eq!(desired_size(&moto, "gpu"), Some(2));
    assert!(std::fs::read_to_string(env.path("lab.toml")).unwrap().contains("desired = 2"));
    assert!(run(&env, &["plan", "lab.toml"]).ok().stdout.contains("No changes"));
    // The file says so already: the pool is set to it all the same (the autoscaler may have
    // moved it).
    let again = run(&env, &["scale", "lab.toml", "gpu", "2", "--yes"]).ok();
    assert!(again.stdout.contains("labctl scale") && again.stdout.contains("1 to update"), "{}", again.all());
    let refused = run(&env, &["scale", "lab.toml", "gpu", "3", "--yes"]);
    assert_eq!(refused.code, 2, "{}", refused.all());
    assert!(refused.stderr.contains("wants 3 nodes"), "{}", refused.all());
    assert!(
        std::fs::read_to_string(env.path("lab.toml")).unwrap().contains("desired = 2"),
        "the file is put back"
    );

    // One destroy: namespaces, then node groups, then the cluster; nothing left.
    let destroyed = run(&env, &["destroy", "lab.toml", "--yes"]).ok();
    let progress = &destroyed.stderr;
    let namespace = position(progress, "deleted student[\"barbara\"].namespace");
    let pool = position(progress, "deleted cluster[\"shared\"].node_pool[\"gpu\"]");
    let eks = position(progress, "deleted cluster[\"shared\"] ");
    assert!(namespace < pool && pool < eks, "{progress}");
    assert_eq!(moto.tagged(LAB), Vec::<String>::new());
    assert_eq!(cluster.labelled(LAB), Vec::<String>::new());
    let device_plugins = cluster.block_on(
        Api::<k8s_openapi::api::apps::v1::DaemonSet>::all(cluster.client.clone())
            .list(&ListParams::default().labels("labctl/lab")),
    );
    assert!(device_plugins.unwrap().items.is_empty());
}
