//! A worker: asks the coordinator for tasks and runs them one at a time, heartbeating
//! meanwhile; exits when told the job is over or when the coordinator is gone.

use std::time::Duration;

use tokio::sync::mpsc::unbounded_channel;

use crate::protocol::{connect, Reply, Request, Role};
use crate::task;

/// How often a worker says it is alive.
pub const HEARTBEAT: Duration = Duration::from_millis(500);

/// Runs tasks for the coordinator at `addr` until it says stop or goes away; waits for it
/// to come up first, for as long as it takes.
pub async fn run(addr: &str, token: &str, name: &str) -> Result<(), String> {
    let (conn, id) = connect(addr, token, Role::Worker, name, labctl_wire::UNTIL_UP).await?;
    tracing::info!("worker {name} joined {addr} as #{id}");
    let (mut sink, mut stream) = conn.split();
    let (tx, mut outbound) = unbounded_channel::<Request>();
    // One writer, fed by the task loop and the heartbeat.
    let writer = tokio::spawn(async move {
        while let Some(msg) = outbound.recv().await {
            if sink.send(&msg).await.is_err() {
                break;
            }
        }
    });
    let heartbeat = {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(HEARTBEAT);
            while tx.send(Request::Heartbeat).is_ok() {
                every.tick().await;
            }
        })
    };
    let result = loop {
        if tx.send(Request::NextTask).is_err() {
            break Ok(());
        }
        let reply = match stream.recv::<Reply>().await {
            Some(Ok(reply)) => reply,
            Some(Err(e)) if e.kind() == std::io::ErrorKind::Other => {
                break Err(format!("unreadable message from the coordinator: {e}"))
            }
            Some(Err(_)) | None => {
                tracing::info!("the coordinator is gone; exiting");
                break Ok(());
            }
        };
        match reply {
            Reply::Assign { job, task, attempt, spec } => {
                tracing::info!("running {task:?} attempt {attempt}");
                let msg = match task::run(spec, job, attempt).await {
                    Ok((outputs, stats)) => Request::Finished { job, task, attempt, outputs, stats },
                    Err(error) => Request::Failed { job, task, attempt, error },
                };
                let _ = tx.send(msg);
            }
            Reply::Exit => break Ok(()),
            other => tracing::warn!("unexpected message: {other:?}"),
        }
    };
    heartbeat.abort();
    drop(tx);
    let _ = writer.await;
    result
}
