//! A scratch directory with a lab file, a data directory, and a way to run `labctl` in it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use tempfile::TempDir;

pub struct Env {
    pub dir: TempDir,
}

/// What a finished `labctl` run printed and returned.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: Output) -> Self {
        use std::os::unix::process::ExitStatusExt;
        let code = out.status.code().unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0));
        Self {
            code,
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }

    /// Stdout and stderr together, for "does this appear anywhere" checks.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "labctl failed:\n{}{}", self.stdout, self.stderr);
        self
    }
}

impl Env {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn data(&self) -> PathBuf {
        self.path("data")
    }

    pub fn write(&self, rel: &str, contents: &str) {
        std::fs::write(self.path(rel), contents).unwrap();
    }

    /// `labctl ARGS` in the scratch directory, data under `data/`, no colour, no faults.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_labctl"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("LABCTL_DATA_DIR", self.data())
            .env("NO_COLOR", "1")
            .env_remove("LABCTL_FAULTS")
            .env_remove("LABCTL_STATE")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().unwrap())
    }

    /// Runs with `LABCTL_FAULTS` set.
    pub fn run_with_faults(&self, faults: &str, args: &[&str]) -> Run {
        Run::from(self.command(args).env("LABCTL_FAULTS", faults).output().unwrap())
    }

    pub fn spawn(&self, args: &[&str], faults: Option<&str>) -> Child {
        let mut cmd = self.command(args);
        if let Some(f) = faults {
            cmd.env("LABCTL_FAULTS", f);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    /// Every file under the data directory, relative, sorted.
    pub fn data_files(&self) -> Vec<String> {
        files_under(&self.data())
    }

    pub fn state(&self, lab: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path(&format!(".labctl/{lab}.state.json"))).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    pub fn state_addresses(&self, lab: &str) -> Vec<String> {
        self.state(lab)["resources"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }
}

pub fn finish(child: Child) -> Run {
    Run::from(child.wait_with_output().unwrap())
}

/// Every file under `dir`, relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut files = vec![];
    walk(dir, dir, &mut files);
    files.sort();
    files
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            out.push(path.strip_prefix(root).unwrap().display().to_string());
        }
    }
}

/// A lab on the local provider: each student gets a credential, a bucket with a small text
/// corpus and a tabular dataset, and `nulls` placeholder resources.
pub fn lab(name: &str, students: &[&str], nulls: u32) -> String {
    let list: Vec<String> = students.iter().map(|s| format!("{{ id = \"{s}\" }}")).collect();
    format!(
        r#"[lab]
name = "{name}"

[provider.local]

[[cohort]]
name = "mon"
students = [{}]

[student]
bucket = {{ datasets = ["corpus", "table"] }}
null = {{ count = {nulls}, input = "v1", triggers_replace = "t1" }}

[datasets.corpus]
kind = "text"
size_mb = 0.25
files = 2

[datasets.table]
kind = "tabular"
rows = 500
"#,
        list.join(", ")
    )
}

/// A lab in which each of `students` (cohort `c1`) gets a bucket with a small text corpus and
/// a credential, on the provider `provider_block` configures.
pub fn bucket_lab(name: &str, provider_block: &str, students: &[&str]) -> String {
    let list: Vec<String> = students.iter().map(|s| format!("{{ id = \"{s}\" }}")).collect();
    format!(
        r#"
[lab]
name = "{name}"

{provider_block}

[[cohort]]
name = "c1"
students = [{}]

[student]
bucket = {{ datasets = ["corpus"] }}

[datasets.corpus]
kind = "text"
size_mb = 0.05
files = 2
"#,
        list.join(", ")
    )
}

/// The addresses a lab from [`lab`] should end up with for `students`.
pub fn expected_addresses(students: &[&str], nulls: u32) -> Vec<String> {
    let mut v = vec![];
    for s in students {
        for r in ["bucket", "credential", "dataset[\"corpus\"]", "dataset[\"table\"]"] {
            v.push(format!("student[\"{s}\"].{r}"));
        }
        for i in 0..nulls {
            v.push(format!("student[\"{s}\"].null[{i}]"));
        }
    }
    v.sort();
    v
}

/// The data files a converged lab from [`lab`] holds: exactly these, no temporaries.
pub fn expected_files(lab: &str, students: &[&str]) -> Vec<String> {
    let mut v = vec![];
    for s in students {
        let b = format!("{lab}/buckets/{lab}-{s}/datasets");
        v.extend([
            format!("{b}/corpus/_LABCTL_MANIFEST.json"),
            format!("{b}/corpus/part-00000.txt"),
            format!("{b}/corpus/part-00001.txt"),
            format!("{b}/table/_LABCTL_MANIFEST.json"),
            format!("{b}/table/part-00000.csv"),
            format!("{lab}/students/{s}/token"),
            format!("{lab}/tags/bucket/{lab}-{s}.json"),
            format!("{lab}/tags/credential/{s}.json"),
        ]);
    }
    v.sort();
    v
}

/// Snapshot settings that replace what differs between runs: timings and scratch paths.
/// Keep the returned guard alive for the duration of the assertions.
pub fn stable(env: &Env) -> insta::internals::SettingsBindDropGuard {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\b\d+(\.\d+)?(ms|µs|ns|s)\b", "[T]");
    // How many times state was written depends on timing (writes are grouped).
    settings.add_filter(r"serial \d+", "serial [N]");
    settings.add_filter(&regex_escape(&env.dir.path().display().to_string()), "[TMP]");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind_to_scope()
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '/' { c.to_string() } else { format!("\\{c}") })
        .collect()
}

/// Where `lab-mapreduce` and `lab-scheduler` are: built next to `labctl` by a workspace build.
pub fn worker_bin_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_labctl")).parent().unwrap().to_owned();
    for bin in ["lab-mapreduce", "lab-scheduler"] {
        assert!(dir.join(bin).exists(), "{bin} is not built next to labctl: run the tests with `cargo nextest run --workspace` (scripts/test.sh)");
    }
    dir
}

/// Runs `f` to completion on a runtime of its own (SDK calls from a synchronous test).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// A lab file without its `[student] notebook` and `notebook` check: for the providers that
/// give no notebooks yet (the course labs on clouds and Kubernetes).
pub fn without_notebooks(lab: &str) -> String {
    lab.lines()
        .filter(|l| !l.starts_with("notebook = "))
        .map(|l| l.replace(", \"notebook\"]", "]"))
        .collect::<Vec<_>>()
        .join("\n")
}
