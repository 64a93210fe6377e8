//! Checks everything a cloud would reject later, up front, with a location for each.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use labctl_datasets::{Dataset, DatasetKind};
use toml::Spanned;

use super::file::{
    DatasetGenerator, DatasetSection, KubernetesSettings, LabFile, ProviderSection, SmokeWorkload,
};
use super::{roster, Cohort, Diagnostic, Lab, ProviderConfig, Source, Student};

/// Lab names prefix bucket names (at most 63 characters) as `<lab>-<student>`.
const MAX_LAB_NAME: usize = 30;
const MAX_STUDENT_ID: usize = 32;

/// Student ids that would name a lab-wide resource (`<lab>-artifacts` is the AWS artifacts
/// bucket).
const RESERVED_STUDENT_IDS: &[&str] = &["artifacts"];

fn reserved_note() -> String {
    format!("allowed: any other id; reserved: {}", RESERVED_STUDENT_IDS.join(", "))
}
const MAX_NULL_PER_STUDENT: u32 = 10_000;

const DNS_LABEL_RULE: &str =
    "lowercase letters, digits and `-`, starting with a letter and ending with a letter or digit";

pub fn validate(file: LabFile, source: &Source, path: &Path) -> Result<Lab, Vec<Diagnostic>> {
    let mut v = Validator { source, errors: vec![], warnings: vec![] };
    let name = v.dns_label(&file.lab.name, "lab name", MAX_LAB_NAME);
    let provider = v.provider(&file.provider);
    let cohorts = v.cohorts(&file, path);
    let datasets = v.datasets(&file.datasets);
    v.student_section(&file, provider.as_ref(), &datasets);
    let expires = file.lab.expires.as_ref().and_then(|e| v.expiry(e));
    if let Some(budget) = &file.lab.budget {
        for amount in [&budget.per_student_per_hour, &budget.total].into_iter().flatten() {
            if !(*amount.get_ref() > 0.0) {
                v.error(
                    amount,
                    format!("budget amount {} is not positive", amount.get_ref()),
                    "allowed: a number > 0",
                );
            }
        }
    }
    for (cluster, c) in &file.cluster {
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
        }
    }
    if matches!(provider, Some(ProviderConfig::Local(_)))
        && (file.network.is_some() || !file.cluster.is_empty())
    {
        v.warnings
            .push("the local provider ignores [network] and [cluster]: they apply on cloud providers".into());
    }
    match (v.errors.is_empty(), provider) {
        (true, Some(provider)) => Ok(Lab {
            name: name.unwrap_or_default(),
            description: file.lab.description.clone(),
            path: path.to_owned(),
            provider,
            cohorts,
            student: file.student,
            datasets,
            clusters: file.cluster,
            network: file.network,
            expires,
            state: file.lab.state.clone(),
            warnings: v.warnings,
        }),
        _ => Err(v.errors),
    }
}

struct Validator<'a> {
    source: &'a Source,
    errors: Vec<Diagnostic>,
    warnings: Vec<String>,
}

