//! S5 worker death, S6 poison task, S9 frozen worker, S12 status endpoint throughout; a
//! worker started before its scheduler.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::support::*;

/// 200 leaves of 20 ms each feeding a sum tree: about 2 s of work on two workers.
fn slow_tree() -> (Vec<labctl_scheduler::protocol::TaskSpec>, u64, f64) {
    let (tasks, root) = tree(200, |i| builtin(i, &[], "sleep", json!({ "ms": 20, "value": i })));
    (tasks, root, (0..200).sum::<u64>() as f64)
}

#[test]
fn s5_s12_a_killed_worker_s_results_are_recomputed_while_status_answers() {
    let mut cluster = Cluster::start(2, "5");
    cluster.add_worker(1);
    let (tasks, root, expected) = slow_tree();
    // S12: poll both endpoints for the whole run.
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (http, stop) = (cluster.http.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut polls = 0;
            while !stop.load(Ordering::Relaxed) {
                let (code, body) = http_get(&http, "/status");
                assert_eq!(code, 200);
                let s: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert!(s["workers"].is_array() && s["tasks"].is_object(), "{s}");
                let (code, metrics) = http_get(&http, "/metrics");
                assert_eq!(code, 200);
                assert!(
                    metrics.contains("lab_scheduler_workers ")
                        && metrics.contains("lab_scheduler_finished_total"),
                    "{metrics}"
                );
                polls += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            polls
        })
    };
    let killer = {
        let pid = cluster.workers[0].id() as i32;
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1200));
            // SAFETY: our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        })
    };
    let out = cluster.run(tasks, &[root], Duration::from_secs(60));
    killer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(poller.join().unwrap() > 5);
    assert_eq!(out.results[&root], json!(expected));
    settled(&cluster, |s| s["stats"]["workers_lost"] == 1 && s["workers"].as_array().unwrap().len() == 2);
}

#[test]
fn s6_a_task_that_kills_three_workers_fails_and_the_cluster_stays_healthy() {
    let cluster = Cluster::start(4, "5");
    let tasks = vec![
        builtin(0, &[], "crash", json!(null)),
        builtin(1, &[0], "add", json!({ "x": 1 })),
        builtin(2, &[], "sleep", json!({ "ms": 10, "value": 5 })),
    ];
    let out = cluster.run(tasks, &[1, 2], Duration::from_secs(60));
    assert_eq!(out.errors[&0], "task killed 3 workers");
    assert!(out.errors[&1].contains("task killed 3 workers"));
    assert_eq!(out.results[&2], json!(5));
    // Still healthy: the surviving worker runs new work.
    let more = cluster.run(vec![builtin(0, &[], "square", json!({ "x": 4 }))], &[0], Duration::from_secs(30));
    assert_eq!(more.results[&0], json!(16.0));
    settled(&cluster, |s| s["workers"].as_array().unwrap().len() == 1 && s["stats"]["workers_lost"] == 3);
}

#[test]
fn s9_a_frozen_worker_is_declared_dead_and_its_tasks_rescheduled() {
    let cluster = Cluster::start(2, "1.5");
    let (tasks, root, expected) = slow_tree();
    let pid = cluster.workers[0].id() as i32;
    let freezer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(800));
        // SAFETY: our own child.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
    });
    let out = cluster.run(tasks, &[root], Duration::from_secs(60));
    freezer.join().unwrap();
    assert_eq!(out.results[&root], json!(expected));
    settled(&cluster, |s| s["stats"]["workers_lost"] == 1);
    cluster.signal(0, libc::SIGCONT);
}

/// The status once `ok` holds (it is refreshed a few times a second); fails after 3 s.
fn settled(cluster: &Cluster, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    for _ in 0..60 {
        let s = cluster.status();
        if ok(&s) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("status never settled: {}", cluster.status());
}

/// A worker started before its scheduler's name resolves (a pod whose coordinator's Service
/// the cluster's DNS does not serve yet) or before it listens waits for it, rather than
/// exiting into its supervisor's growing restart delay, and joins once it is up.
#[test]
fn a_worker_waits_for_a_scheduler_that_does_not_resolve_or_listen_yet() {
    let mut unresolved = worker("labctl-not-yet.invalid:7000", 1);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let early = worker(&addr, 1);
    std::thread::sleep(Duration::from_secs(2));
    let exited = unresolved.try_wait().unwrap();
    let _ = unresolved.kill();
    let _ = unresolved.wait();
    assert_eq!(exited, None, "the worker gave up on a name that does not resolve yet");

    let mut cluster = Cluster::start_on(&addr, 0, "5");
    cluster.workers.push(early);
    let out = cluster.run(vec![builtin(0, &[], "square", json!({ "x": 3 }))], &[0], Duration::from_secs(30));
    assert_eq!(out.results[&0], json!(9.0));
}
