//! A worker: runs the tasks the scheduler sends, `slots` at a time, keeps their results,
//! serves them to other workers on demand, and reports completions in batches.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc::unbounded_channel;

use crate::core::TaskId;
use crate::functions;
use crate::protocol::{hello, reach, DataRequest, FromScheduler, Role, RunTask, ToScheduler};

/// How often a worker says it is alive.
pub const HEARTBEAT: Duration = Duration::from_millis(500);

type Results = Arc<Mutex<HashMap<TaskId, Value>>>;

/// What a finished task produced.
enum Outcome {
    Done(Value),
    Failed(String),
    /// This input could not be had.
    InputLost(TaskId),
}

/// Runs tasks for the scheduler at `addr` until it goes away; waits for it to come up
/// first, for as long as it takes.
///
/// Results are served to peers on the address this worker reaches the scheduler from
/// (loopback when the scheduler is on this host, the pod's or VM's address when not), as
/// peers reach the scheduler the same way.
pub async fn run(addr: &str, token: &str, name: &str, slots: u32, gpus: u32) -> Result<(), String> {
    let results: Results = Arc::default();
    let conn = reach(addr, labctl_wire::UNTIL_UP).await?;
    let local =
        conn.local_addr().map_err(|e| format!("cannot find this worker's address towards {addr}: {e}"))?;
    let data = TcpListener::bind((local.ip(), 0)).await.map_err(|e| e.to_string())?;
    let data_addr = data.local_addr().map_err(|e| e.to_string())?.to_string();
    tokio::spawn(serve_data(data, results.clone(), token.to_owned()));

    let role = Role::Worker { slots, gpus, data: data_addr };
    let (conn, id) = hello(conn, token, name, role).await?;
    tracing::info!("worker {name} joined {addr} as #{id}");
    let (mut sink, mut stream) = conn.split();
    let (from_scheduler, mut inbox) = unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.recv::<FromScheduler>().await {
            if from_scheduler.send(msg).is_err() {
                break;
            }
        }
    });
    let (completed, mut completions) = unbounded_channel::<(TaskId, Outcome)>();
    let mut queue: VecDeque<RunTask> = VecDeque::new();
    let mut running = 0u32;
    let (mut done, mut failed, mut lost) = (vec![], vec![], vec![]);
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    let token = token.to_owned();

    loop {
        let mut record = |id: TaskId, outcome: Outcome, results: &Results| match outcome {
            Outcome::Done(v) => {
                results.lock().unwrap_or_else(PoisonError::into_inner).insert(id, v);
                done.push(id);
            }
            Outcome::Failed(e) => failed.push((id, e)),
            Outcome::InputLost(dep) => lost.push((id, dep)),
        };
        tokio::select! {
            msg = inbox.recv() => {
                let Some(msg) = msg else {
                    tracing::info!("the scheduler is gone; exiting");
                    return Ok(());
                };
                let mut msgs = vec![msg];
                while let Ok(m) = inbox.try_recv() {
                    msgs.push(m);
                }
                for msg in msgs {
                    match msg {
                        FromScheduler::Run { tasks } => queue.extend(tasks),
                        FromScheduler::Steal { tasks } => {
                            let wanted: HashSet<TaskId> = tasks.into_iter().collect();
                            let given: Vec<TaskId> = queue.iter().filter(|t| wanted.contains(&t.id)).map(|t| t.id).collect();
                            queue.retain(|t| !wanted.contains(&t.id));
                            sink.send(&ToScheduler::Stolen { tasks: given }).await.map_err(|e| e.to_string())?;
                        }
                        FromScheduler::Fetch { task } => {
                            let value = results.lock().unwrap_or_else(PoisonError::into_inner).get(&task).cloned().unwrap_or(Value::Null);
                            sink.send(&ToScheduler::Value { task, value }).await.map_err(|e| e.to_string())?;
                        }
                        FromScheduler::Release { tasks } => {
                            let mut r = results.lock().unwrap_or_else(PoisonError::into_inner);
                            tasks.iter().for_each(|t| drop(r.remove(t)));
                        }
                        other => tracing::warn!("unexpected message: {other:?}"),
                    }
                }
            }
            Some((id, outcome)) = completions.recv() => {
                running -= 1;
                record(id, outcome, &results);
                while let Ok((id, outcome)) = completions.try_recv() {
                    running -= 1;
                    record(id, outcome, &results);
                }
            }
            _ = heartbeat.tick() => sink.send(&ToScheduler::Heartbeat).await.map_err(|e| e.to_string())?,
        }
        // Start what fits; trivial tasks with local inputs run right here.
        while running < slots {
            let Some(task) = queue.pop_front() else { break };
            let local = task.inputs.iter().all(|(_, holder)| holder.is_none());
            if local && functions::is_trivial(&task.payload) {
                let inputs: Result<Vec<Value>, TaskId> = {
                    let r = results.lock().unwrap_or_else(PoisonError::into_inner);
                    task.inputs.iter().map(|(d, _)| r.get(d).cloned().ok_or(*d)).collect()
                };
                let outcome = match inputs {
                    Ok(inputs) => match functions::run(&task.payload, &inputs) {
                        Ok(v) => Outcome::Done(v),
                        Err(e) => Outcome::Failed(e),
                    },
                    Err(dep) => Outcome::InputLost(dep),
                };
                record(task.id, outcome, &results);
                continue;
            }
            if functions::may_kill_worker(&task.payload) {
                sink.send(&ToScheduler::Started { tasks: vec![task.id] }).await.map_err(|e| e.to_string())?;
            }
            running += 1;
            let (results, completed, token) = (results.clone(), completed.clone(), token.clone());
            tokio::spawn(async move {
                let id = task.id;
                let outcome = execute(task, results, &token).await;
                let _ = completed.send((id, outcome));
            });
        }
        if !done.is_empty() || !failed.is_empty() || !lost.is_empty() {
            let msg = ToScheduler::Finished {
                done: std::mem::take(&mut done),
                failed: std::mem::take(&mut failed),
                input_lost: std::mem::take(&mut lost),
            };
            sink.send(&msg).await.map_err(|e| e.to_string())?;
        }
    }
}

