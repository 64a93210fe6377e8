//! The scheduler's brain as a pure state machine, after HyperQueue's `tako` reactor: each
//! `on_*` method takes an event and returns [`Command`]s for the edge to carry out. No
//! sockets, no clock: every rule — readiness, placement by locality and load, prefetch
//! depth, work stealing, lost-result recomputation, poison tasks, error propagation — is
//! unit-tested directly.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use serde::{Deserialize, Serialize};

pub type TaskId = u64;
pub type WorkerId = u64;
pub type ClientId = u64;

/// A task placed on a worker, with the worker holding each of its inputs.
type Placed = (TaskId, Vec<(TaskId, WorkerId)>);

/// A task as the scheduler sees it: dependencies and needs; what it runs stays at the edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDef {
    pub id: TaskId,
    #[serde(default)]
    pub deps: Vec<TaskId>,
    #[serde(default)]
    pub gpus: u32,
    /// Higher runs first.
    #[serde(default)]
    pub priority: i32,
}

/// Worker deaths while running a task before the task is declared poison.
pub const MAX_DEATHS: u32 = 3;

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Run these tasks; `inputs` says where each dependency's result is held.
    Assign { worker: WorkerId, tasks: Vec<(TaskId, Vec<(TaskId, WorkerId)>)> },
    /// Ask a worker to give back queued (not started) tasks.
    Steal { worker: WorkerId, tasks: Vec<TaskId> },
    /// Bring `task`'s result from `worker` to the client that wants it.
    Fetch { task: TaskId, worker: WorkerId, client: ClientId },
    /// A task the client wants failed (itself or a dependency).
    Error { client: ClientId, task: TaskId, error: String },
    /// Forget a result nobody needs any more.
    Release { worker: WorkerId, task: TaskId },
    /// Every task the client submitted has finished or failed.
    AllDone { client: ClientId },
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Waiting,
    Ready,
    /// Queued or running on a worker.
    Assigned(WorkerId),
    Done(Vec<WorkerId>),
    Failed(String),
    /// Its result was lost with a worker while nobody needed it; recomputed on demand.
    Lost,
}

#[derive(Debug)]
struct Task {
    state: State,
    deps: Vec<TaskId>,
    dependents: Vec<TaskId>,
    deps_left: u32,
    gpus: u32,
    priority: i32,
    client: ClientId,
    /// The client wants its result.
    wanted: bool,
    started: bool,
    /// Counted in its client's outstanding tasks until it first finishes or fails.
    outstanding: bool,
    deaths: u32,
    /// Dependents not done: the result is needed while this is above zero (or it is
    /// wanted). Kept exact across recomputation: a dependent that is done again after
    /// losing its result counts again.
    pending_dependents: u32,
}

#[derive(Debug)]
struct Worker {
    slots: u32,
    gpus: u32,
    /// Queued or running here, in assignment order.
    assigned: BTreeSet<TaskId>,
    stealing: bool,
}

/// Counters for the status endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    pub finished: u64,
    pub failed: u64,
    pub recomputed: u64,
    pub stolen: u64,
    pub workers_lost: u64,
}

/// The scheduler's state.
#[derive(Debug, Default)]
pub struct Core {
    tasks: HashMap<TaskId, Task>,
    workers: HashMap<WorkerId, Worker>,
    ready: BinaryHeap<(i32, Reverse<TaskId>)>,
    /// Per client, tasks that have not finished or failed yet.
    outstanding: HashMap<ClientId, usize>,
    /// Commands produced deep inside a state change, sent with the next [`Core::schedule`].
    deferred: Vec<Command>,
    /// Tasks assigned per worker beyond its slots, to hide round trips.
    pub prefetch: u32,
    pub stats: Stats,
}

impl Core {
    pub fn new(prefetch: u32) -> Self {
        Self { prefetch, ..Self::default() }
    }

