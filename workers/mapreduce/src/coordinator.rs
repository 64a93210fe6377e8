//! The coordinator service: the network edge around [`crate::core::Job`]. It accepts
//! workers and clients, runs submitted jobs one after another, turns the core's commands
//! into messages and storage operations, and watches heartbeats.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use crate::core::{Command, Event, Job, Limits, Phase, TaskId};
use crate::job::JobSpec;
use crate::protocol::{Conn, Reply, Request, Role, PROTOCOL_VERSION};
use crate::report::JobReport;
use crate::storage::{input_files, Location};
use crate::task::{intermediate_name, job_temporaries, splits, Split, TaskSpec};

/// How the coordinator runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The shared secret workers and clients must present.
    pub token: String,
    /// A worker silent for this long is declared dead and its tasks re-run.
    pub heartbeat_timeout: Duration,
    /// Exit once every job given or submitted has finished (one-shot mode).
    pub exit_when_done: bool,
}

enum Inbound {
    Joined { conn: u64, role: Role, tx: UnboundedSender<Reply> },
    Message { conn: u64, request: Request },
    Left { conn: u64 },
}

struct Peer {
    role: Role,
    tx: UnboundedSender<Reply>,
    last_seen: Instant,
    parked: bool,
}

struct Running {
    id: u64,
    spec: JobSpec,
    job: Job,
    splits: Vec<Split>,
    output: Location,
    started: Instant,
}

/// Serves until (in one-shot mode) every job is done and every worker told to exit.
/// Returns the reports of the jobs run.
pub async fn serve(listener: TcpListener, config: Config, jobs: Vec<JobSpec>) -> Vec<JobReport> {
    let (inbound_tx, mut inbound) = unbounded_channel();
    let token = config.token.clone();
    tokio::spawn(async move {
        let mut next_conn = 1;
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(connection(stream, next_conn, token.clone(), inbound_tx.clone()));
            next_conn += 1;
        }
    });
    let mut c = Coordinator {
        config,
        peers: HashMap::new(),
        queue: VecDeque::new(),
        next_job: 1,
        current: None,
        reports: BTreeMap::new(),
        waiters: HashMap::new(),
        done_since: None,
        finished_outputs: HashMap::new(),
    };
    for spec in jobs {
        c.submit(spec);
    }
    c.start_next().await;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            Some(msg) = inbound.recv() => c.inbound(msg).await,
            _ = tick.tick() => c.tick().await,
        }
        // One-shot mode ends when every worker has been told to go (a straggler still busy
        // with a duplicate gets told when it reports; a frozen one is dropped at its
        // heartbeat timeout), so that no late temporary is left behind.
        if c.done_since.is_some() && !c.peers.values().any(|p| p.role == Role::Worker) {
            return c.reports.into_values().collect();
        }
    }
}

/// One connection: checks the hello, then relays frames both ways.
async fn connection(stream: TcpStream, conn: u64, token: String, inbound: UnboundedSender<Inbound>) {
    let mut c = Conn::new(stream);
    let role = match c.recv::<Request>().await {
        Some(Ok(Request::Hello { version, token: theirs, role, name })) => {
            if let Some(reason) = labctl_wire::refusal(version, PROTOCOL_VERSION, &theirs, &token) {
                tracing::warn!("refused {role:?} `{name}`: {reason}");
                let _ = c.send(&Reply::Refused { reason }).await;
                return;
            }
            tracing::info!("{role:?} `{name}` joined as #{conn}");
            role
        }
        _ => return,
    };
    if c.send(&Reply::Welcome { id: conn }).await.is_err() {
        return;
    }
    let (tx, outbound) = unbounded_channel();
    let _ = inbound.send(Inbound::Joined { conn, role, tx });
    labctl_wire::relay(c, outbound, |request| {
        let _ = inbound.send(Inbound::Message { conn, request });
    })
    .await;
    let _ = inbound.send(Inbound::Left { conn });
}

struct Coordinator {
    config: Config,
    peers: HashMap<u64, Peer>,
    queue: VecDeque<(u64, JobSpec)>,
    next_job: u64,
    current: Option<Running>,
    reports: BTreeMap<u64, JobReport>,
    waiters: HashMap<u64, Vec<u64>>,
    /// When the last job finished in one-shot mode.
    done_since: Option<Instant>,
    /// Where finished jobs wrote, to clean up after their stragglers.
    finished_outputs: HashMap<u64, Location>,
}

impl Coordinator {
    fn submit(&mut self, spec: JobSpec) -> u64 {
        let id = self.next_job;
        self.next_job += 1;
        self.queue.push_back((id, spec));
        id
    }

    fn reply(&self, conn: u64, reply: Reply) {
        if let Some(p) = self.peers.get(&conn) {
            let _ = p.tx.send(reply);
        }
    }

