//! AWS VMs that really boot: the VM runner (`testing/vm-runner`) boots every instance moto
//! runs — systemd and cloud-init reading the user data labctl wrote — and powers it off
//! when the instance ends. Needs root.

use std::time::{Duration, Instant};

use crate::aws::{booted, booted_example, run, REGION};
use crate::booted::{
    assert_powered_off, assert_workers_run, course_labs, notebooks_on_booted_vms, Handout, UNITS,
};
use crate::support::{block_on, Env};

#[test]
fn every_vm_of_the_aws_example_boots_runs_its_workers_and_verifies() {
    let (moto, runner) = booted();
    let env = booted_example(&moto, &runner);
    let applied = run(&env, &["apply", "lab.toml", "--yes"]).ok();
    assert!(applied.stdout.contains("5 students, 10 of 10 checks passed"), "{}", applied.all());
    assert_workers_run(&runner, 5);
    assert!(run(&env, &["plan", "lab.toml"]).ok().stdout.contains("No changes"));

    run(&env, &["destroy", "lab.toml", "--yes"]).ok();
    assert_powered_off(runner);
}

/// Every course lab in `labs/` applies and verifies on AWS by switching its provider block
/// (datasets shrunk to keep the emulator small): its smoke workloads run on the booted VMs.
/// It destroys to nothing.
#[test]
fn every_course_lab_applies_on_aws_by_switching_the_provider_block() {
    let (moto, runner) = booted();
    let aws = format!(
        "[provider.aws]\nregion = \"{REGION}\"\nendpoint = \"{}\"\nssh_config = \"ssh_config\"\n",
        moto.endpoint
    );
    let same = [("m5.large", "m5.large"), ("m5.xlarge", "m5.xlarge"), ("g4dn.xlarge", "g4dn.xlarge")];
    for (name, env) in course_labs(&aws, &same) {
        runner.keep_ssh_config(&env.path("ssh_config"));
        let applied = run(&env, &["apply", "lab.toml", "--yes"]);
        assert_eq!(applied.code, 0, "{name}:\n{}", applied.all());
        assert!(applied.stdout.contains(" checks passed."), "{name}:\n{}", applied.stdout);
        assert!(run(&env, &["plan", "lab.toml"]).ok().stdout.contains("No changes"), "{name}");
        run(&env, &["destroy", "lab.toml", "--yes"]).ok();
        assert_eq!(moto.tagged(&name), Vec::<String>::new(), "{name}");
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

/// Students' notebooks on their AWS VMs (`booted::notebooks_on_booted_vms`); destroy leaves
/// nothing.
#[test]
fn notebooks_on_aws_vms_install_from_the_wheelhouse_and_pass_the_notebook_check() {
    let (moto, runner) = booted();
    let env = booted_example(&moto, &runner);
    notebooks_on_booted_vms(&env, &runner, ("bigdata-aws", "ada", "alan"), run);
    assert_eq!(moto.tagged("bigdata-aws"), Vec::<String>::new());
    assert_powered_off(runner);
}
