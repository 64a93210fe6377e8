//! The emulator as labctl's tests start it: it says where it serves once it does, refuses
//! callers without a key it issued, serves Compute Engine and GKE to the official clients,
//! serves signed URLs to anyone holding one, serves `object_store` a service account's bucket and
//! no other, and leaves nothing running once stopped. (Also what makes
//! `cargo test --workspace` build the binary labctl's tests start.)

#![allow(clippy::unwrap_used, reason = "tests fail loudly on what they do not expect")]

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use google_cloud_auth::credentials::{service_account, Credentials};
use google_cloud_compute_v1::client::{Firewalls, Instances, Networks, Subnetworks};
use google_cloud_compute_v1::model::{
    access_config, firewall, metadata, AccessConfig, AttachedDisk, AttachedDiskInitializeParams, Firewall,
    Instance, Metadata, Network, NetworkInterface, Subnetwork,
};
use google_cloud_gax::paginator::ItemPaginator;
use google_cloud_lro::Poller;

const PROJECT: &str = "labctl-test";
const REGION: &str = "europe-west1";
const ZONE: &str = "europe-west1-b";

/// The emulator on loopback, killed on drop if a test did not stop it.
struct Emulator {
    child: Child,
    http: String,
    grpc: String,
    key: PathBuf,
}

impl Emulator {
    fn start(test: &str) -> Self {
        let deps = std::env::var("LABCTL_GCP_EMULATOR_DEPS")
            .expect("LABCTL_GCP_EMULATOR_DEPS is not set: run the tests through scripts/test.sh");
        let key =
            std::env::temp_dir().join(format!("labctl-gcp-emulator-{test}-{}.json", std::process::id()));
        let child = Command::new(env!("CARGO_BIN_EXE_labctl-gcp-emulator"))
            .args(["--deps", &deps, "--project", PROJECT, "--owner-key"])
            .arg(&key)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut emulator = Self { child, http: String::new(), grpc: String::new(), key };
        let mut line = String::new();
        std::io::BufReader::new(emulator.child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
        emulator.http = ready["http"].as_str().unwrap().to_owned();
        emulator.grpc = ready["grpc"].as_str().unwrap().to_owned();
        emulator
    }

    /// The owner's key file.
    fn owner_key(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(&self.key).unwrap()).unwrap()
    }

    /// The owner's credentials, as google-cloud-auth makes them of the key file.
    /// Makes `buckets` as the owner; the owner's bucket client.
    async fn create_buckets(&self, buckets: &[&str]) -> google_cloud_storage::client::StorageControl {
        let control = google_cloud_storage::client::StorageControl::builder()
            .with_endpoint(&self.grpc)
            .with_credentials(self.owner())
            .build()
            .await
            .unwrap();
        for bucket in buckets {
            let project =
                google_cloud_storage::model::Bucket::new().set_project(format!("projects/{PROJECT}"));
            let create = control.create_bucket().set_parent("projects/_").set_bucket_id(*bucket);
            create.set_bucket(project).send().await.unwrap();
        }
        control
    }

    fn owner(&self) -> Credentials {
        service_account::Builder::new(self.owner_key()).build().unwrap()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.key);
    }
}

