//! What the tests of VMs that really boot share, whichever cloud emulator runs them: the VM
//! image (`scripts/test.sh` builds it and names it in `LABCTL_VM_IMAGE`), checks that every
//! VM booted and runs its workers and that nothing of them is left, a student's view of
//! their VM through their handout, and the course labs moved onto a cloud.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use labctl_vm_runner::Runner;

use crate::notebook::{get, tasks_done};
use crate::support::{without_notebooks, Env, Run};

/// Each course lab of `labs/` (its name and a scratch directory holding it as `lab.toml`,
/// with the roster beside it) with `[provider.local]` replaced by `provider`, each machine
/// type by what `machine_types` maps it to (machine types are the cloud's own), and its
/// datasets shrunk to keep the emulators small.
pub fn course_labs(provider: &str, machine_types: &[(&str, &str)]) -> Vec<(String, Env)> {
    let labs = concat!(env!("CARGO_MANIFEST_DIR"), "/labs");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(labs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("toml"))
        .collect();
    paths.sort();
    let labs = paths.into_iter().map(|path| {
        let env = Env::new();
        std::fs::copy(path.with_file_name("roster-example.csv"), env.path("roster-example.csv")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("[provider.local]\n"), "{}", path.display());
        let text: String = without_notebooks(&text)
            .replace("[provider.local]\n", provider)
            .lines()
            .map(|l| match l.split('=').map(str::trim).collect::<Vec<_>>().as_slice() {
                ["size_mb", _] => "size_mb = 0.1".to_owned(),
                ["rows", _] => "rows = 500".to_owned(),
                ["instance_type", value] => {
                    let value = value.trim_matches('"');
                    let found = machine_types.iter().find(|(from, _)| *from == value);
                    let (_, to) =
                        found.unwrap_or_else(|| panic!("{}: no machine type for {value}", path.display()));
                    format!("instance_type = \"{to}\"")
                }
                _ => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        env.write("lab.toml", &text);
        let name = text.lines().find_map(|l| l.strip_prefix("name = \"")).unwrap().trim_end_matches('"');
        (name.to_owned(), env)
    });
    let labs: Vec<_> = labs.collect();
    assert_eq!(labs.len(), 3, "one lab per course module");
    labs
}

pub fn image() -> PathBuf {
    std::env::var_os("LABCTL_VM_IMAGE")
        .map(PathBuf::from)
        .expect("LABCTL_VM_IMAGE names the VM image: run the tests through scripts/test.sh")
}

/// The systemd units of the examples' workers (two of each kind of worker).
pub const UNITS: [&str; 6] = [
    "lab-mapreduce",
    "lab-mapreduce-worker@0",
    "lab-mapreduce-worker@1",
    "lab-scheduler",
    "lab-scheduler-worker@0",
    "lab-scheduler-worker@1",
];

/// Waits for `count` VMs to have booted, each without a cloud-init error and with the
/// example's workers active (two of each kind).
pub fn assert_workers_run(runner: &Runner, count: usize) {
    let vms = runner.wait_booted(count, Duration::from_secs(180)).unwrap();
    assert_eq!(vms.len(), count, "{vms:?}");
    for vm in &vms {
        runner
            .with_vm(&vm.instance_id, |v| {
                assert_eq!(v.cloud_init_errors(), Vec::<String>::new(), "{}", v.console());
                // The workers come up once their binaries are fetched and checked.
                let start = Instant::now();
                let states = loop {
                    let out = v.exec(&[&["systemctl", "is-active"], &UNITS[..]].concat()).unwrap();
                    let states = String::from_utf8_lossy(&out.stdout).into_owned();
                    if states.lines().all(|s| s == "active") || start.elapsed() > Duration::from_secs(30) {
                        break states;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                };
                assert_eq!(
                    states.lines().collect::<Vec<_>>(),
                    ["active"; 6],
                    "{}\n{}",
                    vm.instance_id,
                    v.console()
                );
            })
            .unwrap();
    }
}

/// Students' notebooks on their booted VMs, from a cloud example (`lab`, five students, on
/// `env`, run by `run`) cut to two students (`ada`, `other`) with a notebook and its check. labctl builds
/// the lab's Python environment here once, packs it as a wheelhouse in the artifacts bucket,
/// and each VM installs it from there with no package index (the runner's VMs reach only the
/// emulator): each VM's `pip freeze` is the pins. The notebook check runs through an SSH
/// tunnel to each student's own Jupyter server, on their Dask cluster and PySpark; the
/// tunnel the handout gives, as written, reaches her Jupyter (her token only) and her Dask
/// scheduler, which ran the check's tasks. Re-plan is empty; `destroy --archive` keeps the
/// notebook she saved on her VM.
pub fn notebooks_on_booted_vms(
    env: &Env,
    runner: &Runner,
    (lab, ada, other): (&str, &str, &str),
    run: fn(&Env, &[&str]) -> Run,
) {
    let text = std::fs::read_to_string(env.path("lab.toml")).unwrap();
    let text: String = text
        .lines()
        .filter(|l| {
            !l.contains("{ id = \"") || [ada, other].iter().any(|s| l.contains(&format!("id = \"{s}\"")))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let smoke = "smoke = [\"wordcount\", \"hpsearch\"]";
    assert!(text.contains(smoke));
    env.write(
        "lab.toml",
        &text.replace(smoke, "smoke = [\"wordcount\", \"notebook\"]\nnotebook = { dask_workers = 2 }"),
    );
    let applied = run(env, &["apply", "lab.toml", "--yes"]);
    let logs = || {
        let script = "tail -30 /var/log/cloud-init-output.log; journalctl --no-pager -n 30 -u 'lab-dask*' -u lab-jupyter";
        let vms = runner.vms().into_iter().map(|vm| vm.instance_id);
        let logs = vms.filter_map(|vm| runner.with_vm(&vm, |v| v.exec(&["sh", "-c", script]).unwrap()));
        logs.map(|out| String::from_utf8_lossy(&out.stdout).into_owned()).collect::<Vec<_>>().join("\n")
    };
    assert!(applied.stdout.contains("2 students, 4 of 4 checks passed"), "{}\n{}", applied.all(), logs());

    let state = env.state(lab);
    let stack = &state["resources"]["notebook_stack"]["attributes"];
    let pinned: Vec<&str> = stack["pinned"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    for package in ["dask==", "distributed==", "jupyterlab==", "pyspark=="] {
        assert!(pinned.iter().any(|p| p.starts_with(package)), "{package} in {pinned:?}");
    }
    let vms = runner.vms();
    assert_eq!(vms.len(), 2, "{vms:?}");
    for vm in vms {
        let (frozen, index) = runner
            .with_vm(&vm.instance_id, |v| {
                let freeze = v.exec(&["/opt/labctl/python/bin/python", "-m", "pip", "freeze"]).unwrap();
                let index = v.exec(&["curl", "-sS", "-m", "5", "https://pypi.org/simple/"]).unwrap();
                (String::from_utf8_lossy(&freeze.stdout).into_owned(), index.status.success())
            })
            .unwrap();
        assert_eq!(frozen.lines().collect::<Vec<_>>(), pinned, "{}", vm.instance_id);
        assert!(!index, "{} reaches no package index", vm.instance_id);
    }

    let handout = Handout::read(env, ada);
    let tunnel = handout.open_notebook_tunnel(env, ada, lab);
    let start = Instant::now();
    while std::net::TcpStream::connect("127.0.0.1:8888").is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "the handout's tunnel opens");
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = std::fs::read_to_string(env.path(&format!("handouts/{ada}.md"))).unwrap();
    let token = text.split("**Token:** `").nth(1).unwrap().split('`').next().unwrap();
    assert!(text.contains(&format!("<http://127.0.0.1:8888/lab?token={token}>")), "{text}");
    assert_eq!(get("http://127.0.0.1:8888/api/status", None).0, 403);
    assert_eq!(get("http://127.0.0.1:8888/api/status", Some(token)).0, 200);
    let files = stack["files"].as_array().unwrap();
    let parts = files.iter().filter(|f| f["path"].as_str().unwrap().starts_with("datasets/corpus/")).count();
    assert!(parts > 0, "{files:?}");
    assert_eq!(tasks_done("http://127.0.0.1:8787", "labctl-wordcount"), parts as f64);
    drop(tunnel);

    assert!(run(env, &["plan", "lab.toml"]).ok().stdout.contains("No changes"));

    // What she saved on her VM is archived with her bucket; then everything goes.
    let saved = handout.ssh(env, ada, "mkdir -p notebooks && echo '{\"cells\": []}' > notebooks/mine.ipynb");
    assert!(saved.status.success(), "{}", String::from_utf8_lossy(&saved.stderr));
    let destroyed = run(env, &["destroy", "lab.toml", "--yes", "--archive", "kept"]).ok();
    assert!(destroyed.stdout.contains(&format!("Archived {ada}'s work: ")), "{}", destroyed.stdout);
    let mine = std::fs::read_to_string(env.path(&format!("kept/{ada}/vm-home/notebooks/mine.ipynb")));
    assert_eq!(mine.unwrap(), "{\"cells\": []}\n");
    assert!(!env.path(&format!("kept/{ada}/vm-home/datasets")).exists(), "not the datasets fetched");
}

/// The VMs `runner` still runs once a destroy is done (it powers a VM off within moments of
/// its instance's end).
pub fn still_running(runner: &Runner) -> Vec<String> {
    let start = Instant::now();
    while !runner.vms().is_empty() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(200));
    }
    runner.vms().into_iter().map(|vm| vm.instance_id).collect()
}

/// Waits for every VM of `runner` to be off (their instances gone), then stops it: nothing
/// of its VMs is left.
pub fn assert_powered_off(runner: Runner) {
    let start = Instant::now();
    while !runner.vms().is_empty() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(runner.vms(), vec![], "destroy powers every VM off");
    assert_eq!(runner.errors(), Vec::<String>::new());
    let work = runner.work_dir().display().to_string();
    drop(runner);
    assert_eq!(vm_processes(&work), Vec::<String>::new(), "no VM process is left");
    assert!(!std::path::Path::new(&work).exists(), "{work} is removed");
}

/// Processes of a runner's VMs: their command lines name its directory, `mark`.
fn vm_processes(mark: &str) -> Vec<String> {
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(mark) {
            found.push(cmdline);
        }
    }
    found
}

/// What a student's handout says: their VM's address, their SSH key, and the MapReduce
/// section's word count, as written.
pub struct Handout {
    pub vm_ip: String,
    key: String,
    pub wordcount: String,
    /// The SSH tunnel to the student's notebook, if they have one.
    pub notebook_tunnel: Option<String>,
}

impl Handout {
    pub fn read(env: &Env, student: &str) -> Self {
        Run::from(env.command(&["output", "lab.toml", "--handout", "handouts"]).output().unwrap()).ok();
        let text = std::fs::read_to_string(env.path(&format!("handouts/{student}.md"))).unwrap();
        let between = |from: &str, to: &str| {
            let start = text.find(from).unwrap_or_else(|| panic!("`{from}` in {text}")) + from.len();
            text[start..][..text[start..].find(to).unwrap()].to_owned()
        };
        let key = between("Your SSH key (keep it secret):\n\n```text\n", "```");
        let wordcount = between("Run a word count over your corpus:\n\n```sh\n", "```");
        let tunnel = "For your notebook (JupyterLab, your Dask scheduler and its dashboard), open this tunnel:\n\n```sh\n";
        let notebook_tunnel = text.contains(tunnel).then(|| between(tunnel, "```").trim().to_owned());
        Self { vm_ip: between("Your VM is `", "`"), key, wordcount, notebook_tunnel }
    }

    /// The student's key in a file of the test's, as the handout tells them to keep it.
    fn key_file(&self, env: &Env, student: &str) -> PathBuf {
        let key = env.path(&format!("{student}.key"));
        std::fs::write(&key, &self.key).unwrap();
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        key
    }

    /// Opens the handout's notebook tunnel as written, but for where the key is and the
    /// test's ssh_config (which maps the VM's public address to where the runner booted it);
    /// killed on drop.
    pub fn open_notebook_tunnel(&self, env: &Env, student: &str, lab: &str) -> Tunnel {
        let written = self.notebook_tunnel.as_deref().expect("the handout has a notebook tunnel");
        let prefix = format!("ssh -i ~/.ssh/{lab} ");
        let args = written.strip_prefix(&prefix).unwrap_or_else(|| panic!("{written}"));
        let command = format!(
            "exec ssh -F {} -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ExitOnForwardFailure=yes {args}",
            env.path("ssh_config").display(),
            self.key_file(env, student).display()
        );
        let child = std::process::Command::new("sh").args(["-c", &command]).spawn().unwrap();
        Tunnel(child)
    }

    /// Runs `script` on the student's VM as they would, `ssh -i <key> <student>@<vm>`; the
    /// test's ssh_config maps the VM's public address to where the runner booted it.
    pub fn ssh(&self, env: &Env, student: &str, script: &str) -> std::process::Output {
        let key = self.key_file(env, student);
        let mut child = std::process::Command::new("ssh")
            .arg("-F")
            .arg(env.path("ssh_config"))
            .arg("-i")
            .arg(&key)
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
            .arg(format!("{student}@{}", self.vm_ip))
            .args(["sh", "-s"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs the handout's word count on the student's VM, writing to `out/<output>` in
    /// their bucket; panics unless it succeeds.
    pub fn run_wordcount(&self, env: &Env, student: &str, output: &str) -> String {
        let script = self.wordcount.replace("/out/wordcount", &format!("/out/{output}"));
        let out = self.ssh(env, student, &script);
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{student}'s word count, as the handout says:\n{script}\n{all}");
        assert!(all.contains(" succeeded in "), "{all}");
        all
    }
}

/// An SSH tunnel a test opened; closed on drop.
pub struct Tunnel(std::process::Child);

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