/// Gathers a task's inputs (fetching remote ones from their holders) and runs it.
async fn execute(task: RunTask, results: Results, token: &str) -> Outcome {
    let mut inputs = Vec::with_capacity(task.inputs.len());
    for (dep, holder) in &task.inputs {
        let local = results.lock().unwrap_or_else(PoisonError::into_inner).get(dep).cloned();
        let value = match (local, holder) {
            (Some(v), _) => Some(v),
            (None, Some(addr)) => fetch(addr, *dep, token).await,
            (None, None) => None,
        };
        match value {
            Some(v) => inputs.push(v),
            None => return Outcome::InputLost(*dep),
        }
    }
    let payload = task.payload;
    match tokio::task::spawn_blocking(move || functions::run(&payload, &inputs)).await {
        Ok(Ok(v)) => Outcome::Done(v),
        Ok(Err(e)) => Outcome::Failed(e),
        Err(e) => Outcome::Failed(format!("task panicked: {e}")),
    }
}

/// Fetches a result from the worker holding it, over a connection kept per holder.
/// `None` if the holder is gone, frozen (no answer within [`FETCH_TIMEOUT`]), or no longer
/// has it.
async fn fetch(addr: &str, task: TaskId, token: &str) -> Option<Value> {
    static POOL: std::sync::OnceLock<Mutex<HashMap<String, labctl_wire::Conn>>> = std::sync::OnceLock::new();
    let pool = POOL.get_or_init(Default::default);
    let pooled = pool.lock().unwrap_or_else(PoisonError::into_inner).remove(addr);
    let attempt = async {
        let mut conn = match pooled {
            Some(c) => c,
            None => labctl_wire::Conn::connect(addr, Duration::ZERO).await.ok()?,
        };
        conn.send(&DataRequest { task, token: token.to_owned() }).await.ok()?;
        let value = conn.recv::<Option<Value>>().await?.ok()?;
        Some((conn, value))
    };
    let (conn, value) = tokio::time::timeout(FETCH_TIMEOUT, attempt).await.ok()??;
    pool.lock().unwrap_or_else(PoisonError::into_inner).insert(addr.to_owned(), conn);
    value
}

/// How long a holder may take to hand over a result.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// Serves this worker's results to other workers.
async fn serve_data(listener: TcpListener, results: Results, token: String) {
    while let Ok((stream, _)) = listener.accept().await {
        let (results, token) = (results.clone(), token.clone());
        tokio::spawn(async move {
            let mut conn = labctl_wire::Conn::new(stream);
            while let Some(Ok(req)) = conn.recv::<DataRequest>().await {
                let value = if req.token == token {
                    results.lock().unwrap_or_else(PoisonError::into_inner).get(&req.task).cloned()
                } else {
                    None
                };
                if conn.send(&value).await.is_err() {
                    break;
                }
            }
        });
    }
}
