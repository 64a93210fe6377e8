//! The contract between labctl's core and the providers that create real things.
//!
//! A provider manages resources of a few *kinds* (a bucket, a dataset seeded into it, a
//! credential, a host running workers, …). The engine hands it what the lab wants
//! ([`ResourceSpec`]) and gets back what exists ([`Observed`]); everything else — order,
//! retries, state — is the engine's job. Errors say whether trying again can help.
//!
//! Beyond CRUD, a provider crate is a [`Plugin`]: it owns its `[provider.<name>]` settings,
//! the validation only it can do, the expansion of a validated [`lab::Lab`] into resource
//! [`Node`]s, its [`Capabilities`], its [`SmokeRunner`] and the [`Endpoints`] a student is
//! handed.

#![warn(clippy::print_stdout)]

mod address;
pub mod archive;
pub mod configs;
pub mod cost;
pub mod decorate;
mod error;
pub mod lab;
mod null;
mod plugin;
mod remote_state;
mod resource;

pub use address::Address;
pub use error::{ErrorKind, ProviderError};
pub use null::NullProvider;
pub use plugin::{
    Capabilities, Connected, Endpoints, Findings, Node, Plugin, ProviderSetup, Recorded, Settings,
    SmokeRunner, StudentResources,
};
pub use remote_state::RemoteState;
pub use resource::{attrs, dep_attr, Attributes, Deps, Found, KindSchema, Observed, ResourceSpec, Tags};

use async_trait::async_trait;

/// The node label a lab's node pools carry (`labctl/pool = "<pool>"`), that workloads
/// select a pool by: the same name on every cloud and in the test cluster.
pub const POOL_LABEL: &str = "labctl/pool";

/// What GPU nodes advertise, are tainted with and GPU workloads request and tolerate.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// A source of real resources: the local machine, a cloud account, a cluster.
///
/// Every method must be idempotent with respect to the resource's identity: `create` of a
/// resource that already exists with this lab's tags adopts it instead of failing or making
/// a second one, and `delete` of a resource that is already gone succeeds. That is what lets
/// the engine repair any interrupted run by simply running again.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Short name used in addresses, state and messages (`local`, `aws`, …).
    fn name(&self) -> &str;

    /// The kinds this provider manages, with their update rules.
    fn kinds(&self) -> &[KindSchema];

    /// Looks up what exists for a resource recorded in state; `None` if it is gone.
    async fn read(&self, kind: &str, prior: &Observed) -> Result<Option<Observed>, ProviderError>;

    /// For a resource that exists: what was changed outside labctl since it was applied
    /// (each a short description a re-apply puts back); empty if nothing was, or if the
    /// provider cannot tell.
    async fn edits(&self, _kind: &str, _prior: &Observed) -> Result<Vec<String>, ProviderError> {
        Ok(vec![])
    }

    /// Creates (or adopts) the resource. `deps` holds what its dependencies look like now.
    async fn create(&self, spec: &ResourceSpec, deps: &Deps) -> Result<Observed, ProviderError>;

    /// Changes an existing resource in place to match `spec`.
    async fn update(
        &self,
        spec: &ResourceSpec,
        prior: &Observed,
        deps: &Deps,
    ) -> Result<Observed, ProviderError>;

    /// Deletes the resource; succeeds if it is already gone.
    async fn delete(&self, kind: &str, prior: &Observed) -> Result<(), ProviderError>;

    /// Lists every resource carrying this lab's tags, whether or not state knows it, in an
    /// order that is safe to delete in (what must go first, first).
    async fn sweep(&self, lab: &str) -> Result<Vec<Found>, ProviderError>;

    /// Puts `spec.tags` on the existing resource `prior` and returns it as it now is. Of
    /// its tags only `labctl/expires` changes after creation: a lab whose expiry moved
    /// carries the new one on every resource, which is what `labctl reap` goes by.
    async fn retag(&self, spec: &ResourceSpec, prior: &Observed) -> Result<Observed, ProviderError>;

    /// The name of every lab this provider holds tagged resources of, whether or not any
    /// state knows it: where `labctl reap` looks, through [`Provider::sweep`] of each.
    async fn labs(&self) -> Result<Vec<String>, ProviderError>;

    /// Copies what the student wrote into their bucket into `into`, each object under its
    /// key, leaving out the seeded datasets ([`archive::destination`]); how many files it
    /// wrote. A bucket already gone holds nothing. For providers whose [`Capabilities`]
    /// say `archive`; the others refuse.
    async fn archive(
        &self,
        student: &StudentResources,
        _into: &std::path::Path,
    ) -> Result<usize, ProviderError> {
        Err(ProviderError::invalid(format!(
            "the {} provider cannot archive {}'s work",
            self.name(),
            student.student
        )))
    }

    /// The schema of `kind`, if this provider manages it.
    fn kind(&self, kind: &str) -> Option<&KindSchema> {
        self.kinds().iter().find(|k| k.name == kind)
    }
}

