//! The walk: executes a plan's actions through the providers — dependencies first, in
//! parallel up to a bound, rate-limited and retried per provider — recording every result
//! in state as it happens, continuing past failures, and stopping cleanly on Ctrl-C.

mod interrupts;
mod retry;
#[cfg(test)]
mod tests;
mod walk;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use labctl_provider_api::{Deps, ErrorKind, Observed, Provider, ProviderError};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use interrupts::Interrupts;
pub use retry::RetryPolicy;
pub use walk::{Status, Walk};

use crate::plan::{Action, ActionKind, Plan, Refresh, Refreshed};
use crate::state::{redact_text, ResourceState, State, StateError, StateStore};

/// The providers a walk goes through, by name (each already rate-limited and decorated).
pub trait Providers: Sync {
    fn provider(&self, name: &str) -> Option<Arc<dyn Provider>>;
}

/// How the walk runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Provider operations in flight at once.
    pub parallelism: usize,
    pub retry: RetryPolicy,
}

/// How one action ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done { elapsed: Duration },
    Failed { error: String, elapsed: Duration },
    Skipped { because: String },
}

/// What happened during a walk, for progress displays.
#[derive(Debug)]
pub enum Event<'a> {
    Started(&'a Action),
    Retrying { action: &'a Action, error: &'a str, delay: Duration },
    Finished { action: &'a Action, outcome: &'a Outcome },
    Interrupted { in_flight: usize },
}

/// Receives [`Event`]s as the walk goes.
pub trait Observer {
    fn event(&mut self, event: Event<'_>);
}

/// The result of executing a plan.
#[derive(Debug)]
pub struct Report {
    /// One per plan action, in plan order.
    pub outcomes: Vec<Outcome>,
    pub interrupted: bool,
    /// Interrupted twice: what was in flight was abandoned (state holds what finished
    /// before; the next run adopts the rest). The caller should exit at once.
    pub abandoned: bool,
    pub elapsed: Duration,
    /// The state could not be saved: the most serious failure of all.
    pub state_error: Option<StateError>,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.outcomes.iter().filter(|o| matches!(o, Outcome::Failed { .. })).count()
    }

    pub fn is_success(&self) -> bool {
        !self.interrupted
            && self.state_error.is_none()
            && self.outcomes.iter().all(|o| matches!(o, Outcome::Done { .. }))
    }
}

/// State writes are grouped: after a completion, the state is written at once if the last
/// write is older than the interval (or nothing else is in flight), else at most one
/// interval later. The interval is this, or four times what the last write took if more,
/// so that writing a large state never takes more than a fifth of the walk and the cost
/// of an apply stays linear in its size.
const STATE_WRITE_INTERVAL: Duration = Duration::from_millis(25);

