//! The verification matrix: students × checks, for people, as JSON, and as JUnit XML.

use std::fmt::Write;

use super::{paint, BOLD, GREEN, RED};
use crate::verify::Check;

/// Checks in the order they came, grouped by student.
fn by_student(checks: &[Check]) -> Vec<(&str, Vec<&Check>)> {
    let mut rows: Vec<(&str, Vec<&Check>)> = vec![];
    for c in checks {
        match rows.iter_mut().find(|(s, _)| *s == c.student) {
            Some((_, v)) => v.push(c),
            None => rows.push((&c.student, vec![c])),
        }
    }
    rows
}

/// A table of pass/FAIL with durations, then each failure with its cause.
pub fn render_matrix(checks: &[Check]) -> String {
    let mut out = String::new();
    let rows = by_student(checks);
    let names: Vec<&str> = rows.first().map(|(_, v)| v.iter().map(|c| c.check).collect()).unwrap_or_default();
    let width = rows.iter().map(|(s, _)| s.len()).max().unwrap_or(0).max(7);
    let _ = write!(out, "{}", paint(BOLD, format!("{:width$}", "STUDENT")));
    for n in &names {
        let _ = write!(out, "  {}", paint(BOLD, format!("{:16}", n.to_uppercase())));
    }
    let _ = writeln!(out);
    for (student, cells) in &rows {
        let _ = write!(out, "{student:width$}");
        for c in cells {
            let cell =
                format!("{:4} {:>7}", if c.passed { "pass" } else { "FAIL" }, format!("{:.1}s", c.seconds));
            let _ = write!(out, "  {}", paint(if c.passed { GREEN } else { RED }, format!("{cell:16}")));
        }
        let _ = writeln!(out);
    }
    let failed: Vec<&Check> = checks.iter().filter(|c| !c.passed).collect();
    if !failed.is_empty() {
        let _ = writeln!(out, "\n{}", paint(BOLD, "Failed:"));
        for c in &failed {
            let _ = writeln!(out, "  {} / {}: {}", c.student, c.check, c.detail.as_deref().unwrap_or(""));
        }
    }
    let _ = writeln!(
        out,
        "\n{} students, {} of {} checks passed.",
        rows.len(),
        checks.len() - failed.len(),
        checks.len()
    );
    out
}

/// JUnit XML: one test suite per check, one test case per student.
pub fn junit(checks: &[Check]) -> String {
    let mut out =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"labctl verify\">\n");
    let mut suites: Vec<&str> = checks.iter().map(|c| c.check).collect();
    suites.dedup();
    suites.sort_unstable();
    suites.dedup();
    for suite in suites {
        let cases: Vec<&Check> = checks.iter().filter(|c| c.check == suite).collect();
        let failures = cases.iter().filter(|c| !c.passed).count();
        let _ =
            writeln!(out, "  <testsuite name=\"{suite}\" tests=\"{}\" failures=\"{failures}\">", cases.len());
        for c in cases {
            let _ = write!(
                out,
                "    <testcase classname=\"{suite}\" name=\"{}\" time=\"{:.3}\"",
                xml(&c.student),
                c.seconds
            );
            match &c.detail {
                Some(d) if !c.passed => {
                    let _ = writeln!(out, ">\n      <failure message=\"{}\"/>\n    </testcase>", xml(d));
                }
                _ => {
                    let _ = writeln!(out, "/>");
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
