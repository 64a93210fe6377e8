//! S1 correctness, S7 errors, S8 stealing, S10 hyperparameter search, S11 commands.

use std::process::Command;
use std::time::Duration;

use labctl_scheduler::hpsearch::Search;
use labctl_scheduler::model::Source;
use serde_json::json;

use crate::support::*;

#[test]
fn s1_map_and_tree_reduction_equal_sequential_evaluation() {
    let cluster = Cluster::start(2, "5");
    let (tasks, root) = tree(1000, |i| builtin(i, &[], "square", json!({ "x": i })));
    let out = cluster.run(tasks, &[root], Duration::from_secs(30));
    let expected: f64 = (0..1000u64).map(|i| (i * i) as f64).sum();
    assert_eq!(out.results[&root], json!(expected));
    assert!(out.errors.is_empty());
}

#[test]
fn s7_an_error_reaches_the_client_for_the_task_and_its_dependents_only() {
    let cluster = Cluster::start(2, "5");
    let tasks = vec![
        builtin(0, &[], "fail", json!({ "message": "bad input row 17" })),
        builtin(1, &[0], "add", json!({ "x": 1 })),
        builtin(2, &[1], "add", json!({ "x": 1 })),
        builtin(3, &[], "square", json!({ "x": 3 })),
    ];
    let out = cluster.run(tasks, &[2, 3], Duration::from_secs(30));
    assert_eq!(out.results[&3], json!(9.0));
    assert_eq!(out.errors[&0], "bad input row 17");
    assert!(out.errors[&1].contains("failed: bad input row 17"), "{:?}", out.errors);
    assert!(out.errors[&2].contains("failed: bad input row 17"), "{:?}", out.errors);
}

#[test]
fn s8_an_idle_worker_steals_queued_work_and_nothing_runs_twice() {
    let mut cluster = Cluster::start(0, "5");
    let first = cluster.add_worker(1);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs.log");
    let script = format!("sleep 0.1; echo $0 >> {}; echo $PPID", log.display());
    let tasks: Vec<_> = (0..20).map(|i| command(i, &["sh", "-c", &script, &i.to_string()])).collect();
    let addr = cluster.addr.clone();
    // Submit while only the first worker exists; the second joins when the work is queued.
    let runner = std::thread::spawn(move || {
        let c = Cluster {
            scheduler: std::process::Command::new("true").spawn().unwrap(),
            addr,
            http: String::new(),
            workers: vec![],
        };
        let out = c.run(tasks, &(0..20).collect::<Vec<_>>(), Duration::from_secs(60));
        std::mem::forget(c);
        out
    });
    std::thread::sleep(Duration::from_millis(300));
    let second = cluster.add_worker(1);
    let out = runner.join().unwrap();
    let pids: std::collections::HashSet<u32> =
        out.results.values().map(|v| v["stdout"].as_str().unwrap().trim().parse().unwrap()).collect();
    assert!(pids.contains(&first) && pids.contains(&second), "both workers ran tasks: {pids:?}");
    let mut runs: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(str::to_owned).collect();
    runs.sort();
    let before = runs.len();
    runs.dedup();
    assert_eq!((before, runs.len()), (20, 20), "each task ran exactly once");
    std::thread::sleep(Duration::from_millis(300));
    assert!(cluster.status()["stats"]["stolen"].as_u64().unwrap() > 0);
}

#[test]
fn s10_hyperparameter_search_equals_the_sequential_run() {
    let cluster = Cluster::start(2, "5");
    let search = Search::grid(Source::Generated { rows: 3000, seed: 11 }, 30, 3);
    assert!(search.graph().0.len() > 48, "at least 48 fits");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let distributed = rt.block_on(async {
        let mut client = labctl_scheduler::client::Client::connect(&cluster.addr, TOKEN).await.unwrap();
        search.distributed(&mut client).await.unwrap()
    });
    assert_eq!(distributed, search.sequential().unwrap());
    assert_eq!(distributed["fits"], json!(48));
    assert_eq!(distributed["scores"].as_array().unwrap().len(), 16);
}

#[test]
fn s11_command_tasks_capture_output_and_fail_with_stderr() {
    let cluster = Cluster::start(1, "5");
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.py");
    std::fs::write(&train, "import sys\nalpha = float(sys.argv[2])\nprint(f'score {1 - alpha}')\nprint('training', file=sys.stderr)\nif alpha > 1:\n    sys.exit('alpha must be at most 1')\n").unwrap();
    let t = train.to_str().unwrap();
    let tasks =
        vec![command(0, &["python3", t, "--alpha", "0.1"]), command(1, &["python3", t, "--alpha", "2"])];
    let out = cluster.run(tasks, &[0, 1], Duration::from_secs(30));
    assert_eq!(out.results[&0]["stdout"], "score 0.9\n");
    assert_eq!(out.results[&0]["stderr"], "training\n");
    let err = &out.errors[&1];
    assert!(err.contains("exit status: 1") && err.ends_with("alpha must be at most 1"), "{err}");
}

/// `lab-scheduler run` is a scheduler and its workers for one graph.
#[test]
fn run_evaluates_a_graph_file_on_workers_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let graph = dir.path().join("graph.toml");
    let mut text = String::new();
    for i in 0..8 {
        text.push_str(&format!("[[task]]\nid = \"sq{i}\"\nfunction = \"square\"\nargs = {{ x = {i} }}\n\n"));
    }
    std::fs::write(&graph, text).unwrap();
    let out = Command::new(BIN).args(["run", "--workers", "3", "--slots", "2"]).arg(&graph).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for i in 0..8 {
        assert_eq!(printed["results"][format!("sq{i}")], json!((i * i) as f64), "{printed}");
    }
}

#[test]
fn a_graphs_command_runs_from_its_shipped_files_in_a_directory_of_its_own() {
    let cluster = Cluster::start(1, "5");
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("train.py"), "import os, sys\nprint(sys.argv[1], os.getcwd())\n")
        .unwrap();
    let graph = home.path().join("graph.toml");
    let task = r#"[[task]]
id = "train"
command = ["python3", "train.py", "0.1"]
files = ["train.py"]
"#;
    std::fs::write(&graph, task).unwrap();
    let submit = |graph: &std::path::Path| {
        Command::new(BIN)
            .args(["submit", "--scheduler", &cluster.addr, "--token", TOKEN])
            .arg(graph)
            .current_dir("/")
            .output()
            .unwrap()
    };
    let out = submit(&graph);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stdout = printed["results"]["train"]["stdout"].as_str().unwrap();
    let (alpha, cwd) = stdout.trim_end().split_once(' ').unwrap();
    assert_eq!(alpha, "0.1");
    assert!(!cwd.starts_with(home.path().to_str().unwrap()) && cwd != "/", "{cwd}");
    assert!(!std::path::Path::new(cwd).exists(), "the task's directory is removed: {cwd}");

    std::fs::write(&graph, task.replace("files = [\"train.py\"]", "files = [\"tran.py\"]")).unwrap();
    let refused = submit(&graph);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("graph.toml: task `train`: cannot read") && stderr.contains("tran.py"),
        "{stderr}"
    );
}

#[test]
fn a_wrong_token_is_refused() {
    let cluster = Cluster::start(0, "5");
    let out = std::process::Command::new(BIN)
        .args(["worker", "--scheduler", &cluster.addr, "--token", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong token"));
}
