//! The `filter` of Compute Engine's `list` methods, the part of its syntax labctl's
//! clients send: `FIELD = VALUE`, `FIELD != VALUE` and `FIELD:*` (the field is set), the
//! field a dotted path into the resource (`name`, `status`, `labels.KEY`), the value bare
//! or double-quoted; several terms each in parentheses, joined by spaces or `AND`. Anything
//! else is refused, never ignored.

use serde_json::Value;

use crate::world::Fault;

/// A parsed filter: the terms a resource must all pass.
#[derive(Debug, PartialEq)]
pub struct Filter(Vec<Term>);

#[derive(Debug, PartialEq)]
struct Term {
    /// The field's path: `labels.lab` is `["labels", "lab"]`.
    field: Vec<String>,
    test: Test,
}

#[derive(Debug, PartialEq)]
enum Test {
    Equals(String),
    Differs(String),
    Present,
}

impl Filter {
    /// Parses `text` (empty: every resource passes).
    pub fn parse(text: &str) -> Result<Self, Fault> {
        let refuse = |why: &str| {
            Fault::Invalid(format!(
                "Invalid list filter expression '{text}': {why}. The emulator accepts `FIELD = VALUE`, `FIELD != VALUE` and `FIELD:*` terms, several each in parentheses, joined by spaces or AND."
            ))
        };
        let mut terms = vec![];
        let mut rest = text.trim();
        while !rest.is_empty() {
            if !terms.is_empty() {
                rest = rest.strip_prefix("AND ").map(str::trim_start).unwrap_or(rest);
            }
            let (term, after) = match rest.strip_prefix('(') {
                Some(inner) => {
                    let end = closing(inner).ok_or_else(|| refuse("unbalanced parentheses"))?;
                    (&inner[..end], &inner[end + 1..])
                }
                None if terms.is_empty() => (rest, ""),
                None => return Err(refuse("several terms need parentheses each")),
            };
            terms.push(Term::parse(term.trim()).map_err(|why| refuse(&why))?);
            rest = after.trim_start();
        }
        Ok(Self(terms))
    }

    /// Whether `resource` (its JSON) passes.
    pub fn matches(&self, resource: &Value) -> bool {
        self.0.iter().all(|term| {
            let value = term.field.iter().try_fold(resource, |v, key| v.get(key));
            let value = value.map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()));
            match &term.test {
                Test::Equals(wanted) => value.as_ref() == Some(wanted),
                Test::Differs(wanted) => value.as_ref() != Some(wanted),
                Test::Present => value.is_some(),
            }
        })
    }
}

impl Term {
    fn parse(text: &str) -> Result<Self, String> {
        let end = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .unwrap_or(text.len());
        let (field, rest) = text.split_at(end);
        if field.is_empty() || field.split('.').any(str::is_empty) {
            return Err(format!("no field name in '{text}'"));
        }
        let field = field.split('.').map(str::to_owned).collect();
        let rest = rest.trim_start();
        let (operator, value) = if let Some(v) = rest.strip_prefix("!=") {
            ("!=", v)
        } else if let Some(v) = rest.strip_prefix('=') {
            ("=", v)
        } else if let Some(v) = rest.strip_prefix(':') {
            (":", v)
        } else {
            return Err(format!("unsupported operator in '{text}'"));
        };
        let value = value.trim();
        let value = match value.strip_prefix('"') {
            Some(quoted) => quoted.strip_suffix('"').filter(|v| !v.contains('"')).map(str::to_owned),
            None if !value.is_empty() && !value.contains(char::is_whitespace) => Some(value.to_owned()),
            None => None,
        };
        let value = value.ok_or_else(|| format!("no single value in '{text}'"))?;
        let test = match operator {
            "=" => Test::Equals(value),
            "!=" => Test::Differs(value),
            _ if value == "*" => Test::Present,
            _ => return Err(format!("only `:*` is supported after ':' in '{text}'")),
        };
        Ok(Self { field, test })
    }
}

/// Where the `)` closing a term is in `text` (just past its `(`), quotes skipped.
fn closing(text: &str) -> Option<usize> {
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ')' if !quoted => return Some(i),
            '(' if !quoted => return None,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn term(field: &str, test: Test) -> Term {
        Term { field: field.split('.').map(str::to_owned).collect(), test }
    }

    #[test]
    fn the_forms_clients_send_parse() {
        assert_eq!(Filter::parse("").unwrap(), Filter(vec![]));
        let lab = Filter(vec![term("labels.labctl-lab", Test::Equals("x".into()))]);
        assert_eq!(Filter::parse(r#"labels.labctl-lab = "x""#).unwrap(), lab);
        assert_eq!(Filter::parse("labels.labctl-lab=x").unwrap(), lab);
        assert_eq!(Filter::parse(r#"(labels.labctl-lab = "x")"#).unwrap(), lab);
        assert_eq!(
            Filter::parse(r#"(labels.labctl-lab:*) AND (name != "a b") (status = RUNNING)"#).unwrap(),
            Filter(vec![
                term("labels.labctl-lab", Test::Present),
                term("name", Test::Differs("a b".into())),
                term("status", Test::Equals("RUNNING".into())),
            ])
        );
    }

    #[test]
    fn what_the_emulator_cannot_evaluate_is_refused() {
        for filter in [
            "labels.a = x labels.b = y",
            "(labels.a = x) OR (labels.b = y)",
            "name eq web-.*",
            "name > a",
            "labels.a:x",
            "(labels.a = x",
            "= x",
            r#"name = "x"#,
        ] {
            let refused = Filter::parse(filter).unwrap_err();
            assert!(matches!(&refused, Fault::Invalid(m) if m.contains(filter)), "{filter}: {refused:?}");
        }
    }

    #[test]
    fn resources_match_on_their_json() {
        let vm = json!({"name": "vm-1", "status": "RUNNING", "labels": {"lab": "x"}, "canIpForward": false});
        let passes = |f: &str| Filter::parse(f).unwrap().matches(&vm);
        assert!(passes(r#"labels.lab = "x""#));
        assert!(passes("(labels.lab:*) (name = vm-1)"));
        assert!(passes("canIpForward = false"));
        assert!(passes("labels.other != x"));
        assert!(!passes("labels.lab = y"));
        assert!(!passes("labels.other:*"));
        assert!(!passes("(labels.lab = x) (status = TERMINATED)"));
    }
}
