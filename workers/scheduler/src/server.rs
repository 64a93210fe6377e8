//! The scheduler service: the network edge around [`crate::core::Core`]. Accepts workers
//! and clients, carries the core's commands out as batched messages, watches heartbeats,
//! and serves the HTTP status endpoint.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use crate::core::{Command, Core, TaskDef, TaskId};
use crate::protocol::{FromScheduler, Payload, Role, RunTask, ToScheduler, PROTOCOL_VERSION};

/// Seconds without a heartbeat after which a worker is declared dead, by default.
pub const DEFAULT_HEARTBEAT_TIMEOUT_SECS: f64 = 5.0;
/// Tasks queued on a worker beyond its slots, by default (hides round trips).
pub const DEFAULT_PREFETCH: u32 = 256;

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub token: String,
    /// A worker silent this long is declared dead.
    pub heartbeat_timeout: Duration,
    /// Tasks queued on a worker beyond its slots.
    pub prefetch: u32,
}

impl Config {
    /// The default configuration of a scheduler whose shared secret is `token`.
    pub fn with_token(token: String) -> Self {
        Self {
            token,
            heartbeat_timeout: Duration::from_secs_f64(DEFAULT_HEARTBEAT_TIMEOUT_SECS),
            prefetch: DEFAULT_PREFETCH,
        }
    }
}

enum Inbound {
    Joined { conn: u64, name: String, role: Role, tx: UnboundedSender<FromScheduler> },
    Message { conn: u64, msg: ToScheduler },
    Left { conn: u64 },
}

struct Peer {
    name: String,
    role: Role,
    tx: UnboundedSender<FromScheduler>,
    last_seen: Instant,
}

/// Serves forever: scheduling on `listener`, status over HTTP on `http` if given.
pub async fn serve(listener: TcpListener, http: Option<TcpListener>, config: Config) {
    let (inbound_tx, mut inbound) = unbounded_channel();
    let token = config.token.clone();
    tokio::spawn(async move {
        let mut next = 1;
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(connection(stream, next, token.clone(), inbound_tx.clone()));
            next += 1;
        }
    });
    let status = Arc::new(Mutex::new(Value::Null));
    if let Some(http) = http {
        tokio::spawn(serve_http(http, status.clone()));
    }
    let mut s = Server {
        core: Core::new(config.prefetch),
        config,
        payloads: HashMap::new(),
        peers: HashMap::new(),
        next_base: 1,
        status,
        rate: (Instant::now(), 0, 0.0),
    };
    s.publish_status();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            Some(msg) = inbound.recv() => {
                let mut commands = s.inbound(msg);
                // Batch: handle everything already waiting before sending.
                while let Ok(msg) = inbound.try_recv() {
                    commands.extend(s.inbound(msg));
                }
                s.carry_out(commands);
            }
            _ = tick.tick() => {
                let commands = s.tick();
                s.carry_out(commands);
            }
        }
    }
}

async fn connection(stream: TcpStream, conn: u64, token: String, inbound: UnboundedSender<Inbound>) {
    let mut c = labctl_wire::Conn::new(stream);
    let (name, role) = match c.recv::<ToScheduler>().await {
        Some(Ok(ToScheduler::Hello { version, token: theirs, name, role })) => {
            if let Some(reason) = labctl_wire::refusal(version, PROTOCOL_VERSION, &theirs, &token) {
                tracing::warn!("refused `{name}`: {reason}");
                let _ = c.send(&FromScheduler::Refused { reason }).await;
                return;
            }
            (name, role)
        }
        _ => return,
    };
    if c.send(&FromScheduler::Welcome { id: conn }).await.is_err() {
        return;
    }
    let (tx, outbound) = unbounded_channel();
    let _ = inbound.send(Inbound::Joined { conn, name, role, tx });
    labctl_wire::relay(c, outbound, |msg| {
        let _ = inbound.send(Inbound::Message { conn, msg });
    })
    .await;
    let _ = inbound.send(Inbound::Left { conn });
}

struct Server {
    core: Core,
    config: Config,
    payloads: HashMap<TaskId, Payload>,
    peers: HashMap<u64, Peer>,
    next_base: TaskId,
    status: Arc<Mutex<Value>>,
    /// (since, finished then, tasks per second) for the throughput figure.
    rate: (Instant, u64, f64),
}

