//! AWS VMs that really boot: the VM runner (`testing/vm-runner`) boots every instance moto
//! runs — systemd and cloud-init reading the user data labctl wrote — and powers it off
//! when the instance ends. `scripts/test.sh` builds the image and names it in
//! `LABCTL_VM_IMAGE`. Needs root.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::aws::{booted, booted_example, run, REGION};
use crate::support::{block_on, Env};

pub fn image() -> PathBuf {
    std::env::var_os("LABCTL_VM_IMAGE")
        .map(PathBuf::from)
        .expect("LABCTL_VM_IMAGE names the VM image: run the tests through scripts/test.sh")
}

/// The systemd units of the AWS example's workers (two of each kind of worker).
const UNITS: [&str; 6] = [
    "lab-mapreduce",
    "lab-mapreduce-worker@0",
    "lab-mapreduce-worker@1",
    "lab-scheduler",
    "lab-scheduler-worker@0",
    "lab-scheduler-worker@1",
];

#[test]
fn every_vm_of_the_aws_example_boots_runs_its_workers_and_verifies() {
    let (moto, runner) = booted();
    let env = booted_example(&moto, &runner);
    let applied = run(&env, &["apply", "lab.toml", "--yes"]).ok();
    assert!(applied.stdout.contains("5 students, 10 of 10 checks passed"), "{}", applied.all());

    let vms = runner.wait_booted(5, Duration::from_secs(180)).unwrap();
    assert_eq!(vms.len(), 5, "{vms:?}");
    for vm in &vms {
        runner
            .with_vm(&vm.instance_id, |v| {
                assert_eq!(v.cloud_init_errors(), Vec::<String>::new(), "{}", v.console());
                // The workers come up once their binaries are fetched and checked.
                let start = Instant::now();
                let states = loop {
                    let out = v.exec(&[&["systemctl", "is-active"], &UNITS[..]].concat()).unwrap();
                    let states = String::from_utf8_lossy(&out.stdout).into_owned();
                    if states.lines().all(|s| s == "active") || start.elapsed() > Duration::from_secs(30) {
                        break states;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                };
                assert_eq!(
                    states.lines().collect::<Vec<_>>(),
                    ["active"; 6],
                    "{}\n{}",
                    vm.instance_id,
                    v.console()
                );
            })
            .unwrap();
    }
    assert!(run(&env, &["plan", "lab.toml"]).ok().stdout.contains("No changes"));

    run(&env, &["destroy", "lab.toml", "--yes"]).ok();
    let start = Instant::now();
    while !runner.vms().is_empty() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(runner.vms(), vec![], "destroy powers every VM off");
    assert_eq!(runner.errors(), Vec::<String>::new());
    let work = runner.work_dir().display().to_string();
    drop(runner);
    assert_eq!(vm_processes(&work), Vec::<String>::new(), "no VM process is left");
    assert!(!std::path::Path::new(&work).exists(), "{work} is removed");
}

/// Processes of a runner's VMs: their command lines name its directory, `mark`.
fn vm_processes(mark: &str) -> Vec<String> {
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(mark) {
            found.push(cmdline);
        }
    }
    found
}

