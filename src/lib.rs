//! labctl: a Terraform-style provisioner for cloud Big Data teaching labs.
//!
//! The data path: lab file → [`lab::Lab`] → desired graph ([`lab::expand`]) → [`plan`]
//! against [`state`] → [`engine`] walks the actions through [`providers`] → report.

pub mod cli;
pub mod engine;
pub mod lab;
pub mod plan;
pub mod providers;
pub mod report;
pub mod state;
pub mod verify;
