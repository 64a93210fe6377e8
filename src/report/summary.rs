//! The end-of-run summary: counts, then each failure with its cause.

use std::fmt::Write;

use serde_json::json;

use super::{paint, BOLD, GREEN, RED, YELLOW};
use crate::engine::{Outcome, Report};
use crate::plan::{Counts, Plan};

/// "Apply complete: …" plus the failures and what they held back.
pub fn render_summary(verb: &str, plan: &Plan, report: &Report) -> String {
    let mut done = Counts::default();
    let (mut failed, mut skipped) = (vec![], vec![]);
    for (a, o) in plan.actions.iter().zip(&report.outcomes) {
        match o {
            Outcome::Done { .. } => done.add(a.action),
            Outcome::Failed { error, .. } => failed.push(format!("  {}: {error}", a.address)),
            Outcome::Skipped { because } => skipped.push((a.address.as_str(), because.as_str())),
        }
    }
    let mut out = String::new();
    let title = if report.interrupted {
        paint(YELLOW, format!("{verb} interrupted:"))
    } else if report.is_success() {
        paint(GREEN, format!("{verb} complete:"))
    } else {
        paint(RED, format!("{verb} finished with errors:"))
    };
    let _ = write!(
        out,
        "{title} {} created, {} updated, {} replaced, {} deleted",
        done.create, done.update, done.replace, done.delete
    );
    if !failed.is_empty() {
        let _ = write!(out, ", {}", paint(RED, format!("{} failed", failed.len())));
    }
    if !skipped.is_empty() {
        let _ = write!(out, ", {} not done", skipped.len());
    }
    let _ = writeln!(out, " in {:.1?}.", report.elapsed);
    if !failed.is_empty() {
        let _ = writeln!(out, "\n{}", paint(BOLD, "Failed:"));
        for f in &failed {
            let _ = writeln!(out, "{f}");
        }
    }
    if !skipped.is_empty() {
        let _ = writeln!(out, "\n{}", paint(BOLD, "Not done:"));
        const SHOWN: usize = 20;
        for (address, because) in skipped.iter().take(SHOWN) {
            let why = if *because == "interrupted" {
                "interrupted".to_owned()
            } else {
                format!("{because} did not succeed")
            };
            let _ = writeln!(out, "  {address}: {why}");
        }
        if skipped.len() > SHOWN {
            let _ = writeln!(out, "  … and {} more", skipped.len() - SHOWN);
        }
    }
    if let Some(e) = &report.state_error {
        let _ = writeln!(out, "\n{} {}", paint(RED, "error:"), crate::error::chain(e));
        if let Some(hint) = e.hint() {
            let _ = writeln!(out, "  hint: {hint}");
        }
    }
    if report.interrupted {
        let _ = writeln!(out, "\nState is saved. Run the same command again to finish.");
    }
    out
}

/// The same summary as JSON.
pub fn summary_json(plan: &Plan, report: &Report) -> serde_json::Value {
    let actions: Vec<_> = plan
        .actions
        .iter()
        .zip(&report.outcomes)
        .map(|(a, o)| {
            let (status, detail) = match o {
                Outcome::Done { .. } => ("done", None),
                Outcome::Failed { error, .. } => ("failed", Some(error.clone())),
                Outcome::Skipped { because } => ("not_done", Some(because.clone())),
            };
            json!({ "address": a.address, "action": a.action, "status": status, "detail": detail })
        })
        .collect();
    json!({
        "success": report.is_success(),
        "interrupted": report.interrupted,
        "elapsed_seconds": report.elapsed.as_secs_f64(),
        "failed": report.failed(),
        "state_error": report.state_error.as_ref().map(|e| crate::error::chain(e)),
        "actions": actions,
    })
}
