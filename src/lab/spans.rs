//! Where the lab file's tables are written, from the parser (`toml_edit` keeps the span of
//! every key and table header; serde's `Spanned` cannot hold a table): what diagnostics
//! about a whole table point at.

use std::collections::BTreeMap;
use std::ops::Range;

use labctl_provider_api::lab::SectionSpans;
use toml_edit::{ImDocument, Item};

/// A `[provider.<name>]` table: its name and its header (or inline table).
pub struct ProviderSpan {
    pub key: Range<usize>,
    pub table: Range<usize>,
}

/// The spans of the tables the core and the providers point at.
#[derive(Default)]
pub struct TableSpans {
    pub providers: BTreeMap<String, ProviderSpan>,
    pub sections: SectionSpans,
}

/// The spans of `text`, a lab file that has parsed (empty if it somehow does not).
pub fn of(text: &str) -> TableSpans {
    let Ok(doc) = ImDocument::parse(text) else { return TableSpans::default() };
    let root = doc.as_table();
    let mut providers = BTreeMap::new();
    if let Some(table) = root.get("provider").and_then(Item::as_table_like) {
        for (name, item) in table.iter() {
            let key = table.key(name).and_then(|k| k.span()).unwrap_or(0..0);
            let span = item.span().unwrap_or_else(|| key.clone());
            providers.insert(name.to_owned(), ProviderSpan { key, table: span });
        }
    }
    let student = root.get("student").and_then(Item::as_table_like);
    let key = |name: &str| student.and_then(|s| s.key(name)).and_then(|k| k.span());
    let sections = SectionSpans {
        workers: key("workers"),
        compute: key("compute"),
        notebook: key("notebook"),
        cluster: root.key("cluster").and_then(|k| k.span()),
    };
    TableSpans { providers, sections }
}
