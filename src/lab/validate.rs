//! Checks everything a cloud would reject later, up front, with a location for each. What
//! only one provider can judge, its plugin judges, in the same pass.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use labctl_datasets::{Dataset, DatasetKind};
use labctl_provider_api::lab::{GpuSpec, HostedKubernetesSpec, LabSections, SmokeWorkload};
use labctl_provider_api::{Findings, Plugin, ProviderSetup, Settings};
use toml::Spanned;

use super::file::{CohortSection, DatasetGenerator, DatasetSection, LabFile};
use super::spans::TableSpans;
use super::{roster, Cohort, Diagnostic, Lab, Loaded, Source, Student};

/// Lab names prefix bucket names (at most 63 characters) as `<lab>-<student>`.
const MAX_LAB_NAME: usize = 30;
const MAX_STUDENT_ID: usize = 32;

/// Student ids that would name a lab-wide resource (`<lab>-artifacts` is a cloud lab's
/// artifacts bucket), or, as the student's account on their VM, an account of the system,
/// the image or the instructors (which may have sudo).
const RESERVED_STUDENT_IDS: &[&str] = &[
    "artifacts",
    "root",
    "admin",
    "daemon",
    "bin",
    "sys",
    "nobody",
    "ubuntu",
    "debian",
    "ec2-user",
    "labctl",
    "sudo",
    "adm",
    "systemd-network",
    "sshd",
];

fn reserved_note() -> String {
    format!("allowed: any other id; reserved: {}", RESERVED_STUDENT_IDS.join(", "))
}
const MAX_NULL_PER_STUDENT: u32 = 10_000;

const DNS_LABEL_RULE: &str =
    "lowercase letters, digits and `-`, starting with a letter and ending with a letter or digit";

/// What the command line adds to the lab file: the providers there are, and `--data-dir`.
pub struct Context<'a> {
    pub plugins: &'a [&'a dyn Plugin],
    pub data_dir: Option<PathBuf>,
}

pub fn validate(
    file: LabFile,
    source: &Source,
    spans: &TableSpans,
    path: &Path,
    cx: &Context,
) -> Result<Loaded, Vec<Diagnostic>> {
    let mut v = Validator { source, spans, errors: vec![], warnings: vec![] };
    let name = v.dns_label(&file.lab.name, "lab name", MAX_LAB_NAME);
    let plugin = v.provider(&file, cx.plugins);
    let cohorts = v.cohorts(&file, path);
    let datasets = v.datasets(&file.datasets);
    let setup = v.student_section(&file, plugin, &datasets, path, cx);
    let expires = file.lab.expires.as_ref().and_then(|e| v.expiry(e));
    let starters = v.starters(&file, path);
    if let Some(budget) = &file.lab.budget {
        if let Some(currency) = budget.currency.as_ref().filter(|c| c.get_ref() != "USD") {
            v.error(
                currency,
                format!("budget currency {} is not the price tables' currency", currency.get_ref()),
                "allowed: \"USD\"",
            );
        }
        if let (Some(total), None) = (&budget.total, &file.lab.expires) {
            v.error(
                total,
                "a total budget needs the lab's `expires`, to know how long it runs".into(),
                "set `expires` in [lab]",
            );
        }
        for amount in [&budget.per_student_per_hour, &budget.total].into_iter().flatten() {
            // Not `<= 0.0`: NaN is refused too.
            if amount.get_ref().partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                v.error(
                    amount,
                    format!("budget amount {} is not positive", amount.get_ref()),
                    "allowed: a number > 0",
                );
            }
        }
    }
    for (cluster, c) in clusters(&file) {
        for (pool, p) in &c.node_pool {
            if p.min > *p.max.get_ref() {
                v.error(
                    &p.max,
                    format!(
                        "node pool `{pool}` of cluster `{cluster}` has max {} below min {}",
                        p.max.get_ref(),
                        p.min
                    ),
                    "allowed: max >= min",
                );
            }
            if let Some(desired) =
                p.desired.as_ref().filter(|d| !(p.min..=*p.max.get_ref()).contains(d.get_ref()))
            {
                v.error(
                    desired,
                    format!("node pool `{pool}` of cluster `{cluster}` wants {} nodes", desired.get_ref()),
                    &format!("allowed: desired from min ({}) to max ({})", p.min, p.max.get_ref()),
                );
            }
        }
    }
    match (v.errors.is_empty(), setup) {
        (true, Some(setup)) => Ok(Loaded {
            lab: Lab {
                name: name.unwrap_or_default(),
                description: file.lab.description.clone(),
                path: path.to_owned(),
                provider: setup.name().to_owned(),
                cohorts,
                student: file.student,
                datasets,
                clusters: file.cluster,
                network: file.network,
                expires,
                state: file.lab.state.clone(),
                budget: budget(file.lab.budget.as_ref()),
                warnings: v.warnings,
                starters,
            },
            setup,
        }),
        _ => Err(v.errors),
    }
}

