//! Integration tests: the `labctl` binary against real files, directories and processes.
//! One test binary for the crate (see ARCHITECTURE.md), one module per behaviour group.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on what they do not expect")]

mod support;

#[cfg(feature = "aws")]
mod aws;
#[cfg(any(feature = "aws", feature = "gcp"))]
mod booted;
mod browser;
#[cfg(feature = "kubernetes")]
mod cluster;
mod conformance;
mod crash;
#[cfg(all(feature = "aws", feature = "kubernetes"))]
mod eks;
mod errors;
mod failures;
#[cfg(feature = "gcp")]
mod gcp;
#[cfg(all(feature = "gcp", feature = "kubernetes"))]
mod gke;
#[cfg(feature = "kubernetes")]
mod kubernetes;
mod lifecycle;
mod local_e2e;
mod locking;
mod notebook;
mod plugin;
mod secrets;
mod validate;
#[cfg(feature = "aws")]
mod vms;
