//! Integration tests: the `labctl` binary against real files, directories and processes.
//! One test binary for the crate (see ARCHITECTURE.md), one module per behaviour group.

mod support;

mod aws;
mod crash;
mod failures;
mod kubernetes;
mod lifecycle;
mod local_e2e;
mod locking;
mod secrets;
mod validate;
