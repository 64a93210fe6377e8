//! The AWS provider against the AWS API emulator (moto's server) on loopback: each test
//! starts its own server. `scripts/test.sh` installs moto, pinned, and sets `MOTO_SERVER`
//! to `testing/moto/moto-server` (default: `moto_server` on the PATH). What exists is
//! checked by listing through the AWS API with the SDK, never through labctl itself.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use labctl_vm_runner::{Ec2, Runner};

use crate::conformance::{conformance, Drift, World};
use crate::support::*;

pub const REGION: &str = "eu-west-1";

/// A moto server on a free loopback port, stopped on drop.
pub struct Moto {
    child: Option<Child>,
    pub endpoint: String,
}

impl Moto {
    /// A fresh moto server; or, with `LABCTL_TEST_AWS_ENDPOINT` set, that endpoint (e.g.
    /// LocalStack started with `ENFORCE_IAM=1`; run the tests one at a time then).
    pub fn start() -> Self {
        if let Ok(endpoint) = std::env::var("LABCTL_TEST_AWS_ENDPOINT") {
            return Self { child: None, endpoint };
        }
        let exe = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // AWS's managed policies (AmazonEKSClusterPolicy, …), which real accounts have.
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            // The images labctl pins (moto's own are a decade old).
            .env("MOTO_AMIS_PATH", concat!(env!("CARGO_MANIFEST_DIR"), "/testing/moto-amis.json"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{exe}` ({e}): run the tests through scripts/test.sh, which installs moto"
                )
            });
        let endpoint = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "moto did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child: Some(child), endpoint }
    }

    /// Turns IAM enforcement on: from now on every request must be signed by a key whose
    /// policies allow it (moto's `INITIAL_NO_AUTH_ACTION_COUNT`).
    pub fn enforce_iam(&self) {
        self.reset_auth(0);
    }

    /// Authenticates every request after the next `unchecked`.
    fn reset_auth(&self, unchecked: u64) {
        if self.child.is_none() {
            return; // an external emulator enforces IAM from its start
        }
        let out = Command::new("curl")
            .args(["-sf", "-X", "POST", "-H", "Content-Type: text/plain", "--data", &unchecked.to_string()])
            .arg(format!("{}/moto-api/reset-auth", self.endpoint))
            .output()
            .unwrap();
        assert!(out.status.success(), "cannot reset moto's IAM enforcement");
    }

    /// Turns IAM enforcement off again (for the next billion requests).
    pub fn relax_iam(&self) {
        self.reset_auth(1_000_000_000);
    }

    /// SDK configuration for this server with the given key.
    pub fn sdk(&self, key: &str, secret: &str) -> aws_config::SdkConfig {
        let credentials = aws_sdk_s3::config::Credentials::new(key, secret, None, None, "test");
        block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(REGION))
                .endpoint_url(&self.endpoint)
                .credentials_provider(credentials)
                .load(),
        )
    }

    pub fn s3(&self, key: &str, secret: &str) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::from(&self.sdk(key, secret)).force_path_style(true).build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// Everything on the server that carries `lab`'s tag or lives under its IAM path, as
    /// `kind id` lines, sorted.
    pub fn tagged(&self, lab: &str) -> Vec<String> {
        let sdk = self.sdk("testing", "testing");
        block_on(tagged(&sdk, self.s3("testing", "testing"), lab))
    }
}

impl Moto {
    /// What of `lab` does not carry `labctl/expires` = `expiry` (a tag value), as `kind id`
    /// lines: EC2 resources, buckets, IAM users, roles and instance profiles, EKS clusters.
    pub fn without_expiry(&self, lab: &str, expiry: &str) -> Vec<String> {
        let sdk = self.sdk("testing", "testing");
        let s3 = self.s3("testing", "testing");
        let expiring =
            |tags: Vec<(String, String)>| tags.iter().any(|(k, v)| k == "labctl/expires" && v == expiry);
        let tagged = self.tagged(lab);
        block_on(async {
            let mut missing = vec![];
            let ec2 = aws_sdk_ec2::Client::new(&sdk);
            let ours = tagged_ids(&ec2, "labctl/lab", lab).await;
            let fresh = tagged_ids(&ec2, "labctl/expires", expiry).await;
            missing.extend(ours.iter().filter(|id| !fresh.contains(id)).map(|id| format!("ec2 {id}")));
            for line in tagged {
                let (kind, id) = line.split_once(' ').unwrap();
                let pairs = |tags: &[aws_sdk_iam::types::Tag]| -> Vec<(String, String)> {
                    tags.iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect()
                };
                let iam = aws_sdk_iam::Client::new(&sdk);
                let eks = aws_sdk_eks::Client::new(&sdk);
                let tags: Vec<(String, String)> = match kind {
                    "bucket" => s3
                        .get_bucket_tagging()
                        .bucket(id)
                        .send()
                        .await
                        .unwrap()
                        .tag_set()
                        .iter()
                        .map(|t| (t.key().to_owned(), t.value().to_owned()))
                        .collect(),
                    "user" => pairs(iam.list_user_tags().user_name(id).send().await.unwrap().tags()),
                    "role" => pairs(iam.list_role_tags().role_name(id).send().await.unwrap().tags()),
                    // (moto answers 500 to ListInstanceProfileTags.)
                    "instance_profile" => pairs(
                        iam.get_instance_profile()
                            .instance_profile_name(id)
                            .send()
                            .await
                            .unwrap()
                            .instance_profile()
                            .unwrap()
                            .tags(),
                    ),
                    "cluster" => eks
                        .describe_cluster()
                        .name(id)
                        .send()
                        .await
                        .unwrap()
                        .cluster()
                        .and_then(|c| c.tags())
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    // EC2, above; node groups go with their cluster.
                    _ => continue,
                };
                if !expiring(tags) {
                    missing.push(line);
                }
            }
            missing
        })
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The EC2 resources whose tag `key` is `value`.
async fn tagged_ids(ec2: &aws_sdk_ec2::Client, key: &str, value: &str) -> Vec<String> {
    let filters = [
        Filter::builder().name("key").values(key).build(),
        Filter::builder().name("value").values(value).build(),
    ];
    let tags: Vec<_> = ec2
        .describe_tags()
        .set_filters(Some(filters.to_vec()))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<_, _>>()
        .await
        .unwrap();
    tags.iter().filter_map(|t| t.resource_id().map(str::to_owned)).collect()
}

async fn tagged(sdk: &aws_config::SdkConfig, s3: aws_sdk_s3::Client, lab: &str) -> Vec<String> {
    let mut found = vec![];
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let by_lab = || Filter::builder().name("tag:labctl/lab").values(lab).build();
    // Every page: terminated instances stay listed, and a page holds 100.
    let reservations: Vec<_> = ec2
        .describe_instances()
        .filters(by_lab())
        .into_paginator()
        .items()
        .send()
        .collect::<Result<_, _>>()
        .await
        .unwrap();
    for i in reservations.iter().flat_map(|r| r.instances()) {
        if i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated") {
            found.push(format!("instance {}", i.instance_id().unwrap()));
        }
    }
    for v in ec2.describe_volumes().filters(by_lab()).send().await.unwrap().volumes() {
        found.push(format!("volume {}", v.volume_id().unwrap()));
    }
    for n in ec2.describe_network_interfaces().filters(by_lab()).send().await.unwrap().network_interfaces() {
        found.push(format!("network_interface {}", n.network_interface_id().unwrap()));
    }
    for g in ec2.describe_security_groups().filters(by_lab()).send().await.unwrap().security_groups() {
        found.push(format!("security_group {}", g.group_id().unwrap()));
    }
    for v in ec2.describe_vpcs().filters(by_lab()).send().await.unwrap().vpcs() {
        found.push(format!("vpc {}", v.vpc_id().unwrap()));
    }
    for s in ec2.describe_subnets().filters(by_lab()).send().await.unwrap().subnets() {
        found.push(format!("subnet {}", s.subnet_id().unwrap()));
    }
    for g in ec2.describe_internet_gateways().filters(by_lab()).send().await.unwrap().internet_gateways() {
        found.push(format!("internet_gateway {}", g.internet_gateway_id().unwrap()));
    }
    for t in ec2.describe_route_tables().filters(by_lab()).send().await.unwrap().route_tables() {
        found.push(format!("route_table {}", t.route_table_id().unwrap()));
    }
    for b in s3.list_buckets().send().await.unwrap().buckets() {
        let name = b.name().unwrap();
        if let Ok(tags) = s3.get_bucket_tagging().bucket(name).send().await {
            if tags.tag_set().iter().any(|t| t.key() == "labctl/lab" && t.value() == lab) {
                found.push(format!("bucket {name}"));
            }
        }
    }
    let iam = aws_sdk_iam::Client::new(sdk);
    let path = format!("/labctl/{lab}/");
    for u in iam.list_users().path_prefix(&path).send().await.unwrap().users() {
        found.push(format!("user {}", u.user_name()));
    }
    for r in iam.list_roles().path_prefix(&path).send().await.unwrap().roles() {
        found.push(format!("role {}", r.role_name()));
    }
    for p in iam.list_instance_profiles().path_prefix(&path).send().await.unwrap().instance_profiles() {
        found.push(format!("instance_profile {}", p.instance_profile_name()));
    }
    let eks = aws_sdk_eks::Client::new(sdk);
    for name in eks.list_clusters().send().await.unwrap().clusters() {
        let cluster = eks.describe_cluster().name(name).send().await.unwrap();
        if cluster.cluster().and_then(|c| c.tags()).and_then(|t| t.get("labctl/lab")).map(String::as_str)
            == Some(lab)
        {
            found.push(format!("cluster {name}"));
            for group in eks.list_nodegroups().cluster_name(name).send().await.unwrap().nodegroups() {
                found.push(format!("node_group {name}/{group}"));
            }
        }
    }
    found.sort();
    found
}

/// A scratch directory holding `examples/aws.toml` pointed at `moto`.
pub fn aws_example(moto: &Moto) -> Env {
    let env = Env::new();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/aws.toml")).unwrap();
    let text =
        text.replace("# endpoint = \"http://127.0.0.1:5000\"", &format!("endpoint = \"{}\"", moto.endpoint));
    assert!(text.contains(&moto.endpoint), "examples/aws.toml has the commented endpoint line");
    env.write("lab.toml", &text);
    env
}

/// A small lab: two students with a bucket (one dataset) and an IAM user each.
fn storage_lab(moto: &Moto) -> Env {
    let env = Env::new();
    let provider = format!("[provider.aws]\nregion = \"{REGION}\"\nendpoint = \"{}\"", moto.endpoint);
    env.write("lab.toml", &bucket_lab("iamlab", &provider, &["ann", "bob"]));
    env
}

/// The AWS example on `moto`, its VMs reached through the ssh_config `runner` keeps.
pub fn booted_example(moto: &Moto, runner: &Runner) -> Env {
    let env = aws_example(moto);
    runner.keep_ssh_config(&env.path("ssh_config"));
    let text = std::fs::read_to_string(env.path("lab.toml")).unwrap();
    let endpoint = format!("endpoint = \"{}\"", moto.endpoint);
    env.write("lab.toml", &text.replacen(&endpoint, &format!("{endpoint}\nssh_config = \"ssh_config\""), 1));
    env
}

/// A moto server and a VM runner booting its instances.
pub fn booted() -> (Moto, Runner) {
    let moto = Moto::start();
    let runner =
        Runner::start(Ec2::new(&moto.endpoint, REGION), &moto.endpoint, &crate::booted::image()).unwrap();
    (moto, runner)
}

/// The AWS provider in the conformance suite: the AWS example on a moto server of its own,
/// every VM booted by the runner.
struct Aws(Moto, Runner);

impl World for Aws {
    const LAB: &'static str = "bigdata-aws";
    const KILLS: usize = 10;
    const REPAIR_VERIFIES: bool = true;
    const LEFT_BEHIND: &'static str = "aws bucket `bigdata-aws-ada`";

    fn env(&self) -> Env {
        booted_example(&self.0, &self.1)
    }

    fn command(&self, env: &Env, args: &[&str]) -> Command {
        aws_command(env, args)
    }

    /// What carries the lab's tags, generated ids (`i-0abc…`, `vpc-…`) masked.
    fn inventory(&self, _env: &Env) -> Vec<String> {
        let mut found: Vec<String> =
            self.0.tagged(Self::LAB).into_iter().map(|l| mask_generated_id(&l)).collect();
        found.sort();
        found
    }

    fn running(&self) -> Vec<String> {
        crate::booted::still_running(&self.1)
    }

    fn delete_by_hand(&self, _env: &Env) -> Drift {
        let s3 = self.0.s3("testing", "testing");
        let objects = block_on(s3.list_objects_v2().bucket("bigdata-aws-alan").send()).unwrap();
        for o in objects.contents() {
            block_on(s3.delete_object().bucket("bigdata-aws-alan").key(o.key().unwrap()).send()).unwrap();
        }
        block_on(s3.delete_bucket().bucket("bigdata-aws-alan").send()).unwrap();
        Drift { address: "student[\"alan\"].bucket", plan_shows: &["deleted outside labctl"] }
    }
}

conformance!({
    let (moto, runner) = booted();
    Aws(moto, runner)
});

/// `kind prefix-0123abcd…` with the generated id replaced by `prefix-*`.
fn mask_generated_id(line: &str) -> String {
    let Some((kind, id)) = line.split_once(' ') else { return line.to_owned() };
    match id.split_once('-') {
        Some((prefix, hex))
            if prefix.chars().all(|c| c.is_ascii_lowercase())
                && hex.len() >= 8
                && hex.chars().all(|c| c.is_ascii_hexdigit()) =>
        {
            format!("{kind} {prefix}-*")
        }
        _ => line.to_owned(),
    }
}

/// `labctl` with the emulator's test credentials and nothing from the user's AWS config.
pub fn run(env: &Env, args: &[&str]) -> Run {
    Run::from(aws_command(env, args).output().unwrap())
}

pub fn aws_command(env: &Env, args: &[&str]) -> Command {
    let mut cmd = env.command(args);
    cmd.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", env.path("no-aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", env.path("no-aws-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL");
    cmd
}

#[test]
fn aws_example_applies_replans_clean_and_destroys_without_leftovers() {
    let (moto, runner) = booted();
    let env = booted_example(&moto, &runner);
    let lab = "bigdata-aws";

    let plan = run(&env, &["plan", "lab.toml"]).ok();
    assert!(plan.stdout.contains("student[\"ada\"].vm"), "{}", plan.stdout);
    assert!(plan.stderr.contains("SSH to the students' VMs is open to the whole internet"), "{}", plan.all());
    run(&env, &["apply", "lab.toml", "--yes"]).ok();

    let found = moto.tagged(lab);
    let count = |kind: &str| found.iter().filter(|l| l.starts_with(&format!("{kind} "))).count();
    assert_eq!(count("instance"), 5, "{found:#?}");
    assert_eq!(count("bucket"), 6, "5 students + artifacts: {found:#?}");
    assert_eq!(count("user"), 5, "{found:#?}");
    assert_eq!(count("security_group"), 5, "{found:#?}");
    assert_eq!(count("subnet"), 2, "{found:#?}");
    assert_eq!(count("cluster"), 1, "{found:#?}");
    assert_eq!(count("node_group"), 2, "{found:#?}");

    // The GPU node group is tainted and scales to zero.
    let sdk = moto.sdk("testing", "testing");
    let gpu = block_on(
        aws_sdk_eks::Client::new(&sdk)
            .describe_nodegroup()
            .cluster_name("bigdata-aws-shared")
            .nodegroup_name("gpu")
            .send(),
    )
    .unwrap();
    let gpu = gpu.nodegroup().unwrap();
    assert_eq!(gpu.scaling_config().unwrap().min_size(), Some(0));
    assert!(gpu.taints().iter().any(|t| t.key() == Some("nvidia.com/gpu")), "{gpu:?}");
    assert_eq!(gpu.instance_types(), ["g4dn.xlarge"]);

    // Datasets were copied into every student's bucket.
    let s3 = moto.s3("testing", "testing");
    let objects =
        block_on(s3.list_objects_v2().bucket("bigdata-aws-ada").prefix("datasets/corpus/").send()).unwrap();
    assert!(objects.contents().iter().any(|o| o.key().unwrap().ends_with("part-00000.txt")), "{objects:?}");

    // Each student's handout carries their key and how to reach their VM's workers.
    run(&env, &["output", "lab.toml", "--handout", "handouts"]).ok();
    let handout = std::fs::read_to_string(env.path("handouts/ada.md")).unwrap();
    assert!(handout.contains("AWS_ACCESS_KEY_ID=AKIA"), "{handout}");
    assert!(handout.contains("ssh -i ~/.ssh/bigdata-aws -N -L 7070:127.0.0.1:7070"), "{handout}");
    assert!(handout.contains("ssh -i ~/.ssh/bigdata-aws ada@"), "{handout}");
    assert!(handout.contains("BEGIN OPENSSH PRIVATE KEY"), "{handout}");
    assert!(handout.contains("s3://bigdata-aws-ada"), "{handout}");

    let again = run(&env, &["plan", "lab.toml"]).ok();
    assert!(again.stdout.contains("No changes"), "re-plan after apply:\n{}", again.stdout);

    // Resizing a node group and narrowing SSH to two ranges are in-place updates.
    let text = std::fs::read_to_string(env.path("lab.toml")).unwrap();
    let ranges = "compute = { ssh_cidrs = [\"198.51.100.0/24\", \"203.0.113.0/24\"], ";
    env.write("lab.toml", &text.replacen("max = 5", "max = 8", 1).replacen("compute = { ", ranges, 1));
    let resized = run(&env, &["apply", "lab.toml", "--yes"]).ok();
    assert!(resized.stdout.contains("6 updated, 0 replaced"), "{}", resized.stdout);
    assert!(!resized.stderr.contains("open to the whole internet"), "{}", resized.stderr);
    let groups = block_on(
        aws_sdk_ec2::Client::new(&sdk)
            .describe_security_groups()
            .filters(Filter::builder().name("group-name").values("bigdata-aws-ada").build())
            .send(),
    )
    .unwrap();
    let mut ssh: Vec<&str> = groups.security_groups()[0]
        .ip_permissions()
        .iter()
        .filter(|p| p.from_port() == Some(22))
        .flat_map(|p| p.ip_ranges())
        .filter_map(|r| r.cidr_ip())
        .collect();
    ssh.sort();
    assert_eq!(ssh, ["198.51.100.0/24", "203.0.113.0/24"], "{groups:?}");
    let cpu = block_on(
        aws_sdk_eks::Client::new(&sdk)
            .describe_nodegroup()
            .cluster_name("bigdata-aws-shared")
            .nodegroup_name("cpu")
            .send(),
    )
    .unwrap();
    assert_eq!(cpu.nodegroup().unwrap().scaling_config().unwrap().max_size(), Some(8));

    // Moving the expiry retags every part of every resource in place; `reap` reads it.
    let text = std::fs::read_to_string(env.path("lab.toml")).unwrap();
    let expires = "2031-06-30T17:00:00Z";
    env.write("lab.toml", &text.replacen("[lab]", &format!("[lab]\nexpires = {expires}"), 1));
    let retagged = run(&env, &["apply", "lab.toml", "--yes", "--no-verify"]).ok();
    assert!(
        retagged.stdout.contains("0 created,") && retagged.stdout.contains("0 replaced"),
        "{}",
        retagged.stdout
    );
    assert_eq!(moto.without_expiry(lab, "20310630t170000z"), Vec::<String>::new());
    run(&env, &["plan", "lab.toml", "--detailed-exitcode"]).ok();
    let listed = run(&env, &["reap", "lab.toml"]).ok();
    assert!(listed.stdout.contains(&format!("  {lab} on aws: expires at {expires}")), "{}", listed.stdout);

    run(&env, &["destroy", "lab.toml", "--yes"]).ok();
    assert_eq!(moto.tagged(lab), Vec::<String>::new());
}

#[test]
fn a_students_key_opens_their_own_bucket_only_and_her_work_is_archived() {
    let moto = Moto::start();
    let env = storage_lab(&moto);
    run(&env, &["apply", "lab.toml", "--yes"]).ok();
    let outputs = run(&env, &["output", "lab.toml", "--show-sensitive", "--json"]).ok();
    let outputs: serde_json::Value = serde_json::from_str(&outputs.stdout).unwrap();
    let key = |student: &str, attribute: &str| -> String {
        let credential = &outputs["students"][student]["credential"];
        credential[attribute]
            .as_str()
            .unwrap_or_else(|| panic!("{attribute} of {student} in {outputs:#}"))
            .to_owned()
    };
    let ann = moto.s3(&key("ann", "access_key_id"), &key("ann", "secret_access_key"));

    moto.enforce_iam();
    block_on(ann.put_object().bucket("iamlab-ann").key("notes.txt").body(b"mine".to_vec().into()).send())
        .expect("ann writes her bucket");
    let got = block_on(async {
        let object = ann
            .get_object()
            .bucket("iamlab-ann")
            .key("notes.txt")
            .send()
            .await
            .expect("ann reads her bucket");
        object.body.collect().await.unwrap().into_bytes()
    });
    assert_eq!(got.as_ref(), b"mine");
    block_on(ann.get_object().bucket("iamlab-ann").key("datasets/corpus/part-00000.txt").send())
        .expect("ann reads her dataset");

    let denied = block_on(ann.get_object().bucket("iamlab-bob").key("datasets/corpus/part-00000.txt").send())
        .unwrap_err();
    assert_eq!(denied.raw_response().map(|r| r.status().as_u16()), Some(403), "{denied:?}");
    let denied = block_on(ann.put_object().bucket("iamlab-bob").key("x").body(b"x".to_vec().into()).send())
        .unwrap_err();
    assert_eq!(denied.raw_response().map(|r| r.status().as_u16()), Some(403), "{denied:?}");

    // The shared datasets are read-only, and her bucket's settings stay the instructor's.
    block_on(ann.get_object().bucket("iamlab-artifacts").key("datasets/corpus/part-00000.txt").send())
        .expect("ann reads the shared dataset");
    let denied = block_on(
        ann.put_object()
            .bucket("iamlab-artifacts")
            .key("datasets/corpus/x")
            .body(b"x".to_vec().into())
            .send(),
    )
    .unwrap_err();
    assert_eq!(denied.raw_response().map(|r| r.status().as_u16()), Some(403), "{denied:?}");
    let denied = block_on(ann.delete_bucket().bucket("iamlab-ann").send()).unwrap_err();
    assert_eq!(denied.raw_response().map(|r| r.status().as_u16()), Some(403), "{denied:?}");

    // What she wrote outlives the lab in the archive; the seeded dataset does not.
    moto.relax_iam();
    let destroyed = run(&env, &["destroy", "lab.toml", "--yes", "--archive", "kept"]).ok();
    assert!(destroyed.stdout.contains("Archived ann's work: 1 files in kept/ann."), "{}", destroyed.stdout);
    assert!(destroyed.stdout.contains("Archived bob's work: 0 files in kept/bob."), "{}", destroyed.stdout);
    assert_eq!(files_under(&env.path("kept")), ["ann/notes.txt"]);
    assert_eq!(std::fs::read(env.path("kept/ann/notes.txt")).unwrap(), b"mine");
    assert_eq!(moto.tagged("iamlab"), Vec::<String>::new());
}

/// Two teaching assistants apply the same lab with its state in S3: one gets the lock, the
/// other a refusal naming the holder; the state ends up in the bucket.
#[test]
fn concurrent_applies_on_the_s3_state_backend_are_serialised_by_the_lock() {
    let moto = Moto::start();
    let env = storage_lab(&moto);
    let s3 = moto.s3("testing", "testing");
    block_on(
        s3.create_bucket()
            .bucket("course-state")
            .create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(REGION))
                    .build(),
            )
            .send(),
    )
    .unwrap();
    let state = ["--state", "s3://course-state/labs/iamlab.json"];
    let args = |verb: &'static str| [&[verb, "lab.toml", "--yes"][..], &state[..]].concat();

    // Started together and each stalling 2 s under the lock: exactly one wins the
    // conditional write, the other is refused.
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let mut cmd = aws_command(&env, &args("apply"));
            cmd.env("LABCTL_FAULTS", "create:bucket:sleep2000:2")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut runs: Vec<Run> = racers.into_iter().map(finish).collect();
    runs.sort_by_key(|r| r.code);
    assert_eq!(
        runs.iter().map(|r| r.code).collect::<Vec<_>>(),
        [0, 1],
        "{}\n---\n{}",
        runs[0].all(),
        runs[1].all()
    );
    assert!(runs[1].stderr.contains("the state is locked by"), "{}", runs[1].stderr);
    run(&env, &args("destroy")).ok();

    // The first apply stalls on its buckets, holding the lock.
    let first = aws_command(&env, &args("apply"))
        .env("LABCTL_FAULTS", "create:bucket:sleep3000:2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while block_on(s3.head_object().bucket("course-state").key("labs/iamlab.json.lock").send()).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "the first apply never took the lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = run(&env, &args("apply"));
    assert_eq!(second.code, 1, "{}", second.all());
    assert!(second.stderr.contains("the state is locked by"), "{}", second.stderr);
    assert!(second.stderr.contains("running `apply`"), "{}", second.stderr);
    let first = finish(first);
    assert_eq!(first.code, 0, "{}", first.all());

    // The state is in the bucket, the lock is gone, and the next run sees no changes.
    block_on(s3.head_object().bucket("course-state").key("labs/iamlab.json").send()).expect("state object");
    assert!(
        block_on(s3.head_object().bucket("course-state").key("labs/iamlab.json.lock").send()).is_err(),
        "lock released"
    );
    assert!(!env.path(".labctl").exists(), "no local state file");
    let plan = run(&env, &[&["plan", "lab.toml"][..], &state[..]].concat()).ok();
    assert!(plan.stdout.contains("No changes"), "{}", plan.stdout);

    // A holder killed outright leaves its lock; `state unlock` breaks it.
    let mut killed = aws_command(&env, &args("destroy"))
        .env("LABCTL_FAULTS", "delete:bucket:sleep5000:2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while block_on(s3.head_object().bucket("course-state").key("labs/iamlab.json.lock").send()).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "destroy never took the lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    killed.kill().unwrap();
    killed.wait().unwrap();
    let refused = run(&env, &args("destroy"));
    assert!(refused.stderr.contains("running `destroy`"), "{}", refused.all());
    let unlocked = run(&env, &[&["state", "unlock", "lab.toml"][..], &state[..]].concat()).ok();
    assert!(unlocked.stdout.contains("Broke the lock held by"), "{}", unlocked.stdout);
    run(&env, &args("destroy")).ok();
    assert_eq!(moto.tagged("iamlab"), Vec::<String>::new());
}

/// `plan` refuses worker binaries that cannot run on the lab's VMs (read from their ELF
/// headers), naming the fix, before it touches anything: another CPU, an older glibc.
#[test]
fn plan_refuses_workers_that_cannot_run_on_the_vms() {
    let moto = Moto::start();
    let env = aws_example(&moto);
    let _s = stable(&env);
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&worker_bin_dir().display().to_string(), "[BIN]");
    let _bin = settings.bind_to_scope();
    let text = std::fs::read_to_string(env.path("lab.toml")).unwrap();
    let refused = |compute: &str| {
        env.write("lab.toml", &text.replacen("compute = { instance_type = \"t3.large\"", compute, 1));
        let out = run(&env, &["plan", "lab.toml"]);
        assert_eq!(out.code, 2, "{}", out.all());
        out.stderr
    };
    insta::assert_snapshot!("workers_for_another_cpu", refused("compute = { instance_type = \"t4g.large\""));
    insta::assert_snapshot!(
        "workers_for_a_newer_glibc",
        refused("compute = { image = \"amzn2-ami-hvm-*-x86_64-gp2\", image_owner = \"amazon\"")
    );
    assert_eq!(moto.tagged("bigdata-aws"), Vec::<String>::new(), "nothing was made");
}

/// `apply --rotate-keys` gives every student a new access key and keeps their worker token.
#[test]
fn rotating_keys_replaces_access_keys_and_keeps_tokens() {
    let moto = Moto::start();
    let env = storage_lab(&moto);
    run(&env, &["apply", "lab.toml", "--yes"]).ok();
    let credential = |env: &Env| {
        let out = run(env, &["output", "lab.toml", "--student", "ann", "--show-sensitive", "--json"]).ok();
        let out: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        out["students"]["ann"]["credential"].clone()
    };
    let before = credential(&env);
    let rotated = run(&env, &["apply", "lab.toml", "--yes", "--rotate-keys"]).ok();
    assert!(rotated.stdout.contains("access key rotation"), "{}", rotated.stdout);
    let after = credential(&env);
    assert_ne!(before["access_key_id"], after["access_key_id"]);
    assert_eq!(before["token"], after["token"]);
    let iam = aws_sdk_iam::Client::new(&moto.sdk("testing", "testing"));
    let keys = block_on(iam.list_access_keys().user_name("iamlab-ann").send()).unwrap();
    let keys: Vec<_> = keys.access_key_metadata().iter().filter_map(|k| k.access_key_id()).collect();
    assert_eq!(keys, [after["access_key_id"].as_str().unwrap()], "only the new key is left");
    assert!(run(&env, &["plan", "lab.toml"]).ok().stdout.contains("No changes"));
}

/// Without credentials, labctl stops at once with one message saying where they come from,
/// instead of retrying every resource until the deadline.
#[test]
fn missing_credentials_fail_fast_with_one_clear_message() {
    let moto = Moto::start();
    let env = storage_lab(&moto);
    let mut cmd = aws_command(&env, &["apply", "lab.toml", "--yes"]);
    cmd.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY");
    let start = Instant::now();
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(30), "took {:?}", start.elapsed());
    assert!(stderr.contains("no AWS credentials"), "{stderr}");
    assert!(stderr.contains("AWS_PROFILE"), "{stderr}");
    assert_eq!(moto.tagged("iamlab"), Vec::<String>::new());

    // With resources in state, the refresh fails the same way, in one line for all of them.
    run(&env, &["apply", "lab.toml", "--yes"]).ok();
    let mut cmd = aws_command(&env, &["plan", "lab.toml"]);
    cmd.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY");
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("and 6 more: no AWS credentials"), "one line for all seven resources: {stderr}");
    run(&env, &["destroy", "lab.toml", "--yes"]).ok();
}

#[test]
fn plan_prices_the_example_and_apply_over_budget_sends_no_request() {
    let moto = Moto::start();
    let env = aws_example(&moto);
    let plan = run(&env, &["plan", "lab.toml", "--json"]).ok();
    let cost = serde_json::from_str::<serde_json::Value>(&plan.stdout).unwrap()["cost"].clone();
    // The shipped table: 5 × t3.large with 30 GB of gp3 each, the EKS control plane, 1 to 5
    // m5.large and 0 to 2 g4dn.xlarge.
    let min = 5.0 * 0.0832 + 150.0 * 0.08 / 730.0 + 0.10 + 0.096;
    let max = min - 0.096 + 5.0 * 0.096 + 2.0 * 0.526;
    let near = |v: &serde_json::Value, want: f64| (v.as_f64().unwrap() - want).abs() < 1e-9;
    assert!(near(&cost["per_hour"]["min"], min) && near(&cost["per_hour"]["max"], max), "{cost:#}");
    assert!(near(&cost["per_student_per_hour"]["max"], max / 5.0), "{cost:#}");
    let shown = run(&env, &["plan", "lab.toml"]).ok().stdout;
    assert!(
        shown.contains("Estimated cost (AWS on-demand list prices for us-east-1 (Linux), 2025):"),
        "{shown}"
    );
    assert!(shown.contains("  per student per hour  $0.126 to $0.413\n"), "{shown}");
    assert!(shown.contains("    ec2:g4dn.xlarge  0 to 2 × $0.526/h = $0.00 to $1.05/h\n"), "{shown}");

    // Over budget, apply refuses before it sends anything: its endpoint counts and drops every
    // connection made to it, so a request that slipped through fails apply fast and is seen.
    let silent = Doorstop::open();
    let lab = std::fs::read_to_string(env.path("lab.toml")).unwrap();
    let lab = lab
        .replace(&moto.endpoint, &silent.endpoint)
        // (In [lab], which the provider table follows.)
        .replace("[provider.aws]", "budget = { per_student_per_hour = 0.2 }\n\n[provider.aws]");
    env.write("lab.toml", &lab);
    let refused = run(&env, &["apply", "lab.toml", "--yes"]);
    assert_eq!(refused.code, 2, "{}", refused.all());
    assert!(
        refused.stderr.contains(
            "the estimate is $0.413 per student per hour, over the budget of $0.200 (biggest: \
             ec2:g4dn.xlarge $1.05/h, ec2:m5.large $0.480/h, ec2:t3.large $0.416/h)"
        ),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--ignore-budget"), "{}", refused.stderr);
    assert_eq!(silent.close(), 0, "connections made to the endpoint");
}

/// An endpoint that counts and drops every connection made to it, until closed.
struct Doorstop {
    endpoint: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl Doorstop {
    fn open() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let stop = std::sync::Arc::<std::sync::atomic::AtomicBool>::default();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut count = 0;
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok(_) => count += 1,
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            count
        });
        Doorstop { endpoint, stop, thread }
    }

    /// Stops listening; returns how many connections were made.
    fn close(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}
