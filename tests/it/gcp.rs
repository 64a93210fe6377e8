//! The GCP provider against emulators on loopback, each test starting its own:
//! `labctl-gcp-emulator` (testing/gcp-emulator: storage v2, IAM and Compute Engine, every
//! JSON body checked against Google's discovery documents, and the bucket IAM bindings
//! enforced on the objects) in front of fake-gcs-server; the VM runner boots its instances
//! from their metadata. `scripts/test.sh` installs both and sets
//! `LABCTL_GCP_EMULATOR_DEPS`. What exists is listed through the google-cloud clients as
//! the project's owner, never through labctl.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use google_cloud_auth::credentials::{service_account, Credentials};
use google_cloud_compute_v1::client::{Firewalls, Instances, Networks, Subnetworks};
use google_cloud_container_v1::client::ClusterManager;
use google_cloud_iam_admin_v1::client::Iam;
use google_cloud_storage::client::{Storage, StorageControl};

use labctl_vm_runner::{Gce, Runner};

use crate::conformance::{conformance, Drift, World};
use crate::kubernetes::Cluster;
use crate::support::*;

pub(crate) const PROJECT: &str = "labctl-test";
const REGION: &str = "europe-west1";
pub(crate) const ZONE: &str = "europe-west1-b";

/// The emulator on free loopback ports, stopped (with its fake-gcs-server) on drop.
pub struct Emulator {
    child: Child,
    pub http: String,
    pub grpc: String,
    dir: tempfile::TempDir,
}

