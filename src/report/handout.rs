//! Student handouts: one Markdown and one HTML file per student, rendered from the tera
//! templates in `templates/` (built into the binary). They hold the student's token, so
//! they are written with mode 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use labctl_datasets::DatasetKind;
use labctl_provider_api::ProviderSetup;
use serde_json::{json, Value};

use crate::lab::Lab;
use crate::state::State;

const TEMPLATES: [(&str, &str); 2] = [
    ("md", include_str!("../../templates/handout.md.tera")),
    ("html", include_str!("../../templates/handout.html.tera")),
];

/// Why the handouts could not be written.
#[derive(Debug, thiserror::Error)]
pub enum HandoutError {
    #[error("the handout templates are broken")]
    Template(#[source] tera::Error),
    #[error("cannot render the handout of `{student}`")]
    Render {
        student: String,
        #[source]
        source: tera::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Writes every student's handouts into `dir`; returns the files written.
pub fn write_handouts(
    lab: &Lab,
    state: &State,
    dir: &Path,
    setup: &dyn ProviderSetup,
) -> Result<Vec<PathBuf>, HandoutError> {
    let mut tera = tera::Tera::default();
    for (ext, text) in TEMPLATES {
        tera.add_raw_template(ext, text).map_err(HandoutError::Template)?;
    }
    tera.autoescape_on(vec!["html"]);
    std::fs::create_dir_all(dir).map_err(|source| HandoutError::Write { path: dir.to_owned(), source })?;
    let mut written = vec![];
    let mut resources = crate::verify::students(state);
    for (cohort, student) in lab.students() {
        let mine = resources.remove(&student.id).unwrap_or_default();
        let endpoints = setup.endpoints(&mine);
        let path = |name: &str| endpoints.datasets.get(name).cloned().flatten();
        let datasets: Vec<Value> = lab.seeded().map(|d| json!({ "name": d, "path": path(d) })).collect();
        let corpus = lab
            .seeded()
            .find(|d| lab.datasets.get(*d).is_some_and(|ds| matches!(ds.kind, DatasetKind::Text { .. })))
            .map(path);
        let mut context = json!({
            "corpus": corpus,
            "lab": { "name": lab.name, "description": lab.description },
            "student": { "id": student.id, "name": student.name, "email": student.email, "cohort": cohort.name },
            "token": endpoints.token,
            "bucket": endpoints.bucket,
            "datasets": datasets,
            "mapreduce": endpoints.mapreduce,
            "scheduler": endpoints.scheduler,
            "status_url": endpoints.status_url,
        });
        // The templates' section of each provider: how this student gets in.
        for (provider, access) in &endpoints.access {
            context[provider.as_str()] = access.clone();
        }
        let rendering = |source| HandoutError::Render { student: student.id.clone(), source };
        let context = tera::Context::from_value(context).map_err(rendering)?;
        for (ext, _) in TEMPLATES {
            let text = tera.render(ext, &context).map_err(rendering)?;
            let path = dir.join(format!("{}.{ext}", student.id));
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(|source| HandoutError::Write { path: path.clone(), source })?;
            written.push(path);
        }
    }
    Ok(written)
}