    /// Tasks by state, for status.
    pub fn counts(&self) -> HashMap<&'static str, usize> {
        let mut c = HashMap::new();
        for t in self.tasks.values() {
            let k = match t.state {
                State::Waiting => "waiting",
                State::Ready => "ready",
                State::Assigned(_) if t.started => "running",
                State::Assigned(_) => "queued",
                State::Done(_) => "done",
                State::Failed(_) => "failed",
                State::Lost => "lost",
            };
            *c.entry(k).or_default() += 1;
        }
        c
    }

    /// The client that submitted `task`.
    pub fn client_of(&self, task: TaskId) -> Option<ClientId> {
        self.tasks.get(&task).map(|t| t.client)
    }

    pub fn on_worker_joined(&mut self, worker: WorkerId, slots: u32, gpus: u32) -> Vec<Command> {
        self.workers
            .insert(worker, Worker { slots: slots.max(1), gpus, assigned: BTreeSet::new(), stealing: false });
        let mut out = self.schedule();
        out.extend(self.balance());
        out
    }

    /// A client submits tasks (dependencies first or in any order within the batch);
    /// `wanted` are the ones whose results it will receive.
    pub fn on_submit(&mut self, client: ClientId, defs: Vec<TaskDef>, wanted: &[TaskId]) -> Vec<Command> {
        let mut out = vec![];
        for def in &defs {
            self.tasks.insert(
                def.id,
                Task {
                    state: State::Waiting,
                    deps: def.deps.clone(),
                    dependents: vec![],
                    deps_left: 0,
                    gpus: def.gpus,
                    priority: def.priority,
                    client,
                    wanted: false,
                    started: false,
                    outstanding: true,
                    deaths: 0,
                    pending_dependents: 0,
                },
            );
        }
        for def in &defs {
            for dep in &def.deps {
                if let Some(d) = self.tasks.get_mut(dep) {
                    d.dependents.push(def.id);
                    if !matches!(d.state, State::Done(_)) {
                        d.pending_dependents += 1;
                    }
                }
            }
        }
        for &w in wanted {
            if let Some(t) = self.tasks.get_mut(&w) {
                t.wanted = true;
            }
        }
        *self.outstanding.entry(client).or_default() += defs.len();
        for def in &defs {
            let mut left = 0;
            let mut failed = None;
            for dep in &def.deps {
                match self.tasks.get(dep).map(|d| &d.state) {
                    Some(State::Done(_)) => {}
                    Some(State::Failed(e)) => failed = Some(format!("dependency {dep} failed: {e}")),
                    Some(_) => left += 1,
                    None => failed = Some(format!("dependency {dep} does not exist")),
                }
            }
            let t = self.tasks.get_mut(&def.id).expect("inserted above");
            t.deps_left = left;
            if let Some(error) = failed {
                out.extend(self.fail(def.id, error));
            } else if left == 0 {
                self.make_ready(def.id);
            }
        }
        out.extend(self.schedule());
        out
    }

    /// A client went away: its tasks are forgotten, their results released. Returns the
    /// forgotten ids (so the edge can drop what it keeps about them) and the commands.
    pub fn on_client_left(&mut self, client: ClientId) -> (Vec<TaskId>, Vec<Command>) {
        let ids: Vec<TaskId> =
            self.tasks.iter().filter(|(_, t)| t.client == client).map(|(id, _)| *id).collect();
        let mut out = vec![];
        for id in &ids {
            match self.tasks.remove(id).map(|t| t.state) {
                Some(State::Done(holders)) => {
                    out.extend(holders.into_iter().map(|worker| Command::Release { worker, task: *id }))
                }
                Some(State::Assigned(w)) => {
                    if let Some(worker) = self.workers.get_mut(&w) {
                        worker.assigned.remove(id);
                    }
                }
                _ => {}
            }
        }
        self.outstanding.remove(&client);
        out.extend(self.schedule());
        (ids, out)
    }

    /// Tasks started on a worker (only reported for tasks that may kill it).
    pub fn on_started(&mut self, tasks: &[TaskId]) {
        for t in tasks {
            if let Some(t) = self.tasks.get_mut(t) {
                t.started = true;
            }
        }
    }

    pub fn on_finished(&mut self, worker: WorkerId, done: &[TaskId]) -> Vec<Command> {
        let mut out = vec![];
        for &id in done {
            let Some(t) = self.tasks.get_mut(&id) else {
                // Its client has gone: nobody will ask for the result.
                out.push(Command::Release { worker, task: id });
                continue;
            };
            if t.state != State::Assigned(worker) {
                continue;
            }
            t.state = State::Done(vec![worker]);
            self.stats.finished += 1;
            let first = std::mem::take(&mut t.outstanding);
            let client = t.client;
            if first {
                out.extend(self.settle(client));
            }
            let t = self.tasks.get_mut(&id).expect("exists");
            if let Some(w) = self.workers.get_mut(&worker) {
                w.assigned.remove(&id);
            }
            let (client, wanted) = (t.client, t.wanted);
            if wanted {
                out.push(Command::Fetch { task: id, worker, client });
            }
            let deps = t.deps.clone();
            for d in t.dependents.clone() {
                let dt = self.tasks.get_mut(&d).expect("dependents exist");
                if dt.state == State::Waiting {
                    dt.deps_left -= 1;
                    if dt.deps_left == 0 {
                        self.make_ready(d);
                    }
                }
            }
            // Inputs whose last dependent just finished can be forgotten.
            for dep in deps {
                out.extend(self.dependent_done(dep));
            }
            if self.tasks[&id].dependents.is_empty() && !wanted {
                out.push(Command::Release { worker, task: id });
            }
        }
        out.extend(self.schedule());
        out.extend(self.balance());
        out
    }

    fn dependent_done(&mut self, dep: TaskId) -> Vec<Command> {
        let Some(d) = self.tasks.get_mut(&dep) else { return vec![] };
        d.pending_dependents = d.pending_dependents.saturating_sub(1);
        match &d.state {
            State::Done(holders) if d.pending_dependents == 0 && !d.wanted => {
                holders.iter().map(|&worker| Command::Release { worker, task: dep }).collect()
            }
            _ => vec![],
        }
    }

    /// A task failed with an error: it and everything depending on it fail.
    pub fn on_failed(&mut self, worker: WorkerId, task: TaskId, error: String) -> Vec<Command> {
        if self.tasks.get(&task).map(|t| &t.state) != Some(&State::Assigned(worker)) {
            return vec![];
        }
        if let Some(w) = self.workers.get_mut(&worker) {
            w.assigned.remove(&task);
        }
        let mut out = self.fail(task, error);
        out.extend(self.schedule());
        out
    }

    /// A task could not get `input` (its holder is gone, frozen, or dropped it): the input
    /// is recomputed and the task waits for it.
    pub fn on_input_lost(&mut self, worker: WorkerId, task: TaskId, input: TaskId) -> Vec<Command> {
        if self.tasks.get(&task).map(|t| &t.state) != Some(&State::Assigned(worker)) {
            return vec![];
        }
        if let Some(w) = self.workers.get_mut(&worker) {
            w.assigned.remove(&task);
        }
        if matches!(self.tasks.get(&input).map(|t| &t.state), Some(State::Done(_))) {
            self.stats.recomputed += 1;
            self.requeue(input);
        }
        self.requeue(task);
        self.schedule()
    }

    /// A worker gave back stolen tasks (those it had not started).
    pub fn on_stolen(&mut self, worker: WorkerId, tasks: &[TaskId]) -> Vec<Command> {
        if let Some(w) = self.workers.get_mut(&worker) {
            w.stealing = false;
        }
        for &t in tasks {
            if self.tasks.get(&t).map(|t| &t.state) == Some(&State::Assigned(worker)) {
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.assigned.remove(&t);
                }
                self.stats.stolen += 1;
                // Not simply ready: an input may have been lost since it was assigned.
                self.requeue(t);
            }
        }
        self.schedule()
    }

    pub fn on_worker_lost(&mut self, worker: WorkerId) -> Vec<Command> {
        let Some(w) = self.workers.remove(&worker) else { return vec![] };
        self.stats.workers_lost += 1;
        // Results held only there are gone: first mark them all lost, so that the
        // requeues below see one consistent picture.
        let lost: Vec<TaskId> = self
            .tasks
            .iter_mut()
            .filter_map(|(id, t)| match &mut t.state {
                State::Done(holders) => {
                    holders.retain(|h| *h != worker);
                    if holders.is_empty() {
                        t.state = State::Lost;
                        return Some(*id);
                    }
                    None
                }
                _ => None,
            })
            .collect();
        let mut out = vec![];
        for id in w.assigned {
            let t = self.tasks.get_mut(&id).expect("assigned tasks exist");
            if t.started {
                t.deaths += 1;
            }
            if t.deaths >= MAX_DEATHS {
                out.extend(self.fail(id, format!("task killed {MAX_DEATHS} workers")));
            } else {
                self.requeue(id);
            }
        }
        // Recompute the lost results still needed (some already are, as inputs of the
        // tasks requeued above); the others stay lost until something needs them.
        for id in lost {
            let t = &self.tasks[&id];
            if t.state == State::Lost && (t.wanted || t.pending_dependents > 0) {
                self.stats.recomputed += 1;
                self.requeue(id);
            }
        }
        out.extend(self.schedule());
        out
    }

    /// Sets a task back to waiting for whichever of its dependencies are not done (which
    /// are recomputed too). Its dependents waiting for it count it again.
    fn requeue(&mut self, id: TaskId) {
        let t = self.tasks.get_mut(&id).expect("exists");
        let was_done = matches!(t.state, State::Done(_) | State::Lost);
        t.started = false;
        t.state = State::Waiting;
        let deps = t.deps.clone();
        if was_done {
            // It needs its inputs again.
            for dep in &deps {
                if let Some(d) = self.tasks.get_mut(dep) {
                    d.pending_dependents += 1;
                }
            }
            for d in self.tasks[&id].dependents.clone() {
                if matches!(self.tasks[&d].state, State::Waiting | State::Ready) {
                    self.recount(d);
                }
            }
        }
        for dep in &deps {
            match self.tasks.get(dep).map(|d| d.state.clone()) {
                Some(State::Lost) => {
                    // A lost, unneeded input is needed again.
                    self.stats.recomputed += 1;
                    self.requeue(*dep);
                }
                Some(State::Failed(error)) => {
                    let failed = self.fail(id, format!("dependency {dep} failed: {error}"));
                    self.deferred.extend(failed);
                    return;
                }
                _ => {}
            }
        }
        self.recount(id);
    }

    /// Sets a waiting or ready task's count of inputs not yet available, from scratch, and
    /// its state to match.
    fn recount(&mut self, id: TaskId) {
        let left = self.tasks[&id]
            .deps
            .iter()
            .filter(|d| !matches!(&self.tasks[*d].state, State::Done(h) if !h.is_empty()))
            .count() as u32;
        let t = self.tasks.get_mut(&id).expect("exists");
        t.deps_left = left;
        if left == 0 {
            if t.state != State::Ready {
                self.make_ready(id);
            }
        } else {
            t.state = State::Waiting;
        }
    }

    /// One more of `client`'s tasks is settled; says so when it was the last.
    fn settle(&mut self, client: ClientId) -> Option<Command> {
        let left = self.outstanding.get_mut(&client)?;
        *left -= 1;
        (*left == 0).then(|| {
            self.outstanding.remove(&client);
            Command::AllDone { client }
        })
    }

    fn make_ready(&mut self, id: TaskId) {
        let t = self.tasks.get_mut(&id).expect("exists");
        t.state = State::Ready;
        self.ready.push((t.priority, Reverse(id)));
    }

    /// Fails `id` and, transitively, its dependents; tells clients about the wanted ones.
    fn fail(&mut self, id: TaskId, error: String) -> Vec<Command> {
        let mut out = vec![];
        let mut stack = vec![(id, error)];
        while let Some((id, error)) = stack.pop() {
            let t = self.tasks.get_mut(&id).expect("exists");
            if matches!(t.state, State::Failed(_)) {
                continue;
            }
            if let State::Assigned(w) = t.state {
                // It frees its place on that worker (whose late report is then ignored).
                if let Some(worker) = self.workers.get_mut(&w) {
                    worker.assigned.remove(&id);
                }
            }
            let t = self.tasks.get_mut(&id).expect("exists");
            t.state = State::Failed(error.clone());
            self.stats.failed += 1;
            let (client, first, dependents) =
                (t.client, std::mem::take(&mut t.outstanding), t.dependents.clone());
            out.push(Command::Error { client, task: id, error: error.clone() });
            if first {
                out.extend(self.settle(client));
            }
            for d in dependents {
                stack.push((d, format!("dependency {id} failed: {error}")));
            }
        }
        out
    }

    /// Places ready tasks: highest priority first, on the worker holding most of its inputs
    /// among those with room, else the least loaded.
    fn schedule(&mut self) -> Vec<Command> {
        // Per worker: each task placed there, with where each of its inputs is.
        let mut batches: HashMap<WorkerId, Vec<Placed>> = HashMap::new();
        let mut skipped = vec![];
        let mut recheck = vec![];
        while let Some((prio, Reverse(id))) = self.ready.pop() {
            let Some(t) = self.tasks.get(&id) else { continue };
            if t.state != State::Ready {
                continue;
            }
            let inputs_held =
                t.deps.iter().all(|d| matches!(&self.tasks[d].state, State::Done(h) if !h.is_empty()));
            if !inputs_held {
                // An input was lost after this task became ready: wait for it again.
                recheck.push(id);
                continue;
            }
            let capacity = |w: &Worker| w.slots + self.prefetch;
            let fits = |w: &Worker| (w.assigned.len() as u32) < capacity(w) && w.gpus >= t.gpus;
            let local = t.deps.iter().filter_map(|d| match &self.tasks[d].state {
                State::Done(h) => h.iter().find(|w| self.workers.get(w).is_some_and(fits)).copied(),
                _ => None,
            });
            let best = local
                .max_by_key(|w| {
                    (self.workers[w].slots + self.prefetch)
                        .saturating_sub(self.workers[w].assigned.len() as u32)
                })
                .or_else(|| {
                    self.workers
                        .iter()
                        .filter(|(_, w)| fits(w))
                        .min_by_key(|(id, w)| (w.assigned.len() * 1000 / w.slots as usize, **id))
                        .map(|(id, _)| *id)
                });
            let Some(worker) = best else {
                skipped.push((prio, Reverse(id)));
                if self.workers.values().all(|w| w.gpus >= t.gpus && !fits(w)) {
                    break;
                }
                continue;
            };
            let inputs = t
                .deps
                .iter()
                .map(|d| match &self.tasks[d].state {
                    State::Done(h) => (*d, if h.contains(&worker) { worker } else { h[0] }),
                    _ => unreachable!("inputs were checked above"),
                })
                .collect();
            self.tasks.get_mut(&id).expect("exists").state = State::Assigned(worker);
            self.workers.get_mut(&worker).expect("exists").assigned.insert(id);
            batches.entry(worker).or_default().push((id, inputs));
        }
        self.ready.extend(skipped);
        for id in recheck {
            self.requeue(id);
        }
        let mut out: Vec<Command> = std::mem::take(&mut self.deferred);
        out.extend(batches.into_iter().map(|(worker, tasks)| Command::Assign { worker, tasks }));
        out.sort_by_key(|c| match c {
            Command::Assign { worker, .. } => *worker,
            _ => 0,
        });
        out
    }

    /// Work stealing: a worker with free slots and nothing queued takes half of the queue
    /// of the most loaded worker (tasks it has not started; the victim confirms which).
    fn balance(&mut self) -> Vec<Command> {
        if !self.ready.is_empty() {
            return vec![];
        }
        let idle: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| (w.assigned.len() as u32) < w.slots)
            .map(|(id, _)| *id)
            .collect();
        let mut out = vec![];
        for _thief in idle {
            let victim = self
                .workers
                .iter()
                .filter(|(_, w)| !w.stealing && w.assigned.len() as u32 > w.slots + 1)
                .max_by_key(|(_, w)| w.assigned.len())
                .map(|(id, _)| *id);
            let Some(victim) = victim else { break };
            let w = self.workers.get_mut(&victim).expect("exists");
            let excess = w.assigned.len() - w.slots as usize;
            let tasks: Vec<TaskId> = w.assigned.iter().rev().take(excess.div_ceil(2)).copied().collect();
            w.stealing = true;
            out.push(Command::Steal { worker: victim, tasks });
        }
        out
    }
}

#[cfg(test)]
mod tests;
