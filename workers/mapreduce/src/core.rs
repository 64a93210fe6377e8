//! The coordinator's brain for one job, as a pure state machine: [`Event`]s in,
//! [`Command`]s out, time passed in with each event. No sockets and no clock, so every
//! scheduling rule (assignment, timeouts, backup tasks, duplicate completions, retries) is
//! unit-tested directly.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A worker connection, numbered by the coordinator.
pub type WorkerId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Map,
    Reduce,
}

/// One task of the job: map task `index` (over split `index`) or reduce partition `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskId {
    pub phase: Phase,
    pub index: u32,
}

/// A file a task wrote under a temporary name, to be published under its final one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    pub temp: String,
    pub final_name: String,
    pub bytes: u64,
}

/// What a finished task measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStats {
    pub bytes_in: u64,
    pub records_out: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A worker is idle and asks for work.
    Request {
        worker: WorkerId,
    },
    Finished {
        worker: WorkerId,
        task: TaskId,
        attempt: u64,
        outputs: Vec<Output>,
        stats: TaskStats,
    },
    Failed {
        worker: WorkerId,
        task: TaskId,
        attempt: u64,
        error: String,
    },
    /// The outputs of a [`Command::Commit`] are published: the task is done.
    Committed {
        task: TaskId,
    },
    /// Publishing a winning attempt's outputs failed: run the task again (this counts as a
    /// failed attempt).
    CommitFailed {
        task: TaskId,
        error: String,
    },
    /// The worker disconnected or missed its heartbeats.
    WorkerLost {
        worker: WorkerId,
    },
    /// Time passes: tasks running past the timeout get a backup.
    Tick,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Assign {
        worker: WorkerId,
        task: TaskId,
        attempt: u64,
    },
    /// Nothing to do now; ask again when something changes.
    Wait {
        worker: WorkerId,
    },
    /// The job is over; the worker may go.
    Exit {
        worker: WorkerId,
    },
    /// Publish the first completion of a task, then report [`Event::Committed`] or
    /// [`Event::CommitFailed`].
    Commit {
        task: TaskId,
        outputs: Vec<Output>,
    },
    /// Delete what a duplicate (late) completion wrote.
    Discard {
        task: TaskId,
        outputs: Vec<Output>,
    },
    /// Every output is final.
    Done,
    /// A task failed `max_attempts` times.
    JobFailed {
        task: TaskId,
        errors: Vec<String>,
    },
}

/// Tunables of a job.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A task running longer than this gets a backup execution on another worker.
    pub task_timeout: Duration,
    /// Failed executions of one task before the job fails.
    pub max_attempts: u32,
}

#[derive(Debug, Default)]
struct Task {
    done: bool,
    /// A completion is being published; later ones are duplicates.
    committing: bool,
    /// Executions in flight: attempt → (worker, started).
    running: HashMap<u64, (WorkerId, Instant)>,
    /// Whether it is waiting to be (re)assigned.
    queued: bool,
    failures: u32,
    errors: Vec<String>,
    outputs: Vec<Output>,
    stats: TaskStats,
}

/// Counters for the job report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub map_executions: u32,
    pub reduce_executions: u32,
    pub failed_executions: u32,
    pub backup_executions: u32,
    pub ignored_completions: u32,
    pub workers_lost: u32,
    pub bytes_in: u64,
    pub intermediate_bytes: u64,
    pub bytes_out: u64,
    pub records_out: u64,
    #[serde(rename = "map_phase_seconds", with = "seconds")]
    pub map_phase: Duration,
    #[serde(rename = "reduce_phase_seconds", with = "seconds")]
    pub reduce_phase: Duration,
}

/// Durations in the job report as seconds (a number a reader can use, not serde's
/// `{secs, nanos}`).
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// One job's progress.
#[derive(Debug)]
pub struct Job {
    limits: Limits,
    maps: Vec<Task>,
    reduces: Vec<Task>,
    phase: Phase,
    next_attempt: u64,
    started: Instant,
    reduce_started: Option<Instant>,
    finished: bool,
    pub counters: Counters,
}

