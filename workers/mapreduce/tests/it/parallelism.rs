//! M3 map parallelism, M4 reduce parallelism, M5 no spurious re-execution.

use std::time::Duration;

use crate::support::*;

fn probe_job(
    dir: &std::path::Path,
    files: u32,
    reduces: &str,
    map_ms: &str,
    reduce_ms: &str,
) -> (Vec<(String, u128, u128, u32)>, serde_json::Value) {
    let (input, out, probe) = (dir.join("in"), dir.join("out"), dir.join("probe"));
    corpus(&input, files, 20, 6);
    std::fs::create_dir_all(&probe).unwrap();
    let args = [
        "sleep-probe",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--reduces",
        reduces,
        "--probe-dir",
        probe.to_str().unwrap(),
        "--map-ms",
        map_ms,
        "--reduce-ms",
        reduce_ms,
    ];
    let (ok, log) = Cluster::start(&args, &dir.join("r.json"), 2, &[]).wait(Duration::from_secs(90));
    assert!(ok, "{log}");
    (probes(&probe), report(&dir.join("r.json")))
}

#[test]
fn m3_m4_maps_and_reduces_run_in_parallel_on_both_workers() {
    let dir = tempfile::tempdir().unwrap();
    let (probes, _) = probe_job(dir.path(), 4, "4", "1000-1000", "1000-1000");
    let maps: Vec<_> = probes.iter().filter(|p| p.0 == "map").collect();
    let reduces: Vec<_> = probes.iter().filter(|p| p.0 == "reduce").collect();
    let pids: std::collections::HashSet<u32> = maps.iter().map(|p| p.3).collect();
    assert_eq!(pids.len(), 2, "both workers ran maps");
    assert!(overlap(&maps.iter().map(|p| (p.1, p.2)).collect::<Vec<_>>()), "maps overlapped");
    assert!(overlap(&reduces.iter().map(|p| (p.1, p.2)).collect::<Vec<_>>()), "reduces overlapped");
}

#[test]
fn m5_tasks_under_the_timeout_run_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (probes, report) = probe_job(dir.path(), 4, "2", "2000-5000", "200-400");
    let c = &report["counters"];
    assert_eq!(
        (c["map_executions"].as_u64(), c["reduce_executions"].as_u64()),
        (Some(4), Some(2)),
        "{report}"
    );
    assert_eq!(probes.iter().filter(|p| p.0 == "map").count(), 4);
    assert_eq!(probes.iter().filter(|p| p.0 == "reduce").count(), 2);
    assert_eq!(c["backup_executions"].as_u64(), Some(0));
}
