//! plan, apply, destroy: the commands that change things.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use labctl_provider_api::{ProviderError, ProviderSetup};

use super::args::{Place, RunOptions, Target};
use super::error::{CliError, EXIT_CHANGES, EXIT_FAILURE, EXIT_INTERRUPTED};
use super::open::{connect, load_lab, lock, refresh, store_at, store_for, Opened};
use crate::engine::{self, Options, RetryPolicy};
use crate::lab;
use crate::plan::{self, Filter, Plan, SavedProvider, PLAN_FORMAT};
use crate::registry::{self, Registry};
use crate::report::{self, Progress};
use crate::state::StateStore;
use crate::state::{LockInfo, ResourceState};

/// The engine's options from the command line; refused when the provider would wait longer
/// than the engine gives an operation (its own message would be lost to a bare timeout).
pub(super) fn engine_options(run: &RunOptions, setup: &dyn ProviderSetup) -> Result<Options, CliError> {
    setup.check_timeout(Duration::from_secs(run.timeout)).map_err(CliError::invalid)?;
    Ok(Options {
        parallelism: run.parallelism as usize,
        retry: RetryPolicy { deadline: Duration::from_secs(run.timeout), ..RetryPolicy::default() },
    })
}

/// Refreshes state through the providers and diffs it against the lab; with `rotate_keys`,
/// every credential is updated too.
pub(super) async fn make_plan(
    o: &Opened,
    state: &crate::state::State,
    rotate_keys: bool,
) -> Result<Plan, CliError> {
    let warnings = o.setup.preflight(&o.lab, &registry::worker_bin_dir()).map_err(CliError::invalid)?;
    super::open::warn(&warnings);
    let refreshed = refresh(o, state).await?;
    let desired = lab::expand(&o.lab, o.setup.as_ref());
    let mut actions = plan::diff(&desired, state, &refreshed, |p, k| o.registry.schema(p, k));
    if rotate_keys {
        let rotates = registry::plugin(o.setup.name()).is_some_and(|p| p.capabilities().key_rotation);
        if !rotates {
            return Err(CliError::invalid(format!(
                "--rotate-keys: the {} provider's credentials are worker tokens, not access keys; \
                 to renew a student's token, destroy and apply their credential (`labctl destroy --student ID`)",
                o.setup.name()
            )));
        }
        plan::force_update(&desired, &mut actions, "credential", "access key rotation (--rotate-keys)");
    }
    Ok(new_plan(o, state, false, actions))
}

fn new_plan(o: &Opened, state: &crate::state::State, destroy: bool, actions: Vec<plan::Action>) -> Plan {
    Plan {
        format: PLAN_FORMAT.into(),
        lab: o.lab.name.clone(),
        lineage: state.lineage.clone(),
        serial: state.serial,
        state_path: o.store.absolute(),
        provider: SavedProvider { name: o.setup.name().to_owned(), settings: o.setup.save() },
        destroy,
        expires: o.lab.expires,
        lab_file: std::path::absolute(&o.lab.path).ok(),
        actions,
        cost: None,
    }
}

/// What the lab file's resources cost, from the file alone (no request is sent).
fn estimate(o: &Opened) -> plan::Estimate {
    let now = jiff::Timestamp::now().as_second();
    let hours = o.lab.expires.map(|at| (at.as_second() - now) as f64 / 3600.0);
    let nodes = lab::expand(&o.lab, o.setup.as_ref());
    plan::Estimate::of(&nodes, o.setup.as_ref(), &o.lab.budget, o.students(), hours)
}

pub(super) async fn plan_command(
    target: &Target,
    out: Option<PathBuf>,
    destroy: bool,
    json: bool,
    detailed_exitcode: bool,
) -> Result<u8, CliError> {
    let o = Opened::open(&target.lab, &target.place)?;
    if !destroy {
        refuse_expired(o.lab.expires, &o.lab.path)?;
    }
    let state = o.load_state()?;
    let plan = if destroy {
        new_plan(&o, &state, true, plan::destroy_plan(&state, &Filter::default()))
    } else {
        Plan { cost: Some(estimate(&o)), ..make_plan(&o, &state, false).await? }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&plan).expect("plans serialise"));
    } else {
        let _ = write!(anstream::stdout(), "{}", report::render_plan(&plan, o.students()));
    }
    if let Some(out) = out {
        plan.save_to(&out)?;
        if !json {
            println!(
                "\nSaved the plan to {}. Apply exactly it with: labctl apply {}",
                out.display(),
                out.display()
            );
        }
    }
    Ok(if detailed_exitcode && !plan.is_empty() { EXIT_CHANGES } else { 0 })
}

