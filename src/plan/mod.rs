//! The plan: the difference between what the lab wants and what state says exists, as a
//! value that can be shown, saved, and applied later exactly as shown.

mod cost;
mod diff;
mod file;

use std::path::PathBuf;

use labctl_provider_api::{ResourceSpec, Tags};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use cost::{usd, Estimate, Range};
pub use diff::{destroy_plan, diff, force_update, keep, Filter, Refresh, Refreshed};
pub use file::PlanFileError;

/// Marks a file as a saved plan. Version 2 records the provider as `{name, settings}`, as
/// its plugin saved it; a version 1 plan is refused with this name in the message.
pub const PLAN_FORMAT: &str = "labctl-plan/2";

/// A saved or shown plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub format: String,
    pub lab: String,
    /// The state this plan was made against; applying it to any other is refused.
    pub lineage: String,
    pub serial: u64,
    pub state_path: PathBuf,
    /// The lab's provider as configured, so that applying the plan needs no lab file.
    pub provider: SavedProvider,
    pub destroy: bool,
    /// The lab's expiry: a plan that creates or changes anything is refused after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<jiff::Timestamp>,
    /// The lab file the plan was made from, whose smoke workloads run after it is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab_file: Option<PathBuf>,
    pub actions: Vec<Action>,
    /// What the lab costs as planned (not for destroy plans).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Estimate>,
}

/// A provider setup as a plan records it: its plugin's name and what the plugin saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedProvider {
    pub name: String,
    pub settings: Value,
}

/// What happens to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Create,
    Update,
    Replace,
    Delete,
}

impl ActionKind {
    /// The sign shown before the address: `+`, `~`, `-/+`, `-`.
    pub fn sign(self) -> &'static str {
        match self {
            Self::Create => "+",
            Self::Update => "~",
            Self::Replace => "-/+",
            Self::Delete => "-",
        }
    }

    pub fn verb(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Replace => "replace",
            Self::Delete => "delete",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub address: String,
    pub action: ActionKind,
    pub provider: String,
    pub kind: String,
    pub tags: Tags,
    /// What to create or update to; absent for deletes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<ResourceSpec>,
    /// For creates and updates: what must exist first. For deletes: what depended on it
    /// must be deleted first (the resources listed in their `deps`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deps: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// Why, when it is not obvious: tainted, deleted outside labctl, forced by an attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Action {
    /// Whether this update changes tags (and the provider must retag the resource).
    pub fn retags(&self) -> bool {
        self.changes.iter().any(|c| c.tag)
    }

    /// Whether this update changes tags and nothing else (the provider's `update` is skipped).
    pub fn retags_only(&self) -> bool {
        self.reason.is_none() && !self.changes.is_empty() && self.changes.iter().all(|c| c.tag)
    }
}

/// One attribute's change. Sensitive values never get here: configs hold no secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub attribute: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    /// This change forces a replacement.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forces_replace: bool,
    /// A change of the resource's tags (`labctl/expires`), which the provider's `retag`
    /// makes, rather than of its config.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tag: bool,
}

/// Counts per action kind, for summary lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub delete: usize,
}

impl Counts {
    pub fn add(&mut self, kind: ActionKind) {
        match kind {
            ActionKind::Create => self.create += 1,
            ActionKind::Update => self.update += 1,
            ActionKind::Replace => self.replace += 1,
            ActionKind::Delete => self.delete += 1,
        }
    }

    pub fn total(&self) -> usize {
        self.create + self.update + self.replace + self.delete
    }
}

impl Plan {
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        self.actions.iter().for_each(|a| c.add(a.action));
        c
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}