impl Job {
    pub fn new(maps: u32, reduces: u32, limits: Limits, now: Instant) -> Self {
        let queued = |n: u32| (0..n).map(|_| Task { queued: true, ..Task::default() }).collect();
        Self {
            limits,
            maps: queued(maps),
            reduces: queued(reduces.max(1)),
            phase: Phase::Map,
            next_attempt: 1,
            started: now,
            reduce_started: None,
            finished: false,
            counters: Counters::default(),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The committed outputs of a task (for reduces: where the map outputs are).
    pub fn outputs(&self, task: TaskId) -> &[Output] {
        &self.tasks(task.phase)[task.index as usize].outputs
    }

    /// (done, total) for each phase.
    pub fn progress(&self) -> [(usize, usize); 2] {
        let count = |t: &[Task]| (t.iter().filter(|t| t.done).count(), t.len());
        [count(&self.maps), count(&self.reduces)]
    }

    fn tasks(&self, phase: Phase) -> &Vec<Task> {
        match phase {
            Phase::Map => &self.maps,
            Phase::Reduce => &self.reduces,
        }
    }

    fn tasks_mut(&mut self, phase: Phase) -> &mut Vec<Task> {
        match phase {
            Phase::Map => &mut self.maps,
            Phase::Reduce => &mut self.reduces,
        }
    }

    /// Feeds one event; returns what the edge must do.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Command> {
        if self.finished {
            return match event {
                Event::Request { worker } => vec![Command::Exit { worker }],
                Event::Finished { task, outputs, .. } => {
                    self.counters.ignored_completions += 1;
                    vec![Command::Discard { task, outputs }]
                }
                _ => vec![],
            };
        }
        match event {
            Event::Request { worker } => vec![self.assign(worker, now)],
            Event::Finished { worker: _, task, attempt, outputs, stats } => {
                self.finished_task(task, attempt, outputs, stats, now)
            }
            Event::Failed { worker: _, task, attempt, error } => self.failed_task(task, attempt, error),
            Event::Committed { task } => self.committed(task, now),
            Event::CommitFailed { task, error } => self.failed_commit(task, error),
            Event::WorkerLost { worker } => {
                self.counters.workers_lost += 1;
                for t in self.maps.iter_mut().chain(self.reduces.iter_mut()) {
                    t.running.retain(|_, (w, _)| *w != worker);
                    if !t.done && t.running.is_empty() {
                        t.queued = true;
                    }
                }
                vec![]
            }
            Event::Tick => {
                let timeout = self.limits.task_timeout;
                let phase = self.phase;
                let mut backups = 0;
                for t in self.tasks_mut(phase).iter_mut().filter(|t| !t.done && !t.queued) {
                    // One backup at a time: only when every running execution is overdue.
                    if !t.running.is_empty()
                        && t.running.values().all(|(_, s)| now.duration_since(*s) >= timeout)
                    {
                        t.queued = true;
                        backups += 1;
                    }
                }
                self.counters.backup_executions += backups;
                vec![]
            }
        }
    }

    fn assign(&mut self, worker: WorkerId, now: Instant) -> Command {
        let phase = self.phase;
        let Some(index) = self.tasks(phase).iter().position(|t| t.queued && !t.done) else {
            return Command::Wait { worker };
        };
        let attempt = self.next_attempt;
        self.next_attempt += 1;
        let t = &mut self.tasks_mut(phase)[index];
        t.queued = false;
        t.running.insert(attempt, (worker, now));
        match phase {
            Phase::Map => self.counters.map_executions += 1,
            Phase::Reduce => self.counters.reduce_executions += 1,
        }
        Command::Assign { worker, task: TaskId { phase, index: index as u32 }, attempt }
    }

    fn finished_task(
        &mut self,
        task: TaskId,
        attempt: u64,
        outputs: Vec<Output>,
        stats: TaskStats,
        _now: Instant,
    ) -> Vec<Command> {
        let t = &mut self.tasks_mut(task.phase)[task.index as usize];
        t.running.remove(&attempt);
        if t.done || t.committing {
            self.counters.ignored_completions += 1;
            return vec![Command::Discard { task, outputs }];
        }
        t.committing = true;
        t.queued = false;
        t.outputs = outputs.clone();
        t.stats = stats;
        vec![Command::Commit { task, outputs }]
    }

    fn committed(&mut self, task: TaskId, now: Instant) -> Vec<Command> {
        let t = &mut self.tasks_mut(task.phase)[task.index as usize];
        if !t.committing {
            return vec![];
        }
        t.committing = false;
        t.done = true;
        let (stats, written) = (t.stats, t.outputs.iter().map(|o| o.bytes).sum::<u64>());
        match task.phase {
            Phase::Map => {
                self.counters.bytes_in += stats.bytes_in;
                self.counters.intermediate_bytes += written;
            }
            Phase::Reduce => {
                self.counters.bytes_out += written;
                self.counters.records_out += stats.records_out;
            }
        }
        if self.phase == Phase::Map && self.maps.iter().all(|t| t.done) {
            self.phase = Phase::Reduce;
            self.counters.map_phase = now.duration_since(self.started);
            self.reduce_started = Some(now);
        }
        if self.phase == Phase::Reduce && self.reduces.iter().all(|t| t.done) {
            self.finished = true;
            self.counters.reduce_phase = now.duration_since(self.reduce_started.unwrap_or(now));
            return vec![Command::Done];
        }
        vec![]
    }

    fn failed_commit(&mut self, task: TaskId, error: String) -> Vec<Command> {
        let t = &mut self.tasks_mut(task.phase)[task.index as usize];
        if !t.committing {
            return vec![];
        }
        t.committing = false;
        t.outputs.clear();
        t.errors.push(format!("publishing the output failed: {error}"));
        t.failures += 1;
        self.give_up_or_retry(task)
    }

    /// After a failed attempt: fails the job once the task has failed `max_attempts`
    /// times, else queues it again (unless another attempt still runs).
    fn give_up_or_retry(&mut self, task: TaskId) -> Vec<Command> {
        let max = self.limits.max_attempts;
        let t = &mut self.tasks_mut(task.phase)[task.index as usize];
        let failed_for_good = t.failures >= max;
        if !failed_for_good && t.running.is_empty() {
            t.queued = true;
        }
        let errors = t.errors.clone();
        self.counters.failed_executions += 1;
        if failed_for_good {
            self.finished = true;
            return vec![Command::JobFailed { task, errors }];
        }
        vec![]
    }

    fn failed_task(&mut self, task: TaskId, attempt: u64, error: String) -> Vec<Command> {
        let t = &mut self.tasks_mut(task.phase)[task.index as usize];
        if t.running.remove(&attempt).is_none() || t.done || t.committing {
            return vec![];
        }
        t.failures += 1;
        t.errors.push(error);
        self.give_up_or_retry(task)
    }
}

#[cfg(test)]
mod tests;