/// Runs `plan` against the providers, recording every result in `state` and persisting it
/// through `store` as it goes. The first of `interrupts` starts nothing new and lets what
/// is in flight finish; the second abandons it.
pub async fn execute(
    plan: &Plan,
    state: &mut State,
    store: &StateStore,
    registry: &dyn Providers,
    options: &Options,
    interrupts: &mut Interrupts,
    observer: &mut dyn Observer,
) -> Report {
    let started = Instant::now();
    let actions = &plan.actions;
    let mut walk = Walk::new(actions);
    let mut outcomes: Vec<Option<Outcome>> = vec![None; actions.len()];
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let (retry_tx, mut retry_rx) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    let mut writer = StateWriter {
        store,
        dirty: false,
        last: Instant::now(),
        interval: STATE_WRITE_INTERVAL,
        error: None,
    };
    let mut interrupted = false;
    let mut abandoned = false;
    let mut op_started = vec![Instant::now(); actions.len()];

    loop {
        while tasks.len() < options.parallelism.max(1) {
            let Some(i) = walk.next_ready() else { break };
            let action = &actions[i];
            observer.event(Event::Started(action));
            op_started[i] = Instant::now();
            match task_for(action, state, registry) {
                Ok(task) => {
                    let ctx = Ctx {
                        i,
                        policy: options.retry,
                        cancel: cancel_rx.clone(),
                        retries: retry_tx.clone(),
                    };
                    tasks.spawn(task.run(ctx));
                }
                Err(error) => {
                    let outcome = Outcome::Failed { error: error.to_string(), elapsed: Duration::ZERO };
                    record(&mut walk, &mut outcomes, actions, i, outcome, observer);
                }
            }
        }
        if tasks.is_empty() {
            // Nothing runs and nothing could start: whatever still waits is in a cycle.
            debug_assert!(walk.is_stuck_or_done());
            for i in walk.stop("it is part of a dependency cycle") {
                skip(&mut outcomes, actions, &walk, i, observer);
            }
            break;
        }
        tokio::select! {
            Some(joined) = tasks.join_next() => {
                let (i, result) = joined.expect("engine tasks do not panic");
                let outcome = apply_result(state, &actions[i], result, op_started[i].elapsed());
                record(&mut walk, &mut outcomes, actions, i, outcome, observer);
                writer.dirty = true;
                if tasks.is_empty() || writer.last.elapsed() >= writer.interval {
                    writer.flush(state);
                }
            }
            Some((i, error, delay)) = retry_rx.recv() => {
                let error = redact_text(&error, state);
                observer.event(Event::Retrying { action: &actions[i], error: &error, delay });
            }
            _ = tokio::time::sleep_until(writer.last + writer.interval), if writer.dirty => writer.flush(state),
            () = interrupts.next() => {
                if interrupted {
                    // Second interrupt: leave now. Every write so far was atomic; what was
                    // in flight is abandoned and the next run adopts it.
                    abandoned = true;
                    tasks.abort_all();
                    writer.dirty = true;
                    break;
                }
                interrupted = true;
                let _ = cancel_tx.send(true);
                observer.event(Event::Interrupted { in_flight: tasks.len() });
                for i in walk.stop("interrupted") {
                    skip(&mut outcomes, actions, &walk, i, observer);
                }
            }
        }
    }
    writer.flush(state);
    Report {
        outcomes: outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Skipped { because: "interrupted".into() }))
            .collect(),
        interrupted,
        abandoned,
        elapsed: started.elapsed(),
        state_error: writer.error,
    }
}

fn record(
    walk: &mut Walk,
    outcomes: &mut [Option<Outcome>],
    actions: &[Action],
    i: usize,
    outcome: Outcome,
    observer: &mut dyn Observer,
) {
    let ok = matches!(outcome, Outcome::Done { .. });
    observer.event(Event::Finished { action: &actions[i], outcome: &outcome });
    outcomes[i] = Some(outcome);
    for s in walk.finish(i, ok) {
        skip(outcomes, actions, walk, s, observer);
    }
}

fn skip(
    outcomes: &mut [Option<Outcome>],
    actions: &[Action],
    walk: &Walk,
    i: usize,
    observer: &mut dyn Observer,
) {
    let because = match walk.status(i) {
        Status::Skipped { because } => because.clone(),
        _ => "interrupted".into(),
    };
    let outcome = Outcome::Skipped { because };
    observer.event(Event::Finished { action: &actions[i], outcome: &outcome });
    outcomes[i] = Some(outcome);
}

/// Writes state at most once per interval while work completes.
struct StateWriter<'a> {
    store: &'a StateStore,
    dirty: bool,
    last: Instant,
    interval: Duration,
    error: Option<StateError>,
}

impl StateWriter<'_> {
    fn flush(&mut self, state: &mut State) {
        if !self.dirty {
            return;
        }
        let started = Instant::now();
        let saved = self.store.save(state);
        self.interval = STATE_WRITE_INTERVAL.max(started.elapsed() * 4);
        if let Err(e) = saved {
            tracing::error!("{}", crate::error::chain(&e));
            self.error = Some(e);
        }
        self.dirty = false;
        self.last = Instant::now();
    }
}

/// What a task reports back.
enum TaskResult {
    Written(Observed),
    Deleted,
    /// The prior resource is gone (a replace deleted it) but the new one failed.
    Failed {
        error: ProviderError,
        prior_deleted: bool,
    },
}

/// Everything one action needs, owned, so it can run on its own task.
struct Task {
    action: Action,
    prior: Option<Observed>,
    deps: Deps,
    provider: Arc<dyn Provider>,
    /// Who deletes what a replace removes: the provider and kind it was made with.
    old: (Arc<dyn Provider>, String),
}

struct Ctx {
    i: usize,
    policy: RetryPolicy,
    cancel: watch::Receiver<bool>,
    retries: mpsc::UnboundedSender<(usize, String, Duration)>,
}

/// A provider that the plan or the state names and this run has not configured.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no provider `{0}` is configured")]
pub struct NoProvider(pub String);

fn provider(registry: &dyn Providers, name: &str) -> Result<Arc<dyn Provider>, NoProvider> {
    registry.provider(name).ok_or_else(|| NoProvider(name.to_owned()))
}

