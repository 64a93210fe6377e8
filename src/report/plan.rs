//! A plan, as people read it.

use std::fmt::Write;

use serde_json::Value;

use super::{action_style, paint, BOLD, DIM};
use crate::plan::{usd, ActionKind, Estimate, Plan, Range};

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
    if let Some(cost) = plan.cost.as_ref().filter(|c| c.is_worth_showing()) {
        render_cost(&mut out, cost);
    }
    out
}

/// The estimate: per student, for the lab, until it expires, and what makes it.
fn render_cost(out: &mut String, cost: &Estimate) {
    let range = |r: Range| {
        if (r.max - r.min).abs() < 1e-9 {
            usd(r.max)
        } else {
            format!("{} to {}", usd(r.min), usd(r.max))
        }
    };
    let _ = writeln!(
        out,
        "
{} ({}):",
        paint(BOLD, "Estimated cost"),
        cost.prices
    );
    let _ = writeln!(out, "  per student per hour  {}", range(cost.per_student_per_hour));
    let _ = writeln!(out, "  the lab per hour      {}", range(cost.per_hour));
    if let (Some(hours), Some(total)) = (cost.hours, cost.until_expiry) {
        let _ = writeln!(out, "  until it expires      {} ({hours:.1} h)", range(total));
    }
    for item in &cost.items {
        let units = if (item.units.max - item.units.min).abs() < 1e-9 {
            format!("{}", item.units.max)
        } else {
            format!("{} to {}", item.units.min, item.units.max)
        };
        let _ =
            writeln!(out, "    {}  {units} × {}/h = {}/h", item.item, usd(item.rate), range(item.per_hour));
    }
    if !cost.unpriced.is_empty() {
        let _ = writeln!(
            out,
            "  not priced (counted as $0; give a rate in [lab.budget] rates): {}",
            cost.unpriced.join(", ")
        );
    }
}

/// A config value as the plan shows it: long texts (a starter notebook) by their size and
/// a digest, so that a change still shows.
fn show(v: &Value) -> String {
    serde_json::to_string(&shortened(v)).unwrap_or_default()
}

fn shortened(v: &Value) -> Value {
    match v {
        Value::String(s) if s.len() > 200 => {
            use std::hash::{DefaultHasher, Hash, Hasher};
            let mut digest = DefaultHasher::new();
            s.hash(&mut digest);
            Value::String(format!("({} bytes, #{:08x})", s.len(), digest.finish() as u32))
        }
        Value::Array(items) => Value::Array(items.iter().map(shortened).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), shortened(v))).collect()),
        v => v.clone(),
    }
}
