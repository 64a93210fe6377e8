//! Students' notebooks on the local provider (issue 19): a Jupyter server, a Dask cluster
//! and PySpark per student from one pinned Python environment per lab, proven by the
//! `notebook` check that runs a notebook through each student's own Jupyter server.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::support::{worker_bin_dir, Env};

/// The README's quickstart with a notebook block and the notebook check.
fn lab() -> String {
    let lab = include_str!("../../examples/quickstart.toml");
    let with = lab.replace(
        "smoke = [\"wordcount\", \"hpsearch\"]",
        "smoke = [\"wordcount\", \"notebook\"]\nnotebook = { packages = [\"pandas\"], dask_workers = 2 }",
    );
    assert_ne!(with, lab);
    with
}

const STUDENTS: [&str; 3] = ["ada", "alan", "grace"];

/// Destroys the lab if the test fails half-way, so that its servers do not outlive it.
struct Teardown<'a>(&'a Env);

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.run(&["destroy", "lab.toml", "--yes"]);
        }
    }
}

/// A student's notebook service as its record says: attributes and (role, pid).
fn notebook(env: &Env, student: &str) -> (Value, Vec<(String, u32)>) {
    let path = env.data().join(format!("quickstart/students/{student}/notebook/processes.json"));
    let record: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let procs = record["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["role"].as_str().unwrap().to_owned(), p["pid"].as_u64().unwrap() as u32))
        .collect();
    (record["attributes"].clone(), procs)
}

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s[s.rfind(')').unwrap() + 2..].starts_with('Z'))
}

/// The local addresses (hex, as `/proc/net/tcp{,6}` writes them) `pid` listens on.
fn listening(pid: u32) -> Vec<String> {
    let sockets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned))
        .collect();
    let mut out = vec![];
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // st 0A is LISTEN; field 9 the socket's inode.
            if fields[3] == "0A" && sockets.iter().any(|s| s == fields[9]) {
                out.push(fields[1].to_owned());
            }
        }
    }
    out
}

/// `GET url`'s status and body, with an optional Jupyter token.
pub fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("token {token}"));
    }
    let mut answer = request.call().unwrap();
    (answer.status().as_u16(), answer.body_mut().read_to_string().unwrap())
}

/// Tasks of `prefix` the Dask scheduler at `dashboard` holds results of (its Prometheus
/// metrics, which count every task it ran by prefix and state).
pub fn tasks_done(dashboard: &str, prefix: &str) -> f64 {
    let (_, metrics) = get(&format!("{dashboard}/metrics"), None);
    let line = format!(
        "dask_scheduler_prefix_state_totals_total{{state=\"memory\",task_prefix_name=\"{prefix}\"}} "
    );
    metrics.lines().find_map(|l| l.strip_prefix(&line)).map_or(0.0, |n| n.parse().unwrap())
}

