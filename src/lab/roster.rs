//! Rosters kept as CSV files (`id,name,email`, header required).

use std::path::Path;

use super::{Diagnostic, Source};

/// One roster row, with the line it came from for error messages.
#[derive(Debug)]
pub struct Row {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub line: usize,
}

const HEADER: [&str; 3] = ["id", "name", "email"];

/// Reads a roster. The returned [`Source`] lets the caller point at rows in later errors.
pub fn read(path: &Path, display: String) -> Result<(Vec<Row>, Source), Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![Diagnostic::file(&display, format!("cannot read the roster: {e}"))])?;
    let source = Source { name: display, text };
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(source.text.as_bytes());
    let header: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(str::to_ascii_lowercase).collect(),
        Err(e) => return Err(vec![source.line_error(1, format!("unreadable header: {e}"))]),
    };
    if header != HEADER {
        return Err(vec![source
            .line_error(1, format!("the roster header is `{}`", header.join(",")))
            .note("allowed: exactly `id,name,email` as the first line")]);
    }
    let mut rows = vec![];
    let mut errors = vec![];
    for record in reader.records() {
        match record {
            Ok(r) => {
                let line = r.position().map_or(0, |p| p.line() as usize);
                let field = |i: usize| r.get(i).filter(|s| !s.is_empty()).map(str::to_owned);
                rows.push(Row { id: field(0).unwrap_or_default(), name: field(1), email: field(2), line });
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                errors.push(
                    source.line_error(line, format!("malformed row: {e}")).note("allowed: id,name,email"),
                );
            }
        }
    }
    if errors.is_empty() {
        Ok((rows, source))
    } else {
        Err(errors)
    }
}
