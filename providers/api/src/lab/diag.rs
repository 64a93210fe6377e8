//! Diagnostics for lab files: where (file:line:column), what is wrong, what is allowed.

use std::fmt::{self, Write};
use std::ops::Range;

use serde::Serialize;

/// One problem in a lab file or its roster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    pub message: String,
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The source line and the columns (1-based, inclusive start) to underline.
    #[serde(skip)]
    pub snippet: Option<Snippet>,
    /// Further lines: what is allowed, a suggestion, a related location.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snippet {
    pub text: String,
    pub start: usize,
    pub len: usize,
}

/// A source text with a display name, able to turn byte spans into diagnostics.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    /// A diagnostic pointing at `span` (a byte range into the text).
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        let start = span.start.min(self.text.len());
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[start..].find('\n').map_or(self.text.len(), |i| start + i);
        let line = self.text[..start].matches('\n').count() + 1;
        let column = self.text[line_start..start].chars().count() + 1;
        let end = span.end.clamp(start, line_end);
        let len = self.text[start..end].chars().count().max(1);
        Diagnostic {
            message: message.into(),
            file: self.name.clone(),
            line,
            column,
            snippet: Some(Snippet { text: self.text[line_start..line_end].to_owned(), start: column, len }),
            notes: vec![],
        }
    }

    /// A diagnostic pointing at a whole line (1-based), e.g. a CSV row.
    pub fn line_error(&self, line: usize, message: impl Into<String>) -> Diagnostic {
        let offset: usize = self.text.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
        let text_len = self.text[offset..].find('\n').unwrap_or(self.text.len() - offset);
        self.error(offset..offset + text_len, message)
    }

    /// A TOML or serde error as a diagnostic, with a suggestion for a misspelt key.
    pub fn toml_error(&self, e: &toml::de::Error) -> Diagnostic {
        let message = e.message().trim().to_owned();
        let span = e.span().unwrap_or(0..0);
        for what in ["field", "variant"] {
            let prefix = format!("unknown {what} `");
            let Some(rest) = message.strip_prefix(&prefix) else { continue };
            let Some((word, expected)) = rest.split_once('`') else { continue };
            let allowed: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            let noun = if what == "field" { "key" } else { "value" };
            let mut d = self.error(span, format!("unknown {noun} `{word}`"));
            if let Some(suggestion) = did_you_mean(word, allowed.iter().copied()) {
                d = d.note(format!("help: did you mean `{suggestion}`?"));
            }
            let allowed = if allowed.is_empty() { "none here".to_owned() } else { allowed.join(", ") };
            return d.note(format!("allowed: {allowed}"));
        }
        self.error(span, message)
    }

    /// `name:line:column` of a byte offset, for notes that point elsewhere.
    pub fn location(&self, offset: usize) -> String {
        let d = self.error(offset..offset, "");
        format!("{}:{}:{}", d.file, d.line, d.column)
    }
}

impl Diagnostic {
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// A diagnostic about a file as a whole (missing, unreadable).
    pub fn file(file: &str, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            file: file.to_owned(),
            line: 0,
            column: 0,
            snippet: None,
            notes: vec![],
        }
    }
}

impl fmt::Display for Diagnostic {
    /// rustc-style: the message, the location, the line with the offending part
    /// underlined, then the notes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        let Some(snippet) = &self.snippet else {
            writeln!(f, "  --> {}", self.file)?;
            return self.notes.iter().try_for_each(|n| writeln!(f, "  = {n}"));
        };
        let gutter = self.line.to_string().len();
        let pad = " ".repeat(gutter);
        writeln!(f, "{pad}--> {}:{}:{}", self.file, self.line, self.column)?;
        writeln!(f, "{pad} |")?;
        writeln!(f, "{} | {}", self.line, snippet.text.trim_end())?;
        let mut marker = String::new();
        let _ = write!(marker, "{}{}", " ".repeat(snippet.start - 1), "^".repeat(snippet.len));
        writeln!(f, "{pad} | {marker}")?;
        self.notes.iter().try_for_each(|n| writeln!(f, "{pad} = {n}"))
    }
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_become_lines_and_columns() {
        let src = Source { name: "lab.toml".into(), text: "[lab]\nname = \"Bad_Name\"\n".into() };
        let d = src.error(13..23, "bad name");
        assert_eq!((d.line, d.column), (2, 8));
        assert_eq!(
            d.to_string(),
            "error: bad name\n --> lab.toml:2:8\n  |\n2 | name = \"Bad_Name\"\n  |        ^^^^^^^^^^\n"
        );
        assert_eq!(src.line_error(2, "x").column, 1);
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        assert_eq!(did_you_mean("bukcet", ["bucket", "compute"]), Some("bucket"));
        assert_eq!(did_you_mean("zzz", ["bucket", "compute"]), None);
    }
}