/// The switches of `labctl apply`.
pub(super) struct ApplyOptions {
    pub yes: bool,
    pub no_verify: bool,
    pub rotate_keys: bool,
    pub ignore_budget: bool,
}

pub(super) async fn apply(
    path: &Path,
    place: &Place,
    run: &RunOptions,
    opts: ApplyOptions,
) -> Result<u8, CliError> {
    if let Some(plan) = Plan::read_from(path)? {
        return apply_saved_plan(path, plan, run, opts.no_verify).await;
    }
    let o = Opened::open(path, place)?;
    refuse_expired(o.lab.expires, path)?;
    let cost = estimate(&o);
    if let Some(why) = cost.over(&o.lab.budget).filter(|_| !opts.ignore_budget) {
        return Err(CliError::invalid(format!("{}: {why}", path.display())).with_hint(
            "make the lab smaller or cheaper, raise [lab.budget], or apply anyway with --ignore-budget",
        ));
    }
    let options = engine_options(run, o.setup.as_ref())?;
    let lock = o.lock("apply")?;
    let mut state = o.load_state()?;
    let recorded = std::mem::replace(&mut state.expires, o.lab.expires);
    let plan = Plan { cost: Some(cost), ..make_plan(&o, &state, opts.rotate_keys).await? };
    if !run.json {
        let _ = write!(anstream::stdout(), "{}", report::render_plan(&plan, o.students()));
    }
    if plan.is_empty() {
        if recorded != state.expires && o.store.exists() {
            o.store.save(&mut state)?;
        }
        return Ok(0);
    }
    if !opts.yes {
        confirm("apply")?;
    }
    let executed = execute(&plan, &mut state, &o.store, &o.registry, &options, "Apply", run.json).await?;
    drop(lock);
    let verified = (!opts.no_verify).then_some(&o.lab);
    finish_apply(executed, verified, &state, &o.registry, run.json).await
}

/// After an apply: unless it failed, the smoke workloads of `lab` (when there is one to
/// verify, with some, and the provider can run them); then the `--json` summary, with the
/// checks.
async fn finish_apply(
    executed: Executed,
    lab: Option<&lab::Lab>,
    state: &crate::state::State,
    registry: &Registry,
    json: bool,
) -> Result<u8, CliError> {
    let Executed { mut code, mut summary } = executed;
    if let Some(lab) = lab.filter(|lab| code == 0 && !lab.student.smoke.is_empty()) {
        match registry.smoke_runner() {
            Err(why) if !json => println!("\nNot verifying: {why}"),
            Err(_) => {}
            Ok(runner) => {
                if !json {
                    println!("\nVerifying every student's environment (skip with --no-verify):\n");
                }
                let Some(checks) = checks(lab, state, runner, &[]).await else { return Ok(EXIT_INTERRUPTED) };
                if !json {
                    let _ = write!(anstream::stdout(), "{}", report::render_matrix(&checks));
                }
                code = if checks.iter().all(|c| c.passed) { 0 } else { EXIT_FAILURE };
                summary["checks"] = serde_json::json!(checks);
            }
        }
    }
    if json {
        print_json(&summary);
    }
    Ok(code)
}

/// The smoke workloads' checks for `students` (all if empty); `None` if Ctrl-C stopped them.
async fn checks(
    lab: &lab::Lab,
    state: &crate::state::State,
    runner: std::sync::Arc<dyn labctl_provider_api::SmokeRunner>,
    students: &[String],
) -> Option<Vec<crate::verify::Check>> {
    tokio::select! {
        checks = crate::verify::verify(lab, state, runner, students) => Some(checks),
        _ = tokio::signal::ctrl_c() => {
            eprintln!("Interrupted: verification stopped.");
            None
        }
    }
}