/// Every course lab in `labs/` applies and verifies on AWS by switching its provider block
/// (datasets shrunk to keep the emulator small): its smoke workloads run on the booted VMs.
/// It destroys to nothing.
#[test]
fn every_course_lab_applies_on_aws_by_switching_the_provider_block() {
    let (moto, runner) = booted();
    let labs = concat!(env!("CARGO_MANIFEST_DIR"), "/labs");
    let mut names = vec![];
    for entry in std::fs::read_dir(labs).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let env = Env::new();
        std::fs::copy(format!("{labs}/roster-example.csv"), env.path("roster-example.csv")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("[provider.local]\n"), "{}", path.display());
        runner.keep_ssh_config(&env.path("ssh_config"));
        let aws = format!(
            "[provider.aws]\nregion = \"{REGION}\"\nendpoint = \"{}\"\nssh_config = \"ssh_config\"\n",
            moto.endpoint
        );
        let text: String = text
            .replace("[provider.local]\n", &aws)
            .lines()
            .map(|l| match l.split('=').next().map(str::trim) {
                Some("size_mb") => "size_mb = 0.1".to_owned(),
                Some("rows") => "rows = 500".to_owned(),
                _ => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        env.write("lab.toml", &text);
        let applied = run(&env, &["apply", "lab.toml", "--yes"]);
        assert_eq!(applied.code, 0, "{}:\n{}", path.display(), applied.all());
        assert!(applied.stdout.contains(" checks passed."), "{}:\n{}", path.display(), applied.stdout);
        assert!(run(&env, &["plan", "lab.toml"]).ok().stdout.contains("No changes"), "{}", path.display());
        run(&env, &["destroy", "lab.toml", "--yes"]).ok();
        let name =
            text.lines().find_map(|l| l.strip_prefix("name = \"")).unwrap().trim_end_matches('"').to_owned();
        assert_eq!(moto.tagged(&name), Vec::<String>::new(), "{}", path.display());
        names.push(name);
    }
    assert_eq!(names.len(), 3, "one lab per course module: {names:?}");
}

/// What a student's handout says: their VM's address, their SSH key, and the MapReduce
/// section's word count, as written.
struct Handout {
    vm_ip: String,
    key: String,
    wordcount: String,
}

impl Handout {
    fn read(env: &Env, student: &str) -> Self {
        run(env, &["output", "lab.toml", "--handout", "handouts"]).ok();
        let text = std::fs::read_to_string(env.path(&format!("handouts/{student}.md"))).unwrap();
        let between = |from: &str, to: &str| {
            let start = text.find(from).unwrap_or_else(|| panic!("`{from}` in {text}")) + from.len();
            text[start..][..text[start..].find(to).unwrap()].to_owned()
        };
        let key = between("Your SSH key (keep it secret):\n\n```text\n", "```");
        let wordcount = between("Run a word count over your corpus:\n\n```sh\n", "```");
        Self { vm_ip: between("Your VM is `", "`"), key, wordcount }
    }

    /// Runs `script` on the student's VM as they would, `ssh -i <key> <student>@<vm>`; the
    /// test's ssh_config maps the VM's public address to where the runner booted it.
    fn ssh(&self, env: &Env, student: &str, script: &str) -> std::process::Output {
        let key = env.path(&format!("{student}.key"));
        std::fs::write(&key, &self.key).unwrap();
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let mut child = std::process::Command::new("ssh")
            .arg("-F")
            .arg(env.path("ssh_config"))
            .arg("-i")
            .arg(&key)
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
            .arg(format!("{student}@{}", self.vm_ip))
            .args(["sh", "-s"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs the handout's word count on the student's VM, writing to `out/<output>` in
    /// their bucket; panics unless it succeeds.
    fn run_wordcount(&self, env: &Env, student: &str, output: &str) -> String {
        let script = self.wordcount.replace("/out/wordcount", &format!("/out/{output}"));
        let out = self.ssh(env, student, &script);
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{student}'s word count, as the handout says:\n{script}\n{all}");
        assert!(all.contains(" succeeded in "), "{all}");
        all
    }
}

/// The verify matrix as JSON: `(student, check) → detail` of the failed checks, and how
/// many passed.
fn verify(env: &Env) -> (Vec<(String, String, String)>, usize) {
    let out = run(env, &["verify", "lab.toml", "--json"]);
    let checks: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.all()));
    let checks = checks.as_array().unwrap();
    let failed: Vec<_> = checks
        .iter()
        .filter(|c| c["passed"] != true)
        .map(|c| {
            let field = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (field("student"), field("check"), field("detail"))
        })
        .collect();
    assert_eq!(out.code == 0, failed.is_empty(), "{}", out.all());
    (failed, checks.len() - checks.iter().filter(|c| c["passed"] != true).count())
}

/// The instance the runner booted for a VM address from a handout.
fn instance_at(runner: &labctl_vm_runner::Runner, ip: &str) -> String {
    let vms = runner.vms();
    vms.iter()
        .find(|v| v.public_ip.as_deref() == Some(ip))
        .unwrap_or_else(|| panic!("{ip} in {vms:?}"))
        .instance_id
        .clone()
}

/// Waits until `unit` is active in the VM of `instance`.
fn wait_active(runner: &labctl_vm_runner::Runner, instance: &str, unit: &str) {
    let start = Instant::now();
    loop {
        let out = runner.with_vm(instance, |v| v.exec(&["systemctl", "is-active", unit]).unwrap()).unwrap();
        if out.status.success() {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{unit} in {instance} is {:?}", out);
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// What an instructor and students meet on the VMs after `apply`: the handout's login and
/// word count work as written; a dead worker fails that student's check by name until
/// systemd has restarted it; `--rotate-keys` gives every VM's workers the new key (the old
/// one is deleted, and with IAM enforced a job reads the bucket); a VM stopped by hand is
/// "unreachable" for that student only, shown as drift, and started again by `apply`.
#[test]
fn on_their_vms_students_work_as_the_handout_says_and_verify_finds_what_broke() {
    let (moto, runner) = booted();
    let env = booted_example(&moto, &runner);
    let applied = run(&env, &["apply", "lab.toml", "--yes"]).ok();
    assert!(applied.stdout.contains("5 students, 10 of 10 checks passed"), "{}", applied.all());

    // status asks each VM how its workers are.
    let services = |student: &str| {
        let status = run(&env, &["status", "lab.toml", "--json"]).ok();
        let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        let row = status["students"].as_array().unwrap().iter().find(|s| s["student"] == student).cloned();
        row.unwrap()["services"].clone()
    };
    let ada_services = services("ada");
    for unit in UNITS {
        assert_eq!(ada_services[unit], "active (running)", "{unit}: {ada_services}");
    }

    // Ada logs in with the key from her handout and runs its word count over her bucket.
    let ada = Handout::read(&env, "ada");
    let said = ada.run_wordcount(&env, "ada", "wordcount");
    let outputs = block_on(
        moto.s3("testing", "testing")
            .list_objects_v2()
            .bucket("bigdata-aws-ada")
            .prefix("out/wordcount/")
            .send(),
    )
    .unwrap();
    assert!(outputs.key_count() > Some(0), "the word count wrote its output to her bucket:\n{said}");

    // A worker that keeps dying fails Grace's word count, naming it; the others pass.
    let grace = instance_at(&runner, &Handout::read(&env, "grace").vm_ip);
    let killer = "nohup sh -c 'while [ ! -e /run/stop-killing ]; do pkill -KILL -f \"[l]ab-mapreduce worker .*-worker-1\"; done' >/dev/null 2>&1 &";
    runner.with_vm(&grace, |v| v.exec(&["sh", "-c", killer]).unwrap()).unwrap();
    let (failed, passed) = verify(&env);
    assert_eq!(passed, 9, "{failed:?}");
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (student, check, detail) = &failed[0];
    assert_eq!((student.as_str(), check.as_str()), ("grace", "wordcount"), "{failed:?}");
    assert!(detail.contains("lab-mapreduce-worker@1.service is activating (auto-restart)"), "{detail}");
    // Once it stops dying, systemd has it back, and verify passes again.
    runner.with_vm(&grace, |v| v.exec(&["touch", "/run/stop-killing"]).unwrap()).unwrap();
    wait_active(&runner, &grace, "lab-mapreduce-worker@1");
    assert_eq!(verify(&env), (vec![], 10));

    // Key rotation: the VMs are updated in place, their workers get the new keys.
    let old_key = |s: &str| {
        env.state("bigdata-aws")["resources"][format!("student[\"{s}\"].credential")]["attributes"]
            ["access_key_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let old: Vec<String> = ["ada", "alan"].map(old_key).to_vec();
    let rotated = run(&env, &["apply", "lab.toml", "--rotate-keys", "--yes"]).ok();
    assert!(rotated.stdout.contains("updated in place to match"), "{}", rotated.all());
    assert!(rotated.stdout.contains("5 students, 10 of 10 checks passed"), "{}", rotated.all());
    let iam = aws_sdk_iam::Client::new(&moto.sdk("testing", "testing"));
    for (student, old) in ["ada", "alan"].iter().zip(&old) {
        let keys =
            block_on(iam.list_access_keys().user_name(format!("bigdata-aws-{student}")).send()).unwrap();
        let ids: Vec<&str> = keys.access_key_metadata().iter().filter_map(|k| k.access_key_id()).collect();
        assert_eq!(ids.len(), 1, "{ids:?}");
        assert_ne!(ids[0], old, "{student}'s old key is deleted");
    }
    let ada = Handout::read(&env, "ada");
    assert!(
        !std::fs::read_to_string(env.path("handouts/ada.md")).unwrap().contains(&old[0]),
        "her new handout has her new key"
    );
    // With IAM enforced, only a key that exists opens her bucket.
    moto.enforce_iam();
    let read = std::panic::catch_unwind(|| ada.run_wordcount(&env, "ada", "after-rotation"));
    moto.relax_iam();
    read.unwrap();

    // Alan's VM stopped by hand: his checks fail, unreachable; the others pass.
    let alan = instance_at(&runner, &Handout::read(&env, "alan").vm_ip);
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk("testing", "testing"));
    block_on(ec2.stop_instances().instance_ids(&alan).send()).unwrap();
    let start = Instant::now();
    while runner.with_vm(&alan, |_| ()).is_some() {
        assert!(start.elapsed() < Duration::from_secs(30), "the runner powers a stopped VM off");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (failed, passed) = verify(&env);
    assert_eq!(passed, 8, "{failed:?}");
    for (student, _, detail) in &failed {
        assert_eq!(student, "alan", "{failed:?}");
        assert!(detail.contains(&format!("unreachable: VM {alan} is stopped")), "{detail}");
    }
    let said = services("alan")["services"].as_str().unwrap_or_default().to_owned();
    assert!(said.contains(&format!("unreachable: VM {alan} is stopped")), "{said}");
    let plan = run(&env, &["plan", "lab.toml"]).ok();
    assert!(
        plan.stdout.contains(&format!("changed outside labctl: VM {alan} is stopped")),
        "{}",
        plan.stdout
    );
    let repaired = run(&env, &["apply", "lab.toml", "--yes"]).ok();
    assert!(repaired.stdout.contains("5 students, 10 of 10 checks passed"), "{}", repaired.all());
    assert!(run(&env, &["plan", "lab.toml"]).ok().stdout.contains("No changes"));

    run(&env, &["destroy", "lab.toml", "--yes"]).ok();
    assert_eq!(moto.tagged("bigdata-aws"), Vec::<String>::new());
}
