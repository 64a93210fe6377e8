//! `labctl reap`: every lab past its expiry, found through the providers' own listings
//! (their `labctl/lab` and `labctl/expires` tags) with no lab file or state, which may be
//! lost; with `--yes`, each destroyed through a sweep (its students' buckets first copied
//! into `--archive DIR/<lab>/<student>/`) and checked to be gone.

use std::io::Write;
use std::path::{Path, PathBuf};

use labctl_provider_api::{Found, Observed, ProviderSetup};
use serde::Serialize;

use super::archive::{archive_buckets, check_supported, kept_error};
use super::args::RunOptions;
use super::commands::{
    adopt_orphans, engine_options, execute, leftovers, print_json, scratch_store, Executed,
};
use super::error::{CliError, EXIT_FAILURE, EXIT_INTERRUPTED};
use super::open::connect;
use crate::engine::Providers;
use crate::lab;
use crate::plan::{self, Filter, Plan, SavedProvider, PLAN_FORMAT};
use crate::registry::{self, Registry};
use crate::state::State;

/// The lab name the providers are connected for to list every lab.
const LISTING: &str = "labctl-reap";

/// A lab some provider holds resources of.
#[derive(Debug, Serialize)]
struct Listed {
    lab: String,
    provider: String,
    /// The latest expiry its resources carry: a lab whose expiry moved is never reaped early.
    expires: Option<jiff::Timestamp>,
    expired: bool,
    resources: usize,
    /// With `--yes`: what is left after the destroy (empty: all gone).
    #[serde(skip_serializing_if = "Option::is_none")]
    left: Option<Vec<String>>,
    /// With `--yes`: the destroy's summary, as `destroy --json` prints it.
    #[serde(skip_serializing_if = "Option::is_none")]
    destroy: Option<serde_json::Value>,
}

pub(super) async fn reap(
    files: &[PathBuf],
    data_dir: Option<PathBuf>,
    archive: Option<&Path>,
    run: &RunOptions,
    yes: bool,
) -> Result<u8, CliError> {
    let setups = configure(files, data_dir)?;
    if archive.is_some() {
        for setup in &setups {
            check_supported(setup.name())?;
        }
    }
    let now = jiff::Timestamp::now();
    let mut labs = vec![];
    for setup in &setups {
        for (lab, found) in listing(setup.as_ref()).await? {
            let expires = found.iter().filter_map(|f| f.tags.expires).max();
            let expired = expires.is_some_and(|at| at <= now);
            let provider = setup.name().to_owned();
            let resources = found.len();
            labs.push(Listed { lab, provider, expires, expired, resources, left: None, destroy: None });
        }
    }
    let mut out = anstream::stdout();
    if !run.json {
        let _ = write!(out, "{}", render(&labs, yes));
    }
    let mut code = 0;
    if yes {
        for found in labs.iter_mut().filter(|l| l.expired) {
            let setup = setups.iter().find(|s| s.name() == found.provider).expect("listed by this setup");
            if !run.json {
                let _ = writeln!(out, "\nReaping lab `{}` ({}):", found.lab, found.provider);
            }
            let (destroyed, left) = destroy(setup.as_ref(), &found.lab, run, archive).await?;
            if destroyed.code == EXIT_INTERRUPTED {
                return Ok(EXIT_INTERRUPTED);
            }
            if destroyed.code != 0 || !left.is_empty() {
                code = EXIT_FAILURE;
            }
            if !run.json {
                let _ = match left.is_empty() {
                    true => writeln!(out, "Nothing of lab `{}` is left.", found.lab),
                    false => writeln!(out, "Still there of lab `{}`:\n  {}", found.lab, left.join("\n  ")),
                };
            }
            found.left = Some(left);
            found.destroy = Some(destroyed.summary);
        }
    }
    if run.json {
        print_json(&serde_json::json!({ "labs": labs }));
    }
    Ok(code)
}

/// The provider setups the files name; their diagnostics printed, invalid input exits 2.
fn configure(files: &[PathBuf], data_dir: Option<PathBuf>) -> Result<Vec<Box<dyn ProviderSetup>>, CliError> {
    let plugins = registry::plugins();
    let cx = lab::Context { plugins: &plugins, data_dir };
    let mut setups = vec![];
    for file in files {
        match lab::providers::setups(file, &cx) {
            Ok(found) => setups.extend(found),
            Err(diagnostics) => {
                let mut err = anstream::stderr();
                for d in &diagnostics {
                    let _ = writeln!(err, "{d}");
                }
                return Err(CliError::invalid(format!("{} says nowhere to look for labs", file.display())));
            }
        }
    }
    Ok(setups)
}

