//! The coordinator's protocol, over [`labctl_wire`] frames. A connection starts
//! with `Hello` carrying the protocol version and the job token; the coordinator refuses
//! a mismatch with a message naming both versions.

pub use labctl_wire::Conn;
use serde::{Deserialize, Serialize};

use crate::core::{Output, TaskId, TaskStats};
use crate::job::JobSpec;
use crate::report::JobReport;
use crate::task::TaskSpec;

/// Bumped on any incompatible change to the messages below.
pub const PROTOCOL_VERSION: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Worker,
    Client,
}

/// Messages to the coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    Hello {
        version: u32,
        token: String,
        role: Role,
        name: String,
    },
    /// An idle worker asks for a task.
    NextTask,
    Heartbeat,
    Finished {
        job: u64,
        task: TaskId,
        attempt: u64,
        outputs: Vec<Output>,
        stats: TaskStats,
    },
    Failed {
        job: u64,
        task: TaskId,
        attempt: u64,
        error: String,
    },
    Submit {
        spec: JobSpec,
    },
    Status,
    /// Answer with the job's report once it has finished.
    Wait {
        job: u64,
    },
}

/// Messages from the coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    Welcome { id: u64 },
    Refused { reason: String },
    Assign { job: u64, task: TaskId, attempt: u64, spec: TaskSpec },
    Exit,
    Submitted { job: u64 },
    Status { status: serde_json::Value },
    Report { report: JobReport },
}

/// Connects as a client or worker, retrying while the coordinator starts (up to `patience`).
pub async fn connect(
    addr: &str,
    token: &str,
    role: Role,
    name: &str,
    patience: std::time::Duration,
) -> Result<(Conn, u64), String> {
    let mut conn = Conn::connect(addr, patience)
        .await
        .map_err(|e| format!("cannot reach the coordinator at {addr}: {e}"))?;
    let hello =
        Request::Hello { version: PROTOCOL_VERSION, token: token.to_owned(), role, name: name.to_owned() };
    conn.send(&hello).await.map_err(|e| e.to_string())?;
    match conn.recv().await {
        Some(Ok(Reply::Welcome { id })) => Ok((conn, id)),
        Some(Ok(Reply::Refused { reason })) => Err(format!("the coordinator refused us: {reason}")),
        Some(Ok(other)) => Err(format!("unexpected answer to hello: {other:?}")),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("the coordinator closed the connection".into()),
    }
}