#[test]
fn every_students_notebook_runs_on_their_dask_and_pyspark_and_a_killed_dask_worker_is_named_and_restarted() {
    worker_bin_dir();
    let env = Env::new();
    env.write("lab.toml", &lab());
    let _teardown = Teardown(&env);
    let applied = env.run(&["apply", "lab.toml", "--yes", "--json"]).ok();
    let summary: Value = serde_json::from_str(&applied.stdout).unwrap();
    let checks = summary["checks"].as_array().unwrap_or_else(|| panic!("{summary:#}"));
    let notebook_checks: Vec<&Value> = checks.iter().filter(|c| c["check"] == "notebook").collect();
    assert_eq!(notebook_checks.len(), 3, "{summary:#}");
    assert!(checks.iter().all(|c| c["passed"] == true), "{summary:#}");

    // Each kernel ran on its own student's Dask cluster: the scheduler counted the
    // notebook's tasks (one per dataset file: the quickstart's corpus has 4).
    let token = |student: &str| {
        std::fs::read_to_string(env.data().join(format!("quickstart/students/{student}/token"))).unwrap()
    };
    let mut before = BTreeMap::new();
    for student in STUDENTS {
        let (attributes, procs) = notebook(&env, student);
        assert_eq!(procs.len(), 4, "a Dask scheduler, 2 Dask workers and Jupyter: {procs:?}");
        // Nothing listens beyond loopback (a Dask worker runs whatever it is sent).
        for (role, pid) in &procs {
            let addresses = listening(*pid);
            assert!(!addresses.is_empty(), "{student}'s {role} listens");
            for address in addresses {
                let host = address.split(':').next().unwrap();
                let loopback = host == "0100007F" || host == "00000000000000000000000001000000";
                assert!(loopback, "{student}'s {role} listens on {address}");
            }
        }
        let dashboard = attributes["dask_dashboard"].as_str().unwrap();
        assert_eq!(tasks_done(dashboard, "labctl-wordcount"), 4.0, "{student}");
        // The Jupyter server asks for the student's token, and takes it.
        let api = format!("http://{}/api/kernels", attributes["jupyter"].as_str().unwrap());
        assert_eq!(get(&api, None).0, 403, "{student}'s Jupyter without a token");
        assert_eq!(get(&api, Some(token("alan").trim())).0, if student == "alan" { 200 } else { 403 });
        // The check shut its kernel down.
        assert_eq!(get(&api, Some(token(student).trim())).1.trim(), "[]", "{student}");
        before.insert(student, procs);
    }

    // The handout gives JupyterLab's address with the student's token, and their Dask.
    env.run(&["output", "lab.toml", "--handout", "handouts"]).ok();
    let handout = std::fs::read_to_string(env.path("handouts/ada.md")).unwrap();
    let (ada, _) = notebook(&env, "ada");
    let url = format!("{}?token={}", ada["url"].as_str().unwrap(), token("ada").trim());
    assert!(handout.contains(&url), "{handout}");
    assert!(handout.contains(ada["dask_scheduler"].as_str().unwrap()), "{handout}");
    let status = env.run(&["status", "lab.toml"]).ok();
    assert!(status.stdout.contains("notebook: Jupyter Server 2."), "{}", status.stdout);

    // One of alan's Dask workers killed: his notebook check fails naming Dask, nobody
    // else's; `apply` restarts his notebook service and the check passes again.
    let (_, worker) = before["alan"].iter().find(|(role, _)| role == "dask-worker-1").unwrap();
    // SAFETY: a process this test's lab started.
    unsafe { libc::kill(*worker as i32, libc::SIGKILL) };
    let broken = env.run(&["verify", "lab.toml", "--json"]);
    assert_eq!(broken.code, 1, "{}", broken.all());
    let failed: Vec<Value> = serde_json::from_str::<Vec<Value>>(&broken.stdout)
        .unwrap()
        .into_iter()
        .filter(|c| c["passed"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(
        (&failed[0]["student"], &failed[0]["check"]),
        (&Value::from("alan"), &Value::from("notebook"))
    );
    let detail = failed[0]["detail"].as_str().unwrap();
    assert!(detail.starts_with("Dask: ") && detail.contains("Only 1/2 workers"), "{detail}");

    let repaired = env.run(&["apply", "lab.toml", "--yes", "--json"]).ok();
    let summary: Value = serde_json::from_str(&repaired.stdout).unwrap();
    assert!(summary["checks"].as_array().unwrap().iter().all(|c| c["passed"] == true), "{summary:#}");
    let (_, alan) = notebook(&env, "alan");
    assert!(alan.iter().all(|(_, pid)| running(*pid)), "{alan:?}");

    // Destroy stops every process the notebooks ever started, and what a student's kernel
    // left running in a session of its own (as Jupyter starts kernels), and leaves no file.
    let (ada, _) = notebook(&env, "ada");
    let jupyter =
        labctl_notebook::jupyter::Jupyter::new(ada["jupyter"].as_str().unwrap(), token("ada").trim());
    let mut kernel = jupyter.start_kernel().unwrap();
    let detached = "import subprocess, sys\n\
                    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)";
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    kernel.run(detached, deadline).unwrap();
    // Left running, as a student closing the browser leaves it.
    std::mem::forget(kernel);
    let after: Vec<(String, u32)> = STUDENTS.iter().flat_map(|s| notebook(&env, s).1).collect();
    let ours = |pid: &str| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        String::from_utf8_lossy(&cmdline).contains(&*env.data().to_string_lossy())
    };
    let pids = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|p| p.parse::<u32>().is_ok() && ours(p))
            .collect()
    };
    env.run(&["destroy", "lab.toml", "--yes"]).ok();
    for (role, pid) in before.values().flatten().chain(&after) {
        assert!(!running(*pid), "{role} (pid {pid}) still runs");
    }
    assert_eq!(pids(), Vec::<String>::new(), "processes of the lab's data directory still run");
    assert_eq!(env.data_files(), Vec::<String>::new());
}

