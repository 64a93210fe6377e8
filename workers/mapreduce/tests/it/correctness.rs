//! M1 word count, M2 inverted index, M6 early exit, M10 combiner and partitioner.

use std::time::Duration;

use crate::support::*;

#[test]
fn m1_word_count_three_workers_ten_partitions_matches_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in"), dir.path().join("out"));
    corpus(&input, 8, 600, 1);
    let input = input.display().to_string();
    let args = ["wordcount", "--input", &input];
    let cluster = Cluster::start(
        &[&args[..], &["--output", out.to_str().unwrap(), "--reduces", "10"]].concat(),
        &dir.path().join("r.json"),
        3,
        &[],
    );
    let (ok, log) = cluster.wait(Duration::from_secs(60));
    assert!(ok, "{log}");
    assert_eq!(part_files(&out).len(), 10);
    assert!(out.join("_SUCCESS").exists());
    assert!(!out.join("_temporary").exists(), "temporaries are cleaned up");
    assert_eq!(output(&out), reference(&args, dir.path()));
    let r = report(&dir.path().join("r.json"));
    assert_eq!(
        (r["maps"].as_u64(), r["reduces"].as_u64(), r["succeeded"].as_bool()),
        (Some(8), Some(10), Some(true))
    );
}

#[test]
fn m2_inverted_index_two_workers_matches_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in"), dir.path().join("out"));
    corpus(&input, 5, 100, 2);
    let input = input.display().to_string();
    let args = ["index", "--input", &input];
    let cluster = Cluster::start(
        &[&args[..], &["--output", out.to_str().unwrap(), "--reduces", "3"]].concat(),
        &dir.path().join("r.json"),
        2,
        &[],
    );
    let (ok, log) = cluster.wait(Duration::from_secs(60));
    assert!(ok, "{log}");
    let got = output(&out);
    assert_eq!(got, reference(&args, dir.path()));
    for line in got.lines() {
        let docs: Vec<&str> = line.split('\t').nth(1).unwrap().split(',').collect();
        let mut sorted = docs.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(docs, sorted, "{line}");
    }
    assert!(got.lines().any(|l| l.split(',').count() == 5), "common words appear in every document");
}

#[test]
fn m6_no_process_exits_before_the_output_is_final() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in"), dir.path().join("out"));
    corpus(&input, 6, 300, 3);
    let input = input.display().to_string();
    let mut cluster = Cluster::start(
        &["wordcount", "--input", &input, "--output", out.to_str().unwrap(), "--reduces", "5"],
        &dir.path().join("r.json"),
        3,
        &[],
    );
    // Watch every process; snapshot the output the moment the first one exits.
    let snapshot = loop {
        let exited = cluster.coordinator.try_wait().unwrap().is_some()
            || cluster.workers.iter_mut().any(|w| w.try_wait().unwrap().is_some());
        if exited {
            break output(&out);
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let (ok, log) = cluster.wait(Duration::from_secs(60));
    assert!(ok, "{log}");
    assert_eq!(snapshot, output(&out));
    assert_eq!(snapshot, reference(&["wordcount", "--input", &input], dir.path()));
}

#[test]
fn m10_combiner_changes_bytes_not_results_and_keys_land_in_one_partition() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    corpus(&input, 4, 1000, 4);
    let input = input.display().to_string();
    let mut outputs = vec![];
    let mut intermediate = vec![];
    for (name, extra) in [("on", &[][..]), ("off", &["--no-combiner"][..])] {
        let out = dir.path().join(name);
        let report_path = dir.path().join(format!("{name}.json"));
        let args = [
            &["wordcount", "--input", &input, "--output", out.to_str().unwrap(), "--reduces", "6"][..],
            extra,
        ]
        .concat();
        let (ok, log) = Cluster::start(&args, &report_path, 2, &[]).wait(Duration::from_secs(60));
        assert!(ok, "{log}");
        outputs.push(output(&out));
        intermediate.push(report(&report_path)["counters"]["intermediate_bytes"].as_u64().unwrap());
        let mut seen = std::collections::HashSet::new();
        for part in part_files(&out) {
            for line in std::fs::read_to_string(part).unwrap().lines() {
                assert!(
                    seen.insert(line.split('\t').next().unwrap().to_owned()),
                    "a key in two partitions: {line}"
                );
            }
        }
    }
    assert_eq!(outputs[0], outputs[1]);
    assert!(
        intermediate[1] > 5 * intermediate[0],
        "combiner on {} bytes, off {} bytes",
        intermediate[0],
        intermediate[1]
    );
}

#[test]
fn a_wrong_token_or_protocol_version_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    corpus(&input, 1, 10, 5);
    let out = dir.path().join("out");
    let cluster = Cluster::start(
        &["wordcount", "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap()],
        &dir.path().join("r.json"),
        0,
        &[],
    );
    let wrong = std::process::Command::new(BIN)
        .args(["worker", "--coordinator", &cluster.addr, "--token", "nope"])
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("wrong token"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let reason = rt.block_on(async {
        let stream = tokio::net::TcpStream::connect(&cluster.addr).await.unwrap();
        let mut conn = labctl_mapreduce::protocol::Conn::new(stream);
        let hello = serde_json::json!({ "type": "hello", "version": 99, "token": TOKEN, "role": "worker", "name": "old" });
        conn.send(&hello).await.unwrap();
        let reply: serde_json::Value = conn.recv().await.unwrap().unwrap();
        reply["reason"].as_str().unwrap().to_owned()
    });
    assert!(
        reason.contains("version 99")
            && reason.contains(&format!("version {}", labctl_mapreduce::protocol::PROTOCOL_VERSION)),
        "{reason}"
    );
    let mut cluster = cluster;
    cluster.add_worker();
    assert!(cluster.wait(Duration::from_secs(30)).0);
}
