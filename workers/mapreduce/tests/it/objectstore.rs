//! M12: M1 and M7 with inputs and outputs behind `s3://` URLs, against the AWS API emulator
//! (moto's server) on loopback. `scripts/test.sh` installs it, pinned, and sets
//! `MOTO_SERVER` to `testing/moto/moto-server` (default: `moto_server` on the PATH).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use labctl_mapreduce::storage::Location;

use crate::support::*;

/// A moto server on a free loopback port, stopped on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Self {
        let exe = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{exe}` ({e}): run the tests through scripts/test.sh, which installs moto"
                )
            });
        let endpoint = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while request(port, "GET", "/").is_none() {
            assert!(start.elapsed() < Duration::from_secs(30), "moto did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: set before any other thread of this test process reads the environment;
        // the cluster's processes inherit it.
        for (k, v) in [
            ("AWS_ENDPOINT", endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false"),
        ] {
            std::env::set_var(k, v);
        }
        Self { child, endpoint }
    }

    fn port(&self) -> u16 {
        self.endpoint.rsplit(':').next().unwrap().parse().unwrap()
    }

    fn create_bucket(&self, name: &str) {
        let status = request(self.port(), "PUT", &format!("/{name}")).expect("moto answers");
        assert_eq!(status, 200, "creating bucket {name}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare HTTP request; the status code.
fn request(port: u16, method: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// Uploads the local corpus under `s3://bucket/in/`.
fn upload(rt: &tokio::runtime::Runtime, dir: &std::path::Path, bucket: &str) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let url = format!("s3://{bucket}/in/{}", path.file_name().unwrap().to_string_lossy());
        let loc = Location::parse(&url).unwrap();
        rt.block_on(loc.put(&loc.prefix, std::fs::read(&path).unwrap())).unwrap();
    }
}

/// The job's `part-r-*` objects, concatenated and sorted by line, and every key left.
fn s3_output(rt: &tokio::runtime::Runtime, url: &str) -> (String, Vec<String>) {
    let loc = Location::parse(url).unwrap();
    let objects = rt.block_on(loc.list("")).unwrap();
    let keys: Vec<String> = objects.iter().map(|m| m.location.to_string()).collect();
    let mut text = String::new();
    for m in objects.iter().filter(|m| m.location.filename().is_some_and(|f| f.starts_with("part-r-"))) {
        text.push_str(std::str::from_utf8(&rt.block_on(loc.get(&m.location)).unwrap()).unwrap());
    }
    (sorted_lines(&text), keys)
}

#[test]
fn m12_word_count_and_crash_recovery_over_s3() {
    let moto = Moto::start();
    moto.create_bucket("course");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("in");
    corpus(&local, 8, 150, 12);
    upload(&rt, &local, "course");
    let local_s = local.display().to_string();
    let expected = reference(&["wordcount", "--input", &local_s], dir.path());

    // M1 over S3: 3 workers, 10 partitions.
    let args = ["wordcount", "--input", "s3://course/in", "--output", "s3://course/out1", "--reduces", "10"];
    let (ok, log) = Cluster::start(&args, &dir.path().join("r1.json"), 3, &[]).wait(Duration::from_secs(60));
    assert!(ok, "{log}");
    let (text, keys) = s3_output(&rt, "s3://course/out1");
    assert_eq!(text, expected);
    assert!(keys.iter().any(|k| k.ends_with("out1/_SUCCESS")), "{keys:?}");
    assert_eq!(keys.iter().filter(|k| k.contains("part-r-")).count(), 10);
    assert!(!keys.iter().any(|k| k.contains("_temporary")), "temporary keys are cleaned: {keys:?}");

    // M7 over S3: crashing and straggling workers, restarted as they die.
    let args = [
        "crash",
        "--input",
        "s3://course/in",
        "--output",
        "s3://course/out7",
        "--reduces",
        "4",
        "--task-timeout",
        "4",
        "--max-attempts",
        "50",
    ];
    let mut cluster = Cluster::start(&args, &dir.path().join("r7.json"), 3, &[]);
    let start = Instant::now();
    while cluster.coordinator.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(120), "not done within 120 s");
        for i in 0..cluster.workers.len() {
            if cluster.workers[i].try_wait().unwrap().is_some_and(|s| !s.success()) {
                // Reaped: it has exited.
                let _ = cluster.workers.remove(i).wait();
                cluster.add_worker();
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (ok, log) = cluster.wait(Duration::from_secs(5));
    assert!(ok, "{log}");
    let (text, keys) = s3_output(&rt, "s3://course/out7");
    assert_eq!(text, expected);
    assert!(!keys.iter().any(|k| k.contains("_temporary")), "{keys:?}");
}
