//! The lab file: parse, validate (with each provider's plugin judging its part), read
//! rosters, expand into the desired resource graph.

mod expand;
mod file;
pub mod providers;
mod roster;
mod spans;
mod validate;

use std::path::Path;

pub use expand::expand;
pub use file::LabFile;
pub use labctl_provider_api::lab::{did_you_mean, Cohort, Diagnostic, Lab, SmokeWorkload, Source, Student};
use labctl_provider_api::{Plugin, ProviderSetup};
pub use validate::Context;

/// A validated lab and its provider, configured.
#[derive(Debug)]
pub struct Loaded {
    pub lab: Lab,
    pub setup: Box<dyn ProviderSetup>,
}

/// Reads and validates a lab file (and its rosters). Returns every problem found, not just
/// the first, so an instructor fixes a file in one go.
pub fn load(path: &Path, cx: &Context) -> Result<Loaded, Vec<Diagnostic>> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![Diagnostic::file(&name, format!("cannot read the lab file: {e}"))])?;
    let source = Source { name, text };
    let file: LabFile = toml::from_str(&source.text).map_err(|e| vec![source.toml_error(&e)])?;
    let spans = spans::of(&source.text);
    validate::validate(file, &source, &spans, path, cx)
}

/// The JSON Schema of the lab file, for editors: the core's sections, and each provider's
/// `[provider.<name>]` table as its plugin describes it.
pub fn json_schema(plugins: &[&dyn Plugin]) -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(LabFile)).unwrap_or_default();
    let mut tables = serde_json::Map::new();
    for plugin in plugins {
        let mut table = plugin.settings_schema();
        // Its definitions join the file's, where its references point.
        if let Some(serde_json::Value::Object(definitions)) =
            table.as_object_mut().and_then(|t| t.remove("definitions"))
        {
            for (name, definition) in definitions {
                schema["definitions"][name] = definition;
            }
        }
        if let Some(t) = table.as_object_mut() {
            t.remove("$schema");
        }
        tables.insert(plugin.name().to_owned(), table);
    }
    schema["properties"]["provider"] = serde_json::json!({
        "description": "Where the lab is provisioned: exactly one of these tables.",
        "type": "object",
        "properties": tables,
        "additionalProperties": false,
        "minProperties": 1,
        "maxProperties": 1,
    });
    schema
}
