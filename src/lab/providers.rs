//! A file's `[provider.<name>]` tables alone, each configured by its plugin without a lab:
//! where `labctl reap` looks for labs whose files and states may be gone. A lab file will
//! do (only those tables are read), or a file holding nothing else.

use std::collections::BTreeMap;
use std::path::Path;

use labctl_provider_api::lab::{LabSections, SectionSpans, StudentSection};
use labctl_provider_api::{Findings, ProviderSetup, Settings};

use super::{spans, Context, Diagnostic, Source};

/// Every provider table of `path`, configured; or every problem found.
pub fn setups(path: &Path, cx: &Context) -> Result<Vec<Box<dyn ProviderSetup>>, Vec<Diagnostic>> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![Diagnostic::file(&name, format!("cannot read the file: {e}"))])?;
    let source = Source { name, text };
    toml::from_str::<toml::Table>(&source.text).map_err(|e| vec![source.toml_error(&e)])?;
    let known: Vec<&str> = cx.plugins.iter().map(|p| p.name()).collect();
    let spans = spans::of(&source.text);
    if spans.providers.is_empty() {
        let d = source.error(0..0, "no [provider.<name>] table: nothing says where to look");
        return Err(vec![d.note(format!("allowed: [provider.{}]", known.join("], [provider.")))]);
    }
    let (student, clusters, sections) = (StudentSection::default(), BTreeMap::new(), SectionSpans::default());
    let mut findings = Findings::default();
    let mut setups = vec![];
    for (name, span) in &spans.providers {
        let Some(plugin) = cx.plugins.iter().find(|p| p.name() == name) else {
            let d = source.error(span.key.clone(), format!("unknown provider `{name}`"));
            findings.errors.push(d.note(format!("allowed: {}", known.join(", "))));
            continue;
        };
        let settings = Settings {
            source: &source,
            span: span.table.clone(),
            lab_path: path,
            data_dir: cx.data_dir.clone(),
        };
        let lab = LabSections {
            source: &source,
            path,
            student: &student,
            clusters: &clusters,
            network: None,
            spans: &sections,
            gpus: vec![],
            cohorts: vec![],
        };
        setups.extend(plugin.configure(&settings, &lab, &mut findings));
    }
    if findings.errors.is_empty() {
        Ok(setups)
    } else {
        Err(findings.errors)
    }
}