#[test]
fn a_rebuilt_python_environment_installs_the_pinned_versions_and_restarts_the_notebooks() {
    worker_bin_dir();
    let env = Env::new();
    let lab = lab().replace("smoke = [\"wordcount\", \"notebook\"]", "smoke = [\"notebook\"]");
    env.write("lab.toml", &lab);
    let _teardown = Teardown(&env);
    env.run(&["apply", "lab.toml", "--yes", "--no-verify"]).ok();
    let pinned =
        |env: &Env| env.state("quickstart")["resources"]["python_env"]["attributes"]["pinned"].clone();
    let pins = pinned(&env);
    let pins_list: Vec<&str> = pins.as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    for package in ["dask==", "distributed==", "jupyterlab==", "pyspark==", "pandas=="] {
        assert!(pins_list.iter().any(|p| p.starts_with(package)), "{package} not pinned: {pins_list:?}");
    }
    let (_, procs) = notebook(&env, "ada");

    // The environment deleted behind labctl's back: the plan rebuilds it and restarts
    // what runs on it; the rebuild installs exactly the pinned versions.
    std::fs::remove_dir_all(env.data().join("quickstart/python/env")).unwrap();
    let planned = env.run(&["plan", "lab.toml"]).ok();
    assert!(planned.stdout.contains("+ python_env (python_env)"), "{}", planned.stdout);
    assert!(planned.stdout.contains("student[\"ada\"].notebook"), "{}", planned.stdout);
    let applied = env.run(&["apply", "lab.toml", "--yes"]).ok();
    assert!(applied.stdout.contains("3 students, 3 of 3 checks passed."), "{}", applied.stdout);
    assert_eq!(pinned(&env), pins);
    // What pip installed, not what the lock says.
    let python = env.data().join("quickstart/python/env/bin/python");
    let frozen = std::process::Command::new(python)
        .args(["-m", "pip", "freeze", "--exclude-editable"])
        .output()
        .unwrap();
    let frozen: Vec<&str> = std::str::from_utf8(&frozen.stdout).unwrap().lines().collect();
    assert_eq!(frozen, pins_list);
    assert!(procs.iter().all(|(_, pid)| !running(*pid)), "the old notebook processes were stopped");
    env.run(&["destroy", "lab.toml", "--yes"]).ok();
    assert_eq!(env.data_files(), Vec::<String>::new());
}

#[test]
fn the_handouts_jupyterlab_address_opens_the_launcher_in_headless_chromium_with_the_token_only() {
    worker_bin_dir();
    let env = Env::new();
    let one = lab()
        .replace("smoke = [\"wordcount\", \"notebook\"]", "smoke = []")
        .replace("  { id = \"alan\"", "#  { id = \"alan\"")
        .replace("  { id = \"grace\"", "#  { id = \"grace\"");
    env.write("lab.toml", &one);
    let _teardown = Teardown(&env);
    env.run(&["apply", "lab.toml", "--yes"]).ok();
    env.run(&["output", "lab.toml", "--handout", "handouts"]).ok();
    let handout = std::fs::read_to_string(env.path("handouts/ada.md")).unwrap();
    // "JupyterLab: <http://…/lab?token=…>"
    let url = handout
        .split("JupyterLab: <")
        .nth(1)
        .and_then(|r| r.split('>').next())
        .unwrap_or_else(|| panic!("{handout}"));
    let (bare, _) = url.split_once("?token=").unwrap();

    let mut browser = crate::browser::Chromium::start();
    // Without the token: Jupyter's login page, no launcher.
    browser.open(bare);
    let login = "!!document.querySelector('input[type=password]')";
    assert!(browser.wait_for(login, Duration::from_secs(30)), "no login page: {}", browser.text());
    assert!(!browser.wait_for("!!document.querySelector('.jp-Launcher')", Duration::from_secs(1)));
    // With the handout's address: JupyterLab, its launcher offering the lab's Python.
    browser.open(url);
    let launcher = "!!document.querySelector('.jp-Launcher') && document.querySelector('.jp-Launcher').innerText.includes('Python 3')";
    assert!(browser.wait_for(launcher, Duration::from_secs(90)), "no launcher: {}", browser.text());
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{} bytes", png.len());
    std::fs::write(env.path("jupyterlab.png"), &png).unwrap();
    // `LABCTL_SCREENSHOT=<path>` keeps it (the README's picture comes from here).
    if let Ok(keep) = std::env::var("LABCTL_SCREENSHOT") {
        std::fs::write(keep, &png).unwrap();
    }
    drop(browser);
    env.run(&["destroy", "lab.toml", "--yes"]).ok();
    assert_eq!(env.data_files(), Vec::<String>::new());
}

