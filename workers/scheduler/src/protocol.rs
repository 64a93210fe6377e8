//! Messages between the scheduler, its workers and clients, over [`labctl_wire`] frames.
//! Tasks and their results travel in batches both ways.

use labctl_wire::files::Shipped;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::TaskId;

/// Bumped on any incompatible change to the messages below.
pub const PROTOCOL_VERSION: u32 = 2;

/// What a task runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Payload {
    /// A built-in function by name (see [`crate::functions`]), with arguments; it also
    /// receives its dependencies' results, in dependency order.
    Builtin {
        function: String,
        #[serde(default)]
        args: Value,
    },
    /// A program, run in a fresh directory holding the shipped `files` (the student's
    /// `train.py`, …); stdout and stderr are captured, a non-zero exit is a task error.
    Command {
        argv: Vec<String>,
        #[serde(default, skip_serializing_if = "Shipped::is_empty")]
        files: Shipped,
    },
}

/// A task as submitted by a client; ids are the client's own, unique within one submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub id: TaskId,
    #[serde(default)]
    pub deps: Vec<TaskId>,
    pub payload: Payload,
    #[serde(default)]
    pub gpus: u32,
    #[serde(default)]
    pub priority: i32,
}

/// A task sent to a worker, with where each input is held (`None`: on this worker).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunTask {
    pub id: TaskId,
    pub payload: Payload,
    pub inputs: Vec<(TaskId, Option<String>)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Role {
    /// `data` is the address other workers fetch this worker's results from.
    Worker {
        slots: u32,
        gpus: u32,
        data: String,
    },
    Client,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToScheduler {
    Hello {
        version: u32,
        token: String,
        name: String,
        role: Role,
    },
    Heartbeat,
    /// Tasks that may kill the worker are announced before they run.
    Started {
        tasks: Vec<TaskId>,
    },
    Finished {
        done: Vec<TaskId>,
        #[serde(default)]
        failed: Vec<(TaskId, String)>,
        /// (task, input) pairs: the task could not get that input.
        #[serde(default)]
        input_lost: Vec<(TaskId, TaskId)>,
    },
    /// The tasks a worker gave back after a steal request (it had not started them).
    Stolen {
        tasks: Vec<TaskId>,
    },
    /// A result the scheduler asked for.
    Value {
        task: TaskId,
        value: Value,
    },
    Submit {
        tasks: Vec<TaskSpec>,
        wanted: Vec<TaskId>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromScheduler {
    Welcome {
        id: u64,
    },
    Refused {
        reason: String,
    },
    Run {
        tasks: Vec<RunTask>,
    },
    Steal {
        tasks: Vec<TaskId>,
    },
    Fetch {
        task: TaskId,
    },
    Release {
        tasks: Vec<TaskId>,
    },
    /// A submission's tasks were given ids `base + id`.
    Submitted {
        base: TaskId,
    },
    Result {
        task: TaskId,
        value: Value,
    },
    Error {
        task: TaskId,
        error: String,
    },
    /// Every task submitted by this client has finished or failed.
    AllDone,
}

/// Worker-to-worker: ask for a result held by the data server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataRequest {
    pub task: TaskId,
    pub token: String,
}

/// Connects and says hello; returns the connection and the id given.
pub async fn connect(
    addr: &str,
    token: &str,
    name: &str,
    role: Role,
    patience: std::time::Duration,
) -> Result<(labctl_wire::Conn, u64), String> {
    hello(reach(addr, patience).await?, token, name, role).await
}

/// Connects to the scheduler at `addr`, retrying for up to `patience`.
pub async fn reach(addr: &str, patience: std::time::Duration) -> Result<labctl_wire::Conn, String> {
    labctl_wire::Conn::connect(addr, patience)
        .await
        .map_err(|e| format!("cannot reach the scheduler at {addr}: {e}"))
}

/// Says hello on `conn`; returns it and the id given.
pub async fn hello(
    mut conn: labctl_wire::Conn,
    token: &str,
    name: &str,
    role: Role,
) -> Result<(labctl_wire::Conn, u64), String> {
    let hello = ToScheduler::Hello {
        version: PROTOCOL_VERSION,
        token: token.to_owned(),
        name: name.to_owned(),
        role,
    };
    conn.send(&hello).await.map_err(|e| e.to_string())?;
    match conn.recv().await {
        Some(Ok(FromScheduler::Welcome { id })) => Ok((conn, id)),
        Some(Ok(FromScheduler::Refused { reason })) => Err(format!("the scheduler refused us: {reason}")),
        Some(Ok(other)) => Err(format!("unexpected answer to hello: {other:?}")),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("the scheduler closed the connection".into()),
    }
}