impl Validator<'_> {
    fn error<T>(&mut self, at: &Spanned<T>, message: String, allowed: &str) {
        self.errors.push(self.source.error(at.span(), message).note(allowed));
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

    fn provider(&mut self, p: &ProviderSection) -> Option<ProviderConfig> {
        let mut chosen: Vec<ProviderConfig> = [
            p.local.clone().map(ProviderConfig::Local),
            p.aws.clone().map(ProviderConfig::Aws),
            p.kubernetes.clone().map(ProviderConfig::Kubernetes),
            p.gcp.clone().map(ProviderConfig::Gcp),
        ]
        .into_iter()
        .flatten()
        .collect();
        if chosen.len() == 1 {
            return chosen.pop();
        }
        let names: Vec<&str> = chosen.iter().map(ProviderConfig::name).collect();
        let message = if names.is_empty() {
            "no provider is configured".to_owned()
        } else {
            format!("more than one provider is configured: {}", names.join(", "))
        };
        let at = self.source.text.find("[provider").unwrap_or(0);
        let d = self.source.error(at..at + "[provider".len(), message);
        self.errors.push(d.note(
            "allowed: exactly one of [provider.local], [provider.aws], [provider.kubernetes], [provider.gcp]",
        ));
        None
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
            } else if let Some(email) = row.email.as_ref().filter(|e| !e.contains('@')) {
                Some((
                    format!("`{email}` is not an email address"),
                    "allowed: name@domain, or an empty field".into(),
                ))
            } else {
                None
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
        provider: Option<&ProviderConfig>,
        datasets: &BTreeMap<String, Dataset>,
    ) {
        let s = &file.student;
        let seeded = s.bucket.as_ref().map(|b| b.datasets.as_slice()).unwrap_or_default();
        for name in seeded {
            if !datasets.contains_key(name.get_ref()) && !file.datasets.contains_key(name.get_ref()) {
                let known: Vec<&str> = file.datasets.keys().map(String::as_str).collect();
                let mut d = self.source.error(name.span(), format!("unknown dataset `{}`", name.get_ref()));
                if let Some(s) = super::did_you_mean(name.get_ref(), known.iter().copied()) {
                    d = d.note(format!("help: did you mean `{s}`?"));
                }
                let allowed = if known.is_empty() {
                    "none: define one under [datasets.<name>]".into()
                } else {
                    known.join(", ")
                };
                self.errors.push(d.note(format!("allowed: {allowed}")));
            }
        }
        let has = |kind: DatasetGenerator| {
            seeded.iter().any(|n| file.datasets.get(n.get_ref()).is_some_and(|d| *d.kind.get_ref() == kind))
        };
        let workers = s.workers.as_ref();
        // On Kubernetes the smoke jobs generate their data in the student's volume.
        let has = |kind| matches!(provider, Some(ProviderConfig::Kubernetes(_))) || has(kind);
        for smoke in &s.smoke {
            let missing = match smoke.get_ref() {
                SmokeWorkload::Wordcount if workers.and_then(|w| w.mapreduce.as_ref()).is_none() => {
                    Some("[student.workers.mapreduce]")
                }
                SmokeWorkload::Wordcount if !has(DatasetGenerator::Text) => {
                    Some("a text dataset in [student.bucket] datasets")
                }
                SmokeWorkload::Hpsearch if workers.and_then(|w| w.scheduler.as_ref()).is_none() => {
                    Some("[student.workers.scheduler]")
                }
                SmokeWorkload::Hpsearch if !has(DatasetGenerator::Tabular) => {
                    Some("a tabular dataset in [student.bucket] datasets")
                }
                _ => None,
            };
            if let Some(missing) = missing {
                self.error(
                    smoke,
                    format!("smoke workload `{:?}` needs {missing}", smoke.get_ref()).to_lowercase(),
                    "allowed: add what it needs, or drop the workload",
                );
            }
        }
        if let Some(provider) = provider {
            for gpu in s.gpu.iter().chain(file.cohort.iter().filter_map(|c| c.gpu.as_ref())) {
                self.gpu(gpu, file, provider);
            }
            if let ProviderConfig::Kubernetes(settings) = provider {
                self.kubernetes(file, settings);
            }
        }
        if let Some(compute) = &s.compute {
            let pattern = compute.image.as_ref().filter(|i| !i.starts_with("ami-"));
            if let (Some(pattern), None) = (pattern, &compute.image_owner) {
                self.warnings.push(format!(
                    "[student.compute] image `{pattern}` is a name pattern without `image_owner`: anyone can publish an image by that name; set image_owner (an account id, or \"amazon\")"
                ));
            }
        }
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
    }

    /// GPUs need a provider that has them, and a pool to run on.
    fn gpu(&mut self, gpu: &Spanned<super::file::GpuSpec>, file: &LabFile, provider: &ProviderConfig) {
        let gpu_pools =
            file.cluster.values().flat_map(|c| c.node_pool.values()).filter(|p| p.gpu > 0).count();
        let scheduler = file.student.workers.as_ref().and_then(|w| w.scheduler.as_ref());
        if gpu.get_ref().count == 0 {
            self.error(gpu, "gpu count is 0".into(), "allowed: count >= 1, or remove the gpu setting");
        } else if !provider.offers_gpus() {
            self.error(gpu, format!("the {} provider cannot give students GPUs", provider.name()), "allowed: GPUs on aws, kubernetes or gcp with a [cluster.<name>.node_pool.<pool>] that has gpu > 0");
        } else if gpu_pools == 0 {
            self.error(
                gpu,
                "GPUs requested but no cluster has a GPU node pool".into(),
                "allowed: add a [cluster.<name>.node_pool.<pool>] with gpu > 0",
            );
        } else if matches!(provider, ProviderConfig::Kubernetes(_)) && scheduler.is_none() {
            self.error(
                gpu,
                "GPUs go to the scheduler's workers, and there are none".into(),
                "allowed: add [student.workers.scheduler], or remove the gpu setting",
            );
        }
    }

    /// What the kubernetes provider needs and cannot do, and Kubernetes quantities.
    fn kubernetes(&mut self, file: &LabFile, settings: &KubernetesSettings) {
        if settings.image.is_none() && file.student.workers.is_some() {
            let at = self.source.text.find("[provider.kubernetes]").unwrap_or(0);
            let d = self
                .source
                .error(at..at + "[provider.kubernetes]".len(), "the workers need an image, and none is set");
            self.errors.push(d.note("allowed: image = \"<registry>/<name>:<tag>\", built from the repository's Dockerfile and pullable by the cluster"));
        }
        if let Some(bucket) = &file.student.bucket {
            let at = bucket
                .datasets
                .first()
                .map(|d| d.span())
                .unwrap_or_else(|| self.source.text.find("bucket").map(|i| i..i + 6).unwrap_or(0..0));
            let d = self.source.error(at, "the kubernetes provider has no buckets or datasets");
            self.errors.push(d.note("allowed: remove [student.bucket], or use [provider.aws] for buckets"));
        }
        if file.cluster.len() > 1 {
            let at = self.source.text.find("[cluster").unwrap_or(0);
            let d = self.source.error(at..at + "[cluster".len(), format!("{} clusters are described, but the kubernetes provider works on one (its kubeconfig context)", file.cluster.len()));
            self.errors
                .push(d.note("allowed: at most one [cluster.<name>], describing the context's node pools"));
        }
        let s = &file.student;
        let workers = s.workers.as_ref();
        let mapreduce = workers.and_then(|w| w.mapreduce.as_ref()).map(|m| [&m.cpu, &m.memory]);
        let scheduler = workers.and_then(|w| w.scheduler.as_ref()).map(|w| [&w.cpu, &w.memory]);
        let quota = s.quota.as_ref().map(|q| [&q.cpu, &q.memory]);
        let storage = settings.storage.as_ref().map(|v| [&v.size]);
        let limits =
            s.limits.as_ref().map(|l| [&l.default_cpu, &l.default_memory, &l.max_cpu, &l.max_memory]);
        let quantities = mapreduce
            .into_iter()
            .flatten()
            .chain(scheduler.into_iter().flatten())
            .chain(quota.into_iter().flatten())
            .chain(limits.into_iter().flatten())
            .chain(storage.into_iter().flatten());
        let mut valid = true;
        for q in quantities.flatten() {
            if !is_quantity(q.get_ref()) {
                self.error(
                    q,
                    format!("`{}` is not a Kubernetes quantity", q.get_ref()),
                    "allowed: a number with an optional suffix, e.g. \"500m\", \"2\", \"512Mi\", \"8Gi\"",
                );
                valid = false;
            }
        }
        if valid {
            self.kubernetes_fit(file);
        }
    }

    /// The workers fit in each student's namespace: every container under the limit range's
    /// maximum, all of them together within the quota, a GPU worker on one GPU node.
    fn kubernetes_fit(&mut self, file: &LabFile) {
        use super::file::kubernetes_defaults as k8s;
        let s = &file.student;
        let Some(workers) = &s.workers else { return };
        // (service, pods, cpu, memory) per service; `labctl verify` runs a smoke job beside it
        // with the same resources.
        let smoke = |workload| u32::from(s.smoke.iter().any(|w| *w.get_ref() == workload));
        let mut services = vec![];
        if let Some(m) = &workers.mapreduce {
            services.push(("mapreduce", 1 + m.workers + smoke(SmokeWorkload::Wordcount), &m.cpu, &m.memory));
        }
        if let Some(w) = &workers.scheduler {
            services.push(("scheduler", 1 + w.workers + smoke(SmokeWorkload::Hpsearch), &w.cpu, &w.memory));
        }
        let who = if s.smoke.is_empty() { "the workers" } else { "the workers and their smoke jobs" };
        let source = self.source;
        // Where to point: the first of the given settings the file has, else its workers.
        let at = |candidates: &[Option<std::ops::Range<usize>>]| -> std::ops::Range<usize> {
            candidates
                .iter()
                .flatten()
                .next()
                .cloned()
                .unwrap_or_else(|| source.text.find("workers").map_or(0..0, |i| i..i + "workers".len()))
        };
        let span = |q: &Option<Spanned<String>>| q.as_ref().map(Spanned::span);
        let quota = s.quota.as_ref();
        let limits = s.limits.as_ref();
        let text = |q: Option<&Spanned<String>>, default: &'static str| {
            q.map_or(default.to_owned(), |v| v.get_ref().clone())
        };
        for (resource, index, max_q, quota_q, max_default, quota_default) in [
            (
                "CPU",
                0,
                limits.and_then(|l| l.max_cpu.as_ref()),
                quota.and_then(|q| q.cpu.as_ref()),
                k8s::MAX_CPU,
                k8s::QUOTA_CPU,
            ),
            (
                "memory",
                1,
                limits.and_then(|l| l.max_memory.as_ref()),
                quota.and_then(|q| q.memory.as_ref()),
                k8s::MAX_MEMORY,
                k8s::QUOTA_MEMORY,
            ),
        ] {
            let (max, total) = (text(max_q, max_default), text(quota_q, quota_default));
            let mut sum = 0.0;
            for (service, pods, cpu, memory) in &services {
                let (given, default) =
                    if index == 0 { (*cpu, k8s::WORKER_CPU) } else { (*memory, k8s::WORKER_MEMORY) };
                let each = text(given.as_ref(), default);
                sum += f64::from(*pods) * quantity_value(&each).unwrap_or(0.0);
                if quantity_value(&each) > quantity_value(&max) {
                    let d = source.error(at(&[span(given), max_q.map(Spanned::span)]), format!("{service} containers get {each} {resource}, above the limit range's maximum of {max} per container"));
                    self.errors.push(d.note(format!(
                        "allowed: at most {max} (raise [student.limits] max_{}, or ask for less)",
                        resource.to_lowercase()
                    )));
                }
            }
            if quantity_value(&total).is_some_and(|t| sum > t * (1.0 + 1e-9)) {
                let d = source.error(
                    at(&[quota_q.map(Spanned::span), span(services[0].2)]),
                    format!(
                        "{who} need {} {resource} in all, above the namespace quota of {total}",
                        show_quantity(sum, index == 0)
                    ),
                );
                self.errors.push(d.note(format!(
                    "allowed: a [student.quota] {} of at least that, or fewer or smaller workers",
                    resource.to_lowercase()
                )));
            }
        }
        let pods: u32 = services.iter().map(|s| s.1).sum();
        let quota_pods = quota.and_then(|q| q.pods).unwrap_or(k8s::QUOTA_PODS);
        if pods > quota_pods {
            let d = source.error(
                at(&[]),
                format!("{who} run {pods} pods, above the namespace quota of {quota_pods} pods"),
            );
            self.errors.push(d.note("allowed: [student.quota] pods of at least that, or fewer workers"));
        }
        let per_node =
            file.cluster.values().flat_map(|c| c.node_pool.values()).map(|p| p.gpu).max().unwrap_or(0);
        for gpu in s.gpu.iter().chain(file.cohort.iter().filter_map(|c| c.gpu.as_ref())) {
            if per_node > 0 && gpu.get_ref().count > per_node {
                self.error(
                    gpu,
                    format!(
                        "{} GPUs per worker, but the GPU pool's nodes have {per_node}",
                        gpu.get_ref().count
                    ),
                    &format!("allowed: count <= {per_node}"),
                );
            }
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
            Some(t) if t <= jiff::Timestamp::now() => {
                self.error(
                    value,
                    format!("expiry {text} is in the past"),
                    "allowed: a future date-time, e.g. 2030-06-30T18:00:00Z",
                );
                None
            }
            Some(t) => Some(t),
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

/// A Kubernetes resource quantity: a decimal number with an optional SI or binary suffix.
fn is_quantity(s: &str) -> bool {
    quantity_value(s).is_some()
}

/// The value of a quantity in base units (cores, bytes), if it is one.
fn quantity_value(s: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let (number, scale) =
        SUFFIXES.iter().find_map(|(x, scale)| s.strip_suffix(x).map(|n| (n, *scale))).unwrap_or((s, 1.0));
    let (whole, fraction) = number.split_once('.').map_or((number, None), |(w, f)| (w, Some(f)));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let valid = digits(whole)
        && fraction.is_none_or(|f| !f.is_empty() && digits(f))
        && (!whole.is_empty() || fraction.is_some());
    valid.then(|| number.parse::<f64>().ok()).flatten().map(|v| v * scale)
}

/// A CPU amount in cores or millicores, or memory in MiB, for messages.
fn show_quantity(value: f64, cpu: bool) -> String {
    match (cpu, value.fract() == 0.0) {
        (true, true) => format!("{value}"),
        (true, false) => format!("{}m", (value * 1000.0).round()),
        (false, _) => format!("{}Mi", (value / 1048576.0).ceil()),
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

#[cfg(test)]
mod tests {
    #[test]
    fn quantity_values() {
        assert_eq!(super::quantity_value("500m"), Some(0.5));
        assert_eq!(super::quantity_value("2"), Some(2.0));
        assert_eq!(super::quantity_value("512Mi"), Some(512.0 * 1048576.0));
        assert_eq!(super::quantity_value("1G"), Some(1e9));
        assert_eq!(super::show_quantity(2.25, true), "2250m");
        assert_eq!(super::show_quantity(3.0, true), "3");
        assert_eq!(super::show_quantity(1536.0 * 1048576.0, false), "1536Mi");
    }

    #[test]
    fn quantities() {
        for ok in ["1", "500m", "0.5", "512Mi", "8Gi", "2k", ".5"] {
            assert!(super::is_quantity(ok), "{ok}");
        }
        for bad in ["", "Mi", "1 Gi", "1GB", "-1", "one", "1.2.3"] {
            assert!(!super::is_quantity(bad), "{bad}");
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
