//! Test-only host plumbing shared by the VM runner and the test cluster: network
//! namespaces and relays through their wall ([`netns`]), cgroups ([`cgroups`]), and sweeping
//! what a runner killed outright left behind ([`sweep`]). Needs root.

pub mod cgroups;
pub mod netns;
pub mod sweep;
