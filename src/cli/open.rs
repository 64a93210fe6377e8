//! Opening a lab for a command: the lab file validated by the providers' plugins, its live
//! providers, its state store and lock.

use std::io::Write;
use std::path::{Path, PathBuf};

use labctl_provider_api::ProviderSetup;

use super::args::Place;
use super::error::CliError;
use crate::engine::{self, Options, RetryPolicy};
use crate::lab::{self, Lab};
use crate::registry::{self, Registry};
use crate::report;
use crate::state::{StateLock, StateStore};

/// A validated lab with its provider, live providers and state store.
pub struct Opened {
    pub lab: Lab,
    pub setup: Box<dyn ProviderSetup>,
    pub store: StateStore,
    pub registry: Registry,
}

impl Opened {
    pub fn open(lab_path: &Path, place: &Place) -> Result<Self, CliError> {
        let lab::Loaded { lab, setup } = load_lab(lab_path, place)?;
        let store = store_for(lab_path, &lab, place, setup.as_ref())?;
        let registry = connect(setup.as_ref(), &lab.name)?;
        Ok(Self { lab, setup, store, registry })
    }

    pub fn students(&self) -> usize {
        self.lab.students().count()
    }

    pub fn load_state(&self) -> Result<crate::state::State, CliError> {
        Ok(self.store.load(&self.lab.name)?)
    }

    pub fn lock(&self, operation: &str) -> Result<StateLock, CliError> {
        lock(&self.store, operation)
    }
}

/// The live providers of `setup`; a bad `LABCTL_FAULTS` is invalid input.
pub(super) fn connect(setup: &dyn ProviderSetup, lab: &str) -> Result<Registry, CliError> {
    Registry::connect(setup, lab).map_err(|e| CliError::invalid(e.to_string()))
}

/// The state store: `--state`, else the lab file's `state`, else beside the lab file. A URL
/// a provider offers as a state backend (`s3://bucket/key`) is reached through it.
pub(super) fn store_for(
    lab_path: &Path,
    lab: &Lab,
    place: &Place,
    setup: &dyn ProviderSetup,
) -> Result<StateStore, CliError> {
    let configured = place.state.clone().or_else(|| {
        let state = lab.state.as_ref()?;
        Some(if state.contains("://") {
            PathBuf::from(state)
        } else {
            lab_path.parent().unwrap_or(Path::new(".")).join(state)
        })
    });
    match configured {
        Some(location) => store_at(&location, setup),
        None => Ok(StateStore::beside(lab_path, &lab.name)),
    }
}

/// A state file at `location`, or the remote state a provider offers for that URL.
pub(super) fn store_at(location: &Path, setup: &dyn ProviderSetup) -> Result<StateStore, CliError> {
    let url = location.to_string_lossy();
    let Some((scheme, _)) = url.split_once("://") else { return Ok(StateStore::new(location.to_owned())) };
    let offered = registry::plugins().into_iter().find_map(|p| p.remote_state(&url, setup));
    match offered {
        Some(Ok(remote)) => Ok(StateStore::remote(remote)),
        Some(Err(e)) => Err(CliError::failed(format!("cannot reach the state at {url}: {e}"))),
        None => Err(CliError::invalid(format!(
            "no provider of this build of labctl keeps state at {scheme}:// URLs ({url})"
        ))),
    }
}

/// Prints warnings on stderr.
pub fn warn(warnings: &[String]) {
    let mut err = anstream::stderr();
    for w in warnings {
        let _ = writeln!(
            err,
            "{} {w}",
            report::paint(anstyle::AnsiColor::Yellow.on_default().bold(), "warning:")
        );
    }
}

/// Loads a lab file, printing its diagnostics; invalid input exits 2.
pub fn load_lab(path: &Path, place: &Place) -> Result<lab::Loaded, CliError> {
    let plugins = registry::plugins();
    let cx = lab::Context { plugins: &plugins, data_dir: place.data_dir.clone() };
    match lab::load(path, &cx) {
        Ok(loaded) => {
            warn(&loaded.lab.warnings);
            Ok(loaded)
        }
        Err(diagnostics) => {
            let mut err = anstream::stderr();
            for d in &diagnostics {
                let _ = writeln!(err, "{d}");
            }
            let n = diagnostics.len();
            Err(CliError::invalid(format!(
                "{} is invalid ({n} problem{})",
                path.display(),
                if n == 1 { "" } else { "s" }
            )))
        }
    }
}

pub(super) fn lock(store: &StateStore, operation: &str) -> Result<StateLock, CliError> {
    Ok(store.lock(operation)?)
}

/// Asks the providers what exists now.
pub async fn refresh(o: &Opened, state: &crate::state::State) -> Result<crate::plan::Refreshed, CliError> {
    let options = Options { parallelism: 10, retry: RetryPolicy::default() };
    engine::refresh(state, &o.registry, &options)
        .await
        .map_err(|e| CliError::failed(format!("{e}:\n  {}", e.grouped().join("\n  "))))
}
