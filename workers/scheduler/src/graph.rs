//! Task graph files (JSON or TOML) for `lab-scheduler submit`: tasks with string ids,
//! a built-in function or a command each, and the outputs wanted.
//!
//! ```toml
//! [[task]]
//! id = "data"
//! function = "sleep"
//! args = { ms = 100 }
//!
//! [[task]]
//! id = "train"
//! command = ["python3", "train.py", "--alpha", "0.1"]
//! files = ["train.py"]  # shipped with the graph, from beside the graph file
//! deps = ["data"]
//!
//! outputs = ["train"]   # default: the tasks nothing depends on
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use labctl_wire::files::Shipped;

use serde::Deserialize;
use serde_json::Value;

use crate::protocol::{Payload, TaskSpec};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    task: Vec<Entry>,
    outputs: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    function: Option<String>,
    #[serde(default)]
    args: Value,
    command: Option<Vec<String>>,
    /// For a command: files it needs, relative to the graph file's directory.
    #[serde(default)]
    files: Vec<PathBuf>,
    #[serde(default)]
    deps: Vec<String>,
    #[serde(default)]
    gpus: u32,
    #[serde(default)]
    priority: i32,
}

/// A parsed graph: tasks with numeric ids, the wanted ids, and the names back.
pub struct Graph {
    pub tasks: Vec<TaskSpec>,
    pub wanted: Vec<u64>,
    pub names: Vec<String>,
}

/// Parses a graph file's text; `toml` picks the format, and command tasks' `files` are read
/// from `base`.
pub fn parse(text: &str, toml: bool, base: &Path) -> Result<Graph, String> {
    let file: File =
        if toml { toml_parse(text)? } else { serde_json::from_str(text).map_err(|e| e.to_string())? };
    let ids: HashMap<&str, u64> =
        file.task.iter().enumerate().map(|(i, t)| (t.id.as_str(), i as u64)).collect();
    if ids.len() != file.task.len() {
        return Err("task ids must be unique".into());
    }
    let lookup = |name: &str| ids.get(name).copied().ok_or_else(|| format!("unknown task `{name}`"));
    let mut tasks = vec![];
    for t in &file.task {
        let payload = match (&t.function, &t.command) {
            (Some(f), None) => Payload::Builtin { function: f.clone(), args: t.args.clone() },
            (None, Some(argv)) => {
                let files = Shipped::read(base, &t.files).map_err(|e| format!("task `{}`: {e}", t.id))?;
                Payload::Command { argv: argv.clone(), files }
            }
            _ => return Err(format!("task `{}` needs exactly one of `function` or `command`", t.id)),
        };
        if !t.files.is_empty() && t.command.is_none() {
            return Err(format!("task `{}`: `files` go with a `command`", t.id));
        }
        let deps = t.deps.iter().map(|d| lookup(d)).collect::<Result<_, _>>()?;
        tasks.push(TaskSpec { id: lookup(&t.id)?, deps, payload, gpus: t.gpus, priority: t.priority });
    }
    let wanted = match &file.outputs {
        Some(outputs) => outputs.iter().map(|o| lookup(o)).collect::<Result<_, _>>()?,
        None => {
            let used: std::collections::HashSet<u64> = tasks.iter().flat_map(|t| t.deps.clone()).collect();
            tasks.iter().map(|t| t.id).filter(|id| !used.contains(id)).collect()
        }
    };
    Ok(Graph { tasks, wanted, names: file.task.into_iter().map(|t| t.id).collect() })
}

fn toml_parse(text: &str) -> Result<File, String> {
    let value: toml::Value = toml::from_str(text).map_err(|e| e.to_string())?;
    serde_json::from_value(serde_json::to_value(value).map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}
