//! `labctl-test-cluster BIN_DIR WORKERS_DIR KUBECONFIG`: starts the test cluster from the
//! binaries `build.sh` made, with the workers' image (`lab-mapreduce` and `lab-scheduler`
//! from WORKERS_DIR) loaded as `labctl.test/workers:dev`, writes the admin kubeconfig to
//! KUBECONFIG, prints `ready SECONDS`, and runs until its standard input closes or it is
//! sent SIGTERM, SIGINT or SIGHUP; then stops the cluster, leaving nothing behind.

use std::io::Read;
use std::path::{Path, PathBuf};

use labctl_test_cluster::{Cluster, Image};

/// The workers' image as the test cluster knows it.
const WORKERS_IMAGE: &str = "labctl.test/workers:dev";

fn main() {
    let stop = stop_signals();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bin, workers, kubeconfig] = args.as_slice() else {
        eprintln!("usage: labctl-test-cluster BIN_DIR WORKERS_DIR KUBECONFIG");
        std::process::exit(2);
    };
    let image = Image {
        name: WORKERS_IMAGE.into(),
        files: ["lab-mapreduce", "lab-scheduler"]
            .iter()
            .map(|b| (Path::new(workers).join(b), format!("/usr/local/bin/{b}")))
            .collect(),
        entrypoint: vec![],
    };
    let cluster = match Cluster::start(&PathBuf::from(bin), &[image]) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: the test cluster did not start: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = std::fs::write(kubeconfig, cluster.kubeconfig()) {
        eprintln!("error: writing {kubeconfig}: {e}");
        std::process::exit(1);
    }
    println!("ready {:.1}", cluster.started_in().as_secs_f64());
    let (done, stopped) = std::sync::mpsc::channel();
    let on_eof = done.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut vec![]);
        let _ = on_eof.send(());
    });
    std::thread::spawn(move || {
        let mut signal = 0;
        // SAFETY: `stop` is a valid signal set, blocked in every thread since `main` began.
        unsafe { libc::sigwait(&stop, &mut signal) };
        let _ = done.send(());
    });
    let _ = stopped.recv();
    drop(cluster);
}

/// Blocks the signals that stop the cluster, in this thread and so in every thread started
/// after (the cluster's processes get the default mask back: `Command` resets it), so that
/// one thread can wait for them with `sigwait` and the cluster is dropped on the main one.
fn stop_signals() -> libc::sigset_t {
    // SAFETY: plain signal-set manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}
