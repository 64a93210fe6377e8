//! One GCP lab from cloud to cluster: its students' namespaces on its own GKE cluster, in one
//! lab file (`examples/gcp-gke.toml`). The GCP emulator serves GKE's API (clusters, node
//! pools, operations, one at a time per cluster); the test cluster (`testing/cluster`) stands
//! in for the GKE cluster's Kubernetes API through the test-only `LABCTL_TEST_KUBECONFIGS`.
//! Its GPU node carries what the GPU pool's would: the `labctl/pool=gpu` label, the
//! `nvidia.com/gpu` taint and capacity.

use google_cloud_container_v1::model::Cluster as GkeCluster;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::{Api, ListParams};

use crate::gcp::{command, Emulator};
use crate::kubernetes::Cluster;
use crate::support::*;

const LAB: &str = "bigdata-gke";
const GKE_CLUSTER: &str = "bigdata-gke-shared";

/// `examples/gcp-gke.toml` pointed at the emulator, on the test cluster.
fn gke_example(emulator: &Emulator, cluster: &Cluster) -> Env {
    let env = Env::new();
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gcp-gke.toml")).unwrap();
    let start = text.find("[provider.gcp]").unwrap();
    let end = start + text[start..].find("\n\n").unwrap();
    let text = format!("{}{}{}", &text[..start], emulator.provider_block().trim_end(), &text[end..]);
    assert!(text.contains(&emulator.http), "the example has the provider block replaced");
    env.write("lab.toml", &on_test_cluster(&env, &text, cluster));
    env
}

/// A GCP lab file whose students' namespaces go on the test cluster: its workers' image the
/// test cluster's, their CPU requests small enough for one CI node; the cluster's kubeconfig
/// beside it, for [`run_on_gke`].
pub(crate) fn on_test_cluster(env: &Env, text: &str, cluster: &Cluster) -> String {
    env.write("kubeconfig.yaml", &cluster.kubeconfig);
    let image = cluster.image.as_deref().expect("the test cluster's workers' image");
    let text = text
        .replace("image = \"ghcr.io/labctl/workers:0.1.0\"", &format!("image = \"{image}\""))
        .replace(" cpu = \"250m\"", " cpu = \"20m\"")
        .replace("default_cpu = \"250m\"", "default_cpu = \"20m\"");
    assert!(text.contains(image) && text.contains("\"20m\""), "the lab has the lines replaced");
    text
}

/// `labctl` as the project's owner, the test cluster standing in for the API of the GKE
/// cluster `gke` (the kubeconfig [`on_test_cluster`] wrote).
pub(crate) fn run_on_gke(env: &Env, gke: &str, args: &[&str]) -> Run {
    let mut cmd = command(env, args);
    let kubeconfig = env.path("kubeconfig.yaml");
    cmd.env("LABCTL_TEST_KUBECONFIGS", format!("{gke}={}", kubeconfig.display()));
    Run::from(cmd.output().unwrap())
}

fn run(env: &Env, args: &[&str]) -> Run {
    run_on_gke(env, GKE_CLUSTER, args)
}

/// Where a line naming `what` is in `text` (for the order of a plan or a walk).
fn position(text: &str, what: &str) -> usize {
    text.find(what).unwrap_or_else(|| panic!("`{what}` is not in:\n{text}"))
}

/// The lab's GKE cluster as the project's owner reads it (running, labelled, in the lab's
/// network); `None` once it is gone.
fn gke_cluster(emulator: &Emulator) -> Option<GkeCluster> {
    block_on(async {
        let gke = emulator.gke().await;
        let name =
            format!("projects/{}/locations/{}/clusters/{GKE_CLUSTER}", crate::gcp::PROJECT, crate::gcp::ZONE);
        match gke.get_cluster().set_name(&name).send().await {
            Ok(cluster) => {
                assert_eq!(cluster.status.name(), Some("RUNNING"), "{cluster:?}");
                assert_eq!(cluster.resource_labels.get("labctl-lab").map(String::as_str), Some(LAB));
                assert_eq!(cluster.network, LAB, "in the lab's network");
                Some(cluster)
            }
            Err(e) if e.http_status_code() == Some(404) => None,
            Err(e) => panic!("{e}"),
        }
    })
}

