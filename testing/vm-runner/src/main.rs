//! `labctl-vm-runner ENDPOINT REGION IMAGE SSH_CONFIG`: the test VM runner as a program,
//! for benchmarks, booting the instances of moto's EC2. Boots the emulator's instances until its stdin closes, keeps the
//! ssh_config mapping their addresses, and prints `booted ID SECONDS` as cloud-init
//! finishes in each VM (seconds from the moment its VM started), then powers every VM off.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use labctl_vm_runner::{Ec2, Runner};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, region, image, ssh_config] = args.as_slice() else {
        eprintln!("usage: labctl-vm-runner ENDPOINT REGION IMAGE SSH_CONFIG");
        std::process::exit(2);
    };
    let runner = Runner::start(Ec2::new(endpoint, region), endpoint, Path::new(image)).unwrap_or_else(|e| {
        eprintln!("labctl-vm-runner: {e}");
        std::process::exit(1);
    });
    runner.keep_ssh_config(Path::new(ssh_config));
    let closed = Arc::new(AtomicBool::new(false));
    let closing = closed.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut vec![]);
        closing.store(true, Ordering::Relaxed);
    });
    let (mut started, mut booted, mut reported) = (BTreeMap::new(), BTreeSet::new(), 0);
    let mut out = std::io::stdout();
    while !closed.load(Ordering::Relaxed) {
        for vm in runner.vms() {
            let since = *started.entry(vm.instance_id.clone()).or_insert_with(Instant::now);
            if !booted.contains(&vm.instance_id)
                && runner.with_vm(&vm.instance_id, |v| v.booted()) == Some(true)
            {
                let _ = writeln!(out, "booted {} {:.1}", vm.instance_id, since.elapsed().as_secs_f64());
                booted.insert(vm.instance_id);
            }
        }
        let errors = runner.errors();
        for error in &errors[reported..] {
            let _ = writeln!(out, "error {error}");
        }
        reported = errors.len();
        std::thread::sleep(Duration::from_millis(100));
    }
}
