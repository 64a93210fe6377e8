//! validate, status, output, state list/show, schema: the commands that only look.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

use labctl_provider_api::StudentResources;

use super::args::Place;
use super::error::{CliError, EXIT_INVALID};
use super::open::{load_lab, refresh, Opened};
use crate::lab;
use crate::state::{redact, ResourceState};

pub fn validate(path: &Path, json: bool) -> Result<u8, CliError> {
    if !json {
        let lab::Loaded { lab, setup } = load_lab(path, &Place::default())?;
        let resources = lab::expand(&lab, setup.as_ref()).len();
        println!(
            "{} is valid: lab `{}`, {} provider, {} cohort(s), {} student(s), {resources} resources.",
            path.display(),
            lab.name,
            lab.provider,
            lab.cohorts.len(),
            lab.students().count()
        );
        return Ok(0);
    }
    let plugins = crate::registry::plugins();
    let cx = lab::Context { plugins: &plugins, data_dir: None };
    let (valid, diagnostics) = match lab::load(path, &cx) {
        Ok(_) => (true, vec![]),
        Err(d) => (false, d),
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({ "valid": valid, "diagnostics": diagnostics }))
            .expect("JSON values serialise")
    );
    Ok(if valid { 0 } else { EXIT_INVALID })
}

pub fn schema() -> Result<u8, CliError> {
    println!(
        "{}",
        serde_json::to_string_pretty(&lab::json_schema(&crate::registry::plugins()))
            .expect("JSON values serialise")
    );
    Ok(0)
}

/// Resources in state, grouped by student (`None` for shared ones).
fn by_student(
    resources: &BTreeMap<String, ResourceState>,
) -> BTreeMap<Option<&str>, Vec<(&String, &ResourceState)>> {
    let mut groups: BTreeMap<Option<&str>, Vec<_>> = BTreeMap::new();
    for (address, r) in resources {
        groups.entry(r.tags.student.as_deref()).or_default().push((address, r));
    }
    groups
}

/// What the provider says of each student's environment: from state, then live from their
/// services where it can ask them (every student at once).
async fn health(
    o: &Opened,
    students: &BTreeMap<String, StudentResources>,
) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> =
        students.iter().map(|(id, s)| (id.clone(), o.setup.describe(s))).collect();
    let Ok(runner) = o.registry.smoke_runner() else { return out };
    let mut live = tokio::task::JoinSet::new();
    for (id, student) in students {
        let (runner, id, student) = (runner.clone(), id.clone(), student.clone());
        live.spawn(async move { (id, runner.health(&student).await) });
    }
    while let Some(Ok((id, answers))) = live.join_next().await {
        out.entry(id).or_default().extend(answers);
    }
    out
}