fn task_for(action: &Action, state: &State, registry: &dyn Providers) -> Result<Task, NoProvider> {
    let provider = provider(registry, &action.provider)?;
    let recorded = state.resources.get(&action.address);
    let prior = recorded.map(ResourceState::observed);
    let old = match recorded {
        Some(r) => (self::provider(registry, &r.provider)?, r.kind.clone()),
        None => (provider.clone(), action.kind.clone()),
    };
    let deps = match action.action {
        ActionKind::Delete => Deps::new(),
        _ => action
            .deps
            .iter()
            .filter_map(|d| state.resources.get(d).map(|r| (d.clone(), r.observed())))
            .collect(),
    };
    Ok(Task { action: action.clone(), prior, deps, provider, old })
}

impl Task {
    /// Performs the action on a task of its own, so that a provider that panics fails its
    /// resource (with the panic's message) instead of the whole walk.
    async fn run(self, mut ctx: Ctx) -> (usize, TaskResult) {
        let i = ctx.i;
        let result = match tokio::spawn(async move { self.perform(&mut ctx).await }).await {
            Ok(result) => result,
            Err(e) => {
                let why = match e.try_into_panic() {
                    Ok(panic) => panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "no message".to_owned()),
                    Err(e) => e.to_string(),
                };
                TaskResult::Failed {
                    error: ProviderError::fatal(format!("the provider panicked: {why}")),
                    prior_deleted: false,
                }
            }
        };
        (i, result)
    }

    async fn perform(&self, ctx: &mut Ctx) -> TaskResult {
        let a = &self.action;
        let spec = || a.spec.as_ref().expect("creates and updates carry a spec");
        let written = |r: Result<Observed, ProviderError>, prior_deleted| match r {
            Ok(o) => TaskResult::Written(o),
            Err(error) => TaskResult::Failed { error, prior_deleted },
        };
        match a.action {
            ActionKind::Create => {
                written(retrying(ctx, &mut || self.provider.create(spec(), &self.deps)).await, false)
            }
            ActionKind::Update => {
                let prior = self.prior.clone().unwrap_or_default();
                let updated = if a.retags_only() {
                    Ok(prior)
                } else {
                    retrying(ctx, &mut || self.provider.update(spec(), &prior, &self.deps)).await
                };
                let retagged = match updated {
                    Ok(observed) if a.retags() => {
                        retrying(ctx, &mut || self.provider.retag(spec(), &observed)).await
                    }
                    other => other,
                };
                written(retagged, false)
            }
            ActionKind::Replace => {
                if let Some(prior) = &self.prior {
                    let (provider, kind) = &self.old;
                    if let Err(error) = retrying(ctx, &mut || provider.delete(kind, prior)).await {
                        return TaskResult::Failed { error, prior_deleted: false };
                    }
                }
                written(
                    retrying(ctx, &mut || self.provider.create(spec(), &self.deps)).await,
                    self.prior.is_some(),
                )
            }
            ActionKind::Delete => {
                let prior = self.prior.clone().unwrap_or_default();
                match retrying(ctx, &mut || self.provider.delete(&a.kind, &prior)).await {
                    Ok(()) => TaskResult::Deleted,
                    Err(error) => TaskResult::Failed { error, prior_deleted: false },
                }
            }
        }
    }
}

/// One provider call: bounded by the deadline, retried while the error says it may help,
/// abandoned between attempts once the walk is interrupted.
async fn retrying<T, F, Fut>(ctx: &mut Ctx, f: &mut F) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let start = Instant::now();
    let mut attempt = 0;
    loop {
        let remaining = ctx.policy.deadline.saturating_sub(start.elapsed());
        let result = tokio::time::timeout(remaining, f()).await.unwrap_or_else(|_| {
            Err(ProviderError::new(ErrorKind::Timeout, format!("no answer within {:?}", ctx.policy.deadline)))
        });
        let error = match result {
            Err(e) if e.kind.is_retryable() => e,
            other => return other,
        };
        attempt += 1;
        let delay = ctx.policy.delay(attempt, &mut rand::thread_rng());
        if start.elapsed() + delay >= ctx.policy.deadline {
            let message =
                format!("{} (gave up after {attempt} attempts in {:.1?})", error.message, start.elapsed());
            return Err(ProviderError { message, ..error });
        }
        if *ctx.cancel.borrow() {
            return Err(error);
        }
        let _ = ctx.retries.send((ctx.i, error.message.clone(), delay));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = ctx.cancel.changed() => return Err(error),
        }
    }
}

