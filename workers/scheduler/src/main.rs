//! `lab-scheduler`: run a scheduler or a worker, submit task graphs, run the
//! hyperparameter search, read the status.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use labctl_scheduler::client::Client;
use labctl_scheduler::hpsearch::Search;
use labctl_scheduler::model::Source;
use labctl_scheduler::protocol::{Payload, TaskSpec};
use labctl_scheduler::server::{self, Config};
use labctl_scheduler::{graph, worker};
use serde_json::json;
use tokio::net::TcpListener;

/// labctl's task scheduler: task graphs of built-in functions and commands over workers,
/// with work stealing, recovery from worker loss and a status endpoint.
#[derive(Debug, Parser)]
#[command(name = "lab-scheduler", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve task graphs to workers.
    Scheduler {
        /// Address to listen on. Loopback by default: pass 0.0.0.0:PORT to serve a network.
        #[arg(long, default_value = "127.0.0.1:8786")]
        listen: String,
        /// Address of the HTTP status endpoint (/status JSON, /metrics Prometheus).
        #[arg(long, default_value = "127.0.0.1:8787")]
        http: String,
        #[command(flatten)]
        auth: Auth,
        /// Declare a worker dead after this many seconds without a heartbeat.
        #[arg(long, default_value_t = server::DEFAULT_HEARTBEAT_TIMEOUT_SECS)]
        heartbeat_timeout: f64,
        /// Tasks queued on each worker beyond its slots (hides round trips).
        #[arg(long, default_value_t = server::DEFAULT_PREFETCH)]
        prefetch: u32,
    },
    /// Run tasks for a scheduler until it goes away.
    Worker {
        #[arg(long, default_value = "127.0.0.1:8786")]
        scheduler: String,
        #[command(flatten)]
        auth: Auth,
        /// Tasks run at once.
        #[arg(long, default_value_t = 1)]
        slots: u32,
        /// GPUs this worker offers (a resource tag such as gpu=1).
        #[arg(long, default_value_t = 0)]
        gpus: u32,
        /// Its name on the status page [default: HOST-PID]
        #[arg(long)]
        name: Option<String>,
    },
    /// Submit a task graph file (JSON, or TOML by extension) and print its results.
    Submit {
        #[arg(long, default_value = "127.0.0.1:8786")]
        scheduler: String,
        #[command(flatten)]
        auth: Auth,
        graph: PathBuf,
    },
    /// Run a task graph file here: a scheduler plus N worker processes, gone when it is done.
    Run {
        /// Worker processes.
        #[arg(long, default_value_t = 2)]
        workers: u32,
        /// Tasks each worker runs at once.
        #[arg(long, default_value_t = 1)]
        slots: u32,
        graph: PathBuf,
    },
    /// Print a scheduler's status (from its HTTP endpoint).
    Status {
        #[arg(long, default_value = "127.0.0.1:8787")]
        http: String,
    },
    /// The hyperparameter search: 16 configurations × folds, best configuration as JSON.
    Hpsearch {
        /// Run through this scheduler; without it, run sequentially here.
        #[arg(long)]
        scheduler: Option<String>,
        #[arg(long, env = "LAB_SCHEDULER_TOKEN", hide_env_values = true, default_value = "")]
        token: String,
        /// A CSV dataset (x1..xn,y with a header); default: generated.
        #[arg(long)]
        data: Option<String>,
        #[arg(long, default_value_t = 20_000)]
        rows: u64,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long, default_value_t = 3)]
        folds: u32,
        /// Gradient descent epochs per fit (about 0.1 ms each on 20,000 rows).
        #[arg(long, default_value_t = 600)]
        epochs: u32,
        /// With --scheduler: also run the search sequentially here and fail unless both
        /// give the same answer (the smoke workload `labctl verify` runs).
        #[arg(long, requires = "scheduler")]
        check: bool,
    },
    /// Measure the scheduler: independent no-op tasks, then a chain of dependent ones.
    Stress {
        #[arg(long, default_value = "127.0.0.1:8786")]
        scheduler: String,
        #[command(flatten)]
        auth: Auth,
        #[arg(long, default_value_t = 100_000)]
        tasks: u64,
        #[arg(long, default_value_t = 1000)]
        chain: u64,
    },
}

