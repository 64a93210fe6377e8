//! The job report: tasks, executions, bytes, phase durations — as text for people and as
//! JSON for labctl's verify step.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::core::Counters;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    pub job: u64,
    pub succeeded: bool,
    /// Why the job failed: the task and the errors of each of its attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub output: String,
    pub maps: u32,
    pub reduces: u32,
    pub counters: Counters,
    pub seconds: f64,
}

impl fmt::Display for JobReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counters;
        let verdict = if self.succeeded { "succeeded" } else { "FAILED" };
        writeln!(f, "job {} {verdict} in {:.2}s → {}", self.job, self.seconds, self.output)?;
        writeln!(f, "  tasks:      {} map, {} reduce", self.maps, self.reduces)?;
        writeln!(
            f,
            "  executions: {} map, {} reduce ({} failed, {} backups, {} duplicate completions ignored, {} workers lost)",
            c.map_executions, c.reduce_executions, c.failed_executions, c.backup_executions, c.ignored_completions, c.workers_lost
        )?;
        writeln!(
            f,
            "  bytes:      {} in, {} intermediate, {} out ({} records)",
            c.bytes_in, c.intermediate_bytes, c.bytes_out, c.records_out
        )?;
        writeln!(
            f,
            "  phases:     map {:.2}s, reduce {:.2}s",
            c.map_phase.as_secs_f64(),
            c.reduce_phase.as_secs_f64()
        )?;
        if let Some(e) = &self.error {
            writeln!(f, "  error:      {}", e.replace('\n', "\n              "))?;
        }
        Ok(())
    }
}
