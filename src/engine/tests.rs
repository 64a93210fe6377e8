//! The walk against a scripted in-memory provider, in paused tokio time: retries and their
//! deadline, partial failure, tainting, panics, Ctrl-C — no binary, no sockets, no waiting.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use labctl_provider_api::{
    attrs, Deps, ErrorKind, Found, KindSchema, Node, Observed, Provider, ProviderError, ResourceSpec, Tags,
};
use serde_json::json;
use tempfile::TempDir;

use super::*;
use crate::plan::{diff, SavedProvider, PLAN_FORMAT};

/// What one call of the scripted provider does; calls without a script succeed at once.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Fails once with this kind.
    Fail(ErrorKind),
    /// Fails with this kind on this call and every later one.
    Forever(ErrorKind),
    /// A create that fails half-way, leaving something behind.
    Partial,
    /// Takes this many seconds, then succeeds.
    Sleep(u64),
    /// Never answers.
    Hang,
    Panic,
}

/// An in-memory provider of `thing`s (a change of `size` forces a replacement) that does
/// what its script says and records every call.
#[derive(Default)]
struct Scripted {
    script: Mutex<HashMap<String, VecDeque<Step>>>,
    calls: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

const KINDS: &[KindSchema] = &[KindSchema { name: "thing", replace_on: &["size"] }];

impl Scripted {
    /// Scripts the calls `call` (`create a`, `delete a`, …) make, in order.
    fn on(&self, call: &str, steps: impl IntoIterator<Item = Step>) {
        self.script.lock().unwrap().entry(call.to_owned()).or_default().extend(steps);
    }

    /// How many times `op` (`create`, `delete`, …) was called for `address`.
    fn attempts(&self, op: &str, address: &str) -> usize {
        let call = format!("{op} {address}");
        self.calls.lock().unwrap().iter().filter(|c| **c == call).count()
    }

