//! A plan, as people read it.

use std::fmt::Write;

use serde_json::Value;

use super::{action_style, paint, BOLD, DIM};
use crate::plan::{ActionKind, Plan};

/// The plan as text: one block per action with its changed attributes, then a summary line.
pub fn render_plan(plan: &Plan, students: usize) -> String {
    let mut out = String::new();
    let what = if plan.destroy { "destroy plan" } else { "plan" };
    let _ = writeln!(
        out,
        "{} for lab `{}` ({} provider, {students} student{})",
        paint(BOLD, format!("labctl {what}")),
        plan.lab,
        plan.provider.name,
        if students == 1 { "" } else { "s" }
    );
    if plan.is_empty() {
        let nothing =
            if plan.destroy { "Nothing to destroy." } else { "No changes: everything matches the lab file." };
        let _ = writeln!(out, "\n{nothing}");
        return out;
    }
    let _ = writeln!(out);
    for a in &plan.actions {
        let style = action_style(a.action);
        let reason =
            a.reason.as_deref().map(|r| format!("  {}", paint(DIM, format!("# {r}")))).unwrap_or_default();
        let _ = writeln!(
            out,
            "  {} {} ({}){reason}",
            paint(style, format!("{:>3}", a.action.sign())),
            paint(BOLD, &a.address),
            a.kind
        );
        match a.action {
            ActionKind::Create => {
                for (k, v) in a.spec.iter().flat_map(|s| &s.config) {
                    let _ = writeln!(out, "        {k} = {}", show(v));
                }
            }
            ActionKind::Update | ActionKind::Replace => {
                for c in &a.changes {
                    let before = c.before.as_ref().map_or("(none)".into(), show);
                    let after = c.after.as_ref().map_or("(none)".into(), show);
                    let forces = if c.forces_replace && a.action == ActionKind::Replace {
                        "  # forces replacement"
                    } else {
                        ""
                    };
                    let _ =
                        writeln!(out, "        {}: {before} → {after}{}", c.attribute, paint(DIM, forces));
                }
            }
            ActionKind::Delete => {}
        }
    }
    let c = plan.counts();
    let _ = writeln!(
        out,
        "\n{} {} to create, {} to update, {} to replace, {} to delete.",
        paint(BOLD, "Plan:"),
        paint(action_style(ActionKind::Create), c.create),
        paint(action_style(ActionKind::Update), c.update),
        paint(action_style(ActionKind::Replace), c.replace),
        paint(action_style(ActionKind::Delete), c.delete),
    );
    out
}

fn show(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}