/// The lab's budget, as validated.
fn budget(section: Option<&crate::lab::file::BudgetSection>) -> labctl_provider_api::lab::Budget {
    let Some(b) = section else { return Default::default() };
    labctl_provider_api::lab::Budget {
        per_student_per_hour: b.per_student_per_hour.as_ref().map(|a| *a.get_ref()),
        total: b.total.as_ref().map(|a| *a.get_ref()),
        rates: b.rates.clone(),
    }
}

/// The lab file's `[cluster.<name>]` tables.
fn clusters(file: &LabFile) -> impl Iterator<Item = (&String, &labctl_provider_api::lab::ClusterSection)> {
    file.cluster.iter()
}

/// Every GPU request: `[student.gpu]` and the cohorts' own.
fn gpu_requests(file: &LabFile) -> Vec<&Spanned<GpuSpec>> {
    file.student.gpu.iter().chain(file.cohort.iter().filter_map(|c| c.gpu.as_ref())).collect()
}

struct Validator<'a> {
    source: &'a Source,
    spans: &'a TableSpans,
    errors: Vec<Diagnostic>,
    warnings: Vec<String>,
}

impl Validator<'_> {
    fn error<T>(&mut self, at: &Spanned<T>, message: String, allowed: &str) {
        self.errors.push(self.source.error(at.span(), message).note(allowed));
    }

    /// Reads `[student.notebook] starters`: each a notebook file, by its file name.
    fn starters(&mut self, file: &LabFile, lab_path: &Path) -> BTreeMap<String, String> {
        let mut starters = BTreeMap::new();
        for starter in file.student.notebook.iter().flat_map(|n| &n.starters) {
            let path = lab_path.parent().unwrap_or(Path::new(".")).join(starter.get_ref());
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let problem = match std::fs::read_to_string(&path) {
                Err(e) => Some(format!("cannot read starter notebook `{}`: {e}", path.display())),
                Ok(_) if !name.ends_with(".ipynb") => Some(format!("starter `{name}` is not a .ipynb file")),
                // It becomes a file name on every student's machine, and in their VM's scripts.
                Ok(_) if !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) => Some(
                    format!("starter `{name}`: its name may hold only letters, digits, `.`, `_` and `-`"),
                ),
                Ok(text) => match serde_json::from_str::<serde_json::Value>(&text) {
                    Ok(nb) if nb["cells"].is_array() && nb["nbformat"].as_u64() == Some(4) => {
                        if starters.insert(name.clone(), text).is_some() {
                            Some(format!("two starters are named `{name}`"))
                        } else {
                            None
                        }
                    }
                    _ => Some(format!("`{}` is not a Jupyter notebook (nbformat 4)", path.display())),
                },
            };
            if let Some(problem) = problem {
                self.error(
                    starter,
                    problem,
                    "allowed: .ipynb files (nbformat 4) with different names of letters, digits, `.`, `_`, `-`",
                );
            }
        }
        starters
    }

    /// Checks a DNS-1123 label (which is also a valid bucket-name part).
    fn dns_label(&mut self, value: &Spanned<String>, what: &str, max: usize) -> Option<String> {
        let s = value.get_ref();
        if is_dns_label(s) && s.len() <= max {
            return Some(s.clone());
        }
        self.error(
            value,
            format!("{what} `{s}` cannot name cloud resources"),
            &format!("allowed: {DNS_LABEL_RULE}; at most {max} characters"),
        );
        None
    }

    /// An error at `span` about `name`, which is none of `known`: the closest one as a hint,
    /// then what is `allowed`.
    fn unknown(&mut self, span: Range<usize>, message: String, name: &str, known: &[&str], allowed: String) {
        let mut d = self.source.error(span, message);
        if let Some(s) = super::did_you_mean(name, known.iter().copied()) {
            d = d.note(format!("help: did you mean `{s}`?"));
        }
        self.errors.push(d.note(format!("allowed: {allowed}")));
    }

    /// The one `[provider.<name>]` table's plugin, and where the table is.
    fn provider<'p>(
        &mut self,
        file: &LabFile,
        plugins: &[&'p dyn Plugin],
    ) -> Option<(&'p dyn Plugin, Range<usize>)> {
        let known: Vec<&str> = plugins.iter().map(|p| p.name()).collect();
        let mut chosen = vec![];
        for name in file.provider.keys() {
            let spans = self.spans.providers.get(name);
            let (key, table) = spans.map_or((0..0, 0..0), |s| (s.key.clone(), s.table.clone()));
            let Some(plugin) = plugins.iter().find(|p| p.name() == name) else {
                self.unknown(key, format!("unknown key `{name}`"), name, &known, known.join(", "));
                return None;
            };
            chosen.push((*plugin, table.start, table));
        }
        // In the order the file names them.
        chosen.sort_by_key(|(_, at, _)| *at);
        if let [(plugin, _, span)] = chosen.as_slice() {
            return Some((*plugin, span.clone()));
        }
        let names: Vec<&str> = chosen.iter().map(|(p, ..)| p.name()).collect();
        let message = if names.is_empty() {
            "no provider is configured".to_owned()
        } else {
            format!("more than one provider is configured: {}", names.join(", "))
        };
        let tables: Vec<String> = known.iter().map(|k| format!("[provider.{k}]")).collect();
        // At the first table's `[provider` (none: the top of the file).
        let at = chosen.first().map_or(0, |(_, at, _)| *at);
        let d = self.source.error(at..at + "[provider".len(), message);
        self.errors.push(d.note(format!("allowed: exactly one of {}", tables.join(", "))));
        None
    }

    /// The cohorts `[student] kubernetes` puts on the cluster: one or more of the lab's, each
    /// once, not all of them when `[student] compute` asks for VMs.
    fn placed_cohorts(&mut self, file: &LabFile, hosted: &HostedKubernetesSpec) {
        let known: Vec<&str> = file.cohort.iter().map(|c| c.name.get_ref().as_str()).collect();
        let mut seen = HashSet::new();
        for listed in hosted.cohorts.iter().flatten() {
            let name = listed.get_ref();
            if !known.contains(&name.as_str()) {
                let message = format!("there is no cohort `{name}`");
                self.unknown(listed.span(), message, name, &known, known.join(", "));
            } else if !seen.insert(name) {
                self.error(listed, format!("cohort `{name}` is listed twice"), "allowed: each cohort once");
            }
        }
        let cluster = hosted.cluster.get_ref();
        if hosted.cohorts.as_ref().is_some_and(Vec::is_empty) {
            self.error(
                &hosted.cluster,
                format!("`cohorts` lists no cohort: no one goes on cluster `{cluster}`"),
                &format!("allowed: one or more of {}; or drop `kubernetes`", known.join(", ")),
            );
        } else if file.student.compute.is_some() && known.iter().all(|c| file.student.on_cluster(c)) {
            // Students on the cluster get no VM: refused rather than leaving `compute` unused
            // (a lab applied when such students also had VMs would lose them).
            let span = self.spans.sections.compute.clone().unwrap_or(0..0);
            let d = self.source.error(
                span,
                format!("[student.compute] gives no one a VM: every cohort is on cluster `{cluster}`"),
            );
            self.errors.push(d.note(
                "allowed: list the cohorts that go on the cluster in [student] kubernetes cohorts (the others get VMs); or drop compute",
            ));
        }
    }

    fn cohorts(&mut self, file: &LabFile, lab_path: &Path) -> Vec<Cohort> {
        if file.cohort.is_empty() {
            self.error(
                &file.lab.name,
                "the lab has no cohort".into(),
                "allowed: one or more [[cohort]] tables with students",
            );
        }
        let mut cohort_names: HashMap<String, usize> = HashMap::new();
        let mut first_seen: HashMap<String, String> = HashMap::new();
        let mut cohorts = vec![];
        for section in &file.cohort {
            let name = self.dns_label(&section.name, "cohort name", 63).unwrap_or_default();
            if let Some(first) = cohort_names.insert(name.clone(), section.name.span().start) {
                let d = self.source.error(section.name.span(), format!("duplicate cohort `{name}`"));
                self.errors.push(d.note(format!("first defined at {}", self.source.location(first))));
            }
            let students = match (&section.roster, &section.students) {
                (Some(roster), None) => self.roster(roster, lab_path, &mut first_seen),
                (None, Some(inline)) if inline.is_empty() => {
                    self.error(
                        &section.name,
                        format!("cohort `{name}` has no students"),
                        "allowed: at least one student",
                    );
                    vec![]
                }
                (None, Some(inline)) => inline
                    .iter()
                    .filter_map(|s| {
                        let at = self.source.location(s.id.span().start);
                        if let Some(email) = &s.email {
                            if !email.get_ref().contains('@') {
                                self.error(
                                    email,
                                    format!("`{}` is not an email address", email.get_ref()),
                                    "allowed: name@domain",
                                );
                            }
                        }
                        let id = self.student_id(&s.id, at, &mut first_seen)?;
                        Some(Student {
                            id,
                            name: s.name.clone(),
                            email: s.email.as_ref().map(|e| e.get_ref().clone()),
                        })
                    })
                    .collect(),
                _ => {
                    self.error(
                        &section.name,
                        format!("cohort `{name}` needs its students"),
                        "allowed: exactly one of `roster = \"file.csv\"` or `students = [...]`",
                    );
                    continue;
                }
            };
            let gpu = section.gpu.as_ref().map(|g| g.get_ref().count);
            cohorts.push(Cohort { name, students, gpu });
        }
        cohorts
    }

    fn roster(
        &mut self,
        roster: &Spanned<String>,
        lab_path: &Path,
        first_seen: &mut HashMap<String, String>,
    ) -> Vec<Student> {
        let path = lab_path.parent().unwrap_or(Path::new(".")).join(roster.get_ref());
        let display = path.strip_prefix("./").unwrap_or(&path).display().to_string();
        if !path.is_file() {
            self.error(
                roster,
                format!("roster `{}` does not exist", path.display()),
                "allowed: a CSV file, relative to the lab file",
            );
            return vec![];
        }
        let (rows, source) = match roster::read(&path, display) {
            Ok(ok) => ok,
            Err(errors) => {
                self.errors.extend(errors);
                return vec![];
            }
        };
        if rows.is_empty() {
            self.error(
                roster,
                format!("roster `{}` has no students", source.name),
                "allowed: at least one row after the header",
            );
        }
        let mut students = vec![];
        for row in rows {
            let at = format!("{}:{}", source.name, row.line);
            let id_rule = format!("allowed: {DNS_LABEL_RULE}; at most {MAX_STUDENT_ID} characters");
            let problem = if !is_dns_label(&row.id) || row.id.len() > MAX_STUDENT_ID {
                Some((format!("student id `{}` cannot name cloud resources", row.id), id_rule))
            } else if RESERVED_STUDENT_IDS.contains(&row.id.as_str()) {
                Some((format!("student id `{}` is reserved", row.id), reserved_note()))
            } else if let Some(first) = first_seen.get(&row.id) {
                Some((format!("duplicate student id `{}`", row.id), format!("first defined at {first}")))
            } else {
                row.email.as_ref().filter(|e| !e.contains('@')).map(|email| {
                    (
                        format!("`{email}` is not an email address"),
                        "allowed: name@domain, or an empty field".into(),
                    )
                })
            };
            if let Some((message, note)) = problem {
                self.errors.push(source.line_error(row.line, message).note(note));
                continue;
            }
            first_seen.insert(row.id.clone(), at);
            students.push(Student { id: row.id, name: row.name, email: row.email });
        }
        students
    }

    fn student_id(
        &mut self,
        id: &Spanned<String>,
        at: String,
        first_seen: &mut HashMap<String, String>,
    ) -> Option<String> {
        let value = self.dns_label(id, "student id", MAX_STUDENT_ID)?;
        if RESERVED_STUDENT_IDS.contains(&value.as_str()) {
            self.error(id, format!("student id `{value}` is reserved"), &reserved_note());
            return None;
        }
        if let Some(first) = first_seen.get(&value) {
            let d = self.source.error(id.span(), format!("duplicate student id `{value}`"));
            self.errors.push(d.note(format!("first defined at {first}")));
            return None;
        }
        first_seen.insert(value.clone(), at);
        Some(value)
    }

    fn datasets(&mut self, sections: &BTreeMap<String, DatasetSection>) -> BTreeMap<String, Dataset> {
        let mut out = BTreeMap::new();
        for (name, d) in sections {
            let files = d.files.as_ref().map(|f| *f.get_ref());
            if let Some(f) = &d.files {
                if !(1..=1024).contains(f.get_ref()) {
                    self.error(
                        f,
                        format!("dataset `{name}` has {} files", f.get_ref()),
                        "allowed: 1 to 1024",
                    );
                }
            }
            let kind = match *d.kind.get_ref() {
                DatasetGenerator::Text => match &d.size_mb {
                    Some(size) if *size.get_ref() > 0.0 && *size.get_ref() <= 1024.0 * 1024.0 => {
                        DatasetKind::Text {
                            size_bytes: (size.get_ref() * 1024.0 * 1024.0) as u64,
                            files: files.unwrap_or(4),
                        }
                    }
                    Some(size) => {
                        self.error(
                            size,
                            format!("dataset `{name}` has size_mb = {}", size.get_ref()),
                            "allowed: a size in MiB above 0",
                        );
                        continue;
                    }
                    None => {
                        self.error(
                            &d.kind,
                            format!("text dataset `{name}` needs `size_mb`"),
                            "allowed: size_mb = <MiB>",
                        );
                        continue;
                    }
                },
                DatasetGenerator::Tabular => match &d.rows {
                    Some(rows) if *rows.get_ref() > 0 => {
                        DatasetKind::Tabular { rows: *rows.get_ref(), files: files.unwrap_or(1) }
                    }
                    Some(rows) => {
                        self.error(rows, format!("dataset `{name}` has rows = 0"), "allowed: rows >= 1");
                        continue;
                    }
                    None => {
                        self.error(
                            &d.kind,
                            format!("tabular dataset `{name}` needs `rows`"),
                            "allowed: rows = <count>",
                        );
                        continue;
                    }
                },
            };
            out.insert(name.clone(), Dataset { kind, seed: d.seed.unwrap_or(7) });
        }
        out
    }

    fn student_section(
        &mut self,
        file: &LabFile,
        plugin: Option<(&dyn Plugin, Range<usize>)>,
        datasets: &BTreeMap<String, Dataset>,
        path: &Path,
        cx: &Context,
    ) -> Option<Box<dyn ProviderSetup>> {
        let s = &file.student;
        let seeded = s.bucket.as_ref().map(|b| b.datasets.as_slice()).unwrap_or_default();
        for name in seeded {
            if !datasets.contains_key(name.get_ref()) && !file.datasets.contains_key(name.get_ref()) {
                let known: Vec<&str> = file.datasets.keys().map(String::as_str).collect();
                let allowed = if known.is_empty() {
                    "none: define one under [datasets.<name>]".into()
                } else {
                    known.join(", ")
                };
                let message = format!("unknown dataset `{}`", name.get_ref());
                self.unknown(name.span(), message, name.get_ref(), &known, allowed);
            }
        }
        let has = |kind: DatasetGenerator| {
            seeded.iter().any(|n| file.datasets.get(n.get_ref()).is_some_and(|d| *d.kind.get_ref() == kind))
        };
        let workers = s.workers.as_ref();
        // Some providers' smoke workloads make their own data where they run.
        let generated = plugin.as_ref().is_some_and(|(p, _)| p.capabilities().smoke_data_generated);
        for smoke in &s.smoke {
            // The notebook check counts the student's own dataset, wherever it runs.
            let has = |kind| (generated && *smoke.get_ref() != SmokeWorkload::Notebook) || has(kind);
            // Each workload's service (its worker count), and the data it works on.
            let (count, service, data, dataset) = match smoke.get_ref() {
                SmokeWorkload::Wordcount => (
                    workers.and_then(|w| w.mapreduce.as_ref()).map(|m| Some(&m.workers)),
                    "[student.workers.mapreduce]",
                    DatasetGenerator::Text,
                    "a text dataset in [student.bucket] datasets",
                ),
                SmokeWorkload::Hpsearch => (
                    workers.and_then(|w| w.scheduler.as_ref()).map(|s| Some(&s.workers)),
                    "[student.workers.scheduler]",
                    DatasetGenerator::Tabular,
                    "a tabular dataset in [student.bucket] datasets",
                ),
                SmokeWorkload::Notebook => (
                    s.notebook.as_ref().map(|n| n.dask_workers.as_ref()),
                    "[student.notebook]",
                    DatasetGenerator::Text,
                    "a text dataset in [student.bucket] datasets",
                ),
            };
            let workload = format!("{:?}", smoke.get_ref()).to_lowercase();
            let missing = if count.is_none() { Some(service) } else { (!has(data)).then_some(dataset) };
            if let Some(missing) = missing {
                self.error(
                    smoke,
                    format!("smoke workload `{workload}` needs {missing}"),
                    "allowed: add what it needs, or drop the workload",
                );
            } else if let Some(count) = count.flatten().filter(|c| *c.get_ref() == 0) {
                // A job on a service without workers would wait for ever.
                let key =
                    if *smoke.get_ref() == SmokeWorkload::Notebook { "dask_workers" } else { "workers" };
                self.error(
                    count,
                    format!("no workers, but smoke workload `{workload}` needs at least one"),
                    &format!("allowed: {key} >= 1, or drop `{workload}` from smoke"),
                );
            }
        }
        if s.notebook.is_some() && s.bucket.is_none() {
            let span = self.spans.sections.notebook.clone().unwrap_or(0..0);
            let d = self.source.error(
                span,
                "students' notebooks need a bucket: it holds their datasets, and their work when it is archived",
            );
            self.errors.push(d.note("allowed: add `bucket = { datasets = [...] }` to [student]"));
        }
        for package in s.notebook.iter().flat_map(|n| &n.packages) {
            let text = package.get_ref();
            // A requirement, not a pip option or a second argument.
            if !text.starts_with(|c: char| c.is_ascii_alphanumeric()) || text.contains(char::is_whitespace) {
                self.error(
                    package,
                    format!("`{text}` is not a pip requirement"),
                    "allowed: a package name, with extras and a version if you like, without spaces: \
                     \"pandas\", \"dask[dataframe]\", \"scikit-learn==1.7.2\"",
                );
            }
        }
        let setup = plugin.and_then(|(plugin, span)| {
            for gpu in gpu_requests(file) {
                self.gpu(gpu, file, plugin, cx.plugins);
            }
            if plugin.capabilities().hosts_kubernetes {
                self.gpus_off_cluster(file);
            }
            if file.student.notebook.is_some() && !plugin.capabilities().notebooks {
                let with: Vec<&str> =
                    cx.plugins.iter().filter(|p| p.capabilities().notebooks).map(|p| p.name()).collect();
                let span = self.spans.sections.notebook.clone().unwrap_or(0..0);
                let d = self.source.error(
                    span,
                    format!("the {} provider gives students no notebook server yet", plugin.name()),
                );
                self.errors.push(d.note(format!("allowed: [student.notebook] on {}", or_list(&with))));
            }
            if let Some(hosted) = &file.student.kubernetes {
                if !plugin.capabilities().hosts_kubernetes {
                    let with: Vec<&str> = cx
                        .plugins
                        .iter()
                        .filter(|p| p.capabilities().hosts_kubernetes)
                        .map(|p| p.name())
                        .collect();
                    self.error(
                        &hosted.cluster,
                        format!("the {} provider makes no clusters to put students on", plugin.name()),
                        &format!(
                            "allowed: [student] kubernetes on {}; or use the kubernetes provider",
                            or_list(&with)
                        ),
                    );
                }
                self.placed_cohorts(file, hosted);
            }
            let settings =
                Settings { source: self.source, span, lab_path: path, data_dir: cx.data_dir.clone() };
            let sections = LabSections {
                source: self.source,
                path,
                student: &file.student,
                clusters: &file.cluster,
                network: file.network.as_ref(),
                spans: &self.spans.sections,
                gpus: gpu_requests(file),
                cohorts: file.cohort.iter().map(|c| c.name.get_ref().as_str()).collect(),
            };
            let mut findings = Findings::default();
            let setup = plugin.configure(&settings, &sections, &mut findings);
            self.errors.extend(findings.errors);
            self.warnings.extend(findings.warnings);
            setup
        });
        for key in s.compute.iter().flat_map(|c| &c.ssh_keys) {
            let text = key.get_ref();
            let kinds =
                ["ssh-ed25519 ", "ssh-rsa ", "ecdsa-sha2-", "sk-ssh-ed25519@openssh.com ", "sk-ecdsa-sha2-"];
            if !kinds.iter().any(|k| text.starts_with(k)) || text.contains(['"', '\n', '\r']) {
                self.error(
                    key,
                    "not an SSH public key".into(),
                    "allowed: one line of an OpenSSH public key file, e.g. `ssh-ed25519 AAAA… you@host`",
                );
            }
        }
        for cidr in s.compute.iter().flat_map(|c| &c.ssh_cidrs) {
            if parse_cidr(cidr.get_ref()).is_none() {
                self.error(
                    cidr,
                    "not an IPv4 CIDR block".into(),
                    "allowed: an address and a prefix length, e.g. `203.0.113.0/24`, with no bits set past the prefix",
                );
            }
        }
        if let (Some(credentials), Some(_)) = (&s.credentials, &s.workers) {
            if !credentials.get_ref() {
                self.error(
                    credentials,
                    "workers need the students' credentials (their token)".into(),
                    "allowed: credentials = true, or no [student.workers]",
                );
            }
        }
        if let Some(null) = &s.null {
            if *null.count.get_ref() > MAX_NULL_PER_STUDENT {
                self.error(
                    &null.count,
                    format!("null count {} is too large", null.count.get_ref()),
                    &format!("allowed: 0 to {MAX_NULL_PER_STUDENT}"),
                );
            }
        }
        setup
    }

    /// GPUs need a provider that has them, and a pool to run on.
    fn gpu(&mut self, gpu: &Spanned<GpuSpec>, file: &LabFile, plugin: &dyn Plugin, plugins: &[&dyn Plugin]) {
        let gpu_pools = clusters(file).flat_map(|(_, c)| c.node_pool.values()).filter(|p| p.gpu > 0).count();
        if gpu.get_ref().count == 0 {
            self.error(gpu, "gpu count is 0".into(), "allowed: count >= 1, or remove the gpu setting");
        } else if !plugin.capabilities().gpus {
            let with: Vec<&str> =
                plugins.iter().filter(|p| p.capabilities().gpus).map(|p| p.name()).collect();
            self.error(
                gpu,
                format!("the {} provider cannot give students GPUs", plugin.name()),
                &format!(
                    "allowed: GPUs on {} with a [cluster.<name>.node_pool.<pool>] that has gpu > 0",
                    or_list(&with)
                ),
            );
        } else if gpu_pools == 0 {
            self.error(
                gpu,
                "GPUs requested but no cluster has a GPU node pool".into(),
                "allowed: add a [cluster.<name>.node_pool.<pool>] with gpu > 0",
            );
        }
    }

    /// GPUs go to students' workers on a cluster: on a cloud, a cohort whose students are not
    /// on the lab's cluster (they get VMs) cannot have them.
    fn gpus_off_cluster(&mut self, file: &LabFile) {
        let off = |c: &&CohortSection| !file.student.on_cluster(c.name.get_ref());
        for cohort in file.cohort.iter().filter(off) {
            if let Some(gpu) = &cohort.gpu {
                let name = cohort.name.get_ref();
                let allowed = if file.student.kubernetes.is_some() {
                    format!("allowed: add `{name}` to [student] kubernetes cohorts; or remove its gpu")
                } else {
                    format!("allowed: put `{name}` on one of the lab's clusters ([student] kubernetes = {{ cluster = …, cohorts = [\"{name}\"] }}); or remove its gpu")
                };
                self.error(
                    gpu,
                    format!("cohort `{name}` gets GPUs, but its students are not on a cluster: GPUs go to workers on a cluster's GPU pool"),
                    &allowed,
                );
            }
        }
        let Some(gpu) = &file.student.gpu else { return };
        let off: Vec<&str> = file
            .cohort
            .iter()
            .filter(off)
            .filter(|c| c.gpu.is_none())
            .map(|c| c.name.get_ref().as_str())
            .collect();
        if !off.is_empty() {
            self.error(
                gpu,
                format!("[student.gpu] gives GPUs to cohorts not on a cluster: {}", off.join(", ")),
                "allowed: students on one of the lab's clusters ([student] kubernetes); or a gpu in the [[cohort]] tables of the cohorts on it",
            );
        }
    }

    fn expiry(&mut self, value: &Spanned<toml::value::Datetime>) -> Option<jiff::Timestamp> {
        let text = value.get_ref().to_string();
        let parsed = text
            .parse::<jiff::Timestamp>()
            .ok()
            .or_else(|| {
                text.parse::<jiff::civil::DateTime>()
                    .ok()
                    .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
                    .map(|z| z.timestamp())
            })
            .or_else(|| {
                text.parse::<jiff::civil::Date>()
                    .ok()
                    .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
                    .map(|z| z.timestamp())
            });
        match parsed {
            Some(t) => {
                if t <= jiff::Timestamp::now() {
                    self.warnings.push(format!(
                        "this lab expired at {t}: plan and apply refuse it; destroy, status, output, state \
                         and verify still work"
                    ));
                }
                Some(t)
            }
            None => {
                self.error(
                    value,
                    format!("expiry {text} is not a date"),
                    "allowed: an RFC 3339 date-time or date",
                );
                None
            }
        }
    }
}