    async fn inbound(&mut self, msg: Inbound) {
        match msg {
            Inbound::Joined { conn, role, tx } => {
                self.peers.insert(conn, Peer { role, tx, last_seen: Instant::now(), parked: false });
            }
            Inbound::Left { conn } => {
                if self.peers.remove(&conn).is_some_and(|p| p.role == Role::Worker) {
                    self.feed(Event::WorkerLost { worker: conn }).await;
                }
            }
            Inbound::Message { conn, request } => {
                if let Some(p) = self.peers.get_mut(&conn) {
                    p.last_seen = Instant::now();
                }
                self.request(conn, request).await;
            }
        }
    }

    async fn request(&mut self, conn: u64, request: Request) {
        match request {
            Request::Hello { .. } | Request::Heartbeat => {}
            Request::NextTask => self.next_task(conn).await,
            Request::Finished { job, task, attempt, outputs, stats } => {
                if self.current.as_ref().is_some_and(|r| r.id == job) {
                    self.feed(Event::Finished { worker: conn, task, attempt, outputs, stats }).await;
                } else if let Some(output) = self.finished_outputs.get(&job) {
                    // A straggler of a finished job: its temporaries go.
                    tracing::info!("ignored a duplicate completion of {task:?} after job {job} finished");
                    let _ = output.remove_all(&job_temporaries(job)).await;
                }
                self.redispatch().await;
            }
            Request::Failed { job, task, attempt, error } => {
                if self.current.as_ref().is_some_and(|r| r.id == job) {
                    tracing::warn!("task {task:?} attempt {attempt} failed: {error}");
                    self.feed(Event::Failed { worker: conn, task, attempt, error }).await;
                }
                self.redispatch().await;
            }
            Request::Submit { spec } => {
                let job = self.submit(spec);
                self.reply(conn, Reply::Submitted { job });
                if self.current.is_none() {
                    self.start_next().await;
                }
            }
            Request::Status => {
                let status = self.status();
                self.reply(conn, Reply::Status { status });
            }
            Request::Wait { job } => match self.reports.get(&job) {
                Some(report) => self.reply(conn, Reply::Report { report: report.clone() }),
                None => self.waiters.entry(job).or_default().push(conn),
            },
        }
    }

    /// A worker is free: give it a task, tell it to exit, or park it until there is work.
    async fn next_task(&mut self, conn: u64) {
        if self.current.is_some() {
            self.feed(Event::Request { worker: conn }).await;
        } else if self.done_since.is_some() {
            self.reply(conn, Reply::Exit);
        } else if let Some(p) = self.peers.get_mut(&conn) {
            p.parked = true;
        }
    }

    async fn tick(&mut self) {
        let timeout = self.config.heartbeat_timeout;
        let silent: Vec<u64> = self
            .peers
            .iter()
            .filter(|(_, p)| p.role == Role::Worker && p.last_seen.elapsed() > timeout)
            .map(|(id, _)| *id)
            .collect();
        for conn in silent {
            tracing::warn!("worker #{conn} missed its heartbeats for {timeout:?}: declared dead");
            self.peers.remove(&conn);
            self.feed(Event::WorkerLost { worker: conn }).await;
        }
        self.feed(Event::Tick).await;
        self.redispatch().await;
    }

    /// Offers work to the workers waiting for it.
    async fn redispatch(&mut self) {
        let parked: Vec<u64> = self.peers.iter().filter(|(_, p)| p.parked).map(|(id, _)| *id).collect();
        for worker in parked {
            if self.current.is_none() && self.done_since.is_none() {
                return;
            }
            if let Some(p) = self.peers.get_mut(&worker) {
                p.parked = false;
            }
            self.next_task(worker).await;
        }
    }

    async fn feed(&mut self, event: Event) {
        let Some(run) = self.current.as_mut() else { return };
        let commands = run.job.handle(event, Instant::now());
        for command in commands {
            self.command(command).await;
        }
    }

    async fn command(&mut self, command: Command) {
        let Some(run) = self.current.as_mut() else { return };
        match command {
            Command::Assign { worker, task, attempt } => {
                let spec = task_spec(run, task);
                let job = run.id;
                self.reply(worker, Reply::Assign { job, task, attempt, spec });
            }
            Command::Wait { worker } => {
                if let Some(p) = self.peers.get_mut(&worker) {
                    p.parked = true;
                }
            }
            Command::Exit { worker } => self.reply(worker, Reply::Exit),
            Command::Commit { task, outputs } => {
                let mut published = Ok(());
                for o in &outputs {
                    let (from, to) = (run.output.key(&o.temp), run.output.key(&o.final_name));
                    published = run.output.publish(&from, &to).await;
                    if published.is_err() {
                        break;
                    }
                }
                let event = match published {
                    Ok(()) => Event::Committed { task },
                    Err(error) => {
                        tracing::error!("{error}");
                        Event::CommitFailed { task, error }
                    }
                };
                for c in run.job.handle(event, Instant::now()) {
                    Box::pin(self.command(c)).await;
                }
            }
            Command::Discard { task, outputs } => {
                tracing::info!("ignored a duplicate completion of {task:?}");
                for o in &outputs {
                    let _ = run.output.delete(&run.output.key(&o.temp)).await;
                }
            }
            Command::Done => self.finish(None).await,
            Command::JobFailed { task, errors } => {
                let attempts: Vec<String> =
                    errors.iter().enumerate().map(|(i, e)| format!("attempt {}: {e}", i + 1)).collect();
                let what = match task.phase {
                    Phase::Map => "map",
                    Phase::Reduce => "reduce",
                };
                self.finish(Some(format!(
                    "{what} task {} failed {} times:\n{}",
                    task.index,
                    errors.len(),
                    attempts.join("\n")
                )))
                .await;
            }
        }
    }