/// A fresh secret: 32 random bytes from the OS, hex encoded (worker tokens and the like).
pub fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of `bytes`, hex encoded: how providers remember a content or a secret
/// without keeping it.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// What a smoke runner without notebooks answers to the `notebook` workload (validation
/// refuses `[student.notebook]` on such providers first).
pub const NO_NOTEBOOKS: &str = "students get no notebook server on this provider";

/// The bundled worker services labctl runs for a student, and how each is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerService {
    MapReduce,
    Scheduler,
}

impl WorkerService {
    /// The service a smoke workload goes through.
    pub fn for_workload(workload: lab::SmokeWorkload) -> Option<Self> {
        match workload {
            lab::SmokeWorkload::Wordcount => Some(Self::MapReduce),
            lab::SmokeWorkload::Hpsearch => Some(Self::Scheduler),
            lab::SmokeWorkload::Notebook => None,
        }
    }

    /// The service a resource kind (`mapreduce`, `scheduler`) runs, if it is one.
    pub fn from_kind(kind: &str) -> Option<Self> {
        match kind {
            "mapreduce" => Some(Self::MapReduce),
            "scheduler" => Some(Self::Scheduler),
            _ => None,
        }
    }

    /// Its resource kind, which also names the provider's objects for it (a Deployment).
    pub fn name(self) -> &'static str {
        match self {
            Self::MapReduce => "mapreduce",
            Self::Scheduler => "scheduler",
        }
    }

    /// The worker binary that runs it (head, workers and client alike).
    pub fn binary(self) -> &'static str {
        match self {
            Self::MapReduce => "lab-mapreduce",
            Self::Scheduler => "lab-scheduler",
        }
    }

    /// The environment variable that carries the student's token.
    pub fn token_env(self) -> &'static str {
        match self {
            Self::MapReduce => "LAB_MAPREDUCE_TOKEN",
            Self::Scheduler => "LAB_SCHEDULER_TOKEN",
        }
    }

    /// The port clients use where the service has a host or pod to itself.
    pub fn port(self) -> u16 {
        match self {
            Self::MapReduce => ports::MAPREDUCE,
            Self::Scheduler => ports::SCHEDULER,
        }
    }
}

/// The ports the bundled workers listen on where they have a host or pod to themselves (a
/// cloud VM, a pod); the local provider lets the kernel choose instead.
pub mod ports {
    /// The MapReduce coordinator's RPC port.
    pub const MAPREDUCE: u16 = 7070;
    /// The scheduler's RPC port.
    pub const SCHEDULER: u16 = 7080;
    /// The scheduler's HTTP status page.
    pub const SCHEDULER_HTTP: u16 = 7081;
    /// A student's Jupyter server (their notebooks).
    pub const JUPYTER: u16 = 8888;
    /// Their Dask scheduler, and its dashboard: Dask's own defaults.
    pub const DASK_SCHEDULER: u16 = 8786;
    pub const DASK_DASHBOARD: u16 = 8787;
}
