//! The wire protocol: length-delimited frames, each a JSON message. A connection starts
//! with `Hello` carrying the protocol version and the job token; the coordinator refuses
//! a mismatch with a message naming both versions.

use futures::{SinkExt, StreamExt};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::core::{Output, TaskId, TaskStats};
use crate::job::JobSpec;
use crate::report::JobReport;
use crate::task::TaskSpec;

/// Bumped on any incompatible change to the messages below.
pub const PROTOCOL_VERSION: u32 = 1;

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
    Hello { version: u32, token: String, role: Role, name: String },
    /// An idle worker asks for a task.
    NextTask,
    Heartbeat,
    Finished { job: u64, task: TaskId, attempt: u64, outputs: Vec<Output>, stats: TaskStats },
    Failed { job: u64, task: TaskId, attempt: u64, error: String },
    Submit { spec: JobSpec },
    Status,
    /// Answer with the job's report once it has finished.
    Wait { job: u64 },
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

/// A framed connection speaking this protocol.
pub struct Conn {
    framed: Framed<TcpStream, LengthDelimitedCodec>,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        let codec = LengthDelimitedCodec::builder().max_frame_length(64 << 20).new_codec();
        Self { framed: Framed::new(stream, codec) }
    }

    pub async fn send<T: Serialize>(&mut self, msg: &T) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
        self.framed.send(bytes::Bytes::from(bytes)).await
    }

    /// The next message; `None` when the peer has gone.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Option<std::io::Result<T>> {
        let frame = self.framed.next().await?;
        Some(frame.and_then(|b| serde_json::from_slice(&b).map_err(std::io::Error::other)))
    }

    pub fn split(self) -> (futures::stream::SplitSink<Framed<TcpStream, LengthDelimitedCodec>, bytes::Bytes>, futures::stream::SplitStream<Framed<TcpStream, LengthDelimitedCodec>>) {
        self.framed.split()
    }
}

/// Connects as a client or worker, retrying while the coordinator starts (up to `patience`).
pub async fn connect(addr: &str, token: &str, role: Role, name: &str, patience: std::time::Duration) -> Result<(Conn, u64), String> {
    let deadline = tokio::time::Instant::now() + patience;
    let stream = loop {
        match TcpStream::connect(addr).await {
            Ok(s) => break s,
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(format!("cannot reach the coordinator at {addr}: {e}")),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    };
    let mut conn = Conn::new(stream);
    let hello = Request::Hello { version: PROTOCOL_VERSION, token: token.to_owned(), role, name: name.to_owned() };
    conn.send(&hello).await.map_err(|e| e.to_string())?;
    match conn.recv().await {
        Some(Ok(Reply::Welcome { id })) => Ok((conn, id)),
        Some(Ok(Reply::Refused { reason })) => Err(format!("the coordinator refused us: {reason}")),
        Some(Ok(other)) => Err(format!("unexpected answer to hello: {other:?}")),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("the coordinator closed the connection".into()),
    }
}
