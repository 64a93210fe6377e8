//! Everything labctl prints: plans, progress, summaries, tables — for people and as JSON.

mod handout;
mod matrix;
mod plan;
mod progress;
mod summary;

pub use handout::{write_handouts, HandoutError};
pub use matrix::{junit, render_matrix};
pub use plan::render_plan;
pub use progress::Progress;
pub use summary::{render_summary, summary_json};

use anstyle::{AnsiColor, Style};

use crate::plan::ActionKind;

pub(crate) const BOLD: Style = Style::new().bold();
pub(crate) const DIM: Style = Style::new().dimmed();
pub(crate) const RED: Style = AnsiColor::Red.on_default();
pub(crate) const GREEN: Style = AnsiColor::Green.on_default();
pub(crate) const YELLOW: Style = AnsiColor::Yellow.on_default();

/// The colour of an action kind, the same everywhere.
pub(crate) fn action_style(kind: ActionKind) -> Style {
    match kind {
        ActionKind::Create => GREEN,
        ActionKind::Update => YELLOW,
        ActionKind::Replace => AnsiColor::Magenta.on_default(),
        ActionKind::Delete => RED,
    }
}

/// `text` in `style`; plain when the output stream strips colour (not a terminal, NO_COLOR).
pub(crate) fn paint(style: Style, text: impl std::fmt::Display) -> String {
    format!("{style}{text}{style:#}")
}