/// The clusters in the zone, as the project's owner lists them.
fn clusters(emulator: &Emulator) -> Vec<String> {
    let parent = format!("projects/{}/locations/{}", crate::gcp::PROJECT, crate::gcp::ZONE);
    let listed = block_on(async { emulator.gke().await.list_clusters().set_parent(parent).send().await });
    listed.unwrap().clusters.into_iter().map(|c| c.name).collect()
}

#[test]
fn students_on_the_labs_own_gke_cluster_in_one_apply_and_gone_in_one_destroy() {
    let emulator = Emulator::start();
    let cluster = Cluster::start();
    let env = gke_example(&emulator, &cluster);

    // One plan: the network, the cluster and its pools first, then what goes on it.
    let plan = run(&env, &["plan", "lab.toml"]).ok();
    let gke = position(&plan.stdout, "+ cluster[\"shared\"] ");
    let gpu_pool = position(&plan.stdout, "node_pool[\"gpu\"]");
    let namespace = position(&plan.stdout, "+ student[\"ada\"].namespace");
    assert!(gke < gpu_pool && gpu_pool < namespace, "{}", plan.stdout);

    // One apply: the pools, then every namespace with its workers running; smoke Jobs pass.
    let applied = run(&env, &["apply", "lab.toml", "--yes"]).ok();
    assert!(applied.stdout.contains("5 students, 10 of 10 checks passed"), "{}", applied.all());
    // GKE has the lab's pools as the lab file says (the bootstrap pool gone): GPUs with
    // GKE's driver and the taint, autoscaling from zero.
    let gke = gke_cluster(&emulator).expect("the GKE cluster");
    // Students apart: Dataplane V2 enforces their network policies; Workload Identity
    // keeps their pods from the nodes' own Google account.
    let datapath = gke.network_config.as_ref().map(|n| n.datapath_provider.name());
    assert_eq!(datapath, Some(Some("ADVANCED_DATAPATH")));
    let pool = gke.workload_identity_config.as_ref().map(|w| w.workload_pool.as_str());
    assert_eq!(pool, Some("labctl-test.svc.id.goog"));
    let pools = gke.node_pools;
    for pool in &pools {
        let metadata = pool.config.as_ref().and_then(|c| c.workload_metadata_config.as_ref());
        assert_eq!(metadata.map(|m| m.mode.name()), Some(Some("GKE_METADATA")), "{}", pool.name);
    }
    let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["cpu", "gpu"], "{pools:#?}");
    let gpu = pools[1].config.as_ref().unwrap();
    assert_eq!(gpu.machine_type, "n1-standard-4");
    assert_eq!(gpu.labels.get("labctl/pool").map(String::as_str), Some("gpu"));
    let accelerator = &gpu.accelerators[0];
    assert_eq!(
        (accelerator.accelerator_type.as_str(), accelerator.accelerator_count),
        ("nvidia-tesla-t4", 1)
    );
    let driver = accelerator.gpu_driver_installation_config.as_ref().unwrap();
    assert_eq!(driver.gpu_driver_version.as_ref().and_then(|v| v.name()), Some("DEFAULT"));
    let taint = &gpu.taints[0];
    assert_eq!(
        (taint.key.as_str(), taint.value.as_str(), taint.effect.name()),
        ("nvidia.com/gpu", "present", Some("NO_SCHEDULE"))
    );
    let scaling = pools[1].autoscaling.as_ref().unwrap();
    assert_eq!((scaling.enabled, scaling.min_node_count, scaling.max_node_count), (true, 0, 2));
    assert_eq!(pools[1].initial_node_count, 1, "desired = 1");
    assert!(
        pools[0].config.as_ref().unwrap().accelerators.is_empty()
            && pools[0].config.as_ref().unwrap().taints.is_empty()
    );

    let labelled = cluster.labelled(LAB);
    for student in ["ada", "alan", "grace", "edsger", "barbara"] {
        assert!(labelled.contains(&format!("Namespace {LAB}-{student}")), "{labelled:#?}");
    }
    // The GPU cohort's workers on the GPU node; a CPU student's never there.
    for student in ["edsger", "barbara"] {
        let nodes = cluster.pod_nodes(&format!("{LAB}-{student}"), "scheduler-workers");
        assert_eq!(nodes, ["labctl-gpu"], "{student}'s GPU workers");
    }
    let nodes = cluster.pod_nodes(&format!("{LAB}-ada"), "scheduler-workers");
    assert!(!nodes.is_empty() && !nodes.contains(&"labctl-gpu".to_owned()), "ada's workers: {nodes:?}");
    // GKE runs its own device plugin: labctl installs none.
    let daemon_sets = Api::<DaemonSet>::all(cluster.client.clone());
    let labelled = cluster.block_on(daemon_sets.list(&ListParams::default().labels("labctl/lab"))).unwrap();
    assert!(
        labelled.items.is_empty(),
        "{:?}",
        labelled.items.iter().map(|d| &d.metadata.name).collect::<Vec<_>>()
    );
    // The student's volume bound through the StorageClass labctl made for GKE's PD driver.
    let claims = Api::<PersistentVolumeClaim>::namespaced(cluster.client.clone(), &format!("{LAB}-ada"));
    let claim = cluster.block_on(claims.get("labctl-data")).unwrap();
    assert_eq!(claim.spec.unwrap().storage_class_name.as_deref(), Some("labctl-pd-balanced"));
    assert_eq!(claim.status.unwrap().phase.as_deref(), Some("Bound"));
    // Her key, project and bucket for her pods, as a Secret in her namespace; her MapReduce
    // pods get it as environment, her handout says so.
    let secrets = Api::<Secret>::namespaced(cluster.client.clone(), &format!("{LAB}-ada"));
    let data = cluster.block_on(secrets.get("gcp-credentials")).unwrap().data.unwrap();
    let value = |key: &str| String::from_utf8(data[key].0.clone()).unwrap();
    let state = env.state(LAB);
    let credential = &state["resources"]["student[\"ada\"].credential"]["attributes"];
    assert_eq!(value("GOOGLE_SERVICE_ACCOUNT_KEY"), credential["key"].as_str().unwrap());
    let key: serde_json::Value = serde_json::from_str(&value("GOOGLE_SERVICE_ACCOUNT_KEY")).unwrap();
    assert_eq!(key["gcs_base_url"], emulator.http.trim_end_matches('/'), "object_store finds the emulator");
    assert_eq!(
        (value("LABCTL_BUCKET"), value("GOOGLE_CLOUD_PROJECT"), value("GOOGLE_ALLOW_HTTP")),
        (format!("gs://{LAB}-ada"), crate::gcp::PROJECT.to_owned(), "true".to_owned())
    );
    for deployment in ["mapreduce", "mapreduce-workers"] {
        let found = cluster.deployment(&format!("{LAB}-ada"), deployment).unwrap();
        let pod = serde_json::to_value(found.spec.unwrap().template.spec.unwrap()).unwrap();
        assert_eq!(
            pod["containers"][0]["envFrom"][0]["secretRef"]["name"], "gcp-credentials",
            "{deployment}"
        );
    }
    run(&env, &["output", "lab.toml", "--handout", "handouts"]).ok();
    let handout = std::fs::read_to_string(env.path("handouts/ada.md")).unwrap();
    assert!(
        handout.contains("namespace `bigdata-gke-ada`") && handout.contains("Secret `gcp-credentials`"),
        "{handout}"
    );

    let again = run(&env, &["plan", "lab.toml"]).ok();
    assert!(again.stdout.contains("No changes"), "re-plan after apply:\n{}", again.all());

    // Resizing the GPU pool: through GKE, written in the lab file.
    let scaled = run(&env, &["scale", "lab.toml", "gpu", "2", "--yes"]).ok();
    assert!(scaled.stdout.contains("desired: 1 → 2"), "{}", scaled.all());
    assert!(std::fs::read_to_string(env.path("lab.toml")).unwrap().contains("desired = 2"));
    let parent = format!("projects/{}/locations/{}", crate::gcp::PROJECT, crate::gcp::ZONE);
    let operations =
        block_on(async { emulator.gke().await.list_operations().set_parent(parent).send().await });
    let resized = operations.unwrap().operations.into_iter().filter(|op| {
        op.operation_type.name() == Some("SET_NODE_POOL_SIZE") && op.target_link.ends_with("/nodePools/gpu")
    });
    assert_eq!(resized.count(), 1, "one resize of the GPU pool");
    assert!(run(&env, &["plan", "lab.toml"]).ok().stdout.contains("No changes"));

    // One destroy: namespaces, then node pools, then the cluster, then its network.
    let destroyed = run(&env, &["destroy", "lab.toml", "--yes"]).ok();
    let progress = &destroyed.stderr;
    let namespace = position(progress, "deleted student[\"barbara\"].namespace");
    let pool = position(progress, "deleted cluster[\"shared\"].node_pool[\"gpu\"]");
    let gke = position(progress, "deleted cluster[\"shared\"] ");
    let network = position(progress, "deleted network");
    assert!(namespace < pool && pool < gke && gke < network, "{progress}");
    assert!(gke_cluster(&emulator).is_none(), "the GKE cluster is gone");
    assert_eq!(clusters(&emulator), Vec::<String>::new());
    assert_eq!(emulator.inventory(LAB), Vec::<String>::new());
    assert_eq!(cluster.labelled(LAB), Vec::<String>::new());
}

