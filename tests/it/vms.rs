//! AWS VMs that really boot: the VM runner (`testing/vm-runner`) boots every instance moto
//! runs — systemd and cloud-init reading the user data labctl wrote — and powers it off
//! when the instance ends. `scripts/test.sh` builds the image and names it in
//! `LABCTL_VM_IMAGE`. Needs root.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::aws::{booted, booted_example, run, REGION};
use crate::support::Env;

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
