//! Built-in task functions, registered by name, and command tasks.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use labctl_wire::files::Shipped;
use serde_json::{json, Value};

use crate::model::{self, Params, Source};
use crate::protocol::Payload;

/// Whether running the payload could take its worker down (so its start must be reported
/// first, for poison-task detection).
pub fn may_kill_worker(p: &Payload) -> bool {
    match p {
        Payload::Command { .. } => true,
        Payload::Builtin { function, .. } => function == "crash",
    }
}

/// Whether the payload is cheap enough to run inline on the worker's event loop.
pub fn is_trivial(p: &Payload) -> bool {
    matches!(p, Payload::Builtin { function, .. } if matches!(function.as_str(), "noop" | "sum" | "square" | "add" | "fail" | "best"))
}

/// Runs `payload` with its dependencies' results.
pub fn run(payload: &Payload, inputs: &[Value]) -> Result<Value, String> {
    match payload {
        Payload::Command { argv, files } => command(argv, files),
        Payload::Builtin { function, args } => builtin(function, args, inputs),
    }
}

fn arg_f64(args: &Value, key: &str) -> Result<f64, String> {
    args.get(key).and_then(Value::as_f64).ok_or_else(|| format!("missing number argument `{key}`"))
}

fn builtin(function: &str, args: &Value, inputs: &[Value]) -> Result<Value, String> {
    match function {
        "noop" => Ok(Value::Null),
        "sleep" => {
            std::thread::sleep(Duration::from_millis(arg_f64(args, "ms")? as u64));
            Ok(args.get("value").cloned().unwrap_or(Value::Null))
        }
        "square" => {
            let x = arg_f64(args, "x")?;
            Ok(json!(x * x))
        }
        "add" => Ok(json!(
            inputs.iter().filter_map(Value::as_f64).sum::<f64>()
                + args.get("x").and_then(Value::as_f64).unwrap_or(0.0)
        )),
        "sum" => Ok(json!(inputs.iter().filter_map(Value::as_f64).sum::<f64>())),
        "fail" => Err(args.get("message").and_then(Value::as_str).unwrap_or("failed on purpose").to_owned()),
        "crash" => std::process::exit(9),
        "fit" => {
            let source: Source =
                serde_json::from_value(args["dataset"].clone()).map_err(|e| format!("dataset: {e}"))?;
            let params: Params =
                serde_json::from_value(args["params"].clone()).map_err(|e| format!("params: {e}"))?;
            let fold = arg_f64(args, "fold")? as u32;
            let folds = arg_f64(args, "folds")? as u32;
            let mse = model::fit_and_score(&*model::table(&source)?, params, fold, folds);
            Ok(json!({ "params": params, "fold": fold, "mse": mse }))
        }
        "best" => best(inputs),
        other => Err(format!(
            "unknown function `{other}`; built-ins are noop, sleep, square, add, sum, fail, crash, fit, best"
        )),
    }
}

/// Averages fit results per parameter set and picks the lowest mean error.
pub fn best(fits: &[Value]) -> Result<Value, String> {
    let mut by_params: Vec<(Value, Vec<f64>)> = vec![];
    for f in fits {
        let (p, mse) = (f["params"].clone(), f["mse"].as_f64().ok_or("a fit result without mse")?);
        match by_params.iter_mut().find(|(q, _)| *q == p) {
            Some((_, v)) => v.push(mse),
            None => by_params.push((p, vec![mse])),
        }
    }
    let scores: Vec<Value> = by_params
        .iter()
        .map(|(p, v)| json!({ "params": p, "mean_mse": v.iter().sum::<f64>() / v.len() as f64, "folds": v.len() }))
        .collect();
    let best = scores
        .iter()
        .min_by(|a, b| {
            a["mean_mse"].as_f64().unwrap_or(f64::MAX).total_cmp(&b["mean_mse"].as_f64().unwrap_or(f64::MAX))
        })
        .cloned()
        .ok_or("no fits")?;
    Ok(json!({ "best": best, "scores": scores, "fits": fits.len() }))
}

/// Runs a program in a fresh directory holding `files`; returns its exit code and output,
/// or an error with the tail of stderr.
fn command(argv: &[String], files: &Shipped) -> Result<Value, String> {
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let dir = files.task_dir().map_err(|e| e.to_string())?;
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    let mut stderr_pipe = child.stderr.take().expect("piped");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    let _ = child.stdout.take().expect("piped").read_to_string(&mut stdout);
    let status = child.wait().map_err(|e| e.to_string())?;
    let stderr = err_reader.join().unwrap_or_default();
    if status.success() {
        return Ok(json!({ "code": 0, "stdout": stdout, "stderr": stderr }));
    }
    let tail: Vec<&str> = stderr.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect();
    Err(format!("`{}` failed ({status}); stderr ends with:\n{}", argv.join(" "), tail.join("\n")))
}
