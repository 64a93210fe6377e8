//! The validated lab as providers see it: its students and what each of them gets, with
//! the spans of what was written so that a provider's diagnostics point at the file.

mod diag;
mod sections;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use diag::{did_you_mean, Diagnostic, Snippet, Source};
pub use labctl_datasets::{Dataset, DatasetKind};
pub use sections::*;
use toml::Spanned;

/// A validated lab: everything later stages need, with no way left to be invalid.
#[derive(Debug)]
pub struct Lab {
    pub name: String,
    pub description: Option<String>,
    /// The lab file, as given on the command line.
    pub path: PathBuf,
    /// The name of the provider the lab is on.
    pub provider: String,
    pub cohorts: Vec<Cohort>,
    pub student: StudentSection,
    pub datasets: BTreeMap<String, Dataset>,
    pub clusters: BTreeMap<String, ClusterSection>,
    /// The shared network (cloud providers).
    pub network: Option<NetworkSection>,
    /// When the lab is to be torn down: plan and apply refuse it after that.
    pub expires: Option<jiff::Timestamp>,
    /// Where the state lives, if the lab file says (a path or a provider's URL).
    pub state: Option<String>,
    /// `[lab.budget]`: what apply may not exceed, and rates over the provider's prices.
    pub budget: Budget,
    /// Things that are allowed but probably not what the instructor meant.
    pub warnings: Vec<String>,
    /// `[student.notebook] starters`, read: file name → the notebook's text.
    pub starters: BTreeMap<String, String>,
}

/// Limits on the estimated cost (USD), and rates (USD per unit-hour, by price item such
/// as `ec2:t3.medium`) that replace the provider's shipped prices.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    pub per_student_per_hour: Option<f64>,
    pub total: Option<f64>,
    pub rates: BTreeMap<String, f64>,
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

    /// Whether the students of `cohort` go on the lab's cluster (`[student] kubernetes`).
    pub fn on_cluster(&self, cohort: &Cohort) -> bool {
        self.student.on_cluster(&cohort.name)
    }

    /// Whether the students of `cohort` get VMs (on a cloud that makes them).
    pub fn on_vms(&self, cohort: &Cohort) -> bool {
        self.student.on_vms(&cohort.name)
    }

    /// Whether any student gets a VM.
    pub fn any_vms(&self) -> bool {
        self.cohorts.iter().any(|c| self.on_vms(c))
    }

    /// Every student with their cohort, in file order.
    pub fn students(&self) -> impl Iterator<Item = (&Cohort, &Student)> {
        self.cohorts.iter().flat_map(|c| c.students.iter().map(move |s| (c, s)))
    }

    /// The MapReduce workers of `[student.workers]`, if students get them.
    pub fn mapreduce(&self) -> Option<&MapReduceWorkers> {
        self.student.workers.as_ref().and_then(|w| w.mapreduce.as_ref())
    }

    /// The scheduler workers of `[student.workers]`, if students get them.
    pub fn scheduler(&self) -> Option<&SchedulerWorkers> {
        self.student.workers.as_ref().and_then(|w| w.scheduler.as_ref())
    }

    /// The ownership tags of a student's resources.
    pub fn tags(&self, cohort: &Cohort, student: &Student) -> crate::Tags {
        crate::Tags {
            lab: self.name.clone(),
            cohort: Some(cohort.name.clone()),
            student: Some(student.id.clone()),
            expires: self.expires,
        }
    }

    /// The ownership tags of a lab-wide resource (a network, a cluster).
    pub fn lab_tags(&self) -> crate::Tags {
        crate::Tags::lab(&self.name, self.expires)
    }

    /// `<lab>-<student>`: what names a student's bucket, user, namespace, VM.
    pub fn resource_name(&self, student: &Student) -> String {
        format!("{}-{}", self.name, student.id)
    }

    /// Whether students get a credential (`credentials`, default true).
    pub fn credentials(&self) -> bool {
        self.student.credentials.as_ref().is_none_or(|c| *c.get_ref())
    }

    /// The names of the datasets seeded into each student's bucket, in file order.
    pub fn seeded(&self) -> impl Iterator<Item = &str> {
        self.student.bucket.iter().flat_map(|b| &b.datasets).map(|d| d.get_ref().as_str())
    }
}

/// The lab file's sections as written, for a provider to judge what only it can (before the
/// lab is complete: a provider's problems are reported with everyone else's).
pub struct LabSections<'a> {
    pub source: &'a Source,
    /// The lab file's path: relative paths in settings are taken from its directory.
    pub path: &'a Path,
    pub student: &'a StudentSection,
    pub clusters: &'a BTreeMap<String, ClusterSection>,
    pub network: Option<&'a NetworkSection>,
    /// Where the tables a diagnostic may point at are written.
    pub spans: &'a SectionSpans,
    /// Every GPU request: `[student.gpu]` and the cohorts' own.
    pub gpus: Vec<&'a Spanned<GpuSpec>>,
    /// The cohorts' names, in file order.
    pub cohorts: Vec<&'a str>,
}

impl LabSections<'_> {
    /// Whether any student gets a VM.
    pub fn any_vms(&self) -> bool {
        self.cohorts.iter().any(|c| self.student.on_vms(c))
    }

    /// A diagnostic at `span` with an `allowed` note.
    pub fn error(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        allowed: impl Into<String>,
    ) -> Diagnostic {
        self.source.error(span, message).note(allowed)
    }

    /// Where `[student.workers]` is written (the start of the file if it is not).
    pub fn workers_span(&self) -> Range<usize> {
        self.spans.workers.clone().unwrap_or(0..0)
    }
}

/// Where tables of the lab file are written (their keys), as the parser saw them.
#[derive(Debug, Clone, Default)]
pub struct SectionSpans {
    /// `workers` of `[student]`.
    pub workers: Option<Range<usize>>,
    /// `compute` of `[student]`.
    pub compute: Option<Range<usize>>,
    /// `notebook` of `[student]`.
    pub notebook: Option<Range<usize>>,
    /// `cluster` of `[cluster.<name>]`.
    pub cluster: Option<Range<usize>>,
}
