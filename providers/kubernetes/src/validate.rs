//! What only the Kubernetes provider can judge in a lab file: an image for the workers and
//! the datasets' seeding, one cluster (unless the lab makes the cluster), quantities, and workers that fit their namespace (every container
//! under the limit range's maximum, all of them within the quota, a GPU worker on one GPU
//! node).

use labctl_provider_api::lab::{LabSections, SmokeWorkload};
use labctl_provider_api::Findings;
use toml::Spanned;

use crate::plugin::{defaults, KubernetesSettings};

pub fn check(
    settings: &KubernetesSettings,
    table: std::ops::Range<usize>,
    lab: &LabSections,
    out: &mut Findings,
) {
    if lab.clusters.len() > 1 {
        let d = lab.source.error(
            lab.spans.cluster.clone().unwrap_or(0..0),
            format!(
                "{} clusters are described, but the kubernetes provider works on one (its kubeconfig context)",
                lab.clusters.len()
            ),
        );
        out.errors.push(d.note("allowed: at most one [cluster.<name>], describing the context's node pools"));
    }
    check_students(settings, table, lab, out);
}

/// What a lab's students need on any cluster, theirs or one the lab makes: an image for the
/// workers, GPUs only for workers that take them, quantities that fit their namespace.
pub fn check_students(
    settings: &KubernetesSettings,
    table: std::ops::Range<usize>,
    lab: &LabSections,
    out: &mut Findings,
) {
    let s = lab.student;
    let workers = s.workers.as_ref();
    let datasets = s.bucket.as_ref().is_some_and(|b| !b.datasets.is_empty());
    if settings.image.is_none() && (workers.is_some() || datasets) {
        let what = if workers.is_some() { "the workers need" } else { "seeding the datasets needs" };
        let d = lab.source.error(table, format!("{what} an image, and none is set"));
        out.errors.push(d.note("allowed: image = \"<registry>/<name>:<tag>\", built from the repository's Dockerfile and pullable by the cluster"));
    }
    let scheduler = workers.and_then(|w| w.scheduler.as_ref());
    let gpu_pools = lab.clusters.values().flat_map(|c| c.node_pool.values()).any(|p| p.gpu > 0);
    for gpu in &lab.gpus {
        if gpu.get_ref().count > 0 && gpu_pools && scheduler.is_none() {
            out.errors.push(lab.error(
                gpu.span(),
                "GPUs go to the scheduler's workers, and there are none",
                "allowed: add [student.workers.scheduler], or remove the gpu setting",
            ));
        }
    }
    let mapreduce = workers.and_then(|w| w.mapreduce.as_ref()).map(|m| [&m.cpu, &m.memory]);
    let scheduler = scheduler.map(|w| [&w.cpu, &w.memory]);
    let quota = s.quota.as_ref().map(|q| [&q.cpu, &q.memory]);
    let storage = settings.storage.as_ref().map(|v| [&v.size]);
    let limits = s.limits.as_ref().map(|l| [&l.default_cpu, &l.default_memory, &l.max_cpu, &l.max_memory]);
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
            out.errors.push(lab.error(
                q.span(),
                format!("`{}` is not a Kubernetes quantity", q.get_ref()),
                "allowed: a number with an optional suffix, e.g. \"500m\", \"2\", \"512Mi\", \"8Gi\"",
            ));
            valid = false;
        }
    }
    if valid {
        fit(lab, out);
    }
}

/// The workers fit in each student's namespace.
fn fit(lab: &LabSections, out: &mut Findings) {
    use defaults as k8s;
    let s = lab.student;
    let Some(workers) = &s.workers else { return };
    // (service, pods, cpu, memory) per service; `labctl verify` runs a smoke job beside it
    // with the same resources.
    let smoke = |workload| u32::from(s.smoke.iter().any(|w| *w.get_ref() == workload));
    let mut services = vec![];
    if let Some(m) = &workers.mapreduce {
        services.push((
            "mapreduce",
            1 + *m.workers.get_ref() + smoke(SmokeWorkload::Wordcount),
            &m.cpu,
            &m.memory,
        ));
    }
    if let Some(w) = &workers.scheduler {
        services.push((
            "scheduler",
            1 + *w.workers.get_ref() + smoke(SmokeWorkload::Hpsearch),
            &w.cpu,
            &w.memory,
        ));
    }
    let who = if s.smoke.is_empty() { "the workers" } else { "the workers and their smoke jobs" };
    let source = lab.source;
    // Where to point: the first of the given settings the file has, else its workers.
    let at = |candidates: &[Option<std::ops::Range<usize>>]| -> std::ops::Range<usize> {
        candidates.iter().flatten().next().cloned().unwrap_or_else(|| lab.workers_span())
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
                let d = source.error(
                    at(&[span(given), max_q.map(Spanned::span)]),
                    format!("{service} containers get {each} {resource}, above the limit range's maximum of {max} per container"),
                );
                out.errors.push(d.note(format!(
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
            out.errors.push(d.note(format!(
                "allowed: a [student.quota] {} of at least that, or fewer or smaller workers",
                resource.to_lowercase()
            )));
        }
    }
    let pods: u32 = services.iter().map(|s| s.1).sum();
    let quota_pods = quota.and_then(|q| q.pods).unwrap_or(k8s::QUOTA_PODS);
    if pods > quota_pods {
        let d = source
            .error(at(&[]), format!("{who} run {pods} pods, above the namespace quota of {quota_pods} pods"));
        out.errors.push(d.note("allowed: [student.quota] pods of at least that, or fewer workers"));
    }
    let per_node = lab.clusters.values().flat_map(|c| c.node_pool.values()).map(|p| p.gpu).max().unwrap_or(0);
    for gpu in &lab.gpus {
        if per_node > 0 && gpu.get_ref().count > per_node {
            out.errors.push(lab.error(
                gpu.span(),
                format!("{} GPUs per worker, but the GPU pool's nodes have {per_node}", gpu.get_ref().count),
                format!("allowed: count <= {per_node}"),
            ));
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
}
