//! A scheduler and workers as processes on loopback, and a client for them.

use std::io::{BufRead, BufReader, Read};

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use labctl_scheduler::client::{Client, Outcome};
use labctl_scheduler::protocol::{Payload, TaskSpec};
use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_lab-scheduler");
pub const TOKEN: &str = "test-token";

pub struct Cluster {
    pub scheduler: Child,
    pub addr: String,
    pub http: String,
    pub workers: Vec<Child>,
}

impl Cluster {
    pub fn start(workers: usize, heartbeat_timeout: &str) -> Self {
        Self::start_on("127.0.0.1:0", workers, heartbeat_timeout)
    }

    /// A cluster whose scheduler listens on `listen`.
    pub fn start_on(listen: &str, workers: usize, heartbeat_timeout: &str) -> Self {
        let mut scheduler = Command::new(BIN)
            .args([
                "scheduler",
                "--listen",
                listen,
                "--http",
                "127.0.0.1:0",
                "--heartbeat-timeout",
                heartbeat_timeout,
            ])
            .env("LAB_SCHEDULER_TOKEN", TOKEN)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(scheduler.stderr.take().unwrap());
        let mut first = String::new();
        stderr.read_line(&mut first).unwrap();
        // The scheduler's log goes to the test's stderr, shown when a test fails.
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                eprintln!("scheduler: {line}");
            }
        });
        let addr =
            first.split("listening on ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap().to_owned();
        let http = first.split("http://").nth(1).and_then(|s| s.split('/').next()).unwrap().to_owned();
        let mut c = Self { scheduler, addr, http, workers: vec![] };
        for _ in 0..workers {
            c.add_worker(1);
        }
        c
    }

    pub fn add_worker(&mut self, slots: u32) -> u32 {
        let child = worker(&self.addr, slots);
        let pid = child.id();
        self.workers.push(child);
        pid
    }

    pub fn signal(&self, i: usize, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.workers[i].id() as i32, sig) };
    }

    /// Runs a graph through the client library, failing the test after `limit`.
    pub fn run(&self, tasks: Vec<TaskSpec>, wanted: &[u64], limit: Duration) -> Outcome {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let out = rt.block_on(async {
            let mut client = Client::connect(&self.addr, TOKEN).await.unwrap();
            tokio::time::timeout(limit, client.run(tasks, wanted)).await
        });
        match out {
            Ok(outcome) => outcome.unwrap(),
            Err(_) => panic!("the graph hung; scheduler status: {}", http_get(&self.http, "/status").1),
        }
    }

    /// Connected workers, by the status endpoint.
    pub fn status(&self) -> Value {
        serde_json::from_str(&http_get(&self.http, "/status").1).unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.kill();
            let _ = w.wait();
        }
        let _ = self.scheduler.kill();
        let _ = self.scheduler.wait();
    }
}

/// A worker process for the scheduler at `addr`.
pub fn worker(addr: &str, slots: u32) -> Child {
    Command::new(BIN)
        .args(["worker", "--scheduler", addr, "--slots", &slots.to_string()])
        .env("LAB_SCHEDULER_TOKEN", TOKEN)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// (status code, body) of an HTTP GET.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, text.split_once("\r\n\r\n").unwrap().1.to_owned())
}

pub fn builtin(id: u64, deps: &[u64], function: &str, args: Value) -> TaskSpec {
    TaskSpec {
        id,
        deps: deps.to_vec(),
        payload: Payload::Builtin { function: function.into(), args },
        gpus: 0,
        priority: 0,
    }
}

pub fn command(id: u64, argv: &[&str]) -> TaskSpec {
    TaskSpec {
        id,
        deps: vec![],
        payload: Payload::Command {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            files: Default::default(),
        },
        gpus: 0,
        priority: 0,
    }
}

/// `n` leaves made by `leaf(i)`, then a tree of `sum` tasks (fan-in 10) to one root.
/// Returns the tasks and the root id.
pub fn tree(n: u64, leaf: impl Fn(u64) -> TaskSpec) -> (Vec<TaskSpec>, u64) {
    let mut tasks: Vec<TaskSpec> = (0..n).map(leaf).collect();
    let mut level: Vec<u64> = (0..n).collect();
    let mut next = n;
    while level.len() > 1 {
        let mut up = vec![];
        for chunk in level.chunks(10) {
            tasks.push(builtin(next, chunk, "sum", json!(null)));
            up.push(next);
            next += 1;
        }
        level = up;
    }
    (tasks, level[0])
}
