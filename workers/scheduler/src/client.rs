//! The Rust client library: submit a task graph to a scheduler and gather its results.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::core::TaskId;
use crate::protocol::{connect, FromScheduler, Role, TaskSpec, ToScheduler};

/// A connection to a scheduler, as a client.
pub struct Client {
    conn: labctl_wire::Conn,
}

/// What came back for a submitted graph.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    /// Results of the wanted tasks that succeeded.
    pub results: HashMap<TaskId, Value>,
    /// Every task that failed — a wanted one or one of its dependencies — with its error.
    pub errors: HashMap<TaskId, String>,
}

impl Client {
    pub async fn connect(addr: &str, token: &str) -> Result<Self, String> {
        let (conn, _) = connect(addr, token, "client", Role::Client, Duration::from_secs(3)).await?;
        Ok(Self { conn })
    }

    /// Submits `tasks` and waits until every task has finished or failed, and every task in
    /// `wanted` has its result (or error) here.
    pub async fn run(&mut self, tasks: Vec<TaskSpec>, wanted: &[TaskId]) -> Result<Outcome, String> {
        let lost = || "the scheduler closed the connection".to_owned();
        self.conn
            .send(&ToScheduler::Submit { tasks, wanted: wanted.to_vec() })
            .await
            .map_err(|e| e.to_string())?;
        let base = match self.conn.recv().await.ok_or_else(lost)?.map_err(|e| e.to_string())? {
            FromScheduler::Submitted { base } => base,
            other => return Err(format!("unexpected answer to submit: {other:?}")),
        };
        let mut outcome = Outcome::default();
        let mut missing: std::collections::HashSet<TaskId> = wanted.iter().copied().collect();
        let mut all_done = false;
        while !missing.is_empty() || !all_done {
            match self.conn.recv().await.ok_or_else(lost)?.map_err(|e| e.to_string())? {
                FromScheduler::AllDone => all_done = true,
                FromScheduler::Result { task, value } => {
                    missing.remove(&(task - base));
                    outcome.results.insert(task - base, value);
                }
                FromScheduler::Error { task, error } => {
                    missing.remove(&(task - base));
                    outcome.errors.insert(task - base, error);
                }
                other => tracing::warn!("unexpected message: {other:?}"),
            }
        }
        Ok(outcome)
    }
}
