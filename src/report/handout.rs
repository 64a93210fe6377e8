//! Student handouts: one Markdown and one HTML file per student, rendered from the tera
//! templates in `templates/` (built into the binary). They hold the student's token, so
//! they are written with mode 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use labctl_provider_api::ports;
use serde_json::{json, Value};

use crate::lab::Lab;
use crate::state::State;

const TEMPLATES: [(&str, &str); 2] = [
    ("md", include_str!("../../templates/handout.md.tera")),
    ("html", include_str!("../../templates/handout.html.tera")),
];

/// Writes every student's handouts into `dir`; returns the files written.
pub fn write_handouts(lab: &Lab, state: &State, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut tera = tera::Tera::default();
    for (ext, text) in TEMPLATES {
        tera.add_raw_template(ext, text).map_err(|e| format!("handout template: {e}"))?;
    }
    tera.autoescape_on(vec!["html"]);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = vec![];
    for (cohort, student) in lab.students() {
        let attr = |what: &str, key: &str| -> Value {
            state
                .resources
                .get(&format!("student[\"{}\"].{what}", student.id))
                .and_then(|r| r.attributes.get(key))
                .cloned()
                .unwrap_or(Value::Null)
        };
        // On a cloud VM the workers listen on fixed ports, reached through an SSH tunnel; on
        // Kubernetes on the same ports, reached through `kubectl port-forward`.
        let kubernetes = !attr("namespace", "namespace").is_null();
        let port = |service: &str, kind: &str, port: u16| {
            let forwarded = (kubernetes && !attr(kind, "address").is_null()).then_some(u64::from(port));
            forwarded.or_else(|| attr("vm", "ports").get(service).and_then(Value::as_u64))
        };
        let mapreduce_port = port("mapreduce", "mapreduce", ports::MAPREDUCE);
        let scheduler_port = port("scheduler", "scheduler", ports::SCHEDULER);
        let status_port = port("scheduler_http", "scheduler", ports::SCHEDULER_HTTP);
        let datasets: Vec<Value> = lab
            .student
            .bucket
            .iter()
            .flat_map(|b| &b.datasets)
            .map(|d| json!({ "name": d.get_ref(), "path": attr(&format!("dataset[\"{}\"]", d.get_ref()), "path") }))
            .collect();
        let corpus = lab
            .student
            .bucket
            .iter()
            .flat_map(|b| &b.datasets)
            .find(|d| {
                lab.datasets
                    .get(d.get_ref())
                    .is_some_and(|ds| matches!(ds.kind, labctl_datasets::DatasetKind::Text { .. }))
            })
            .map(|d| attr(&format!("dataset[\"{}\"]", d.get_ref()), "path"));
        let context = json!({
            "corpus": corpus,
            "lab": { "name": lab.name, "description": lab.description },
            "student": { "id": student.id, "name": student.name, "email": student.email, "cohort": cohort.name },
            "token": attr("credential", "token"),
            "bucket": or(attr("bucket", "path"), attr("bucket", "url")),
            "datasets": datasets,
            "mapreduce": or(mapreduce_port.map(|p| format!("127.0.0.1:{p}")).into(), attr("mapreduce", "address")),
            "scheduler": or(scheduler_port.map(|p| format!("127.0.0.1:{p}")).into(), attr("scheduler", "address")),
            "status_url": or(status_port.map(|p| format!("http://127.0.0.1:{p}/status")).into(), attr("scheduler", "status_url")),
            "kubernetes": (!attr("namespace", "namespace").is_null()).then(|| json!({
                "namespace": attr("namespace", "namespace"),
                "kubeconfig": attr("namespace", "kubeconfig"),
                "volume": attr("namespace", "volume"),
            })),
            "aws": (!attr("credential", "access_key_id").is_null()).then(|| json!({
                "access_key_id": attr("credential", "access_key_id"),
                "secret_access_key": attr("credential", "secret_access_key"),
                "vm_ip": or(attr("vm", "public_ip"), attr("vm", "private_ip")),
                "ports": attr("vm", "ports"),
            })),
        });
        let context = tera::Context::from_value(context).map_err(|e| e.to_string())?;
        for (ext, _) in TEMPLATES {
            let text = tera
                .render(ext, &context)
                .map_err(|e| format!("rendering the handout of {}: {e:?}", student.id))?;
            let path = dir.join(format!("{}.{ext}", student.id));
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            written.push(path);
        }
    }
    Ok(written)
}

/// `first` unless it is null.
fn or(first: Value, second: Value) -> Value {
    if first.is_null() {
        second
    } else {
        first
    }
}
