//! labctl: a Terraform-style provisioner for cloud Big Data teaching labs.
//!
//! The data path: lab file → [`lab::Lab`] → desired graph ([`lab::expand`], the provider
//! plugin expanding its part) → [`plan`] against [`state`] → [`engine`] walks the actions
//! through the providers → [`verify`] → report. The core names no provider: they are
//! plugins (`labctl_provider_api::Plugin`), listed once, in [`registry`].

pub mod cli;
pub mod engine;
pub mod error;
pub mod lab;
pub mod plan;
pub mod registry;
pub mod report;
pub mod state;
pub mod verify;