#[test]
fn every_course_lab_gives_its_students_the_modules_starter_notebook_and_keeps_their_answers() {
    worker_bin_dir();
    let labs = concat!(env!("CARGO_MANIFEST_DIR"), "/labs");
    for (file, lab, starter) in [
        ("mapreduce-spark.toml", "mr-spark-2026", "mapreduce-spark.ipynb"),
        ("kubernetes-dask.toml", "k8s-dask-2026", "kubernetes-dask.ipynb"),
        ("evaluation.toml", "eval-2026", "evaluation.ipynb"),
    ] {
        let env = Env::new();
        std::fs::copy(format!("{labs}/roster-example.csv"), env.path("roster-example.csv")).unwrap();
        let text = std::fs::read_to_string(format!("{labs}/{file}")).unwrap();
        std::fs::create_dir(env.path("notebooks")).unwrap();
        std::fs::copy(format!("{labs}/notebooks/{starter}"), env.path(&format!("notebooks/{starter}")))
            .unwrap();
        let small: Vec<String> = text
            .lines()
            .map(|l| match l.split('=').map(str::trim).next() {
                Some("size_mb") => "size_mb = 0.25".to_owned(),
                Some("rows") => "rows = 500".to_owned(),
                _ => l.to_owned(),
            })
            .collect();
        env.write("lab.toml", &small.join("\n"));
        let _teardown = Teardown(&env);
        let applied = env.run(&["apply", "lab.toml", "--yes", "--json"]).ok();
        let summary: Value = serde_json::from_str(&applied.stdout).unwrap();
        let checks = summary["checks"].as_array().unwrap();
        assert!(checks.iter().any(|c| c["check"] == "notebook"), "{file}: {summary:#}");
        assert!(checks.iter().all(|c| c["passed"] == true), "{file}: {summary:#}");

        // Each student finds the module's notebook in their bucket, as the lab has it.
        let mine =
            |student: &str| env.data().join(format!("{lab}/buckets/{lab}-{student}/notebooks/{starter}"));
        for student in ["ada", "alan", "grace"] {
            let text =
                std::fs::read_to_string(mine(student)).unwrap_or_else(|e| panic!("{file}: {student}: {e}"));
            assert_eq!(text, std::fs::read_to_string(format!("{labs}/notebooks/{starter}")).unwrap());
        }
        // Ada's answers survive her notebook service's restart (a killed process, repaired).
        std::fs::write(mine("ada"), "{\"cells\": [], \"note\": \"ada's answers\"}").unwrap();
        let path = env.data().join(format!("{lab}/students/ada/notebook/processes.json"));
        let record: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let scheduler = record["processes"][0]["pid"].as_u64().unwrap() as i32;
        // SAFETY: a process this test's lab started.
        unsafe { libc::kill(scheduler, libc::SIGKILL) };
        env.run(&["apply", "lab.toml", "--yes", "--no-verify"]).ok();
        assert!(std::fs::read_to_string(mine("ada")).unwrap().contains("ada's answers"), "{file}");
        env.run(&["destroy", "lab.toml", "--yes"]).ok();
        assert_eq!(env.data_files(), Vec::<String>::new(), "{file}");
    }
}