/// Every lab `setup`'s providers hold resources of, with what they hold.
async fn listing(setup: &dyn ProviderSetup) -> Result<Vec<(String, Vec<Found>)>, CliError> {
    let cannot = |what: &str, e: &dyn std::fmt::Display| {
        CliError::failed(format!("cannot list the labs of the {} provider: {what}: {e}", setup.name()))
    };
    let mut labs = std::collections::BTreeSet::new();
    // The providers' listings span labs: this one is connected for none in particular.
    for provider in connect(setup, LISTING)?.all() {
        labs.extend(provider.labs().await.map_err(|e| cannot("listing", &e))?);
    }
    let mut listing = vec![];
    for lab in labs {
        let mut found = vec![];
        for provider in connect(setup, &lab)?.all() {
            found.extend(provider.sweep(&lab).await.map_err(|e| cannot(&format!("sweeping {lab}"), &e))?);
        }
        // A lab whose last resources are being deleted may still be listed.
        if !found.is_empty() {
            listing.push((lab, found));
        }
    }
    Ok(listing)
}

/// Destroys everything of `lab` the sweep finds, keeping its progress in a scratch state;
/// what the destroy did and what is still there after it.
async fn destroy(
    setup: &dyn ProviderSetup,
    lab: &str,
    run: &RunOptions,
    archive: Option<&Path>,
) -> Result<(Executed, Vec<String>), CliError> {
    let registry = connect(setup, lab)?;
    let options = engine_options(run, setup)?;
    let mut state = State::new(lab);
    adopt_orphans(&registry, lab, &mut state, &Filter::default()).await?;
    if archive.is_some() {
        name_buckets(&registry, &mut state).await?;
    }
    let (_scratch, store) = scratch_store()?;
    let mut plan = Plan {
        format: PLAN_FORMAT.into(),
        lab: lab.to_owned(),
        lineage: state.lineage.clone(),
        serial: state.serial,
        state_path: store.absolute(),
        provider: SavedProvider { name: setup.name().to_owned(), settings: setup.save() },
        destroy: true,
        expires: None,
        lab_file: None,
        actions: plan::destroy_plan(&state, &Filter::default()),
        cost: None,
    };
    if let Some(dir) = archive {
        let dir = dir.join(lab);
        let kept = archive_buckets(&plan, &state, &registry, &dir, options.parallelism, run.json).await;
        if !kept.is_empty() {
            let _ = writeln!(anstream::stderr(), "error: {}", kept_error(&kept, &dir).render());
        }
        let addresses: Vec<String> = kept.into_iter().flat_map(|k| k.addresses).collect();
        plan.actions = plan::keep(std::mem::take(&mut plan.actions), &state, &addresses);
    }
    let executed = execute(&plan, &mut state, &store, &registry, &options, "Reap", run.json).await?;
    Ok((executed, leftovers(&registry, lab).await))
}

/// Gives each student's swept bucket its student's address and what its provider reads of
/// it, so that the archive finds it as `destroy --archive` does. The lab file, which names
/// the seeded datasets, is gone: they are archived with the rest.
async fn name_buckets(registry: &Registry, state: &mut State) -> Result<(), CliError> {
    let buckets: Vec<(String, String)> = state
        .resources
        .iter()
        .filter(|(_, r)| r.kind == "bucket")
        .filter_map(|(address, r)| Some((address.clone(), r.tags.student.clone()?)))
        .collect();
    for (orphan, student) in buckets {
        let mut bucket = state.resources.remove(&orphan).expect("listed above");
        let provider = registry.provider(&bucket.provider).expect("the sweep's own provider");
        let prior = Observed { id: bucket.id.clone(), ..Observed::default() };
        let read = provider.read("bucket", &prior).await.map_err(|e| {
            CliError::failed(format!("cannot read {student}'s bucket `{}` to archive it: {e}", bucket.id))
        })?;
        bucket.attributes = read.map(|o| o.attributes).unwrap_or_default();
        let address = format!("student[\"{student}\"].bucket");
        for dep in state.resources.values_mut().flat_map(|r| r.deps.iter_mut()).filter(|d| **d == orphan) {
            *dep = address.clone();
        }
        state.resources.insert(address, bucket);
    }
    Ok(())
}

/// What was found, expired first.
fn render(labs: &[Listed], yes: bool) -> String {
    let mut s = String::new();
    let (expired, kept): (Vec<&Listed>, Vec<&Listed>) = labs.iter().partition(|l| l.expired);
    if expired.is_empty() {
        s.push_str("No lab is past its expiry.\n");
    } else {
        s.push_str(&format!("Past their expiry ({}):\n", expired.len()));
        for l in &expired {
            let at = l.expires.map(|at| at.to_string()).unwrap_or_default();
            s.push_str(&format!(
                "  {} on {}: expired at {at}, {} resources\n",
                l.lab, l.provider, l.resources
            ));
        }
    }
    if !kept.is_empty() {
        s.push_str(&format!("Kept ({}):\n", kept.len()));
        for l in &kept {
            let until = l.expires.map_or_else(|| "no expiry".to_owned(), |at| format!("expires at {at}"));
            s.push_str(&format!("  {} on {}: {until}, {} resources\n", l.lab, l.provider, l.resources));
        }
    }
    if !expired.is_empty() && !yes {
        s.push_str("\nRun again with --yes to destroy the labs past their expiry.\n");
    }
    s
}