    /// Ends the current job: cleans temporaries, marks success, reports, starts the next.
    async fn finish(&mut self, error: Option<String>) {
        let Some(run) = self.current.take() else { return };
        let _ = run.output.remove_all("_temporary").await;
        if error.is_none() {
            if let Err(e) = run.output.put(&run.output.key("_SUCCESS"), vec![]).await {
                tracing::error!("{e}");
            }
        }
        let [(_, maps), (_, reduces)] = run.job.progress();
        let report = JobReport {
            job: run.id,
            succeeded: error.is_none(),
            error,
            output: run.spec.output.clone(),
            maps: maps.max(run.splits.len()) as u32,
            reduces: reduces.max(run.spec.reduces as usize) as u32,
            counters: run.job.counters.clone(),
            seconds: run.started.elapsed().as_secs_f64(),
        };
        tracing::info!("job {} finished: {}", run.id, if report.succeeded { "succeeded" } else { "failed" });
        for conn in self.waiters.remove(&run.id).unwrap_or_default() {
            self.reply(conn, Reply::Report { report: report.clone() });
        }
        self.reports.insert(run.id, report);
        self.finished_outputs.insert(run.id, run.output);
        self.start_next().await;
    }

    /// Starts the next queued job (listing its inputs to make splits).
    async fn start_next(&mut self) {
        while self.current.is_none() {
            let Some((id, spec)) = self.queue.pop_front() else { break };
            match prepare(id, spec.clone()).await {
                Ok(run) => self.current = Some(run),
                Err(error) => {
                    let report = JobReport {
                        job: id,
                        succeeded: false,
                        error: Some(error),
                        output: spec.output,
                        maps: 0,
                        reduces: spec.reduces,
                        counters: Default::default(),
                        seconds: 0.0,
                    };
                    for conn in self.waiters.remove(&id).unwrap_or_default() {
                        self.reply(conn, Reply::Report { report: report.clone() });
                    }
                    self.reports.insert(id, report);
                }
            }
        }
        if self.current.is_none() && self.queue.is_empty() && self.config.exit_when_done {
            self.done_since.get_or_insert_with(Instant::now);
        }
        Box::pin(self.redispatch()).await;
    }

    fn status(&self) -> serde_json::Value {
        let workers = self.peers.values().filter(|p| p.role == Role::Worker).count();
        let current = self.current.as_ref().map(|r| {
            let [(maps_done, maps), (reduces_done, reduces)] = r.job.progress();
            json!({ "job": r.id, "phase": r.job.phase(), "maps": [maps_done, maps], "reduces": [reduces_done, reduces], "seconds": r.started.elapsed().as_secs_f64() })
        });
        json!({ "workers": workers, "running": current, "queued": self.queue.len(), "finished": self.reports.values().collect::<Vec<_>>() })
    }
}

async fn prepare(id: u64, spec: JobSpec) -> Result<Running, String> {
    let output = Location::parse(&spec.output)?;
    let files = input_files(&spec.inputs).await?;
    let splits = splits(&files, spec.split_size);
    let limits = Limits {
        task_timeout: Duration::from_millis(spec.task_timeout_ms),
        max_attempts: spec.max_attempts.max(1),
    };
    let job = Job::new(splits.len() as u32, spec.reduces, limits, Instant::now());
    // Leftovers of an earlier, interrupted run of the same output.
    output.remove_all("_temporary").await?;
    tracing::info!(
        "job {id}: {} input files, {} map tasks, {} reduce tasks",
        files.len(),
        splits.len(),
        spec.reduces
    );
    Ok(Running { id, spec, job, splits, output, started: Instant::now() })
}

fn task_spec(run: &Running, task: TaskId) -> TaskSpec {
    let spec = &run.spec;
    match task.phase {
        Phase::Map => TaskSpec::Map {
            index: task.index,
            job: spec.job.clone(),
            combiner: spec.combiner,
            reduces: spec.reduces.max(1),
            split: run.splits[task.index as usize].clone(),
            output: spec.output.clone(),
        },
        Phase::Reduce => TaskSpec::Reduce {
            index: task.index,
            job: spec.job.clone(),
            inputs: (0..run.splits.len() as u32).map(|m| intermediate_name(run.id, m, task.index)).collect(),
            output: spec.output.clone(),
        },
    }
}