impl Emulator {
    pub fn start() -> Self {
        let deps = std::env::var("LABCTL_GCP_EMULATOR_DEPS").expect(
            "LABCTL_GCP_EMULATOR_DEPS is not set: run the tests through scripts/test.sh, which installs the GCP emulators",
        );
        let exe = Path::new(env!("CARGO_BIN_EXE_labctl")).with_file_name("labctl-gcp-emulator");
        assert!(
            exe.exists(),
            "{} is not built: run the tests with `cargo nextest run --workspace`",
            exe.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(&exe)
            .args(["--deps", &deps, "--project", PROJECT, "--owner-key"])
            .arg(dir.path().join("owner.json"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Stopped on drop from here on, whatever fails.
        let mut emulator = Self { http: String::new(), grpc: String::new(), child, dir };
        let mut line = String::new();
        let stdout = emulator.child.stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        let ready: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the emulator did not start ({e}): {line:?}"));
        let url = |k: &str| ready[k].as_str().unwrap().to_owned();
        (emulator.http, emulator.grpc) = (url("http"), url("grpc"));
        emulator
    }

    pub fn owner_key(&self) -> PathBuf {
        self.dir.path().join("owner.json")
    }

    /// `[provider.gcp]` for this emulator, labctl acting as the project's owner.
    pub fn provider_block(&self) -> String {
        format!(
            "[provider.gcp]\nproject = \"{PROJECT}\"\nregion = \"{REGION}\"\ncredentials = \"{}\"\nendpoints = {{ storage = \"{}\", storage_grpc = \"{}\", iam = \"{}\", compute = \"{}\", container = \"{}\" }}\n",
            self.owner_key().display(),
            self.http,
            self.grpc,
            self.http,
            self.http,
            self.http
        )
    }

    /// The VM runner booting this emulator's instances.
    pub fn runner(&self) -> Runner {
        let gce = Gce::new(&self.http, PROJECT, ZONE, &self.owner_key()).unwrap();
        Runner::start(gce, &self.http, &crate::booted::image()).unwrap()
    }

    /// `curl -X METHOD URL` as the holder of the key file `key`: the status and the body.
    pub fn curl(&self, key: &str, method: &str, path: &str, body: &str) -> (String, String) {
        let headers = block_on(async { Self::credentials(key).headers(Default::default()).await }).unwrap();
        let google_cloud_auth::credentials::CacheableResource::New { data: headers, .. } = headers else {
            panic!("no fresh headers")
        };
        let authorization = headers["authorization"].to_str().unwrap().to_owned();
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/stderr", "-w", "%{http_code}", "--path-as-is", "-X", method])
            .args(["-H", &format!("Authorization: {authorization}"), "-H", "Content-Type: application/json"])
            .args(["--data", body, &format!("{}{path}", self.http)])
            .output()
            .unwrap();
        (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    }

    /// Credentials of a key file's contents.
    fn credentials(key: &str) -> Credentials {
        service_account::Builder::new(serde_json::from_str(key).unwrap()).build().unwrap()
    }

    fn owner(&self) -> Credentials {
        Self::credentials(&std::fs::read_to_string(self.owner_key()).unwrap())
    }

    /// The JSON client (objects) acting with `key`.
    pub async fn objects(&self, key: &str) -> Storage {
        let retry = google_cloud_gax::retry_policy::NeverRetry;
        Storage::builder()
            .with_endpoint(&self.http)
            .with_credentials(Self::credentials(key))
            .with_retry_policy(retry)
            .build()
            .await
            .unwrap()
    }

    pub async fn control(&self) -> StorageControl {
        StorageControl::builder()
            .with_endpoint(&self.grpc)
            .with_credentials(self.owner())
            .build()
            .await
            .unwrap()
    }

    /// GKE's client, as the project's owner.
    pub async fn gke(&self) -> ClusterManager {
        ClusterManager::builder()
            .with_endpoint(&self.http)
            .with_credentials(self.owner())
            .build()
            .await
            .unwrap()
    }

    pub async fn iam(&self) -> Iam {
        Iam::builder().with_endpoint(&self.http).with_credentials(self.owner()).build().await.unwrap()
    }

    /// What of lab `lab` exists: each labelled bucket with its labels and objects, each
    /// service account of the lab's prefix with its number of keys, each labelled VM and GKE
    /// cluster, and each network, subnet and firewall rule described as the lab's; sorted.
    pub fn inventory(&self, lab: &str) -> Vec<String> {
        block_on(async {
            let (control, iam) = (self.control().await, self.iam().await);
            let mut found = self.compute_inventory(lab).await;
            let buckets =
                control.list_buckets().set_parent(format!("projects/{PROJECT}")).send().await.unwrap();
            for bucket in
                buckets.buckets.into_iter().filter(|b| b.labels.get("labctl-lab").is_some_and(|l| l == lab))
            {
                let mut labels: Vec<String> = bucket.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                labels.sort();
                found.push(format!("bucket {} {}", bucket.bucket_id, labels.join(",")));
                let objects = control.list_objects().set_parent(&bucket.name).send().await.unwrap();
                found.extend(
                    objects.objects.iter().map(|o| format!("object {}/{}", bucket.bucket_id, o.name)),
                );
            }
            let accounts =
                iam.list_service_accounts().set_name(format!("projects/{PROJECT}")).send().await.unwrap();
            let prefix = labctl_provider_gcp::account_prefix(lab);
            for account in accounts.accounts.into_iter().filter(|a| a.email.starts_with(&prefix)) {
                let name = format!("projects/{PROJECT}/serviceAccounts/{}", account.email);
                let keys = iam.list_service_account_keys().set_name(name).send().await.unwrap().keys.len();
                found.push(format!(
                    "service_account {} {keys} key(s): {}",
                    account.email, account.description
                ));
            }
            found.sort();
            found
        })
    }
}

impl Emulator {
    async fn compute_inventory(&self, lab: &str) -> Vec<String> {
        macro_rules! client {
            ($client:ty) => {
                <$client>::builder()
                    .with_endpoint(&self.http)
                    .with_credentials(self.owner())
                    .build()
                    .await
                    .unwrap()
            };
        }
        let ours = |description: &Option<String>| {
            description.as_deref().is_some_and(|d| d.split(' ').any(|t| t == format!("labctl/lab={lab}")))
        };
        let mut found = vec![];
        let vms = client!(Instances).list().set_project(PROJECT).set_zone(ZONE).send().await.unwrap();
        for vm in vms.items.iter().filter(|v| v.labels.get("labctl-lab").is_some_and(|l| l == lab)) {
            found.push(format!("vm {} {:?}", vm.name.as_deref().unwrap_or("?"), vm.status));
        }
        let parent = format!("projects/{PROJECT}/locations/{ZONE}");
        let clusters = self.gke().await.list_clusters().set_parent(parent).send().await.unwrap();
        for cluster in
            clusters.clusters.iter().filter(|c| c.resource_labels.get("labctl-lab").is_some_and(|l| l == lab))
        {
            let pools: Vec<String> =
                cluster.node_pools.iter().map(|p| format!("{}:{:?}", p.name, p.status)).collect();
            found.push(format!("cluster {} {:?} pools {}", cluster.name, cluster.status, pools.join(",")));
        }
        let rules = client!(Firewalls).list().set_project(PROJECT).send().await.unwrap();
        let rules = rules.items.iter().filter(|f| ours(&f.description));
        found.extend(rules.map(|f| format!("firewall {}", f.name.as_deref().unwrap_or("?"))));
        let subnets =
            client!(Subnetworks).list().set_project(PROJECT).set_region(REGION).send().await.unwrap();
        let subnets = subnets.items.iter().filter(|s| ours(&s.description));
        found.extend(subnets.map(|s| format!("subnetwork {}", s.name.as_deref().unwrap_or("?"))));
        let networks = client!(Networks).list().set_project(PROJECT).send().await.unwrap();
        let networks = networks.items.iter().filter(|n| ours(&n.description));
        found.extend(networks.map(|n| format!("network {}", n.name.as_deref().unwrap_or("?"))));
        found
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // SAFETY: signalling our own child; SIGTERM lets it stop fake-gcs-server first.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// A lab of three students, each with a bucket seeded with a dataset and a credential.
fn storage_lab(emulator: &Emulator, lab: &str) -> Env {
    let env = Env::new();
    env.write("lab.toml", &bucket_lab(lab, &emulator.provider_block(), &["ann", "bob", "cyd"]));
    env
}

/// `labctl` with no Application Default Credentials of the user's.
pub(crate) fn command(env: &Env, args: &[&str]) -> Command {
    let mut cmd = env.command(args);
    cmd.env("GOOGLE_APPLICATION_CREDENTIALS", env.path("no-adc.json"))
        .env("CLOUDSDK_CONFIG", env.path("no-gcloud"));
    cmd
}

fn run(env: &Env, args: &[&str]) -> Run {
    Run::from(command(env, args).output().unwrap())
}

#[test]
fn a_students_key_opens_her_bucket_only_and_destroy_leaves_nothing() {
    let emulator = Emulator::start();
    let env = storage_lab(&emulator, "gcplab");
    run(&env, &["apply", "lab.toml", "--yes"]).ok();

    let made = emulator.inventory("gcplab");
    for student in ["ann", "bob", "cyd"] {
        let labels =
            format!("bucket gcplab-{student} labctl-cohort=c1,labctl-lab=gcplab,labctl-student={student}");
        assert!(made.contains(&labels), "{made:#?}");
        for part in ["part-00000.txt", "part-00001.txt", "_LABCTL_MANIFEST.json"] {
            let object = format!("object gcplab-{student}/datasets/corpus/{part}");
            assert!(made.contains(&object), "{object} in {made:#?}");
        }
        let account = format!(
            "service_account {}@{PROJECT}.iam.gserviceaccount.com 1 key(s): labctl/lab=gcplab labctl/cohort=c1 labctl/student={student}",
            labctl_provider_gcp::account_id("gcplab", student)
        );
        assert!(made.contains(&account), "{account} in {made:#?}");
    }

    let key = |student: &str| key_of(&env, student);
    block_on(async {
        let ann = emulator.objects(&key("ann")).await;
        ann.write_object("projects/_/buckets/gcplab-ann", "notes.txt", "mine")
            .send_buffered()
            .await
            .expect("ann writes her bucket");
        let mut read = ann
            .read_object("projects/_/buckets/gcplab-ann", "notes.txt")
            .send()
            .await
            .expect("ann reads her bucket");
        assert_eq!(read.next().await.unwrap().unwrap().as_ref(), b"mine");
        let dataset =
            ann.read_object("projects/_/buckets/gcplab-ann", "datasets/corpus/part-00000.txt").send().await;
        assert!(dataset.is_ok(), "ann reads her dataset: {dataset:?}");

        let refused =
            ann.write_object("projects/_/buckets/gcplab-bob", "notes.txt", "not mine").send_buffered().await;
        assert_eq!(refused.unwrap_err().http_status_code(), Some(403), "ann writes bob's bucket");
        let refused =
            ann.read_object("projects/_/buckets/gcplab-bob", "datasets/corpus/part-00000.txt").send().await;
        assert_eq!(refused.unwrap_err().http_status_code(), Some(403), "ann reads bob's bucket");
        let bob = emulator.objects(&key("bob")).await;
        let refused = bob.read_object("projects/_/buckets/gcplab-ann", "notes.txt").send().await;
        assert_eq!(refused.unwrap_err().http_status_code(), Some(403), "bob reads ann's bucket");
    });
    // Nor by a path that walks out of her bucket, nor by copying out of it into another.
    let ann = key("ann");
    let walk =
        "/storage/v1/b/gcplab-ann/o/%2e%2e/%2e%2e/gcplab-bob/o/datasets%2Fcorpus%2Fpart-00000.txt?alt=media";
    let (status, body) = emulator.curl(&ann, "GET", walk, "");
    assert_eq!(status, "400", "{body}");
    let copy = "/storage/v1/b/gcplab-ann/o/notes.txt/copyTo/b/gcplab-bob/o/stolen.txt";
    let (status, body) = emulator.curl(&ann, "POST", copy, "{}");
    assert_eq!(status, "403", "{body}");

    // Her handout says who she is on GCP and how to use her key.
    run(&env, &["output", "lab.toml", "--handout", "handouts"]).ok();
    let handout = std::fs::read_to_string(env.path("handouts/ann.md")).unwrap();
    assert!(handout.contains("gcloud storage ls gs://gcplab-ann/"), "{handout}");
    assert!(
        handout.contains(&format!(
            "{}@{PROJECT}.iam.gserviceaccount.com",
            labctl_provider_gcp::account_id("gcplab", "ann")
        )),
        "{handout}"
    );
    assert!(handout.contains("\"type\": \"service_account\""), "{handout}");

    let plan = run(&env, &["plan", "lab.toml"]).ok();
    assert!(plan.stdout.contains("No changes"), "{}", plan.all());

    // Moving the expiry relabels the buckets and redescribes the accounts in place; `reap`
    // reads it.
    let text = std::fs::read_to_string(env.path("lab.toml")).unwrap();
    let expires = "2031-06-30T17:00:00Z";
    env.write("lab.toml", &text.replacen("[lab]", &format!("[lab]\nexpires = {expires}"), 1));
    let retagged = run(&env, &["apply", "lab.toml", "--yes"]).ok();
    assert!(
        retagged.stdout.contains("0 created,") && retagged.stdout.contains("0 replaced"),
        "{}",
        retagged.stdout
    );
    let owned: Vec<String> =
        emulator.inventory("gcplab").into_iter().filter(|l| !l.starts_with("object ")).collect();
    assert_eq!(owned.len(), 6, "{owned:#?}");
    for line in &owned {
        assert!(
            line.contains("labctl-expires=20310630t170000z")
                || line.contains("labctl/expires=20310630t170000z"),
            "{line}"
        );
    }
    let listed = run(&env, &["reap", "lab.toml"]).ok();
    assert!(listed.stdout.contains(&format!("  gcplab on gcp: expires at {expires}")), "{}", listed.stdout);

    // A rotated key: the old one no longer opens her bucket, the new one does.
    let old = key("ann");
    run(&env, &["apply", "lab.toml", "--yes", "--rotate-keys"]).ok();
    let new = key_of(&env, "ann");
    assert_ne!(old, new);
    let emulator = &emulator;
    block_on(async {
        let read = |key: String| async move {
            let client = emulator.objects(&key).await;
            client.read_object("projects/_/buckets/gcplab-ann", "notes.txt").send().await.map(drop)
        };
        assert_eq!(read(old).await.unwrap_err().http_status_code(), Some(401), "the rotated-out key");
        read(new).await.expect("the new key");
    });

    // Her work is archived; the datasets are not.
    let archived = run(&env, &["destroy", "lab.toml", "--yes", "--archive", "kept"]).ok();
    assert_eq!(
        std::fs::read_to_string(env.path("kept/ann/notes.txt")).unwrap(),
        "mine",
        "{}",
        archived.all()
    );
    assert!(!env.path("kept/ann/datasets").exists());
    assert_eq!(emulator.inventory("gcplab"), Vec::<String>::new());
}

/// `examples/gcp.toml` on `emulator`, its VMs reached through the ssh_config `runner` keeps.
fn gcp_example(emulator: &Emulator, runner: &Runner) -> Env {
    let env = Env::new();
    runner.keep_ssh_config(&env.path("ssh_config"));
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gcp.toml")).unwrap();
    let start = text.find("[provider.gcp]").unwrap();
    let end = start + text[start..].find("\n\n").unwrap();
    let block = format!("{}ssh_config = \"ssh_config\"", emulator.provider_block());
    env.write("lab.toml", &format!("{}{block}{}", &text[..start], &text[end..]));
    env
}

/// [`gcp_example`] with every cohort on VMs: its GKE cluster stays, with no one on it.
fn gcp_example_on_vms(emulator: &Emulator, runner: &Runner) -> Env {
    let env = gcp_example(emulator, runner);
    let text = std::fs::read_to_string(env.path("lab.toml")).unwrap();
    let on_cluster = ["kubernetes = ", "quota = ", "limits = ", "gpu = { count = 1 }"];
    let kept: Vec<&str> = text.lines().filter(|l| !on_cluster.iter().any(|c| l.starts_with(c))).collect();
    assert_eq!(text.lines().count() - kept.len(), on_cluster.len(), "{text}");
    env.write("lab.toml", &kept.join("\n"));
    env
}

/// Every course lab in `labs/` applies and verifies on GCP by switching its provider block
/// and its machine types to GCE's (datasets shrunk): its clusters become GKE clusters, its
/// students' smoke workloads run on their booted VMs. It destroys to nothing.
#[test]
fn every_course_lab_applies_on_gcp_by_switching_the_provider_block() {
    let emulator = Emulator::start();
    let runner = emulator.runner();
    let gcp = format!("{}ssh_config = \"ssh_config\"\n", emulator.provider_block());
    let machine_types =
        [("m5.large", "e2-standard-2"), ("m5.xlarge", "e2-standard-4"), ("g4dn.xlarge", "n1-standard-4")];
    for (name, env) in crate::booted::course_labs(&gcp, &machine_types) {
        runner.keep_ssh_config(&env.path("ssh_config"));
        let applied = run(&env, &["apply", "lab.toml", "--yes"]);
        assert_eq!(applied.code, 0, "{name}:\n{}", applied.all());
        assert!(applied.stdout.contains(" checks passed."), "{name}:\n{}", applied.stdout);
        assert!(run(&env, &["plan", "lab.toml"]).ok().stdout.contains("No changes"), "{name}");
        run(&env, &["destroy", "lab.toml", "--yes"]).ok();
        assert_eq!(emulator.inventory(&name), Vec::<String>::new(), "{name}");
    }
    crate::booted::assert_powered_off(runner);
}

/// The GCP example on the emulator, its GKE cluster's API on the test cluster: one apply
/// makes the Monday cohort's VMs, which boot in the VM runner from their metadata (their
/// cloud-init fetches the workers by signed URLs and runs them), and the deep-learning
/// cohort's namespaces on the cluster, their scheduler workers on its GPU node; every
/// student's smoke workloads pass, over SSH or as Jobs. A student logs in as her handout
/// says, without sudo, and runs its word count: her workers read and write her bucket with
/// her key, and are refused another's. `--rotate-keys` gives her VM the new key (the old one
/// is refused). Re-plan is empty; destroy leaves nothing and powers every VM off.
#[test]
fn the_gcp_example_boots_its_vms_and_runs_its_gpu_cohort_on_gke() {
    let emulator = Emulator::start();
    let runner = emulator.runner();
    let cluster = Cluster::start();
    let env = gcp_example(&emulator, &runner);
    let text = std::fs::read_to_string(env.path("lab.toml")).unwrap();
    env.write("lab.toml", &crate::gke::on_test_cluster(&env, &text, &cluster));
    let labctl = |args: &[&str]| crate::gke::run_on_gke(&env, "bigdata-gcp-shared", args).ok();

    let applied = labctl(&["apply", "lab.toml", "--yes", "--no-verify"]);
    crate::booted::assert_workers_run(&runner, 3);
    let verified = labctl(&["verify", "lab.toml"]);
    assert!(
        verified.stdout.contains("5 students, 10 of 10 checks passed"),
        "{}{}",
        applied.all(),
        verified.all()
    );

    // VMs for the Monday cohort, namespaces for the deep-learning one; buckets for all.
    let made = emulator.inventory("bigdata-gcp");
    for line in ["network bigdata-gcp", "subnetwork bigdata-gcp", "firewall bigdata-gcp-ada-ssh"] {
        assert!(made.contains(&line.to_owned()), "{line} in {made:#?}");
    }
    for student in ["ada", "alan", "grace"] {
        assert!(made.contains(&format!("vm bigdata-gcp-{student} Some(Running)")), "{made:#?}");
    }
    for student in ["edsger", "barbara"] {
        assert!(!made.iter().any(|l| l.starts_with(&format!("vm bigdata-gcp-{student}"))), "{made:#?}");
        let bucket = format!("bucket bigdata-gcp-{student} ");
        assert!(made.iter().any(|l| l.starts_with(&bucket)), "{made:#?}");
    }
    let labelled = cluster.labelled("bigdata-gcp");
    let namespaces: Vec<&String> = labelled.iter().filter(|l| l.starts_with("Namespace ")).collect();
    assert_eq!(
        namespaces,
        ["Namespace bigdata-gcp-barbara", "Namespace bigdata-gcp-edsger"],
        "{labelled:#?}"
    );
    for student in ["edsger", "barbara"] {
        let nodes = cluster.pod_nodes(&format!("bigdata-gcp-{student}"), "scheduler-workers");
        assert_eq!(nodes, ["labctl-gpu", "labctl-gpu"], "{student}'s GPU workers");
    }
    labctl(&["output", "lab.toml", "--handout", "handouts"]);
    let barbara = std::fs::read_to_string(env.path("handouts/barbara.md")).unwrap();
    assert!(barbara.contains("namespace `bigdata-gcp-barbara`") && !barbara.contains("ssh "), "{barbara}");

    // Ada logs in with the key from her handout, as herself, without sudo but for the rekey.
    let ada = crate::booted::Handout::read(&env, "ada");
    let script = "id -un; sudo -n true 2>/dev/null && echo sudo; stat -c '%a %U' /etc/labctl/gcp-key.json; cat /etc/labctl/gcp-key.json";
    let out = ada.ssh(&env, "ada", script);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.starts_with("ada\n600 ada\n"), "hers alone: {said}");
    assert!(!said.contains("sudo"), "{said}");
    assert!(
        said.contains(&format!(
            "\"client_email\": \"{}@",
            labctl_provider_gcp::account_id("bigdata-gcp", "ada")
        )),
        "her key is on her VM: {said}"
    );

    // Her workers read her dataset and write her bucket through object_store with her key.
    ada.run_wordcount(&env, "ada", "wordcount");
    let written = emulator.inventory("bigdata-gcp");
    let output = "object bigdata-gcp-ada/out/wordcount/";
    assert!(written.iter().any(|l| l.starts_with(output)), "{output} in {written:#?}");
    // Not Barbara's: the emulator refuses her key there.
    let theft =
        ada.wordcount.replace("gs://bigdata-gcp-ada/out/wordcount", "gs://bigdata-gcp-barbara/out/stolen");
    assert_ne!(theft, ada.wordcount);
    let out = ada.ssh(&env, "ada", &theft);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && said.contains("403 Forbidden"), "{said}");
    let written = emulator.inventory("bigdata-gcp");
    assert!(!written.iter().any(|l| l.starts_with("object bigdata-gcp-barbara/out/")), "{written:#?}");

    // A rotated key reaches her VM over SSH; the old one opens nothing any more.
    let old = key_of(&env, "ada");
    let rotated = labctl(&["apply", "lab.toml", "--yes", "--rotate-keys"]);
    assert!(rotated.stdout.contains("5 students, 10 of 10 checks passed"), "{}", rotated.all());
    let new = key_of(&env, "ada");
    assert_ne!(old, new);
    let on_vm = String::from_utf8(ada.ssh(&env, "ada", "cat /etc/labctl/gcp-key.json").stdout).unwrap();
    let id = |key: &str| serde_json::from_str::<serde_json::Value>(key).unwrap()["private_key_id"].clone();
    assert_eq!(id(&on_vm), id(&new), "{on_vm}");
    ada.run_wordcount(&env, "ada", "after-rotation");
    let refused = block_on(async {
        let client = emulator.objects(&old).await;
        client
            .read_object("projects/_/buckets/bigdata-gcp-ada", "datasets/corpus/part-00000.txt")
            .send()
            .await
    });
    assert_eq!(refused.unwrap_err().http_status_code(), Some(401), "the rotated-out key");

    assert!(labctl(&["plan", "lab.toml"]).stdout.contains("No changes"));
    labctl(&["destroy", "lab.toml", "--yes"]);
    crate::booted::assert_powered_off(runner);
    assert_eq!(emulator.inventory("bigdata-gcp"), Vec::<String>::new());
    assert_eq!(cluster.labelled("bigdata-gcp"), Vec::<String>::new());
}

/// Students' notebooks on their GCE VMs (`booted::notebooks_on_booted_vms`); destroy
/// leaves nothing.
#[test]
fn notebooks_on_gce_vms_install_from_the_wheelhouse_and_pass_the_notebook_check() {
    let emulator = Emulator::start();
    let runner = emulator.runner();
    let env = gcp_example_on_vms(&emulator, &runner);
    crate::booted::notebooks_on_booted_vms(&env, &runner, ("bigdata-gcp", "ada", "edsger"), run);
    crate::booted::assert_powered_off(runner);
    assert_eq!(emulator.inventory("bigdata-gcp"), Vec::<String>::new());
}

/// A student's key file, as `output --show-sensitive` gives it.
fn key_of(env: &Env, student: &str) -> String {
    let outputs = run(env, &["output", "lab.toml", "--show-sensitive", "--json"]).ok();
    let outputs: serde_json::Value = serde_json::from_str(&outputs.stdout).unwrap();
    outputs["students"][student]["credential"]["key"].as_str().unwrap().to_owned()
}

/// The GCP provider in the conformance suite: the GCP example on an emulator of its own,
/// every VM booted by the runner, and a GKE cluster with a CPU and a GPU pool beside them.
struct Gcp(Emulator, Runner);

impl World for Gcp {
    const LAB: &'static str = "bigdata-gcp";
    const KILLS: usize = 6;
    const REPAIR_VERIFIES: bool = true;
    const LEFT_BEHIND: &'static str = "gcp bucket `bigdata-gcp-ada`";

    /// The example's students on VMs; its GKE cluster stays, so kills land in its
    /// operations too.
    fn env(&self) -> Env {
        gcp_example_on_vms(&self.0, &self.1)
    }

    fn running(&self) -> Vec<String> {
        crate::booted::still_running(&self.1)
    }

    fn command(&self, env: &Env, args: &[&str]) -> Command {
        command(env, args)
    }

    fn inventory(&self, _env: &Env) -> Vec<String> {
        self.0.inventory(Self::LAB)
    }

    fn delete_by_hand(&self, _env: &Env) -> Drift {
        block_on(async {
            let control = self.0.control().await;
            let bucket = "projects/_/buckets/bigdata-gcp-alan";
            for object in control.list_objects().set_parent(bucket).send().await.unwrap().objects {
                control.delete_object().set_bucket(bucket).set_object(object.name).send().await.unwrap();
            }
            control.delete_bucket().set_name(bucket).send().await.unwrap();
        });
        Drift { address: "student[\"alan\"].bucket", plan_shows: &["deleted outside labctl"] }
    }
}

conformance!({
    let emulator = Emulator::start();
    let runner = emulator.runner();
    Gcp(emulator, runner)
});

/// The contract: a body Google's discovery document refuses (a misspelt or mistyped field)
/// is refused with Google's message, as the real API would; a good one passes.
#[test]
fn a_body_the_discovery_document_refuses_is_refused_as_google_refuses_it() {
    let emulator = Emulator::start();
    let owner = std::fs::read_to_string(emulator.owner_key()).unwrap();
    let post =
        |body: &str| emulator.curl(&owner, "POST", &format!("/v1/projects/{PROJECT}/serviceAccounts"), body);
    let (status, body) = post(r#"{"accountId": "contract-ok", "serviceAccount": {"displayName": "ok"}}"#);
    assert_eq!(status, "200", "{body}");
    let (status, body) = post(r#"{"accountID": "contract-typo"}"#);
    assert_eq!(status, "400", "{body}");
    assert!(body.contains(r#"Unknown name \"accountID\": Cannot find field."#), "{body}");
    let (status, body) = post(r#"{"accountId": "contract-bool", "serviceAccount": {"disabled": "no"}}"#);
    assert_eq!(status, "400", "{body}");
    assert!(body.contains("Invalid value at 'serviceAccount.disabled' (TYPE_BOOL)"), "{body}");
}