impl Server {
    fn send(&self, conn: u64, msg: FromScheduler) {
        if let Some(p) = self.peers.get(&conn) {
            let _ = p.tx.send(msg);
        }
    }

    fn inbound(&mut self, msg: Inbound) -> Vec<Command> {
        match msg {
            Inbound::Joined { conn, name, role, tx } => {
                tracing::info!("`{name}` joined as #{conn}");
                let worker = match &role {
                    Role::Worker { slots, gpus, .. } => Some((*slots, *gpus)),
                    Role::Client => None,
                };
                self.peers.insert(conn, Peer { name, role, tx, last_seen: Instant::now() });
                worker.map(|(slots, gpus)| self.core.on_worker_joined(conn, slots, gpus)).unwrap_or_default()
            }
            Inbound::Left { conn } => match self.peers.remove(&conn) {
                Some(Peer { role: Role::Worker { .. }, name, .. }) => {
                    tracing::warn!("worker `{name}` (#{conn}) is gone");
                    self.core.on_worker_lost(conn)
                }
                Some(Peer { role: Role::Client, .. }) => {
                    let (forgotten, commands) = self.core.on_client_left(conn);
                    for id in forgotten {
                        self.payloads.remove(&id);
                    }
                    commands
                }
                None => vec![],
            },
            Inbound::Message { conn, msg } => {
                if let Some(p) = self.peers.get_mut(&conn) {
                    p.last_seen = Instant::now();
                }
                self.message(conn, msg)
            }
        }
    }

    fn message(&mut self, conn: u64, msg: ToScheduler) -> Vec<Command> {
        match msg {
            ToScheduler::Hello { .. } | ToScheduler::Heartbeat => vec![],
            ToScheduler::Started { tasks } => {
                self.core.on_started(&tasks);
                vec![]
            }
            ToScheduler::Finished { done, failed, input_lost } => {
                let mut out = self.core.on_finished(conn, &done);
                for (task, error) in failed {
                    out.extend(self.core.on_failed(conn, task, error));
                }
                for (task, input) in input_lost {
                    out.extend(self.core.on_input_lost(conn, task, input));
                }
                out
            }
            ToScheduler::Stolen { tasks } => self.core.on_stolen(conn, &tasks),
            ToScheduler::Value { task, value } => {
                if let Some(client) = self.core.client_of(task) {
                    self.send(client, FromScheduler::Result { task, value });
                }
                vec![]
            }
            ToScheduler::Submit { tasks, wanted } => {
                let base = self.next_base;
                self.next_base += tasks.iter().map(|t| t.id).max().unwrap_or(0) + 1;
                self.send(conn, FromScheduler::Submitted { base });
                let defs = tasks
                    .into_iter()
                    .map(|t| {
                        self.payloads.insert(base + t.id, t.payload);
                        TaskDef {
                            id: base + t.id,
                            deps: t.deps.iter().map(|d| base + d).collect(),
                            gpus: t.gpus,
                            priority: t.priority,
                        }
                    })
                    .collect();
                let wanted: Vec<TaskId> = wanted.iter().map(|w| base + w).collect();
                self.core.on_submit(conn, defs, &wanted)
            }
        }
    }

    fn tick(&mut self) -> Vec<Command> {
        let timeout = self.config.heartbeat_timeout;
        let silent: Vec<u64> = self
            .peers
            .iter()
            .filter(|(_, p)| matches!(p.role, Role::Worker { .. }) && p.last_seen.elapsed() > timeout)
            .map(|(id, _)| *id)
            .collect();
        let mut out = vec![];
        for conn in silent {
            let name = self.peers.remove(&conn).map(|p| p.name).unwrap_or_default();
            tracing::warn!("worker `{name}` (#{conn}) missed its heartbeats for {timeout:?}: declared dead");
            out.extend(self.core.on_worker_lost(conn));
        }
        self.publish_status();
        out
    }

    fn data_addr(&self, worker: u64) -> Option<String> {
        match &self.peers.get(&worker)?.role {
            Role::Worker { data, .. } => Some(data.clone()),
            Role::Client => None,
        }
    }

