//! Issue 5 on the local provider: workers as real processes, smoke workloads, repair,
//! and a destroy that leaves no process, listening port or file behind.

use crate::support::{worker_bin_dir, Env, Run};

/// The README's main job: `examples/quickstart.toml`, three students.
const LAB: &str = include_str!("../../examples/quickstart.toml");
const STUDENTS: [&str; 3] = ["ada", "alan", "grace"];

/// (role, pid, start time) of every process the lab started, and the addresses they use.
fn processes(env: &Env) -> (Vec<(String, u32)>, Vec<String>) {
    let (mut procs, mut addrs) = (vec![], vec![]);
    for student in STUDENTS {
        for service in ["mapreduce", "scheduler"] {
            let path = env.data().join(format!("quickstart/students/{student}/{service}/processes.json"));
            let record: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            for p in record["processes"].as_array().unwrap() {
                procs.push((
                    format!("{student}/{service}/{}", p["role"].as_str().unwrap()),
                    p["pid"].as_u64().unwrap() as u32,
                ));
            }
            addrs.push(record["attributes"]["address"].as_str().unwrap().to_owned());
        }
    }
    (procs, addrs)
}

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s[s.rfind(')').unwrap() + 2..].starts_with('Z'))
}

#[test]
fn quickstart_verifies_every_student_repairs_a_killed_scheduler_and_destroy_leaves_nothing() {
    worker_bin_dir();
    let env = Env::new();
    env.write("lab.toml", LAB);
    let applied: Run = env.run(&["apply", "lab.toml", "--yes"]).ok();
    assert!(applied.stdout.contains("3 students, 6 of 6 checks passed."), "{}", applied.stdout);
    let (procs, addrs) = processes(&env);
    assert_eq!(procs.len(), 18, "a coordinator, a scheduler and 2 workers each, per student");
    assert!(procs.iter().all(|(_, pid)| running(*pid)));

    // JSON and JUnit for CI.
    let verified = env.run(&["verify", "lab.toml", "--json", "--junit", "junit.xml"]).ok();
    let checks: serde_json::Value = serde_json::from_str(&verified.stdout).unwrap();
    assert_eq!(checks.as_array().unwrap().len(), 6);
    let junit = std::fs::read_to_string(env.path("junit.xml")).unwrap();
    assert!(junit.contains("<testsuite name=\"hpsearch\" tests=\"3\" failures=\"0\">"), "{junit}");

    // Handouts: one Markdown and one HTML file per student, private, with what they need.
    env.run(&["output", "lab.toml", "--handout", "handouts"]).ok();
    let token = std::fs::read_to_string(env.data().join("quickstart/students/ada/token")).unwrap();
    for ext in ["md", "html"] {
        let path = env.path(&format!("handouts/ada.{ext}"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(token.trim()) && text.contains(&addrs[0]) && text.contains(&addrs[1]),
            "{text}"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // Killing alan's scheduler fails exactly alan's search, naming the cause.
    let (_, sched) = procs.iter().find(|(r, _)| r == "alan/scheduler/scheduler").unwrap();
    // SAFETY: a process this test's lab started.
    unsafe { libc::kill(*sched as i32, libc::SIGKILL) };
    let status = env.run(&["status", "lab.toml"]).ok();
    let line = |who: &str| status.stdout.lines().find(|l| l.starts_with(who)).unwrap_or_default().to_owned();
    assert!(line("ada").contains("mapreduce: 2 workers, scheduler: 2 workers"), "{}", status.stdout);
    assert!(
        line("alan").contains("1 missing") && line("alan").contains("scheduler: down"),
        "{}",
        status.stdout
    );
    let broken = env.run(&["verify", "lab.toml"]);
    assert_eq!(broken.code, 1, "{}", broken.all());
    assert!(broken.stdout.contains("5 of 6 checks passed"), "{}", broken.stdout);
    assert!(
        broken.stdout.contains("alan / hpsearch: hyperparameter search through the scheduler at"),
        "{}",
        broken.stdout
    );
    assert!(broken.stdout.contains("cannot reach the scheduler"), "{}", broken.stdout);
    assert!(!broken.stdout.contains("ada / ") && !broken.stdout.contains("grace / "), "{}", broken.stdout);

    let planned = env.run(&["plan", "lab.toml", "--out", "repair.json"]).ok();
    assert!(
        planned.stdout.contains("+ student[\"alan\"].scheduler (scheduler)  # deleted outside labctl"),
        "{}",
        planned.stdout
    );
    // A saved plan is verified once applied, and `--json` carries the checks.
    let repaired = env.run(&["apply", "repair.json", "--json"]).ok();
    let summary: serde_json::Value = serde_json::from_str(&repaired.stdout).unwrap();
    assert_eq!(summary["success"], true, "{summary:#}");
    let checks = summary["checks"].as_array().unwrap_or_else(|| panic!("no checks in {summary:#}"));
    assert_eq!(checks.len(), 6, "{summary:#}");
    assert!(checks.iter().all(|c| c["passed"] == true), "{summary:#}");

    let (procs_after, addrs_after) = processes(&env);
    env.run(&["destroy", "lab.toml", "--yes"]).ok();
    for (role, pid) in procs.iter().chain(&procs_after) {
        assert!(!running(*pid), "{role} (pid {pid}) still runs");
    }
    for addr in addrs.iter().chain(&addrs_after) {
        assert!(std::net::TcpStream::connect(addr).is_err(), "{addr} still listens");
    }
    assert_eq!(env.data_files(), Vec::<String>::new());
}

/// A student's word count in Python, as the course has them write it.
const MAPPER: &str = "import re, sys\nfor line in sys.stdin:\n    for w in re.findall('[A-Za-z]+', line):\n        print(w.lower() + '\\t1')\n";
const REDUCER: &str = "import sys\ncounts = {}\nfor line in sys.stdin:\n    w, n = line.rstrip('\\n').split('\\t')\n    counts[w] = counts.get(w, 0) + int(n)\nfor w in sorted(counts):\n    print(f'{w}\\t{counts[w]}')\n";
const TRAIN: &str = "import sys\nprint('trained with alpha', sys.argv[2])\n";

/// The handout's `sh` blocks, in order.
fn shell_blocks(handout: &str) -> Vec<String> {
    handout.split("```sh\n").skip(1).map(|b| b.split("```").next().unwrap().to_owned()).collect()
}

#[test]
fn a_students_own_mapper_reducer_and_train_py_run_from_their_directory_as_the_handout_says() {
    let bin = worker_bin_dir();
    let env = Env::new();
    env.write("lab.toml", &LAB.replace("smoke = [\"wordcount\", \"hpsearch\"]", "smoke = []"));
    env.run(&["apply", "lab.toml", "--yes"]).ok();
    env.run(&["output", "lab.toml", "--handout", "handouts"]).ok();
    let handout = std::fs::read_to_string(env.path("handouts/ada.md")).unwrap();
    let blocks = shell_blocks(&handout);
    let block =
        |needle: &str| blocks.iter().find(|b| b.contains(needle)).unwrap_or_else(|| panic!("{handout}"));

    // Ada's own directory, nowhere near the services' working directories.
    let home = tempfile::tempdir().unwrap();
    for (name, text) in [("mapper.py", MAPPER), ("reducer.py", REDUCER), ("train.py", TRAIN)] {
        std::fs::write(home.path().join(name), text).unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let sh = |script: &str| {
        let out = std::process::Command::new("sh")
            .args(["-ec", script])
            .current_dir(home.path())
            .env("PATH", &path)
            .env_remove("LAB_MAPREDUCE_TOKEN")
            .env_remove("LAB_SCHEDULER_TOKEN")
            .output()
            .unwrap();
        let run = Run::from(out);
        assert_eq!(run.code, 0, "{script}\n{}", run.all());
        run
    };

    // The word count block sets the token; the streaming block follows it as written.
    sh(&format!("{}{}", block("--job wordcount"), block("--job streaming")));
    let bucket = env.data().join("quickstart/buckets/quickstart-ada");
    labctl_datasets::check::wordcount(&bucket.join("datasets/corpus"), &bucket.join("out/mine")).unwrap();

    let graph = sh(block("graph.toml"));
    let results: serde_json::Value = serde_json::from_str(&graph.stdout).unwrap();
    assert_eq!(results["results"]["train"]["stdout"], "trained with alpha 0.1\n", "{}", graph.stdout);
    env.run(&["destroy", "lab.toml", "--yes"]).ok();
}