/// A GPU pool over the project's GPU quota: GKE fails the pool's operation and leaves the
/// pool in ERROR. Apply says why and fails, keeping the pool tainted; with the lab file
/// mended, the next apply replaces it and the lab converges; destroy leaves nothing.
#[test]
fn a_gpu_pool_over_quota_fails_saying_why_and_is_replaced_once_mended() {
    let emulator = Emulator::start();
    let env = Env::new();
    let pool = "\n[cluster.shared.node_pool.gpu]\ninstance_type = \"n1-standard-4\"\nmax = 4\ndesired = 3\ngpu = 4\n";
    let lab = bucket_lab("quota", &emulator.provider_block(), &["ada"]) + pool;
    env.write("lab.toml", &lab);

    let refused = run(&env, &["apply", "lab.toml", "--yes"]);
    assert_ne!(refused.code, 0, "{}", refused.all());
    assert!(refused.all().contains("Quota 'NVIDIA_T4_GPUS' exceeded"), "{}", refused.all());
    let address = "cluster[\"shared\"].node_pool[\"gpu\"]";
    assert_eq!(env.state("quota")["resources"][address]["tainted"], true, "the pool in ERROR is tainted");
    assert!(env.state("quota")["resources"]["student[\"ada\"].bucket"].is_object(), "the rest is kept");

    env.write("lab.toml", &lab.replace("desired = 3", "desired = 1"));
    let mended = run(&env, &["apply", "lab.toml", "--yes"]).ok();
    assert!(mended.all().contains(address), "{}", mended.all());
    assert!(run(&env, &["plan", "lab.toml"]).ok().stdout.contains("No changes"));
    let parent =
        format!("projects/{}/locations/{}/clusters/quota-shared", crate::gcp::PROJECT, crate::gcp::ZONE);
    let pools = block_on(async { emulator.gke().await.list_node_pools().set_parent(parent).send().await });
    let pools: Vec<String> = pools
        .unwrap()
        .node_pools
        .iter()
        .map(|p| format!("{} {}", p.name, p.status.name().unwrap_or("?")))
        .collect();
    assert_eq!(pools, ["gpu RUNNING"], "the pool made anew");

    run(&env, &["destroy", "lab.toml", "--yes"]).ok();
    assert_eq!(emulator.inventory("quota"), Vec::<String>::new());
}