    fn carry_out(&mut self, commands: Vec<Command>) {
        let mut releases: HashMap<u64, Vec<TaskId>> = HashMap::new();
        for c in commands {
            match c {
                Command::Assign { worker, tasks } => {
                    let run = tasks
                        .into_iter()
                        .map(|(id, inputs)| RunTask {
                            id,
                            payload: self.payloads[&id].clone(),
                            inputs: inputs
                                .into_iter()
                                .map(|(d, w)| (d, (w != worker).then(|| self.data_addr(w)).flatten()))
                                .collect(),
                        })
                        .collect();
                    self.send(worker, FromScheduler::Run { tasks: run });
                }
                Command::Steal { worker, tasks } => self.send(worker, FromScheduler::Steal { tasks }),
                Command::Fetch { task, worker, .. } => self.send(worker, FromScheduler::Fetch { task }),
                Command::Error { client, task, error } => {
                    self.send(client, FromScheduler::Error { task, error })
                }
                Command::Release { worker, task } => releases.entry(worker).or_default().push(task),
                Command::AllDone { client } => self.send(client, FromScheduler::AllDone),
            }
        }
        for (worker, tasks) in releases {
            self.send(worker, FromScheduler::Release { tasks });
        }
    }

    fn publish_status(&mut self) {
        let finished = self.core.stats.finished;
        let (since, before, _) = self.rate;
        if since.elapsed() >= Duration::from_secs(1) {
            self.rate =
                (Instant::now(), finished, (finished - before) as f64 / since.elapsed().as_secs_f64());
        }
        let workers: Vec<Value> = self
            .peers
            .iter()
            .filter_map(|(id, p)| match &p.role {
                Role::Worker { slots, gpus, .. } => {
                    Some(json!({ "id": id, "name": p.name, "slots": slots, "gpus": gpus }))
                }
                Role::Client => None,
            })
            .collect();
        *self.status.lock().unwrap_or_else(PoisonError::into_inner) = json!({
            "workers": workers,
            "tasks": self.core.counts(),
            "stats": self.core.stats,
            "throughput_tasks_per_second": self.rate.2,
        });
    }
}

/// A minimal HTTP/1.1 responder: `GET /status` (JSON) and `GET /metrics` (Prometheus).
async fn serve_http(listener: TcpListener, status: Arc<Mutex<Value>>) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let status = status.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut len = 0;
            while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < buf.len() {
                match stream.read(&mut buf[len..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => len += n,
                }
            }
            let request = String::from_utf8_lossy(&buf[..len]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let snapshot = status.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let (code, kind, body) = match path {
                "/status" => (
                    "200 OK",
                    "application/json",
                    serde_json::to_string_pretty(&snapshot).unwrap_or_default(),
                ),
                "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics(&snapshot)),
                _ => ("404 Not Found", "text/plain", "try /status or /metrics\n".to_owned()),
            };
            let response = format!("HTTP/1.1 {code}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

fn metrics(s: &Value) -> String {
    let mut out = String::new();
    out += "# HELP lab_scheduler_workers Connected workers.\n# TYPE lab_scheduler_workers gauge\n";
    out += &format!("lab_scheduler_workers {}\n", s["workers"].as_array().map_or(0, Vec::len));
    out += "# HELP lab_scheduler_tasks Tasks by state.\n# TYPE lab_scheduler_tasks gauge\n";
    for (state, n) in s["tasks"].as_object().into_iter().flatten() {
        out += &format!("lab_scheduler_tasks{{state=\"{state}\"}} {n}\n");
    }
    for (name, help) in [
        ("finished", "Tasks finished."),
        ("failed", "Tasks failed."),
        ("recomputed", "Results recomputed after a worker loss."),
        ("stolen", "Tasks moved by work stealing."),
        ("workers_lost", "Workers lost."),
    ] {
        out += &format!("# HELP lab_scheduler_{name}_total {help}\n# TYPE lab_scheduler_{name}_total counter\nlab_scheduler_{name}_total {}\n", s["stats"][name]);
    }
    out += &format!("# HELP lab_scheduler_throughput Tasks finished per second, last second.\n# TYPE lab_scheduler_throughput gauge\nlab_scheduler_throughput {}\n", s["throughput_tasks_per_second"]);
    out
}