/// Runs the smoke workloads and prints the matrix; exit 1 if any check failed.
pub(super) async fn verify(
    o: &Opened,
    students: &[String],
    json: bool,
    junit: Option<&Path>,
) -> Result<u8, CliError> {
    let runner = o.registry.smoke_runner().map_err(CliError::failed)?;
    let state = o.load_state()?;
    let Some(checks) = checks(&o.lab, &state, runner, students).await else { return Ok(EXIT_INTERRUPTED) };
    if json {
        println!("{}", serde_json::to_string_pretty(&checks).expect("checks serialise"));
    } else {
        let _ = write!(anstream::stdout(), "{}", report::render_matrix(&checks));
    }
    if let Some(path) = junit {
        std::fs::write(path, report::junit(&checks))
            .map_err(|e| CliError::failed(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(if checks.iter().all(|c| c.passed) { 0 } else { EXIT_FAILURE })
}

/// Refuses to plan or apply (other than to destroy) a lab past its expiry, `lab` being the
/// lab file or saved plan: tearing it down must stay possible, keeping it must be a decision.
fn refuse_expired(expires: Option<jiff::Timestamp>, lab: &Path) -> Result<(), CliError> {
    match expires {
        Some(at) if at <= jiff::Timestamp::now() => Err(CliError::invalid(format!(
            "{} expired at {at}: plan and apply refuse an expired lab",
            lab.display()
        ))
        .with_hint("tear it down with `labctl destroy`, or to keep it set `expires` later in the lab file")),
        _ => Ok(()),
    }
}

async fn apply_saved_plan(
    path: &Path,
    plan: Plan,
    run: &RunOptions,
    no_verify: bool,
) -> Result<u8, CliError> {
    if !plan.destroy {
        refuse_expired(plan.expires, path)?;
    }
    let plugin = registry::plugin(&plan.provider.name).ok_or_else(|| {
        CliError::invalid(format!(
            "this plan is for the {} provider, which this build of labctl lacks",
            plan.provider.name
        ))
    })?;
    let setup = plugin.restore(plan.provider.settings.clone()).map_err(|e| {
        CliError::invalid(format!("the plan's {} settings are damaged: {e}", plan.provider.name))
    })?;
    let options = engine_options(run, setup.as_ref())?;
    let store = store_at(&plan.state_path, setup.as_ref())?;
    let _lock = lock(&store, "apply")?;
    let mut state = store.load(&plan.lab)?;
    if state.lineage != plan.lineage && store.exists() {
        return Err(CliError::failed(format!(
            "this plan was made for another state (lineage {}), but {} has lineage {}",
            plan.lineage,
            store.path().display(),
            state.lineage
        )));
    }
    if state.serial != plan.serial {
        return Err(CliError::failed(format!(
            "the plan is stale: it was made against state serial {}, and the state is now at serial {}",
            plan.serial, state.serial
        ))
        .with_hint("run `labctl plan` again"));
    }
    state.lineage = plan.lineage.clone();
    if !plan.destroy {
        state.expires = plan.expires;
    }
    let registry = connect(setup.as_ref(), &plan.lab)?;
    let executed = execute(&plan, &mut state, &store, &registry, &options, "Apply", run.json).await?;
    drop(_lock);
    let lab = if plan.destroy || no_verify { None } else { saved_plan_lab(&plan, run.json) };
    finish_apply(executed, lab.as_ref(), &state, &registry, run.json).await
}

/// The lab a saved plan was made from, to verify after applying it: its lab file as it is
/// now (the plan holds no lab); `None`, saying so, when that file no longer holds it.
fn saved_plan_lab(plan: &Plan, json: bool) -> Option<lab::Lab> {
    let file = plan.lab_file.as_ref()?;
    let cx = lab::Context { plugins: &registry::plugins(), data_dir: None };
    match lab::load(file, &cx) {
        Ok(loaded) if loaded.lab.name == plan.lab => Some(loaded.lab),
        _ => {
            if !json {
                println!(
                    "\nNot verifying: {} no longer holds lab `{}`; run `labctl verify`.",
                    file.display(),
                    plan.lab
                );
            }
            None
        }
    }
}

pub(super) async fn destroy(
    target: &Target,
    filter: Filter,
    sweep: bool,
    archive: Option<&Path>,
    run: &RunOptions,
    yes: bool,
) -> Result<u8, CliError> {
    let o = Opened::open(&target.lab, &target.place)?;
    if archive.is_some() {
        super::archive::check_supported(o.setup.name())?;
    }
    for id in &filter.students {
        if !o.lab.students().any(|(_, s)| &s.id == id) {
            tracing::warn!("student `{id}` is not in the lab file; destroying whatever state holds for them");
        }
    }
    let options = engine_options(run, o.setup.as_ref())?;
    let _lock = o.lock("destroy")?;
    // A sweep needs no state: one that cannot be read is left as it is (its backup too),
    // and the destroy keeps its progress in a scratch state instead.
    let (mut state, scratch) = match o.store.load(&o.lab.name) {
        Ok(state) => (state, None),
        Err(e) if sweep && archive.is_none() => {
            let why = CliError::from_error(EXIT_FAILURE, &e).render();
            super::open::warn(&[format!(
                "{why}\n  Destroying what the sweep finds; the state is left as it is."
            )]);
            (crate::state::State::new(&o.lab.name), Some(scratch_store()?))
        }
        Err(e) => return Err(e.into()),
    };
    let store = scratch.as_ref().map_or(&o.store, |(_, store)| store);
    if sweep {
        adopt_orphans(&o.registry, &o.lab.name, &mut state, &filter).await?;
    }
    let mut plan = new_plan(&o, &state, true, plan::destroy_plan(&state, &filter));
    if !run.json {
        let mut out = anstream::stdout();
        let _ = write!(out, "{}", report::render_plan(&plan, o.students()));
        if let Some(dir) = archive {
            let _ = writeln!(out, "First each student's bucket is copied into {}/<student>/.", dir.display());
        }
    }
    let mut kept = vec![];
    if !plan.is_empty() {
        if !yes {
            confirm("destroy")?;
        }
        if let Some(dir) = archive {
            kept = super::archive::archive_buckets(
                &plan,
                &state,
                &o.registry,
                dir,
                options.parallelism,
                run.json,
            )
            .await;
            let addresses: Vec<String> = kept.iter().flat_map(|k| k.addresses.clone()).collect();
            plan.actions = plan::keep(std::mem::take(&mut plan.actions), &state, &addresses);
        }
        let Executed { code, summary } =
            execute(&plan, &mut state, store, &o.registry, &options, "Destroy", run.json).await?;
        if run.json {
            print_json(&summary);
        }
        if let (Some(dir), false) = (archive, kept.is_empty()) {
            return Err(super::archive::kept_error(&kept, dir));
        }
        if code != 0 {
            return Ok(code);
        }
    }
    if !filter.is_empty() {
        return Ok(0);
    }
    // Prove it: ask every provider what still carries the lab's tags.
    let left = leftovers(&o.registry, &o.lab.name).await;
    if left.is_empty() {
        if scratch.is_some() && !run.json {
            println!(
                "Nothing of lab `{}` is left; its unreadable state {} can be deleted.",
                o.lab.name,
                o.store.path().display()
            );
        }
        return Ok(0);
    }
    Err(CliError::failed(format!(
        "these resources of lab `{}` still exist:\n  {}\n  Run `labctl destroy --sweep` to remove them.",
        o.lab.name,
        left.join("\n  ")
    )))
}

/// A state store in a scratch directory (gone with the directory), for a destroy whose
/// progress no state of the lab's can keep.
pub(super) fn scratch_store() -> Result<(tempfile::TempDir, StateStore), CliError> {
    let dir =
        tempfile::tempdir().map_err(|e| CliError::failed("cannot make a scratch state").caused_by(&e))?;
    let store = StateStore::new(dir.path().join("scratch.state.json"));
    Ok((dir, store))
}

/// What every provider still finds of `lab`, as lines naming it; or why it cannot tell.
pub(super) async fn leftovers(registry: &Registry, lab: &str) -> Vec<String> {
    let mut left = vec![];
    for provider in registry.all() {
        match provider.sweep(lab).await {
            Ok(found) => {
                left.extend(found.into_iter().map(|f| format!("{} {} `{}`", provider.name(), f.kind, f.id)))
            }
            Err(e) => left.push(format!("cannot check the {} provider: {e}", provider.name())),
        }
    }
    left
}

/// Adds every tagged resource the providers know but state does not to state (in memory),
/// under an `orphan.<kind>["<id>"]` address, so that destroy deletes it like any other.
/// Providers list what they find in a safe deletion order; each orphan is made to depend on
/// the orphans of the kind listed after its own, so destroy keeps that order.
pub(super) async fn adopt_orphans(
    registry: &Registry,
    lab: &str,
    state: &mut crate::state::State,
    filter: &Filter,
) -> Result<(), CliError> {
    for live in registry.all() {
        let found = live.sweep(lab).await.map_err(|e: ProviderError| {
            CliError::failed(format!("cannot sweep the {} provider: {e}", live.name()))
        })?;
        let provider = live.name();
        let orphans: Vec<_> = found
            .into_iter()
            .filter(|f| filter.matches(&f.tags))
            // By id alone: a sweep may name a kind differently (the artifacts bucket is a bucket).
            .filter(|f| !state.resources.values().any(|r| r.provider == provider && r.id == f.id))
            .collect();
        let address = |f: &labctl_provider_api::Found| format!("orphan.{}[\"{}\"]", f.kind, f.id);
        for (i, f) in orphans.iter().enumerate() {
            let next_kind = orphans[i..].iter().map(|n| &n.kind).find(|k| **k != f.kind);
            let deps = orphans.iter().filter(|n| Some(&n.kind) == next_kind).map(address).collect();
            let entry = ResourceState {
                provider: provider.to_owned(),
                kind: f.kind.clone(),
                id: f.id.clone(),
                config: Default::default(),
                attributes: Default::default(),
                sensitive: vec![],
                deps,
                tags: f.tags.clone(),
                tainted: false,
            };
            state.resources.insert(address(f), entry);
        }
    }
    Ok(())
}

/// What running a plan did.
pub(super) struct Executed {
    pub code: u8,
    /// The summary as `--json` prints it (the caller prints it; the text one is printed).
    pub summary: serde_json::Value,
}

/// Runs `plan`, printing progress and, unless `json`, the summary.
pub(super) async fn execute(
    plan: &Plan,
    state: &mut crate::state::State,
    store: &StateStore,
    registry: &Registry,
    options: &Options,
    verb: &str,
    json: bool,
) -> Result<Executed, CliError> {
    let mut interrupts = engine::Interrupts::from_signals()
        .map_err(|e| CliError::failed("cannot watch for Ctrl-C").caused_by(&e))?;
    let mut progress = Progress::new(plan.actions.len());
    let report = engine::execute(plan, state, store, registry, options, &mut interrupts, &mut progress).await;
    progress.finish();
    if report.abandoned {
        // Interrupted twice: leave now, without waiting for the work the walk abandoned.
        let _ = writeln!(
            anstream::stderr(),
            "Interrupted again: abandoned what was in flight; the next run adopts it."
        );
        std::process::exit(EXIT_INTERRUPTED.into());
    }
    if !json {
        let _ = write!(anstream::stdout(), "\n{}", report::render_summary(verb, plan, &report));
    }
    let code = if report.interrupted {
        EXIT_INTERRUPTED
    } else if report.is_success() {
        0
    } else {
        EXIT_FAILURE
    };
    Ok(Executed { code, summary: report::summary_json(plan, &report) })
}

/// Prints `value` as pretty JSON on stdout.
pub(super) fn print_json(value: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

/// Asks on the terminal; refuses when there is nobody to ask.
pub(super) fn confirm(what: &str) -> Result<(), CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::invalid(format!(
            "refusing to {what} without confirmation: standard input is not a terminal. Pass --yes to {what} anyway."
        )));
    }
    print!("\nDo you want to {what}? Only `yes` is accepted: ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(CliError::failed(format!("{what} cancelled")))
    }
}

pub(super) fn unlock(target: &Target) -> Result<u8, CliError> {
    let lab::Loaded { lab, setup } = load_lab(&target.lab, &target.place)?;
    let store = store_for(&target.lab, &lab, &target.place, setup.as_ref())?;
    let holder: Option<LockInfo> = store.lock_holder();
    match store.force_unlock() {
        Ok(()) => {
            match holder {
                Some(h) => println!("Broke the lock held by {h}."),
                None => println!("Removed the lock of {}.", store.path().display()),
            }
            Ok(0)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("The state of lab `{}` is not locked.", lab.name);
            Ok(0)
        }
        Err(e) => {
            Err(CliError::failed(format!("cannot remove the lock of {}", store.path().display()))
                .caused_by(&e))
        }
    }
}
