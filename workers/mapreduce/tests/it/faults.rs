//! M7 crashes and stragglers, M8 atomic commit, M9 duplicate completion.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::support::*;

/// Workers crash (exit) on a third of their calls and stall up to 10 s on another third;
/// the test keeps restarting them. Meanwhile it watches the output directory: a file under
/// a final name must never be seen with content other than its final content (M8).
#[test]
fn m7_m8_crashing_and_straggling_workers_still_give_the_reference_with_atomic_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in"), dir.path().join("out"));
    corpus(&input, 8, 200, 7);
    let input_s = input.display().to_string();
    let args = [
        "crash",
        "--input",
        &input_s,
        "--output",
        out.to_str().unwrap(),
        "--reduces",
        "5",
        "--task-timeout",
        "4",
        "--max-attempts",
        "50",
    ];
    let mut cluster = Cluster::start(&args, &dir.path().join("r.json"), 3, &[]);
    let start = Instant::now();
    let mut seen: HashMap<String, Vec<u8>> = HashMap::new();
    let mut sizes: HashMap<String, u64> = HashMap::new();
    while cluster.coordinator.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(120), "not done within 120 s");
        for w in &mut cluster.workers {
            // A crashed worker (exit 1) is replaced; one told the job is over (exit 0) is not.
            if w.try_wait().unwrap().is_some_and(|s| !s.success()) {
                *w = std::process::Command::new(BIN)
                    .args(["worker", "--coordinator", &cluster.addr])
                    .env("LAB_MAPREDUCE_TOKEN", TOKEN)
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
            }
        }
        for name in files_under(&out) {
            let path = out.join(&name);
            if name.starts_with("part-r-") {
                if let Ok(bytes) = std::fs::read(&path) {
                    seen.entry(name).or_insert(bytes);
                }
            } else if name.starts_with("_temporary/") && name.contains("/map-") {
                // A published intermediate file never changes size (it is never partial).
                if let Ok(m) = std::fs::metadata(&path) {
                    let first = *sizes.entry(name.clone()).or_insert(m.len());
                    assert_eq!(first, m.len(), "{name} changed after it was published");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (ok, log) = cluster.wait(Duration::from_secs(5));
    assert!(ok, "{log}");
    assert_eq!(output(&out), reference(&["wordcount", "--input", &input_s], dir.path()));
    for (name, first) in seen {
        assert_eq!(
            first,
            std::fs::read(out.join(&name)).unwrap(),
            "{name} was visible before it was complete"
        );
    }
    let r = report(&dir.path().join("r.json"));
    assert!(r["counters"]["workers_lost"].as_u64().unwrap() > 0, "the test crashed workers: {r}");
    assert_eq!(files_under(&out).iter().filter(|f| f.starts_with("_temporary")).count(), 0);
}

/// The one map takes 3 s but the timeout is 1 s: it gets a backup on the other worker; the
/// original completes first, the backup's completion arrives while reduces still run and
/// is ignored.
#[test]
fn m9_a_duplicate_completion_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out, probe) = (dir.path().join("in"), dir.path().join("out"), dir.path().join("probe"));
    corpus(&input, 1, 20, 8);
    std::fs::create_dir_all(&probe).unwrap();
    let input_s = input.display().to_string();
    let args = [
        "sleep-probe",
        "--input",
        &input_s,
        "--output",
        out.to_str().unwrap(),
        "--reduces",
        "2",
        "--probe-dir",
        probe.to_str().unwrap(),
        "--map-ms",
        "3000-3000",
        "--reduce-ms",
        "4000-4000",
        "--task-timeout",
        "1",
    ];
    let (ok, log) = Cluster::start(&args, &dir.path().join("r.json"), 2, &[]).wait(Duration::from_secs(60));
    assert!(ok, "{log}");
    let r = report(&dir.path().join("r.json"));
    let c = &r["counters"];
    assert!(c["ignored_completions"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(c["map_executions"].as_u64(), Some(2), "{r}");
    assert_eq!(output(&out), reference(&["wordcount", "--input", &input_s], dir.path()));
    assert!(log.contains("ignored a duplicate completion"), "{log}");
}
