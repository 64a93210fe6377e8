//! AWS VMs that really boot: the VM runner (`testing/vm-runner`) boots every instance moto
//! runs — systemd and cloud-init reading the user data labctl wrote — and powers it off
//! when the instance ends. `scripts/test.sh` builds the image and names it in
//! `LABCTL_VM_IMAGE`. Needs root.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use labctl_vm_runner::Runner;

use crate::aws::{aws_example, run, Moto, REGION};

fn image() -> PathBuf {
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
fn every_vm_of_the_aws_example_boots_and_runs_its_workers_under_systemd() {
    let moto = Moto::start();
    let runner = Runner::start(&moto.endpoint, REGION, &image()).unwrap();
    let env = aws_example(&moto);
    run(&env, &["apply", "lab.toml", "--yes"]).ok();

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
    drop(runner);
    assert_eq!(vm_processes(), Vec::<String>::new(), "no VM process is left");
}

/// Processes of this test process's VMs (their command lines name the runner's directory).
fn vm_processes() -> Vec<String> {
    let mark = format!("labctl-vm-runner-{}", std::process::id());
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&mark) {
            found.push(cmdline);
        }
    }
    found
}
