//! The composition root: the one place that lists labctl's providers (each but the
//! embedded `local` behind its cargo feature), and the live providers of one lab, each
//! wrapped in its rate limit and, for tests and drills, injected faults.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use labctl_provider_api::decorate::{FaultError, Faulty, RateLimited};
use labctl_provider_api::{KindSchema, NullProvider, Plugin, Provider, ProviderSetup, SmokeRunner};

use crate::engine::Providers;

/// Every provider this build of labctl has. Adding a provider is one crate and one line.
pub fn plugins() -> Vec<&'static dyn Plugin> {
    vec![
        &labctl_provider_local::LocalPlugin,
        #[cfg(feature = "aws")]
        &labctl_provider_aws::AwsPlugin,
        #[cfg(feature = "kubernetes")]
        &labctl_provider_kubernetes::KubernetesPlugin,
        #[cfg(feature = "gcp")]
        &labctl_provider_gcp::GcpPlugin,
    ]
}

/// The plugin named `name`, if this build has it.
pub fn plugin(name: &str) -> Option<&'static dyn Plugin> {
    plugins().into_iter().find(|p| p.name() == name)
}

/// Where the bundled worker binaries are: `LABCTL_WORKER_BIN_DIR`, else beside `labctl`
/// (they are built from the same workspace).
pub fn worker_bin_dir() -> PathBuf {
    std::env::var_os("LABCTL_WORKER_BIN_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::current_exe().ok().and_then(|e| e.parent().map(PathBuf::from)))
        .unwrap_or_default()
}

/// The providers one lab uses, by name: its own, those configured from its resources, and
/// the built-in `null`; and where its smoke workloads run.
pub struct Registry {
    live: HashMap<String, Arc<dyn Provider>>,
    smoke: Result<Arc<dyn SmokeRunner>, String>,
}

impl Registry {
    /// Connects `setup`'s provider for lab `lab`; fails only on a bad `LABCTL_FAULTS`.
    pub fn connect(setup: &dyn ProviderSetup, lab: &str) -> Result<Self, FaultError> {
        let connected = setup.connect(lab, &worker_bin_dir());
        let mut live = HashMap::new();
        let own =
            [(connected.provider, setup.rate_limit()), (Arc::new(NullProvider) as Arc<dyn Provider>, None)];
        let hosted = connected.hosted.into_iter().map(|p| (p, None));
        for (provider, rate) in own.into_iter().chain(hosted) {
            // A fault is injected after the call took its slot, as the real call would.
            let provider = RateLimited::wrap(Faulty::wrap_from_env(provider)?, rate);
            live.insert(provider.name().to_owned(), provider);
        }
        Ok(Self { live, smoke: connected.smoke })
    }

    /// Where `labctl verify` runs the smoke workloads, or why it cannot.
    pub fn smoke_runner(&self) -> Result<Arc<dyn SmokeRunner>, String> {
        self.smoke.clone()
    }

    pub fn schema(&self, provider: &str, kind: &str) -> Option<&KindSchema> {
        self.live.get(provider)?.kind(kind)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn Provider>> {
        self.live.values()
    }
}

impl Providers for Registry {
    fn provider(&self, name: &str) -> Option<Arc<dyn Provider>> {
        self.live.get(name).cloned()
    }
}
