//! Errors with their causes, as text.

use std::error::Error;

/// The messages of `error`'s sources, outermost first.
pub fn sources(error: &dyn Error) -> Vec<String> {
    let mut out = vec![];
    let mut next = error.source();
    while let Some(e) = next {
        out.push(e.to_string());
        next = e.source();
    }
    out
}

/// `error` and its causes on one line: `message: cause: cause`.
pub fn chain(error: &dyn Error) -> String {
    std::iter::once(error.to_string()).chain(sources(error)).collect::<Vec<_>>().join(": ")
}
