//! A cluster of `lab-mapreduce` processes on loopback, and inputs for it.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use labctl_datasets::{Dataset, DatasetKind};

pub const BIN: &str = env!("CARGO_BIN_EXE_lab-mapreduce");
pub const TOKEN: &str = "test-token";

/// `files` Zipf text files totalling about `kib` KiB, in `dir`.
pub fn corpus(dir: &Path, files: u32, kib: u64, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let ds = Dataset { kind: DatasetKind::Text { size_bytes: kib * 1024, files }, seed };
    for part in ds.parts() {
        let mut f = std::fs::File::create(dir.join(&part.name)).unwrap();
        ds.write_part(&part, &mut f).unwrap();
    }
}

/// A coordinator process with its job, plus worker processes.
pub struct Cluster {
    pub coordinator: Child,
    pub addr: String,
    pub workers: Vec<Child>,
    pub log: Arc<Mutex<String>>,
}

impl Cluster {
    /// Starts a one-shot coordinator for `job_args` (after `--job`), writing its report to
    /// `report`, and `workers` workers.
    pub fn start(job_args: &[&str], report: &Path, workers: usize, extra: &[&str]) -> Self {
        let mut coordinator = Command::new(BIN)
            .args(["coordinator", "--listen", "127.0.0.1:0", "--exit-when-done", "--report"])
            .arg(report)
            .args(extra)
            .arg("--job")
            .args(job_args)
            .env("LAB_MAPREDUCE_TOKEN", TOKEN)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(coordinator.stderr.take().unwrap());
        let mut first = String::new();
        stderr.read_line(&mut first).unwrap();
        let addr = first
            .split("listening on ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_owned();
        let log = Arc::new(Mutex::new(first));
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stderr.read_to_string(&mut rest);
            sink.lock().unwrap().push_str(&rest);
        });
        let mut cluster = Self { coordinator, addr, workers: vec![], log };
        for _ in 0..workers {
            cluster.add_worker();
        }
        cluster
    }

    pub fn add_worker(&mut self) {
        let child = Command::new(BIN)
            .args(["worker", "--coordinator", &self.addr])
            .env("LAB_MAPREDUCE_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.workers.push(child);
    }

    /// Waits for the coordinator (at most `limit`), then for the workers.
    pub fn wait(mut self, limit: Duration) -> (bool, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.coordinator.try_wait().unwrap() {
                break s;
            }
            assert!(start.elapsed() < limit, "the job did not finish within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        for w in &mut self.workers {
            let _ = w.wait();
        }
        std::thread::sleep(Duration::from_millis(50));
        let log = self.log.lock().unwrap().clone();
        (status.success(), log)
    }
}

pub fn report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The sequential reference output of a job, sorted by line.
pub fn reference(job_args: &[&str], dir: &Path) -> String {
    let out = dir.join("reference.txt");
    let status = Command::new(BIN)
        .arg("reference")
        .arg("--job")
        .args(job_args)
        .arg("--output")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    sorted_lines(&std::fs::read_to_string(out).unwrap())
}

/// The job's final outputs (part-r-*), concatenated and sorted by line.
pub fn output(dir: &Path) -> String {
    sorted_lines(&part_files(dir).iter().map(|p| std::fs::read_to_string(p).unwrap()).collect::<String>())
}

pub fn part_files(dir: &Path) -> Vec<PathBuf> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("part-r-"))
        .collect();
    parts.sort();
    parts
}

pub fn sorted_lines(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines.join("\n")
}

/// Every file under `dir`, relative.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// (phase, start ns, end ns, pid) of every probe record.
pub fn probes(dir: &Path) -> Vec<(String, u128, u128, u32)> {
    files_under(dir)
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(dir.join(f)).unwrap();
            let v: Vec<&str> = text.split_whitespace().collect();
            (v[0].to_owned(), v[1].parse().unwrap(), v[2].parse().unwrap(), v[3].parse().unwrap())
        })
        .collect()
}

/// Whether any two of the intervals overlap.
pub fn overlap(intervals: &[(u128, u128)]) -> bool {
    let mut v = intervals.to_vec();
    v.sort();
    v.windows(2).any(|w| w[1].0 < w[0].1)
}