/// `a`, `a or b`, `a, b or c`.
fn or_list(items: &[&str]) -> String {
    match items {
        [] => "no provider of this build".to_owned(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// DNS-1123 label that is also a valid S3/GCS bucket-name part.
fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// An IPv4 CIDR block with no host bits set: its address and prefix length.
fn parse_cidr(s: &str) -> Option<(std::net::Ipv4Addr, u32)> {
    let (address, prefix) = s.split_once('/')?;
    let (address, prefix): (std::net::Ipv4Addr, u32) = (address.parse().ok()?, prefix.parse().ok()?);
    let host_bits = u32::from(address).checked_shl(prefix).unwrap_or(0);
    (prefix <= 32 && host_bits == 0).then_some((address, prefix))
}

#[cfg(test)]
mod tests {
    #[test]
    fn cidr_blocks() {
        for ok in ["0.0.0.0/0", "203.0.113.0/24", "198.51.100.7/32", "10.0.0.0/8"] {
            assert!(super::parse_cidr(ok).is_some(), "{ok}");
        }
        for bad in ["203.0.113.1/24", "203.0.113.0", "203.0.113.0/33", "::/0", "campus", "10.0.0.0/-1"] {
            assert!(super::parse_cidr(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn dns_labels() {
        for ok in ["ada", "a1", "ada-l", "x"] {
            assert!(super::is_dns_label(ok), "{ok}");
        }
        for bad in ["", "Ada", "1ada", "ada-", "ad_a", "ad.a", &"a".repeat(64)] {
            assert!(!super::is_dns_label(bad), "{bad}");
        }
    }
}