/// Records a task's result in state; returns the action's outcome.
fn apply_result(state: &mut State, action: &Action, result: TaskResult, elapsed: Duration) -> Outcome {
    let entry = |observed: Observed, tainted: bool| {
        let spec = action.spec.as_ref().expect("writes carry a spec");
        ResourceState {
            provider: action.provider.clone(),
            kind: action.kind.clone(),
            id: observed.id,
            config: spec.config.clone(),
            attributes: observed.attributes,
            sensitive: observed.sensitive,
            deps: action.deps.clone(),
            tags: action.tags.clone(),
            tainted,
        }
    };
    match result {
        TaskResult::Written(observed) => {
            state.resources.insert(action.address.clone(), entry(observed, false));
            Outcome::Done { elapsed }
        }
        TaskResult::Deleted => {
            state.resources.remove(&action.address);
            Outcome::Done { elapsed }
        }
        TaskResult::Failed { error, prior_deleted } => {
            match error.partial.clone() {
                Some(partial) if action.spec.is_some() => {
                    state.resources.insert(action.address.clone(), entry(partial, true));
                }
                _ if prior_deleted => {
                    state.resources.remove(&action.address);
                }
                _ => {}
            }
            let verb = action.action.verb();
            let error = format!("{verb} failed: {}", redact_text(&error.message, state));
            Outcome::Failed { error, elapsed }
        }
    }
}

/// Why one resource in state could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    NoProvider(#[from] NoProvider),
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// The resources a refresh could not look up, by address.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the current resources")]
pub struct RefreshError {
    /// Sorted by address; messages redacted.
    pub failures: Vec<(String, LookupError)>,
}

impl RefreshError {
    /// One line per distinct message, naming its addresses (a missing credential fails
    /// every resource the same way): `A: message`, or `A and N more: message`.
    pub fn grouped(&self) -> Vec<String> {
        let mut groups: Vec<(String, Vec<&str>)> = vec![];
        for (address, error) in &self.failures {
            let message = error.to_string();
            match groups.iter_mut().find(|(m, _)| *m == message) {
                Some((_, addresses)) => addresses.push(address),
                None => groups.push((message, vec![address])),
            }
        }
        groups
            .into_iter()
            .map(|(message, addresses)| match addresses.as_slice() {
                [first, _, ..] => format!("{first} and {} more: {message}", addresses.len() - 1),
                _ => format!("{}: {message}", addresses.concat()),
            })
            .collect()
    }
}

/// Asks the providers whether each resource in state still exists, and what of it was
/// edited outside labctl, in parallel.
/// Returns the per-address answers, or every lookup that failed.
pub async fn refresh(
    state: &State,
    registry: &dyn Providers,
    options: &Options,
) -> Result<Refreshed, RefreshError> {
    let permits = Arc::new(Semaphore::new(options.parallelism.max(1)));
    let (_cancel_tx, cancel) = watch::channel(false);
    let (retries, _retry_rx) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    let mut failures = vec![];
    for (address, r) in &state.resources {
        let provider = match provider(registry, &r.provider) {
            Ok(provider) => provider,
            Err(e) => {
                failures.push((address.clone(), e.into()));
                continue;
            }
        };
        let (address, kind, prior) = (address.clone(), r.kind.clone(), r.observed());
        let permits = permits.clone();
        let mut ctx = Ctx { i: 0, policy: options.retry, cancel: cancel.clone(), retries: retries.clone() };
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore open");
            // One provider call as far as rate limits, retries and faults go.
            let found = retrying(&mut ctx, &mut || async {
                if provider.read(&kind, &prior).await?.is_none() {
                    return Ok(Refresh::Gone);
                }
                let edits = provider.edits(&kind, &prior).await?;
                Ok(if edits.is_empty() { Refresh::Unchanged } else { Refresh::Edited(edits) })
            })
            .await;
            (address, found)
        });
    }
    let mut refreshed = Refreshed::with_capacity(state.resources.len());
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("refresh tasks do not panic") {
            (address, Ok(refresh)) => {
                refreshed.insert(address, refresh);
            }
            (address, Err(e)) => {
                let e = ProviderError { message: redact_text(&e.message, state), ..e };
                failures.push((address, e.into()));
            }
        }
    }
    if failures.is_empty() {
        Ok(refreshed)
    } else {
        failures.sort_by(|a, b| a.0.cmp(&b.0));
        Err(RefreshError { failures })
    }
}
