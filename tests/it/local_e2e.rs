//! Issue 5 on the local provider: workers as real processes, smoke workloads, repair,
//! and a destroy that leaves no process, listening port or file behind.

use std::path::Path;

use crate::support::{Env, Run};

const LAB: &str = r#"[lab]
name = "e2e"

[provider.local]

[[cohort]]
name = "mon"
students = [{ id = "ada" }, { id = "bob" }]

[student]
bucket = { datasets = ["corpus", "table"] }
workers = { mapreduce = { workers = 2 }, scheduler = { workers = 2 } }
smoke = ["wordcount", "hpsearch"]

[datasets.corpus]
kind = "text"
size_mb = 0.5
files = 2

[datasets.table]
kind = "tabular"
rows = 1000
"#;

/// (role, pid, start time) of every process the lab started, and the addresses they use.
fn processes(env: &Env) -> (Vec<(String, u32)>, Vec<String>) {
    let (mut procs, mut addrs) = (vec![], vec![]);
    for student in ["ada", "bob"] {
        for service in ["mapreduce", "scheduler"] {
            let path = env.data().join(format!("e2e/students/{student}/{service}/processes.json"));
            let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            for p in record["processes"].as_array().unwrap() {
                procs.push((format!("{student}/{service}/{}", p["role"].as_str().unwrap()), p["pid"].as_u64().unwrap() as u32));
            }
            addrs.push(record["address"].as_str().unwrap().to_owned());
        }
    }
    (procs, addrs)
}

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s[s.rfind(')').unwrap() + 2..].starts_with('Z'))
}

fn workers_built() {
    let dir = Path::new(env!("CARGO_BIN_EXE_labctl")).parent().unwrap();
    for bin in ["lab-mapreduce", "lab-scheduler"] {
        assert!(dir.join(bin).exists(), "{bin} is not built next to labctl: run the tests with `cargo nextest run --workspace` (scripts/test.sh)");
    }
}

#[test]
fn apply_verifies_every_student_repairs_a_killed_scheduler_and_destroy_leaves_nothing() {
    workers_built();
    let env = Env::new();
    env.write("lab.toml", LAB);
    let applied: Run = env.run(&["apply", "lab.toml", "--yes"]).ok();
    assert!(applied.stdout.contains("2 students, 4 of 4 checks passed."), "{}", applied.stdout);
    let (procs, addrs) = processes(&env);
    assert_eq!(procs.len(), 12, "a coordinator, a scheduler and 2 workers each, per student");
    assert!(procs.iter().all(|(_, pid)| running(*pid)));

    // JSON and JUnit for CI.
    let verified = env.run(&["verify", "lab.toml", "--json", "--junit", "junit.xml"]).ok();
    let checks: serde_json::Value = serde_json::from_str(&verified.stdout).unwrap();
    assert_eq!(checks.as_array().unwrap().len(), 4);
    let junit = std::fs::read_to_string(env.path("junit.xml")).unwrap();
    assert!(junit.contains("<testsuite name=\"hpsearch\" tests=\"2\" failures=\"0\">"), "{junit}");

    // Handouts: one Markdown and one HTML file per student, private, with what they need.
    env.run(&["output", "lab.toml", "--handout", "handouts"]).ok();
    let token = std::fs::read_to_string(env.data().join("e2e/students/ada/token")).unwrap();
    for ext in ["md", "html"] {
        let path = env.path(&format!("handouts/ada.{ext}"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(token.trim()) && text.contains(&addrs[0]) && text.contains(&addrs[1]), "{text}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // Killing bob's scheduler fails exactly bob's search, naming the cause.
    let (_, sched) = procs.iter().find(|(r, _)| r == "bob/scheduler/scheduler").unwrap();
    // SAFETY: a process this test's lab started.
    unsafe { libc::kill(*sched as i32, libc::SIGKILL) };
    let broken = env.run(&["verify", "lab.toml"]);
    assert_eq!(broken.code, 1, "{}", broken.all());
    assert!(broken.stdout.contains("3 of 4 checks passed"), "{}", broken.stdout);
    assert!(broken.stdout.contains("bob / hpsearch: hyperparameter search through the scheduler at"), "{}", broken.stdout);
    assert!(broken.stdout.contains("cannot reach the scheduler"), "{}", broken.stdout);
    assert!(!broken.stdout.contains("ada / "), "{}", broken.stdout);

    let repaired = env.run(&["apply", "lab.toml", "--yes"]).ok();
    assert!(repaired.stdout.contains("+ student[\"bob\"].scheduler (scheduler)  # deleted outside labctl"), "{}", repaired.stdout);
    assert!(repaired.stdout.contains("2 students, 4 of 4 checks passed."), "{}", repaired.stdout);

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