    async fn step(&self, op: &str, address: &str) -> Result<(), ProviderError> {
        let call = format!("{op} {address}");
        self.calls.lock().unwrap().push(call.clone());
        let step = {
            let mut script = self.script.lock().unwrap();
            let steps = script.entry(call).or_default();
            match steps.front() {
                Some(Step::Forever(_)) => steps.front().copied(),
                _ => steps.pop_front(),
            }
        };
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let result = match step {
            None => Ok(()),
            Some(Step::Fail(kind) | Step::Forever(kind)) => {
                Err(ProviderError::new(kind, format!("{kind:?}")))
            }
            Some(Step::Partial) => Err(ProviderError::fatal("half made")
                .with_partial(Observed { id: address.to_owned(), ..Observed::default() })),
            Some(Step::Sleep(secs)) => {
                tokio::time::sleep(Duration::from_secs(secs)).await;
                Ok(())
            }
            Some(Step::Hang) => std::future::pending().await,
            Some(Step::Panic) => panic!("scripted panic"),
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

#[async_trait]
impl Provider for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    fn kinds(&self) -> &[KindSchema] {
        KINDS
    }

    async fn read(&self, _kind: &str, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
        Ok(Some(prior.clone()))
    }

    async fn create(&self, spec: &ResourceSpec, _deps: &Deps) -> Result<Observed, ProviderError> {
        self.step("create", &spec.address).await?;
        Ok(Observed { id: spec.address.clone(), attributes: spec.config.clone(), sensitive: vec![] })
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        deps: &Deps,
    ) -> Result<Observed, ProviderError> {
        self.create(spec, deps).await
    }

    async fn delete(&self, _kind: &str, prior: &Observed) -> Result<(), ProviderError> {
        self.step("delete", &prior.id).await
    }

    async fn sweep(&self, _lab: &str) -> Result<Vec<Found>, ProviderError> {
        Ok(vec![])
    }

    async fn retag(&self, spec: &ResourceSpec, prior: &Observed) -> Result<Observed, ProviderError> {
        self.step("retag", &spec.address).await?;
        Ok(prior.clone())
    }

    async fn labs(&self) -> Result<Vec<String>, ProviderError> {
        Ok(vec![])
    }
}

impl Providers for Arc<Scripted> {
    fn provider(&self, name: &str) -> Option<Arc<dyn Provider>> {
        (name == "scripted").then(|| self.clone() as Arc<dyn Provider>)
    }
}

/// Every event as a line: `start a`, `retry a`, `done a`, `failed a: …`, `skipped a: …`.
#[derive(Default)]
struct Log(Vec<String>);

impl Observer for Log {
    fn event(&mut self, event: Event<'_>) {
        self.0.push(match event {
            Event::Started(a) => format!("start {}", a.address),
            Event::Retrying { action, .. } => format!("retry {}", action.address),
            Event::Finished { action, outcome: Outcome::Done { .. } } => format!("done {}", action.address),
            Event::Finished { action, outcome: Outcome::Failed { error, .. } } => {
                format!("failed {}: {error}", action.address)
            }
            Event::Finished { action, outcome: Outcome::Skipped { because } } => {
                format!("skipped {}: {because}", action.address)
            }
            Event::Interrupted { in_flight } => format!("interrupted with {in_flight} in flight"),
        });
    }
}

impl Log {
    fn count(&self, prefix: &str) -> usize {
        self.0.iter().filter(|l| l.starts_with(prefix)).count()
    }
}

/// A lab of `thing`s, its state on disk, and the scripted provider behind it.
struct World {
    provider: Arc<Scripted>,
    state: State,
    store: StateStore,
    options: Options,
    _dir: TempDir,
}

/// A `thing` at `address` of `size`, needing `deps` first.
fn thing(address: &str, size: u32, deps: &[&str]) -> Node {
    Node {
        provider: "scripted".into(),
        spec: ResourceSpec {
            address: address.into(),
            kind: "thing".into(),
            config: attrs(json!({ "size": size })),
            tags: Tags { lab: "lab".into(), ..Tags::default() },
        },
        deps: deps.iter().map(|d| (*d).to_owned()).collect(),
        after: vec![],
    }
}

fn things(addresses: &[&str]) -> Vec<Node> {
    addresses.iter().map(|a| thing(a, 1, &[])).collect()
}

impl World {
    fn new(parallelism: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let retry = RetryPolicy {
            base: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            deadline: Duration::from_secs(60),
        };
        Self {
            provider: Arc::default(),
            state: State::new("lab"),
            store: StateStore::new(dir.path().join("lab.state.json")),
            options: Options { parallelism, retry },
            _dir: dir,
        }
    }

    /// The plan taking the current state to `desired`.
    fn plan(&self, desired: &[Node]) -> Plan {
        let actions =
            diff(desired, &self.state, &Refreshed::new(), |_, kind| KINDS.iter().find(|k| k.name == kind));
        Plan {
            format: PLAN_FORMAT.into(),
            lab: "lab".into(),
            lineage: self.state.lineage.clone(),
            serial: self.state.serial,
            state_path: self.store.path(),
            provider: SavedProvider { name: "scripted".into(), settings: serde_json::Value::Null },
            destroy: false,
            expires: None,
            lab_file: None,
            actions,
            cost: None,
        }
    }

    /// Applies `desired`, sending an interrupt at each of `interrupts_at` (from the start).
    async fn apply(&mut self, desired: &[Node], interrupts_at: &[u64]) -> (Report, Log) {
        let plan = self.plan(desired);
        let (tx, mut interrupts) = Interrupts::channel();
        let at: Vec<Duration> = interrupts_at.iter().map(|ms| Duration::from_millis(*ms)).collect();
        tokio::spawn(async move {
            let start = Instant::now();
            for t in at {
                tokio::time::sleep_until(start + t).await;
                let _ = tx.send(());
            }
            std::future::pending::<()>().await
        });
        let mut log = Log::default();
        let report = execute(
            &plan,
            &mut self.state,
            &self.store,
            &self.provider,
            &self.options,
            &mut interrupts,
            &mut log,
        )
        .await;
        (report, log)
    }

    fn recorded(&self) -> Vec<&str> {
        self.state.resources.keys().map(String::as_str).collect()
    }

    /// What the state file on disk holds, which must be what the walk knows.
    fn saved(&self) -> Vec<String> {
        self.store.load("lab").unwrap().resources.into_keys().collect()
    }
}

#[tokio::test(start_paused = true)]
async fn dependencies_come_first_and_parallelism_is_bounded() {
    let mut w = World::new(2);
    let mut nodes = things(&["a", "b", "c", "d", "e", "f"]);
    nodes.push(thing("top", 1, &["a", "b", "c", "d", "e", "f"]));
    for a in ["a", "b", "c", "d", "e", "f"] {
        w.provider.on(&format!("create {a}"), [Step::Sleep(5)]);
    }
    let (report, log) = w.apply(&nodes, &[]).await;
    assert!(report.is_success(), "{:?}", log.0);
    assert_eq!(w.provider.peak.load(Ordering::SeqCst), 2);
    // Three rounds of two five-second creates, then `top`: no idle slot, no overlap.
    assert_eq!(report.elapsed.as_secs(), 15, "{:?}", report.elapsed);
    let calls = w.provider.calls.lock().unwrap().clone();
    assert_eq!(calls.last().map(String::as_str), Some("create top"), "{calls:?}");
    assert_eq!(w.saved(), ["a", "b", "c", "d", "e", "f", "top"]);
}

#[tokio::test(start_paused = true)]
async fn a_moved_expiry_retags_without_updating_and_is_recorded() {
    let mut w = World::new(2);
    let mut nodes = things(&["a", "b"]);
    w.apply(&nodes, &[]).await;
    let later: jiff::Timestamp = "2031-01-01T00:00:00Z".parse().unwrap();
    nodes.iter_mut().for_each(|n| n.spec.tags.expires = Some(later));
    // `a` only moves its expiry; `b` also changes in place (its update is `create b`).
    nodes[1].spec.config = attrs(json!({ "size": 1, "note": "x" }));
    w.provider.on("retag a", [Step::Fail(ErrorKind::Throttled)]);
    let (report, log) = w.apply(&nodes, &[]).await;
    assert!(report.is_success(), "{:?}", log.0);
    let mut calls = w.provider.calls.lock().unwrap()[2..].to_vec();
    calls.sort();
    assert_eq!(calls, ["create b", "retag a", "retag a", "retag b"]);
    let saved = w.store.load("lab").unwrap();
    assert!(saved.resources.values().all(|r| r.tags.expires == Some(later)));
    assert!(w.plan(&nodes).actions.is_empty());
}

#[tokio::test(start_paused = true)]
async fn retryable_errors_are_retried_with_backoff_until_they_succeed() {
    let mut w = World::new(4);
    w.provider.on("create a", [Step::Fail(ErrorKind::Throttled), Step::Fail(ErrorKind::Unavailable)]);
    let (report, log) = w.apply(&things(&["a"]), &[]).await;
    assert!(report.is_success(), "{:?}", log.0);
    assert_eq!(w.provider.attempts("create", "a"), 3);
    assert_eq!(log.count("retry a"), 2);
    // Equal jitter on a 200 ms base: 100–200 ms, then 200–400 ms.
    assert!(report.elapsed >= Duration::from_millis(300), "{:?}", report.elapsed);
    assert!(report.elapsed <= Duration::from_millis(600), "{:?}", report.elapsed);
}

#[tokio::test(start_paused = true)]
async fn retries_give_up_at_the_deadline_with_how_long_they_tried() {
    let mut w = World::new(4);
    w.provider.on("create a", [Step::Forever(ErrorKind::Throttled)]);
    let (report, log) = w.apply(&things(&["a"]), &[]).await;
    let attempts = w.provider.attempts("create", "a");
    assert!(attempts > 5, "{attempts}");
    assert!(report.elapsed <= Duration::from_secs(60), "{:?}", report.elapsed);
    let failed = log.0.iter().find(|l| l.starts_with("failed a")).unwrap();
    assert!(
        failed.contains(&format!("create failed: Throttled (gave up after {attempts} attempts in")),
        "{failed}"
    );
    assert!(w.recorded().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_operation_that_never_answers_times_out_at_the_deadline() {
    let mut w = World::new(4);
    w.provider.on("create a", [Step::Hang]);
    let (report, log) = w.apply(&things(&["a", "b"]), &[]).await;
    assert_eq!(report.failed(), 1, "{:?}", log.0);
    assert!(
        log.0.iter().any(|l| l.starts_with("failed a: create failed: no answer within 60s")),
        "{:?}",
        log.0
    );
    assert!(report.elapsed >= Duration::from_secs(60), "{:?}", report.elapsed);
    assert_eq!(w.recorded(), ["b"]);
}

#[tokio::test(start_paused = true)]
async fn an_invalid_request_fails_at_once_and_skips_only_its_dependents() {
    let mut w = World::new(4);
    w.provider.on("create a", [Step::Fail(ErrorKind::Invalid)]);
    let nodes = vec![thing("a", 1, &[]), thing("b", 1, &["a"]), thing("c", 1, &["b"]), thing("d", 1, &[])];
    let (report, log) = w.apply(&nodes, &[]).await;
    assert_eq!(w.provider.attempts("create", "a"), 1);
    assert_eq!(report.failed(), 1);
    assert!(log.0.contains(&"skipped b: a".to_owned()), "{:?}", log.0);
    assert!(log.0.contains(&"skipped c: a".to_owned()), "{:?}", log.0);
    assert_eq!(w.recorded(), ["d"]);
    assert_eq!(w.saved(), ["d"]);

    // The next apply makes what is missing, in order.
    let (report, log) = w.apply(&nodes, &[]).await;
    assert!(report.is_success(), "{:?}", log.0);
    assert_eq!(w.recorded(), ["a", "b", "c", "d"]);
}

#[tokio::test(start_paused = true)]
async fn a_create_that_fails_half_way_is_tainted_and_replaced_next_time() {
    let mut w = World::new(4);
    w.provider.on("create a", [Step::Partial]);
    let (report, _) = w.apply(&things(&["a"]), &[]).await;
    assert_eq!(report.failed(), 1);
    assert!(w.state.resources["a"].tainted);
    assert!(w.store.load("lab").unwrap().resources["a"].tainted, "the taint is saved");

    let plan = w.plan(&things(&["a"]));
    assert_eq!(plan.actions.len(), 1);
    assert_eq!(plan.actions[0].action, ActionKind::Replace);
    assert_eq!(plan.actions[0].reason.as_deref(), Some("tainted: its creation did not finish"));
    let (report, _) = w.apply(&things(&["a"]), &[]).await;
    assert!(report.is_success());
    assert_eq!(w.provider.attempts("delete", "a"), 1, "what the half-made create left is deleted");
    assert!(!w.state.resources["a"].tainted);
    assert!(w.plan(&things(&["a"])).actions.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_replace_whose_create_fails_forgets_what_it_deleted() {
    let mut w = World::new(4);
    w.apply(&[thing("a", 1, &[])], &[]).await;
    // The second create (of the replacement) fails.
    w.provider.on("create a", [Step::Fail(ErrorKind::Invalid)]);
    let (report, log) = w.apply(&[thing("a", 2, &[])], &[]).await;
    assert_eq!(report.failed(), 1, "{:?}", log.0);
    assert_eq!(w.provider.attempts("delete", "a"), 1);
    assert!(w.recorded().is_empty(), "the old one is gone and the new one was not made");
    let plan = w.plan(&[thing("a", 2, &[])]);
    assert_eq!(plan.actions[0].action, ActionKind::Create);
}

#[tokio::test(start_paused = true)]
async fn a_provider_that_panics_fails_its_resource_only() {
    let mut w = World::new(4);
    w.provider.on("create a", [Step::Panic]);
    let (report, log) = w.apply(&things(&["a", "b", "c"]), &[]).await;
    assert_eq!(report.failed(), 1);
    assert!(
        log.0.contains(&"failed a: create failed: the provider panicked: scripted panic".to_owned()),
        "{:?}",
        log.0
    );
    assert_eq!(w.recorded(), ["b", "c"]);
}

#[tokio::test(start_paused = true)]
async fn the_first_interrupt_lets_work_in_flight_finish_and_starts_nothing_new() {
    let mut w = World::new(3);
    for a in ["a", "b", "c", "d"] {
        w.provider.on(&format!("create {a}"), [Step::Sleep(10)]);
    }
    // `r` is retrying when the interrupt comes: it stops at once instead of at the deadline.
    w.provider.on("create r", [Step::Forever(ErrorKind::Unavailable)]);
    let (report, log) = w.apply(&things(&["a", "b", "r", "c", "d"]), &[1_000]).await;
    assert!(report.interrupted && !report.abandoned);
    assert!(log.0.contains(&"interrupted with 3 in flight".to_owned()), "{:?}", log.0);
    assert_eq!(report.elapsed.as_secs(), 10, "in-flight creates ran to the end");
    assert_eq!(w.recorded(), ["a", "b"]);
    assert_eq!(w.saved(), ["a", "b"]);
    assert!(log.0.iter().any(|l| l.starts_with("failed r: create failed: Unavailable")), "{:?}", log.0);
    assert!(log.0.contains(&"skipped c: interrupted".to_owned()), "{:?}", log.0);
    assert_eq!(w.provider.attempts("create", "c"), 0);
    assert!(!report.is_success());
}

#[tokio::test(start_paused = true)]
async fn a_second_interrupt_abandons_work_in_flight_with_state_saved() {
    let mut w = World::new(2);
    w.provider.on("create slow", [Step::Sleep(100)]);
    let (report, log) = w.apply(&things(&["fast", "slow", "later"]), &[1_000, 2_000]).await;
    assert!(report.interrupted && report.abandoned, "{:?}", log.0);
    assert!(report.elapsed < Duration::from_secs(3), "{:?}", report.elapsed);
    // `later` started in the slot `fast` left; `slow` was abandoned.
    assert_eq!(w.saved(), ["fast", "later"]);
    assert_eq!(report.outcomes.iter().filter(|o| matches!(o, Outcome::Skipped { .. })).count(), 1);

    // The next apply adopts what was abandoned.
    let (report, _) = w.apply(&things(&["fast", "slow", "later"]), &[]).await;
    assert!(report.is_success());
    assert_eq!(w.recorded(), ["fast", "later", "slow"]);
}
