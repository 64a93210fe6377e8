//! The lab file's TOML format, as serde types. Field names here *are* the file format:
//! unknown keys are refused, and [`schemars`] turns these types into `labctl schema`. The
//! sections providers read live in the provider API ([`labctl_provider_api::lab`]); each
//! `[provider.<name>]` table belongs to its provider.

use std::collections::BTreeMap;

use labctl_provider_api::lab::{ClusterSection, GpuSpec, NetworkSection, StudentSection};
use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

/// A lab: one cohort (or several) of students and what each of them gets.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabFile {
    pub lab: LabSection,
    /// Where the lab is provisioned: exactly one `[provider.<name>]` table, read by that
    /// provider (its schema is the provider's).
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub provider: BTreeMap<String, toml::Table>,
    /// The students, in one or more cohorts (e.g. one per teaching group).
    #[serde(default)]
    pub cohort: Vec<CohortSection>,
    /// What every student gets.
    #[serde(default)]
    pub student: StudentSection,
    /// Named datasets that buckets are seeded with.
    #[serde(default)]
    pub datasets: BTreeMap<String, DatasetSection>,
    /// Shared network (cloud providers).
    pub network: Option<NetworkSection>,
    /// Shared Kubernetes clusters and their node pools (cloud providers).
    #[serde(default)]
    pub cluster: BTreeMap<String, ClusterSection>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabSection {
    /// Lab name: a DNS label of at most 30 characters; prefixes every resource name.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    pub description: Option<String>,
    /// When the lab must be gone (RFC 3339 date-time or date); plan and apply refuse a past one.
    #[schemars(with = "Option<String>")]
    pub expires: Option<Spanned<toml::value::Datetime>>,
    pub budget: Option<BudgetSection>,
    /// Where the state lives: a file (relative to the lab file), or `s3://bucket/key` so
    /// that several people can apply the lab (locked by conditional writes). Default:
    /// `.labctl/<name>.state.json` beside the lab file. `--state` overrides it.
    pub state: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetSection {
    /// Currency of the amounts below: USD, the price tables' currency.
    #[schemars(with = "Option<String>")]
    pub currency: Option<Spanned<String>>,
    /// Refuse to apply when the estimated cost per student-hour exceeds this.
    #[schemars(with = "Option<f64>")]
    pub per_student_per_hour: Option<Spanned<f64>>,
    /// Refuse to apply when the estimated cost until `expires` exceeds this.
    #[schemars(with = "Option<f64>")]
    pub total: Option<Spanned<f64>>,
    /// USD per unit-hour by price item, replacing the provider's shipped price (e.g.
    /// `"ec2:t3.medium" = 0.05`, or a rate for an item the provider does not price).
    #[serde(default)]
    pub rates: std::collections::BTreeMap<String, f64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CohortSection {
    /// Cohort name: a DNS label.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// A CSV roster with the header `id,name,email`, relative to the lab file.
    #[schemars(with = "Option<String>")]
    pub roster: Option<Spanned<String>>,
    /// The roster, inline.
    pub students: Option<Vec<StudentEntry>>,
    /// GPUs for this cohort's students, instead of `[student.gpu]`.
    #[schemars(with = "Option<GpuSpec>")]
    pub gpu: Option<Spanned<GpuSpec>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StudentEntry {
    /// Student id: a DNS label of at most 32 characters (it names their resources).
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    pub name: Option<String>,
    #[schemars(with = "Option<String>")]
    pub email: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetSection {
    #[schemars(with = "DatasetGenerator")]
    pub kind: Spanned<DatasetGenerator>,
    /// Text: total size in MiB (fractions allowed).
    #[schemars(with = "Option<f64>")]
    pub size_mb: Option<Spanned<f64>>,
    /// Tabular: number of rows.
    #[schemars(with = "Option<u64>")]
    pub rows: Option<Spanned<u64>>,
    /// Number of files (default 4 for text, 1 for tabular).
    #[schemars(with = "Option<u32>")]
    pub files: Option<Spanned<u32>>,
    /// Generator seed (default 7): the same seed gives the same bytes.
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DatasetGenerator {
    Text,
    Tabular,
}