#[derive(Debug, Args)]
struct Auth {
    /// The shared secret of this scheduler.
    #[arg(long, env = "LAB_SCHEDULER_TOKEN", hide_env_values = true)]
    token: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // One thread: the scheduler and its workers are message pumps; hops between threads
    // would only add latency. CPU-heavy tasks run on the blocking pool.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    match rt.block_on(labctl_wire::stop::until_stopped(run(cli.command))) {
        Ok(Ok(code)) => code,
        Err(signal) => ExitCode::from(signal),
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs the task graph file at `path` through the scheduler at `scheduler` and prints its
/// results and errors as JSON; fails if any task did.
async fn submit(scheduler: &str, token: &str, path: &Path) -> Result<ExitCode, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let toml = path.extension().is_some_and(|e| e == "toml");
    let base = path.parent().unwrap_or(Path::new(""));
    let g = graph::parse(&text, toml, base).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut client = Client::connect(scheduler, token).await?;
    let outcome = client.run(g.tasks, &g.wanted).await?;
    let name = |id: &u64| g.names.get(*id as usize).cloned().unwrap_or_else(|| id.to_string());
    let results: serde_json::Map<String, serde_json::Value> =
        outcome.results.iter().map(|(id, v)| (name(id), v.clone())).collect();
    let errors: serde_json::Map<String, serde_json::Value> =
        outcome.errors.iter().map(|(id, e)| (name(id), json!(e))).collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({ "results": results, "errors": errors })).expect("json")
    );
    Ok(if errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn run(cmd: Cmd) -> Result<ExitCode, String> {
    match cmd {
        Cmd::Scheduler { listen, http, auth, heartbeat_timeout, prefetch } => {
            let listener =
                TcpListener::bind(&listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            let http = TcpListener::bind(&http).await.map_err(|e| format!("cannot listen on {http}: {e}"))?;
            let (addr, http_addr) = (
                listener.local_addr().map_err(|e| e.to_string())?,
                http.local_addr().map_err(|e| e.to_string())?,
            );
            let scope = if addr.ip().is_loopback() { "loopback only" } else { "reachable from the network" };
            eprintln!("lab-scheduler listening on {addr} ({scope}), status on http://{http_addr}/status");
            let config = Config {
                token: auth.token,
                heartbeat_timeout: Duration::from_secs_f64(heartbeat_timeout),
                prefetch,
            };
            server::serve(listener, Some(http), config).await;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Worker { scheduler, auth, slots, gpus, name } => {
            let name = name.unwrap_or_else(default_worker_name);
            worker::run(&scheduler, &auth.token, &name, slots, gpus).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Submit { scheduler, auth, graph: path } => submit(&scheduler, &auth.token, &path).await,
        Cmd::Run { workers, slots, graph: path } => {
            let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?.to_string();
            let token = format!("{:032x}", rand::random::<u128>());
            let config = Config::with_token(token.clone());
            let scheduler = tokio::spawn(server::serve(listener, None, config));
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let mut children = vec![];
            for i in 0..workers {
                let child = tokio::process::Command::new(&exe)
                    .args(["worker", "--scheduler", &addr, "--slots", &slots.to_string()])
                    .args(["--name", &format!("local-{i}")])
                    .env("LAB_SCHEDULER_TOKEN", &token)
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| format!("cannot start a worker: {e}"))?;
                children.push(child);
            }
            let outcome = submit(&addr, &token, &path).await;
            scheduler.abort();
            for mut c in children {
                let _ = c.kill().await;
            }
            outcome
        }
        Cmd::Status { http } => {
            let body = http_get(&http, "/status").await?;
            let s: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            println!("workers: {}", s["workers"].as_array().map_or(0, Vec::len));
            for w in s["workers"].as_array().into_iter().flatten() {
                println!(
                    "  {} (#{}) {} slot(s), {} GPU(s)",
                    w["name"].as_str().unwrap_or("?"),
                    w["id"],
                    w["slots"],
                    w["gpus"]
                );
            }
            println!("tasks:   {}", s["tasks"]);
            println!("stats:   {}", s["stats"]);
            println!("throughput: {:.0} tasks/s", s["throughput_tasks_per_second"].as_f64().unwrap_or(0.0));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Hpsearch { scheduler, token, data, rows, seed, folds, epochs, check } => {
            let source = match data {
                Some(path) => Source::File { path },
                None => Source::Generated { rows, seed },
            };
            let search = Search::grid(source, epochs, folds);
            let start = Instant::now();
            let mut result = match &scheduler {
                Some(addr) => search.distributed(&mut Client::connect(addr, &token).await?).await?,
                None => search.sequential()?,
            };
            if check {
                let here = search.sequential()?;
                if result != here {
                    return Err(format!(
                        "the search through the scheduler gave {result}, a sequential run here {here}"
                    ));
                }
            }
            result["seconds"] = json!(start.elapsed().as_secs_f64());
            println!("{}", serde_json::to_string_pretty(&result).expect("json"));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Stress { scheduler, auth, tasks, chain } => {
            let mut client = Client::connect(&scheduler, &auth.token).await?;
            let noop = || Payload::Builtin { function: "noop".into(), args: serde_json::Value::Null };
            let independent: Vec<TaskSpec> = (0..tasks)
                .map(|id| TaskSpec { id, deps: vec![], payload: noop(), gpus: 0, priority: 0 })
                .collect();
            let start = Instant::now();
            client.run(independent, &[]).await?;
            let noop_secs = start.elapsed().as_secs_f64();
            let chained: Vec<TaskSpec> = (0..chain)
                .map(|id| TaskSpec {
                    id,
                    deps: if id == 0 { vec![] } else { vec![id - 1] },
                    payload: noop(),
                    gpus: 0,
                    priority: 0,
                })
                .collect();
            let start = Instant::now();
            client.run(chained, &[chain - 1]).await?;
            let chain_secs = start.elapsed().as_secs_f64();
            let report = json!({
                "tasks": tasks, "seconds": noop_secs, "tasks_per_second": tasks as f64 / noop_secs,
                "us_per_task": noop_secs * 1e6 / tasks as f64,
                "chain_steps": chain, "chain_seconds": chain_secs, "ms_per_step": chain_secs * 1e3 / chain as f64,
            });
            println!("{}", serde_json::to_string_pretty(&report).expect("json"));
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn http_get(addr: &str, path: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s =
        tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("cannot reach {addr}: {e}"))?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut body = String::new();
    s.read_to_string(&mut body).await.map_err(|e| e.to_string())?;
    Ok(body.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

/// A worker's name unless given: its host's and process's, unique across the pods or VMs
/// whose workers are all PID 1 or alike.
fn default_worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    match host.trim() {
        "" => format!("worker-{}", std::process::id()),
        host => format!("{host}-{}", std::process::id()),
    }
}