#[test]
fn it_refuses_strangers_and_stops_its_fake_gcs_server_with_it() {
    let mut emulator = Emulator::start("strangers");
    let http = emulator.http.clone();
    assert_eq!(emulator.owner_key()["client_email"], "labctl-owner@labctl-test.iam.gserviceaccount.com");
    let pid = emulator.child.id();
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let fake_gcs: Vec<u32> = children.split_whitespace().map(|p| p.parse().unwrap()).collect();

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let refused = |authorization: Option<&'static str>, path: &'static str| {
        runtime.block_on(async {
            let mut request = reqwest::Client::new().get(format!("{http}{path}"));
            if let Some(a) = authorization {
                request = request.header("Authorization", a);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
            (status, body["error"]["status"].as_str().unwrap_or_default().to_owned())
        })
    };
    let stranger = (401, "UNAUTHENTICATED".to_owned());
    assert_eq!(refused(None, "/v1/projects/labctl-test/serviceAccounts"), stranger);
    assert_eq!(refused(Some("Bearer not.a.jwt"), "/v1/projects/labctl-test/serviceAccounts"), stranger);
    assert_eq!(refused(None, "/storage/v1/b?project=labctl-test"), stranger);
    let compute = refused(None, "/compute/v1/projects/labctl-test/zones/europe-west1-b/instances");
    assert_eq!(compute.0, 401);
    let gke = refused(None, "/v1/projects/labctl-test/locations/europe-west1-b/clusters");
    assert_eq!(gke, stranger);

    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    emulator.child.wait().unwrap();
    assert_eq!(fake_gcs.len(), 1, "the emulator runs one fake-gcs-server: {children:?}");
    let start = Instant::now();
    while alive(fake_gcs[0]) {
        assert!(start.elapsed() < Duration::from_secs(10), "fake-gcs-server outlived the emulator");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A client of `$client` (a Compute Engine client type) acting as the owner, polling
/// operations every 50 ms to 200 ms.
macro_rules! compute {
    ($client:ty, $emulator:expr) => {{
        let polling = google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder::new()
            .with_initial_delay(Duration::from_millis(50))
            .with_maximum_delay(Duration::from_millis(200))
            .build()
            .unwrap();
        <$client>::builder()
            .with_endpoint(&$emulator.http)
            .with_credentials($emulator.owner())
            .with_polling_backoff_policy(polling)
            .build()
            .await
            .unwrap()
    }};
}

/// A Debian VM of the lab `lab` in the subnetwork `lab-eu`, reachable from outside.
fn vm(name: &str, lab: &str) -> Instance {
    let image = "projects/debian-cloud/global/images/family/debian-12";
    Instance::new()
        .set_name(name)
        .set_machine_type(format!("zones/{ZONE}/machineTypes/e2-small"))
        .set_labels([("labctl-lab", lab)])
        .set_metadata(
            Metadata::new()
                .set_items([metadata::Items::new().set_key("user-data").set_value("#cloud-config")]),
        )
        .set_disks([AttachedDisk::new()
            .set_boot(true)
            .set_auto_delete(true)
            .set_initialize_params(AttachedDiskInitializeParams::new().set_source_image(image))])
        .set_network_interfaces([NetworkInterface::new()
            .set_subnetwork(format!("projects/{PROJECT}/regions/{REGION}/subnetworks/lab-eu"))
            .set_access_configs([AccessConfig::new().set_type(access_config::Type::OneToOneNat)])])
        .set_tags(google_cloud_compute_v1::model::Tags::new().set_items(["lab"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_builds_and_tears_down_a_lab_network_with_vms() {
    let emulator = Emulator::start("compute");
    let networks = compute!(Networks, emulator);
    let subnetworks = compute!(Subnetworks, emulator);
    let firewalls = compute!(Firewalls, emulator);
    let instances = compute!(Instances, emulator);

    let network = Network::new().set_name("lab").set_auto_create_subnetworks(false).set_description("a lab");
    let insert = networks.insert().set_project(PROJECT).set_body(network.clone());
    assert_eq!(insert.poller().until_done().await.unwrap().error, None);
    let taken = networks.insert().set_project(PROJECT).set_body(network).send().await.unwrap_err();
    assert_eq!(taken.http_status_code(), Some(409), "{taken}");
    assert!(taken
        .to_string()
        .contains("The resource 'projects/labctl-test/global/networks/lab' already exists"));
    let subnetwork = Subnetwork::new()
        .set_name("lab-eu")
        .set_network(format!("https://www.googleapis.com/compute/v1/projects/{PROJECT}/global/networks/lab"))
        .set_ip_cidr_range("10.0.0.0/24");
    let insert = subnetworks.insert().set_project(PROJECT).set_region(REGION).set_body(subnetwork);
    insert.poller().until_done().await.unwrap();
    let ssh = Firewall::new()
        .set_name("lab-ssh")
        .set_network("global/networks/lab")
        .set_direction(firewall::Direction::Ingress)
        .set_source_ranges(["0.0.0.0/0"])
        .set_target_tags(["lab"])
        .set_allowed([firewall::Allowed::new().set_ip_protocol("tcp").set_ports(["22"])]);
    firewalls.insert().set_project(PROJECT).set_body(ssh).poller().until_done().await.unwrap();
    for (name, lab) in [("vm-1", "x"), ("vm-2", "y"), ("vm-3", "x")] {
        let insert = instances.insert().set_project(PROJECT).set_zone(ZONE).set_body(vm(name, lab));
        insert.poller().until_done().await.unwrap();
    }

    // One item a page: the paging is the emulator's too.
    let listed = instances
        .list()
        .set_project(PROJECT)
        .set_zone(ZONE)
        .set_filter(r#"labels.labctl-lab = "x""#)
        .set_max_results(1_u32)
        .by_item();
    let mut listed = listed;
    let mut found = vec![];
    while let Some(vm) = listed.next().await {
        let vm = vm.unwrap();
        let nic = &vm.network_interfaces[0];
        let nat = nic.access_configs[0].nat_ip.clone().unwrap();
        assert!(nat.starts_with("203.0.113."), "{nat}");
        let user_data =
            vm.metadata.as_ref().unwrap().items.iter().find(|i| i.key.as_deref() == Some("user-data"));
        assert_eq!(user_data.unwrap().value.as_deref(), Some("#cloud-config"));
        found.push((
            vm.name.unwrap(),
            vm.status.unwrap().name().unwrap().to_owned(),
            nic.network_ip.clone().unwrap(),
        ));
    }
    let running = |name: &str, ip: &str| (name.to_owned(), "RUNNING".to_owned(), ip.to_owned());
    assert_eq!(found, [running("vm-1", "10.0.0.2"), running("vm-3", "10.0.0.4")]);

    let stop = instances.stop().set_project(PROJECT).set_zone(ZONE).set_instance("vm-1");
    stop.poller().until_done().await.unwrap();
    let stopped =
        instances.get().set_project(PROJECT).set_zone(ZONE).set_instance("vm-1").send().await.unwrap();
    assert_eq!(stopped.status.unwrap().name(), Some("TERMINATED"));

    // A failed operation is no `Err` of the poller's: the operation says why.
    let in_use =
        networks.delete().set_project(PROJECT).set_network("lab").poller().until_done().await.unwrap();
    assert_eq!(in_use.http_error_status_code, Some(400));
    let why = &in_use.error.unwrap().errors[0];
    assert_eq!(why.code.as_deref(), Some("RESOURCE_IN_USE_BY_ANOTHER_RESOURCE"));
    let user = "is already being used by 'projects/labctl-test/global/firewalls/lab-ssh'";
    assert!(why.message.as_deref().unwrap().ends_with(user), "{why:?}");
    for name in ["vm-1", "vm-2", "vm-3"] {
        let delete = instances.delete().set_project(PROJECT).set_zone(ZONE).set_instance(name);
        delete.poller().until_done().await.unwrap();
    }
    let left = instances.list().set_project(PROJECT).set_zone(ZONE).send().await.unwrap();
    assert!(left.items.is_empty(), "{:?}", left.items);
    firewalls.delete().set_project(PROJECT).set_firewall("lab-ssh").poller().until_done().await.unwrap();
    let delete = subnetworks.delete().set_project(PROJECT).set_region(REGION).set_subnetwork("lab-eu");
    delete.poller().until_done().await.unwrap();
    networks.delete().set_project(PROJECT).set_network("lab").poller().until_done().await.unwrap();
    let gone = networks.get().set_project(PROJECT).set_network("lab").send().await.unwrap_err();
    assert_eq!(gone.http_status_code(), Some(404), "{gone}");
}

/// Polls the GKE operation `operation` until it is DONE; the operation then.
async fn done(
    gke: &google_cloud_container_v1::client::ClusterManager,
    operation: google_cloud_container_v1::model::Operation,
) -> google_cloud_container_v1::model::Operation {
    use google_cloud_container_v1::model::operation::Status;
    let name = format!("projects/{PROJECT}/locations/{}/operations/{}", operation.location, operation.name);
    let start = Instant::now();
    loop {
        let current = gke.get_operation().set_name(&name).send().await.unwrap();
        if current.status == Status::Done {
            return current;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{current:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_runs_a_gke_cluster_with_a_gpu_pool() {
    use base64::Engine;
    use google_cloud_container_v1::client::ClusterManager;
    use google_cloud_container_v1::model::{
        cluster, node_pool, node_taint, operation, AcceleratorConfig, Cluster, NodeConfig, NodePool,
        NodePoolAutoscaling, NodeTaint,
    };
    use google_cloud_gax::error::rpc::Code;
    #[allow(deprecated, reason = "GKE shows the nodes a pool runs nowhere else")]
    fn nodes(cluster: &Cluster) -> i32 {
        cluster.current_node_count
    }

    let emulator = Emulator::start("gke");
    let networks = compute!(Networks, emulator);
    let subnetworks = compute!(Subnetworks, emulator);
    let network = Network::new().set_name("lab").set_auto_create_subnetworks(false);
    networks.insert().set_project(PROJECT).set_body(network).poller().until_done().await.unwrap();
    let subnetwork = Subnetwork::new()
        .set_name("lab-eu")
        .set_network("global/networks/lab")
        .set_ip_cidr_range("10.0.0.0/24");
    let insert = subnetworks.insert().set_project(PROJECT).set_region(REGION).set_body(subnetwork);
    insert.poller().until_done().await.unwrap();

    let gke = ClusterManager::builder()
        .with_endpoint(&emulator.http)
        .with_credentials(emulator.owner())
        .build()
        .await
        .unwrap();
    let parent = format!("projects/{PROJECT}/locations/{ZONE}");
    let lab = format!("{parent}/clusters/lab");
    let (cpu, gpu) = (format!("{lab}/nodePools/cpu"), format!("{lab}/nodePools/gpu"));
    let cpu_pool = NodePool::new()
        .set_name("cpu")
        .set_initial_node_count(2)
        .set_config(NodeConfig::new().set_machine_type("e2-standard-4"));
    let gpu_pool = NodePool::new()
        .set_name("gpu")
        .set_config(
            NodeConfig::new()
                .set_machine_type("n1-standard-4")
                .set_accelerators([AcceleratorConfig::new()
                    .set_accelerator_type("nvidia-tesla-t4")
                    .set_accelerator_count(1)])
                .set_taints([NodeTaint::new()
                    .set_key("nvidia.com/gpu")
                    .set_value("present")
                    .set_effect(node_taint::Effect::NoSchedule)]),
        )
        .set_autoscaling(
            NodePoolAutoscaling::new().set_enabled(true).set_min_node_count(0).set_max_node_count(2),
        );
    let cluster = Cluster::new()
        .set_name("lab")
        .set_network("lab")
        .set_subnetwork("lab-eu")
        .set_resource_labels([("labctl-lab", "x")])
        .set_node_pools([cpu_pool, gpu_pool]);
    let create = gke.create_cluster().set_parent(&parent).set_cluster(cluster).send().await.unwrap();
    assert_eq!(create.operation_type, operation::Type::CreateCluster);

    // One operation at a time: the cluster is being created.
    let busy = gke.set_node_pool_size().set_name(&cpu).set_node_count(3).send().await.unwrap_err();
    assert_eq!(busy.http_status_code(), Some(400), "{busy}");
    let status = busy.status().unwrap();
    assert_eq!(status.code, Code::FailedPrecondition);
    assert_eq!(status.message, format!("Cluster is running incompatible operation {}.", create.name));
    assert_eq!(done(&gke, create).await.error, None);

    let running = gke.get_cluster().set_name(&lab).send().await.unwrap();
    assert_eq!((&running.status, nodes(&running)), (&cluster::Status::Running, 2));
    assert!(running.endpoint.starts_with("203.0.113."), "{}", running.endpoint);
    let ca = running.master_auth.unwrap().cluster_ca_certificate;
    let ca = base64::engine::general_purpose::STANDARD.decode(ca).unwrap();
    assert!(ca.starts_with(b"-----BEGIN CERTIFICATE-----\n"));
    let pools: Vec<_> = running.node_pools.iter().map(|p| (p.name.as_str(), p.status.clone())).collect();
    assert_eq!(pools, [("cpu", node_pool::Status::Running), ("gpu", node_pool::Status::Running)]);
    let config = running.node_pools[1].config.clone().unwrap();
    assert_eq!(
        (config.accelerators[0].accelerator_type.as_str(), config.accelerators[0].accelerator_count),
        ("nvidia-tesla-t4", 1)
    );
    assert_eq!(config.taints[0].effect, node_taint::Effect::NoSchedule);
    assert_eq!(running.node_pools[1].autoscaling.as_ref().unwrap().max_node_count, 2);

    let resize = gke.set_node_pool_size().set_name(&cpu).set_node_count(3).send().await.unwrap();
    assert_eq!(resize.operation_type, operation::Type::SetNodePoolSize);
    done(&gke, resize).await;
    assert_eq!(nodes(&gke.get_cluster().set_name(&lab).send().await.unwrap()), 3);
    let scaling = NodePoolAutoscaling::new().set_enabled(true).set_min_node_count(1).set_max_node_count(4);
    let autoscale =
        gke.set_node_pool_autoscaling().set_name(&gpu).set_autoscaling(scaling).send().await.unwrap();
    done(&gke, autoscale).await;
    let scaled = gke.get_node_pool().set_name(&gpu).send().await.unwrap();
    assert_eq!((scaled.autoscaling.unwrap().max_node_count, scaled.status), (4, node_pool::Status::Running));

    // The cluster keeps its subnetwork: Compute Engine's operation says so.
    let delete = subnetworks.delete().set_project(PROJECT).set_region(REGION).set_subnetwork("lab-eu");
    let in_use = delete.poller().until_done().await.unwrap();
    let why = in_use.error.unwrap().errors[0].message.clone().unwrap();
    assert!(
        why.ends_with(
            "is already being used by 'projects/labctl-test/locations/europe-west1-b/clusters/lab'"
        ),
        "{why}"
    );

    done(&gke, gke.delete_node_pool().set_name(&gpu).send().await.unwrap()).await;
    let left = gke.list_node_pools().set_parent(&lab).send().await.unwrap().node_pools;
    assert_eq!(left.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["cpu"]);
    let delete = gke.delete_cluster().set_name(&lab).send().await.unwrap();
    assert_eq!(gke.get_cluster().set_name(&lab).send().await.unwrap().status, cluster::Status::Stopping);
    done(&gke, delete).await;
    let gone = gke.get_cluster().set_name(&lab).send().await.unwrap_err();
    assert_eq!(
        (gone.http_status_code(), gone.status().map(|s| s.code)),
        (Some(404), Some(Code::NotFound)),
        "{gone}"
    );
    let delete = subnetworks.delete().set_project(PROJECT).set_region(REGION).set_subnetwork("lab-eu");
    assert_eq!(delete.poller().until_done().await.unwrap().error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gke_refuses_a_misspelt_field_and_anyone_but_the_owner() {
    use google_cloud_auth::credentials::CacheableResource;
    use google_cloud_iam_admin_v1::client::Iam;

    let emulator = Emulator::start("gke-contract");
    let authorization = |credentials: Credentials| async move {
        match credentials.headers(http::Extensions::new()).await.unwrap() {
            CacheableResource::New { data, .. } => data,
            CacheableResource::NotModified => unreachable!("nothing was cached"),
        }
    };
    let clusters = format!("{}/v1/projects/{PROJECT}/locations/{ZONE}/clusters", emulator.http);
    let create = |headers: http::HeaderMap, body: serde_json::Value| {
        reqwest::Client::new()
            .post(&clusters)
            .headers(headers)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
    };
    let misspelt = serde_json::json!({"cluster": {"name": "lab", "initialNodeCont": 1}});
    let response = create(authorization(emulator.owner()).await, misspelt).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(
        body["error"]["message"],
        "Invalid JSON payload received. Unknown name \"initialNodeCont\" at 'cluster': Cannot find field."
    );

    let iam = Iam::builder()
        .with_endpoint(&emulator.http)
        .with_credentials(emulator.owner())
        .build()
        .await
        .unwrap();
    let parent = format!("projects/{PROJECT}");
    iam.create_service_account().set_name(&parent).set_account_id("student-ada").send().await.unwrap();
    let email = format!("student-ada@{PROJECT}.iam.gserviceaccount.com");
    let key = iam
        .create_service_account_key()
        .set_name(format!("{parent}/serviceAccounts/{email}"))
        .send()
        .await
        .unwrap();
    let ada = service_account::Builder::new(serde_json::from_slice(&key.private_key_data).unwrap())
        .build()
        .unwrap();
    let valid = serde_json::json!({"cluster": {"name": "lab", "initialNodeCount": 1}});
    let response = create(authorization(ada).await, valid).await.unwrap();
    assert_eq!(response.status(), 403);
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
}

/// The JWT-bearer grant: an assertion signed with an issued key, for the key's token
/// endpoint, buys an access token of its account, which the APIs then take; an assertion
/// for another audience, or a token the emulator never issued, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assertion_signed_with_an_issued_key_buys_an_access_token() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    let emulator = Emulator::start("oauth");
    let key = emulator.owner_key();
    let token_uri = key["token_uri"].as_str().unwrap().to_owned();
    assert_eq!(token_uri, format!("{}/token", emulator.http), "the key files name the emulator's endpoint");
    let signer = service_account::Builder::new(key.clone()).build_signer().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let assertion = |audience: &str| {
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": key["private_key_id"]});
        let claims = serde_json::json!({
            "iss": key["client_email"], "aud": audience, "iat": now, "exp": now + 600,
            "scope": "https://www.googleapis.com/auth/cloud-platform",
        });
        let encode = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let unsigned = format!("{}.{}", encode(&header), encode(&claims));
        let signer = signer.clone();
        async move {
            let signature = signer.sign(&unsigned).await.unwrap();
            format!("{unsigned}.{}", URL_SAFE_NO_PAD.encode(signature))
        }
    };
    let http = reqwest::Client::new();
    let grant = |assertion: String| {
        let form =
            format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}");
        http.post(&token_uri).header("Content-Type", "application/x-www-form-urlencoded").body(form).send()
    };
    let clusters = format!("{}/v1/projects/{PROJECT}/locations/{ZONE}/clusters", emulator.http);
    let list = |token: String| http.get(&clusters).header("Authorization", format!("Bearer {token}")).send();

    let granted = grant(assertion(&token_uri).await).await.unwrap();
    assert_eq!(granted.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(&granted.bytes().await.unwrap()).unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("ya29.") && body["expires_in"].as_u64() > Some(3000), "{body}");
    assert_eq!(list(token).await.unwrap().status(), 200, "the owner's access token opens GKE");

    let elsewhere = grant(assertion("https://oauth2.googleapis.com/token").await).await.unwrap();
    assert_eq!(elsewhere.status(), 400);
    let body: serde_json::Value = serde_json::from_slice(&elsewhere.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"], "invalid_grant", "{body}");
    assert_eq!(list("ya29.never-issued".into()).await.unwrap().status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_url_serves_its_object_to_anyone_until_tampered_with() {
    use google_cloud_storage::builder::storage::SignedUrlBuilder;
    use google_cloud_storage::client::Storage;

    let emulator = Emulator::start("signed");
    emulator.create_buckets(&["lab-bin"]).await;
    let objects = Storage::builder()
        .with_endpoint(&emulator.http)
        .with_credentials(emulator.owner())
        .build()
        .await
        .unwrap();
    let binary = bytes::Bytes::from((0..200_000_u32).map(|i| i as u8).collect::<Vec<u8>>());
    objects
        .write_object("projects/_/buckets/lab-bin", "bin/mapreduce worker", binary.clone())
        .send_buffered()
        .await
        .unwrap();

    let signer = service_account::Builder::new(emulator.owner_key()).build_signer().unwrap();
    let sign = |object: &str| {
        SignedUrlBuilder::for_object("projects/_/buckets/lab-bin", object)
            .with_endpoint(&emulator.http)
            .with_method(http::Method::GET)
            .with_expiration(Duration::from_secs(600))
            .sign_with(&signer)
    };
    let url = sign("bin/mapreduce worker").await.unwrap();
    // Anyone holding the URL: no credentials.
    let fetch = |url: String| async move {
        let response = reqwest::get(url).await.unwrap();
        (response.status().as_u16(), response.bytes().await.unwrap())
    };
    assert_eq!(fetch(url.clone()).await, (200, binary));

    let (status, body) = fetch(url.replace("X-Goog-Expires=600", "X-Goog-Expires=6000")).await;
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("<Code>SignatureDoesNotMatch</Code>"), "{body:?}");
    let (status, _) = fetch(url.replace("mapreduce", "scheduler")).await;
    assert_eq!(status, 403);
    let (status, body) = fetch(sign("bin/none").await.unwrap()).await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("<Code>NoSuchKey</Code>"), "{body:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_uses_the_bucket_granted_to_its_key_and_no_other() {
    use futures::TryStreamExt;
    use google_cloud_iam_admin_v1::client::Iam;
    use google_cloud_iam_v1::model::{Binding, Policy};
    use object_store::gcp::GoogleCloudStorageBuilder;
    use object_store::list::{PaginatedListOptions, PaginatedListStore};
    use object_store::path::Path;
    use object_store::{ObjectStore, PutPayload};

    let emulator = Emulator::start("object-store");
    let control = emulator.create_buckets(&["lab-ada", "lab-bob"]).await;
    let iam = Iam::builder()
        .with_endpoint(&emulator.http)
        .with_credentials(emulator.owner())
        .build()
        .await
        .unwrap();
    let parent = format!("projects/{PROJECT}");
    iam.create_service_account().set_name(&parent).set_account_id("student-ada").send().await.unwrap();
    let email = format!("student-ada@{PROJECT}.iam.gserviceaccount.com");
    let key = iam
        .create_service_account_key()
        .set_name(format!("{parent}/serviceAccounts/{email}"))
        .send()
        .await
        .unwrap();
    let grant =
        Binding::new().set_role("roles/storage.objectAdmin").set_members([format!("serviceAccount:{email}")]);
    let policy = control.set_iam_policy().set_resource("projects/_/buckets/lab-ada");
    policy.set_policy(Policy::new().set_bindings([grant])).send().await.unwrap();

    // A key file as object_store reads it: where Cloud Storage is added.
    let key_file = |mut key: serde_json::Value, name: &str| {
        key["gcs_base_url"] = serde_json::json!(emulator.http);
        let path =
            std::env::temp_dir().join(format!("labctl-gcp-emulator-{name}-{}.json", std::process::id()));
        std::fs::write(&path, key.to_string()).unwrap();
        path
    };
    let ada_key: serde_json::Value = serde_json::from_slice(&key.private_key_data).unwrap();
    let mut stranger_key = ada_key.clone();
    stranger_key["private_key"] = serde_json::json!(unissued_private_key());
    let keys = [
        key_file(ada_key, "ada"),
        key_file(emulator.owner_key(), "owner"),
        key_file(stranger_key, "stranger"),
    ];
    let store = |key: &std::path::Path, bucket: &str| {
        GoogleCloudStorageBuilder::new()
            .with_service_account_path(key.to_str().unwrap())
            .with_bucket_name(bucket)
            .with_client_options(object_store::ClientOptions::new().with_allow_http(true))
            .with_retry(object_store::RetryConfig { max_retries: 0, ..Default::default() })
            .build()
            .unwrap()
    };
    let (ada, owner, stranger) =
        (store(&keys[0], "lab-ada"), store(&keys[1], "lab-bob"), store(&keys[2], "lab-ada"));

    let a = Path::from("in/a.txt");
    let written = ada.put(&a, PutPayload::from_static(b"alpha")).await.unwrap();
    ada.put(&Path::from("in/sub/b.txt"), PutPayload::from_static(b"beta")).await.unwrap();
    let read = ada.get(&a).await.unwrap();
    assert_eq!((&read.meta.e_tag, &read.meta.version), (&written.e_tag, &written.version));
    assert_eq!(read.bytes().await.unwrap(), "alpha");
    let head = ada.head(&a).await.unwrap();
    assert_eq!((head.size, head.e_tag), (5, written.e_tag));
    assert_eq!(ada.get_range(&a, 1..3).await.unwrap(), "lp");

    let listed: Vec<_> = ada.list(Some(&Path::from("in"))).try_collect().await.unwrap();
    let listed: Vec<_> = listed.iter().map(|m| (m.location.to_string(), m.size)).collect();
    assert_eq!(listed, [("in/a.txt".to_owned(), 5), ("in/sub/b.txt".to_owned(), 4)]);
    let shallow = ada.list_with_delimiter(Some(&Path::from("in"))).await.unwrap();
    let objects: Vec<_> = shallow.objects.iter().map(|m| m.location.to_string()).collect();
    assert_eq!((objects, shallow.common_prefixes), (vec!["in/a.txt".to_owned()], vec![Path::from("in/sub")]));

    let after: Vec<_> = ada.list_with_offset(None, &a).try_collect().await.unwrap();
    assert_eq!(after.iter().map(|m| m.location.to_string()).collect::<Vec<_>>(), ["in/sub/b.txt"]);
    let mut pages = vec![];
    let mut page_token = None;
    loop {
        let options = PaginatedListOptions { max_keys: Some(1), page_token, ..Default::default() };
        let page = ada.list_paginated(Some("in/"), options).await.unwrap();
        pages.push(page.result.objects.iter().map(|m| m.location.to_string()).collect::<Vec<_>>());
        page_token = page.page_token;
        if page_token.is_none() {
            break;
        }
    }
    assert_eq!(pages, [["in/a.txt"], ["in/sub/b.txt"]]);

    let copy = Path::from("out/a copy.txt");
    ada.copy(&a, &copy).await.unwrap();
    assert_eq!(ada.get(&copy).await.unwrap().bytes().await.unwrap(), "alpha");
    ada.delete(&copy).await.unwrap();
    let gone = ada.get(&copy).await.unwrap_err();
    assert!(matches!(gone, object_store::Error::NotFound { .. }), "{gone}");

    let big = Path::from("out/big");
    let parts = [vec![1_u8; 5 << 20], vec![2_u8; 5 << 20], b"end".to_vec()];
    let mut upload = ada.put_multipart(&big).await.unwrap();
    for part in &parts {
        upload.put_part(PutPayload::from(part.clone())).await.unwrap();
    }
    upload.complete().await.unwrap();
    assert_eq!(ada.get(&big).await.unwrap().bytes().await.unwrap(), parts.concat());
    let mut aborted = ada.put_multipart(&Path::from("out/aborted")).await.unwrap();
    aborted.put_part(PutPayload::from_static(b"x")).await.unwrap();
    aborted.abort().await.unwrap();
    assert!(matches!(ada.head(&Path::from("out/aborted")).await, Err(object_store::Error::NotFound { .. })));

    // Another bucket: the owner's, not Ada's, not even as a copy's source.
    owner.put(&Path::from("secret"), PutPayload::from_static(b"s")).await.unwrap();
    let ada_on_bob = store(&keys[0], "lab-bob");
    let refusals = [
        ada_on_bob.get(&Path::from("secret")).await.map(drop),
        ada_on_bob.put(&Path::from("mine"), PutPayload::from_static(b"m")).await.map(drop),
        ada_on_bob.delete(&Path::from("secret")).await,
    ];
    for refusal in refusals {
        assert!(matches!(refusal, Err(object_store::Error::PermissionDenied { .. })), "{refusal:?}");
    }
    // object_store says no more of a listing than it failed.
    let listing = ada_on_bob.list_with_delimiter(None).await.unwrap_err().to_string();
    assert!(listing.contains("403 Forbidden"), "{listing}");
    let bearer = ada.credentials().get_credential().await.unwrap().bearer.clone();
    let http = reqwest::Client::new();
    let steal = http
        .put(format!("{}/lab-ada/stolen", emulator.http))
        .bearer_auth(&bearer)
        .header("x-goog-copy-source", "lab-bob/secret")
        .send()
        .await
        .unwrap();
    assert_eq!(steal.status(), 403);
    assert!(steal.text().await.unwrap().contains("<Code>AccessDenied</Code>"));

    // A key the emulator never issued, or none at all.
    let stranger = stranger.get(&a).await.unwrap_err();
    assert!(matches!(stranger, object_store::Error::Unauthenticated { .. }), "{stranger}");
    let anonymous = http.get(format!("{}/lab-ada/in/a.txt", emulator.http)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.text().await.unwrap().contains("<Code>AuthenticationRequired</Code>"));
    for key in keys {
        std::fs::remove_file(key).unwrap();
    }
}

/// An RSA private key (PKCS#8 PEM) no emulator issued.
fn unissued_private_key() -> String {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    use base64::Engine;
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let der = AsDer::<Pkcs8V1Der>::as_der(&pair).unwrap();
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"))
}

/// Whether process `pid` runs (a zombie does not: it only waits to be reaped).
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(") ").next().is_some_and(|rest| !rest.is_empty() && !rest.starts_with('Z'))
}