pub async fn status(o: &Opened, json: bool) -> Result<u8, CliError> {
    let state = o.load_state()?;
    let refreshed = refresh(o, &state).await?;
    let groups = by_student(&state.resources);
    let mut live = health(o, &crate::verify::students(&state)).await;
    let mut rows = vec![];
    for (cohort, student) in o.lab.students() {
        let resources = groups.get(&Some(student.id.as_str())).map(Vec::as_slice).unwrap_or_default();
        let missing: Vec<&str> = resources
            .iter()
            .filter(|(a, _)| refreshed.get(*a) == Some(&crate::plan::Refresh::Gone))
            .map(|(a, _)| a.as_str())
            .collect();
        let tainted: Vec<&str> =
            resources.iter().filter(|(_, r)| r.tainted).map(|(a, _)| a.as_str()).collect();
        let health = if resources.is_empty() {
            "not created".to_owned()
        } else if missing.is_empty() && tainted.is_empty() {
            "ok".to_owned()
        } else {
            let parts = [(missing.len(), "missing (run apply to repair)"), (tainted.len(), "tainted")];
            parts
                .iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!("{n} {what}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let services: serde_json::Map<String, Value> =
            live.remove(&student.id).unwrap_or_default().into_iter().map(|(k, v)| (k, json!(v))).collect();
        rows.push(json!({
            "student": student.id, "cohort": cohort.name, "resources": resources.len(),
            "missing": missing, "tainted": tainted, "health": health, "services": services,
        }));
    }
    let orphans: Vec<&str> = state
        .resources
        .iter()
        .filter(|(_, r)| {
            r.tags.student.as_ref().is_some_and(|s| !o.lab.students().any(|(_, st)| &st.id == s))
        })
        .map(|(a, _)| a.as_str())
        .collect();
    if json {
        let doc = json!({
            "lab": o.lab.name, "provider": o.setup.name(), "serial": state.serial,
            "resources": state.resources.len(), "students": rows, "not_in_lab_file": orphans,
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("JSON values serialise"));
        return Ok(0);
    }
    let mut out = anstream::stdout();
    let _ = writeln!(
        out,
        "Lab `{}` ({} provider): {} resources in state (serial {}).\n",
        o.lab.name,
        o.setup.name(),
        state.resources.len(),
        state.serial
    );
    let width =
        rows.iter().map(|r| r["student"].as_str().unwrap_or_default().len()).max().unwrap_or(0).max(7);
    let _ =
        writeln!(out, "{:width$}  {:10}  {:>9}  {:34}  SERVICES", "STUDENT", "COHORT", "RESOURCES", "HEALTH");
    for r in &rows {
        let services: Vec<String> = r["services"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default()))
            .collect();
        let _ = writeln!(
            out,
            "{:width$}  {:10}  {:>9}  {:34}  {}",
            r["student"].as_str().unwrap_or_default(),
            r["cohort"].as_str().unwrap_or_default(),
            r["resources"].as_u64().unwrap_or_default(),
            r["health"].as_str().unwrap_or_default(),
            if services.is_empty() { "-".to_owned() } else { services.join(", ") }
        );
    }
    if !orphans.is_empty() {
        let _ = writeln!(
            out,
            "\n{} resources belong to students no longer in the lab file; `labctl apply` deletes them.",
            orphans.len()
        );
    }
    Ok(0)
}

pub fn output(o: &Opened, only: Option<&str>, show_sensitive: bool, json: bool) -> Result<u8, CliError> {
    let state = o.load_state()?;
    let groups = by_student(&state.resources);
    let mut students = serde_json::Map::new();
    for (_, student) in o.lab.students().filter(|(_, s)| only.is_none_or(|id| id == s.id)) {
        let mut outputs = serde_json::Map::new();
        for (address, r) in groups.get(&Some(student.id.as_str())).map(Vec::as_slice).unwrap_or_default() {
            if r.kind == "null" {
                continue;
            }
            let attributes =
                if show_sensitive { r.attributes.clone() } else { redact(&r.attributes, &r.sensitive) };
            let name = address.strip_prefix(&format!("student[\"{}\"].", student.id)).unwrap_or(address);
            outputs.insert(name.to_owned(), Value::Object(attributes));
        }
        students.insert(student.id.clone(), Value::Object(outputs));
    }
    if let Some(id) = only.filter(|_| students.is_empty()) {
        return Err(CliError::invalid(format!("no student `{id}` in lab `{}`", o.lab.name)));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "lab": o.lab.name, "students": students }))
                .expect("JSON values serialise")
        );
        return Ok(0);
    }
    for (id, outputs) in &students {
        println!("student {id}");
        let Value::Object(outputs) = outputs else { continue };
        if outputs.is_empty() {
            println!("  (nothing created yet)");
        }
        for (name, attributes) in outputs {
            for (k, v) in attributes.as_object().into_iter().flatten() {
                println!("  {name}.{k} = {}", show(v));
            }
        }
    }
    Ok(0)
}

/// An attribute for the text output: a long list (the objects a resource is made of, say)
/// is summarised; `--json` has it whole.
fn show(v: &Value) -> String {
    const LONG: usize = 160;
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) if v.to_string().len() > LONG => {
            format!("({} objects; --json shows them)", items.len())
        }
        other => other.to_string(),
    }
}

pub fn state_list(o: &Opened, json: bool) -> Result<u8, CliError> {
    let state = o.load_state()?;
    if json {
        let list: Vec<Value> = state
            .resources
            .iter()
            .map(|(a, r)| json!({ "address": a, "provider": r.provider, "kind": r.kind, "id": r.id, "tainted": r.tainted }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&list).expect("JSON values serialise"));
    } else {
        for (address, r) in &state.resources {
            println!("{address}{}", if r.tainted { "  (tainted)" } else { "" });
        }
    }
    Ok(0)
}

pub fn state_show(o: &Opened, address: &str, json: bool) -> Result<u8, CliError> {
    let state = o.load_state()?;
    let Some(r) = state.resources.get(address) else {
        let known: Vec<&str> = state.resources.keys().map(String::as_str).collect();
        let hint =
            lab::did_you_mean(address, known).map(|s| format!(" Did you mean `{s}`?")).unwrap_or_default();
        return Err(CliError::invalid(format!("no resource `{address}` in state.{hint}")));
    };
    let shown = json!({
        "address": address, "provider": r.provider, "kind": r.kind, "id": r.id, "tainted": r.tainted,
        "tags": r.tags, "deps": r.deps, "config": r.config, "attributes": r.redacted_attributes(),
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&shown).expect("JSON values serialise"));
    } else {
        println!(
            "{address}  ({} {} `{}`{})",
            r.provider,
            r.kind,
            r.id,
            if r.tainted { ", tainted" } else { "" }
        );
        for (k, v) in r.redacted_attributes() {
            println!("  {k} = {v}");
        }
        if !r.deps.is_empty() {
            println!("  depends on: {}", r.deps.join(", "));
        }
    }
    Ok(0)
}
