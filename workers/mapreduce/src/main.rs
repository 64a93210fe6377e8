//! `lab-mapreduce`: run a coordinator, a worker, a whole job on this machine, or talk to a
//! running coordinator.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use labctl_datasets::{Dataset, DatasetKind};
use labctl_mapreduce::coordinator::{self, Config};
use labctl_mapreduce::job::{JobKind, JobSpec};
use labctl_mapreduce::protocol::{connect, Reply, Request, Role};
use labctl_mapreduce::report::JobReport;
use labctl_mapreduce::{reference, worker};
use labctl_wire::files::Shipped;
use tokio::net::TcpListener;

/// labctl's MapReduce engine: word count, inverted index, grep and streaming jobs over
/// local files or object storage, with fault-tolerant workers.
#[derive(Debug, Parser)]
#[command(name = "lab-mapreduce", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve jobs to workers (given here, or submitted later with `submit`).
    Coordinator {
        /// Address to listen on. Loopback by default: pass 0.0.0.0:PORT to serve a network.
        #[arg(long, default_value = "127.0.0.1:7070")]
        listen: String,
        #[command(flatten)]
        auth: Auth,
        /// Declare a worker dead after this many seconds without a heartbeat.
        #[arg(long, default_value_t = 10.0)]
        heartbeat_timeout: f64,
        /// Exit once the given job is done (and every worker told so).
        #[arg(long)]
        exit_when_done: bool,
        /// Write the job reports as JSON here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// A job to run at start.
        #[command(flatten)]
        job: OptionalJob,
    },
    /// Run tasks for a coordinator until it says stop or goes away.
    Worker {
        #[arg(long, default_value = "127.0.0.1:7070")]
        coordinator: String,
        #[command(flatten)]
        auth: Auth,
        /// Name shown in the coordinator's logs.
        #[arg(long)]
        name: Option<String>,
    },
    /// Run one job here: a coordinator plus N worker processes.
    Run {
        #[arg(long, default_value_t = 2)]
        workers: u32,
        #[command(flatten)]
        job: JobArgs,
        /// Write the report as JSON here.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Run the job sequentially in this process (the reference answer), into one file.
    Reference {
        #[command(flatten)]
        job: JobArgs,
    },
    /// Submit a job to a running coordinator.
    Submit {
        #[arg(long, default_value = "127.0.0.1:7070")]
        coordinator: String,
        #[command(flatten)]
        auth: Auth,
        #[command(flatten)]
        job: JobArgs,
        /// Wait for the job and print its report.
        #[arg(long)]
        wait: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prove a running coordinator works, as `labctl verify` does on Kubernetes: a word count
    /// over a generated corpus, checked against an independent count. Exits 1 when they differ.
    Smoke {
        #[arg(long, default_value = "127.0.0.1:7070")]
        coordinator: String,
        #[command(flatten)]
        auth: Auth,
        /// A new or empty directory the coordinator and its workers share: the corpus and the
        /// output go here, and it is removed again when the check is done.
        #[arg(long)]
        dir: PathBuf,
        /// Corpus size in MiB (in 4 files).
        #[arg(long, default_value_t = 4)]
        mb: u64,
    },
    /// Write a lab dataset into a directory, as labctl seeds it into a student's volume on
    /// Kubernetes: the same bytes as in every other student's bucket or volume.
    Seed {
        /// The dataset as labctl describes it, in JSON (`{"kind":"text","size_bytes":…,"files":4,"seed":7}`).
        #[arg(long)]
        dataset: String,
        /// Where its files go; whatever was there before is replaced.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Show a running coordinator's workers and jobs.
    Status {
        #[arg(long, default_value = "127.0.0.1:7070")]
        coordinator: String,
        #[command(flatten)]
        auth: Auth,
    },
}

#[derive(Debug, Args)]
struct Auth {
    /// The shared secret of this coordinator.
    #[arg(long, env = "LAB_MAPREDUCE_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    Wordcount,
    Index,
    Grep,
    Streaming,
    SleepProbe,
    Crash,
}

#[derive(Debug, Args)]
struct OptionalJob {
    #[arg(long)]
    job: Option<Kind>,
    #[command(flatten)]
    rest: JobOptions,
}

#[derive(Debug, Args)]
struct JobArgs {
    /// What to compute.
    #[arg(long)]
    job: Kind,
    #[command(flatten)]
    rest: JobOptions,
}

#[derive(Debug, Args)]
struct JobOptions {
    /// Input files or directories (paths or URLs such as s3://bucket/prefix); repeatable.
    #[arg(long = "input")]
    inputs: Vec<String>,
    /// Output directory or URL.
    #[arg(long)]
    output: Option<String>,
    /// Reduce partitions.
    #[arg(long, default_value_t = 4)]
    reduces: u32,
    /// Turn the map-side combiner off.
    #[arg(long)]
    no_combiner: bool,
    /// Split files larger than this many MiB.
    #[arg(long, default_value_t = 64)]
    split_mb: u64,
    /// Re-run a task on another worker when it runs longer than this many seconds.
    #[arg(long, default_value_t = 10.0)]
    task_timeout: f64,
    /// Fail the job when one task failed this many times.
    #[arg(long, default_value_t = 4)]
    max_attempts: u32,
    /// grep: the regular expression.
    #[arg(long)]
    pattern: Option<String>,
    /// streaming: the mapper command.
    #[arg(long)]
    mapper: Option<String>,
    /// streaming: the reducer command.
    #[arg(long)]
    reducer: Option<String>,
    /// streaming: a file the mapper or reducer needs (your `mapper.py`), shipped with the
    /// job; they run in a directory holding these files. Repeatable.
    #[arg(long = "file")]
    files: Vec<PathBuf>,
    /// sleep-probe: where calls record their timing.
    #[arg(long)]
    probe_dir: Option<String>,
    /// sleep-probe: map call duration range, e.g. 2000-5000.
    #[arg(long, default_value = "1000-1000")]
    map_ms: String,
    /// sleep-probe: reduce call duration range.
    #[arg(long, default_value = "1000-1000")]
    reduce_ms: String,
}

impl JobOptions {
    fn spec(&self, kind: Kind) -> Result<JobSpec, String> {
        let need =
            |v: &Option<String>, flag: &str| v.clone().ok_or_else(|| format!("this job needs --{flag}"));
        let range = |s: &str| -> Result<(u64, u64), String> {
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            Ok((
                a.parse().map_err(|_| format!("bad range `{s}`"))?,
                b.parse().map_err(|_| format!("bad range `{s}`"))?,
            ))
        };
        let job = match kind {
            Kind::Wordcount => JobKind::WordCount,
            Kind::Index => JobKind::InvertedIndex,
            Kind::Grep => JobKind::Grep { pattern: need(&self.pattern, "pattern")? },
            Kind::Streaming => JobKind::Streaming {
                mapper: need(&self.mapper, "mapper")?,
                reducer: need(&self.reducer, "reducer")?,
                files: Shipped::read(Path::new(""), &self.files).map_err(|e| format!("--file: {e}"))?,
            },
            Kind::SleepProbe => JobKind::SleepProbe {
                probe_dir: need(&self.probe_dir, "probe-dir")?,
                map_ms: range(&self.map_ms)?,
                reduce_ms: range(&self.reduce_ms)?,
            },
            Kind::Crash => JobKind::Crash,
        };
        if !self.files.is_empty() && !matches!(job, JobKind::Streaming { .. }) {
            return Err("--file ships files for the mapper and reducer of --job streaming".into());
        }
        if self.inputs.is_empty() {
            return Err("give at least one --input".into());
        }
        Ok(JobSpec {
            job,
            inputs: self.inputs.clone(),
            output: need(&self.output, "output")?,
            reduces: self.reduces.max(1),
            combiner: !self.no_combiner,
            split_size: self.split_mb.max(1) << 20,
            task_timeout_ms: (self.task_timeout * 1000.0) as u64,
            max_attempts: self.max_attempts,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    match rt.block_on(labctl_wire::stop::until_stopped(run(cli.command))) {
        Ok(Ok(code)) => code,
        Err(signal) => ExitCode::from(signal),
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn exit_for(reports: &[JobReport]) -> ExitCode {
    if reports.iter().all(|r| r.succeeded) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn write_reports(path: Option<&PathBuf>, reports: &[JobReport]) -> Result<(), String> {
    if let Some(path) = path {
        let json = if reports.len() == 1 {
            serde_json::to_vec_pretty(&reports[0])
        } else {
            serde_json::to_vec_pretty(reports)
        };
        std::fs::write(path, json.expect("reports serialise"))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// Writes a generated corpus of `mb` MiB into `dir`, counts its words through the
/// coordinator and compares the output with an independent count.
async fn smoke(coordinator: &str, token: &str, dir: &std::path::Path, mb: u64) -> Result<(), String> {
    let corpus = Dataset { kind: DatasetKind::Text { size_bytes: mb << 20, files: 4 }, seed: 1 };
    let (input, output) = (dir.join("input"), dir.join("output"));
    corpus.write_into(&input).map_err(|e| format!("{}: {e}", input.display()))?;
    let spec = JobSpec {
        job: JobKind::WordCount,
        inputs: vec![input.display().to_string()],
        output: output.display().to_string(),
        reduces: 2,
        combiner: true,
        split_size: 1 << 20,
        task_timeout_ms: 30_000,
        max_attempts: 4,
    };
    let report = submit(coordinator, token, spec, true).await?.expect("waited");
    if !report.succeeded {
        return Err(format!(
            "the word count job failed: {}",
            report.error.as_deref().unwrap_or("no error given")
        ));
    }
    labctl_datasets::check::wordcount(&input, &output)
}

/// Submits a job to a running coordinator and, with `wait`, returns its report.
async fn submit(
    coordinator: &str,
    token: &str,
    spec: JobSpec,
    wait: bool,
) -> Result<Option<JobReport>, String> {
    let (mut conn, _) = connect(coordinator, token, Role::Client, "submit", Duration::from_secs(5)).await?;
    conn.send(&Request::Submit { spec }).await.map_err(|e| e.to_string())?;
    let Some(Ok(Reply::Submitted { job })) = conn.recv().await else {
        return Err("the coordinator did not accept the job".into());
    };
    if !wait {
        println!("submitted job {job}");
        return Ok(None);
    }
    conn.send(&Request::Wait { job }).await.map_err(|e| e.to_string())?;
    let Some(Ok(Reply::Report { report })) = conn.recv().await else {
        return Err("lost the coordinator while waiting".into());
    };
    Ok(Some(report))
}

async fn run(cmd: Cmd) -> Result<ExitCode, String> {
    match cmd {
        Cmd::Coordinator { listen, auth, heartbeat_timeout, exit_when_done, report, job } => {
            let jobs = match job.job {
                Some(kind) => vec![job.rest.spec(kind)?],
                None => vec![],
            };
            let listener =
                TcpListener::bind(&listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            let scope = if addr.ip().is_loopback() { "loopback only" } else { "reachable from the network" };
            eprintln!("lab-mapreduce coordinator listening on {addr} ({scope})");
            let config = Config {
                token: auth.token,
                heartbeat_timeout: Duration::from_secs_f64(heartbeat_timeout),
                exit_when_done,
            };
            let reports = coordinator::serve(listener, config, jobs).await;
            for r in &reports {
                eprint!("{r}");
            }
            write_reports(report.as_ref(), &reports)?;
            Ok(exit_for(&reports))
        }
        Cmd::Worker { coordinator, auth, name } => {
            let name = name.unwrap_or_else(|| format!("worker-{}", std::process::id()));
            worker::run(&coordinator, &auth.token, &name).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run { workers, job, report } => {
            let spec = job.rest.spec(job.job)?;
            let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?.to_string();
            let token = format!("{:032x}", rand::random::<u128>());
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let mut children = vec![];
            for i in 0..workers {
                let child = tokio::process::Command::new(&exe)
                    .args(["worker", "--coordinator", &addr, "--name", &format!("local-{i}")])
                    .env("LAB_MAPREDUCE_TOKEN", &token)
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| format!("cannot start a worker: {e}"))?;
                children.push(child);
            }
            let config = Config { token, heartbeat_timeout: Duration::from_secs(10), exit_when_done: true };
            let reports = coordinator::serve(listener, config, vec![spec]).await;
            for mut c in children {
                let _ = c.wait().await;
            }
            for r in &reports {
                print!("{r}");
            }
            write_reports(report.as_ref(), &reports)?;
            Ok(exit_for(&reports))
        }
        Cmd::Reference { job } => {
            let spec = job.rest.spec(job.job)?;
            let out = reference::run(&spec.job, &spec.inputs).await?;
            std::fs::write(&spec.output, out).map_err(|e| format!("{}: {e}", spec.output))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Submit { coordinator, auth, job, wait, json } => {
            let spec = job.rest.spec(job.job)?;
            let report = submit(&coordinator, &auth.token, spec, wait).await?;
            let Some(report) = report else { return Ok(ExitCode::SUCCESS) };
            if json {
                println!("{}", serde_json::to_string_pretty(&report).expect("reports serialise"));
            } else {
                print!("{report}");
            }
            Ok(exit_for(&[report]))
        }
        Cmd::Smoke { coordinator, auth, dir, mb } => {
            let start = std::time::Instant::now();
            if std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
                return Err(format!("{} has files in it: give a new or empty directory", dir.display()));
            }
            let checked = smoke(&coordinator, &auth.token, &dir, mb).await;
            // The answer is in the message; the files would only fill the volume.
            let _ = std::fs::remove_dir_all(&dir);
            checked?;
            println!(
                "word count over {mb} MiB through {coordinator} matches an independent count ({:.1} s)",
                start.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Seed { dataset, dir } => {
            let dataset: Dataset =
                serde_json::from_str(&dataset).map_err(|e| format!("--dataset is not a dataset: {e}"))?;
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(format!("{}: {e}", dir.display()))
                }
                _ => {}
            }
            dataset.write_into(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            println!("wrote {} files into {}", dataset.parts().len(), dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { coordinator, auth } => {
            let (mut conn, _) =
                connect(&coordinator, &auth.token, Role::Client, "status", Duration::from_secs(5)).await?;
            conn.send(&Request::Status).await.map_err(|e| e.to_string())?;
            let Some(Ok(Reply::Status { status })) = conn.recv().await else {
                return Err("no status from the coordinator".into());
            };
            println!("{}", serde_json::to_string_pretty(&status).expect("json"));
            Ok(ExitCode::SUCCESS)
        }
    }
}
