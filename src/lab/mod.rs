//! The lab file: parse, validate, read rosters, expand into the desired resource graph.

mod diag;
mod expand;
mod file;
mod roster;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use diag::{did_you_mean, Diagnostic, Source};
pub use expand::{expand, Node};
pub use file::{LabFile, SmokeWorkload};

use file::{ClusterSection, NetworkSection, StudentSection};
use labctl_datasets::Dataset;

/// A validated lab: everything later stages need, with no way left to be invalid.
#[derive(Debug)]
pub struct Lab {
    pub name: String,
    pub description: Option<String>,
    /// The lab file, as given on the command line.
    pub path: PathBuf,
    pub provider: ProviderConfig,
    pub cohorts: Vec<Cohort>,
    pub student: StudentSection,
    pub datasets: BTreeMap<String, Dataset>,
    pub clusters: BTreeMap<String, ClusterSection>,
    /// The shared network (cloud providers).
    pub network: Option<NetworkSection>,
    pub expires: Option<jiff::Timestamp>,
    /// Where the state lives, if the lab file says (a path or an `s3://` URL).
    pub state: Option<String>,
    /// Things that are allowed but probably not what the instructor meant.
    pub warnings: Vec<String>,
}

/// The provider block, resolved to exactly one provider.
#[derive(Debug, Clone)]
pub enum ProviderConfig {
    Local(file::LocalSettings),
    Aws(file::AwsSettings),
    Kubernetes(file::KubernetesSettings),
    Gcp(file::GcpSettings),
}

impl ProviderConfig {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Local(_) => "local",
            Self::Aws(_) => "aws",
            Self::Kubernetes(_) => "kubernetes",
            Self::Gcp(_) => "gcp",
        }
    }

    /// Whether students can be given GPUs at all (the cluster still needs a GPU pool).
    pub fn offers_gpus(&self) -> bool {
        !matches!(self, Self::Local(_))
    }

    /// Requests per second allowed against the provider's API, if limited.
    pub fn rate_limit(&self) -> Option<f64> {
        match self {
            Self::Local(s) => s.rate_limit,
            Self::Aws(s) => s.rate_limit,
            Self::Kubernetes(s) => s.rate_limit,
            Self::Gcp(s) => s.rate_limit,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Cohort {
    pub name: String,
    pub students: Vec<Student>,
    /// GPUs per student in this cohort, instead of `[student.gpu]`.
    pub gpu: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Student {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
}

impl Lab {
    /// GPUs each of a cohort's students gets (0: none).
    pub fn gpus(&self, cohort: &Cohort) -> u32 {
        cohort.gpu.or_else(|| self.student.gpu.as_ref().map(|g| g.get_ref().count)).unwrap_or(0)
    }

    /// Every student with their cohort, in file order.
    pub fn students(&self) -> impl Iterator<Item = (&Cohort, &Student)> {
        self.cohorts.iter().flat_map(|c| c.students.iter().map(move |s| (c, s)))
    }
}

/// Reads and validates a lab file (and its rosters). Returns every problem found, not just
/// the first, so an instructor fixes a file in one go.
pub fn load(path: &Path) -> Result<Lab, Vec<Diagnostic>> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![Diagnostic::file(&name, format!("cannot read the lab file: {e}"))])?;
    let source = Source { name, text };
    let file: LabFile = toml::from_str(&source.text).map_err(|e| vec![parse_error(&source, &e)])?;
    validate::validate(file, &source, path)
}

/// Turns a TOML/serde error into a diagnostic, with a suggestion for misspelt keys.
fn parse_error(source: &Source, e: &toml::de::Error) -> Diagnostic {
    let message = e.message().trim().to_owned();
    let span = e.span().unwrap_or(0..0);
    for what in ["field", "variant"] {
        let prefix = format!("unknown {what} `");
        let Some(rest) = message.strip_prefix(&prefix) else { continue };
        let Some((word, expected)) = rest.split_once('`') else { continue };
        let allowed: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let noun = if what == "field" { "key" } else { "value" };
        let mut d = source.error(span, format!("unknown {noun} `{word}`"));
        if let Some(suggestion) = did_you_mean(word, allowed.iter().copied()) {
            d = d.note(format!("help: did you mean `{suggestion}`?"));
        }
        let allowed = if allowed.is_empty() { "none here".to_owned() } else { allowed.join(", ") };
        return d.note(format!("allowed: {allowed}"));
    }
    source.error(span, message)
}

/// The JSON Schema of the lab file, for editors.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(LabFile)).expect("a schema serialises")
}
