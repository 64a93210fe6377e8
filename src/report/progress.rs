//! Live progress during apply and destroy: a line per event, and on a terminal a status
//! line (done / total, in flight, failures, elapsed) kept at the bottom.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use super::{paint, DIM, RED, YELLOW};
use crate::engine::{Event, Observer, Outcome};

/// Prints progress to stderr.
pub struct Progress {
    total: usize,
    done: usize,
    failed: usize,
    in_flight: usize,
    started: Instant,
    terminal: bool,
    out: anstream::AutoStream<std::io::Stderr>,
}

impl Progress {
    pub fn new(total: usize) -> Self {
        Self {
            total,
            done: 0,
            failed: 0,
            in_flight: 0,
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
            out: anstream::stderr(),
        }
    }

    fn line(&mut self, text: String) {
        let clear = if self.terminal { "\r\x1b[2K" } else { "" };
        let _ = writeln!(self.out, "{clear}{text}");
        if self.terminal {
            let status = format!(
                "[{}/{}] {} in flight, {} failed, {:.1?}",
                self.done,
                self.total,
                self.in_flight,
                self.failed,
                self.started.elapsed()
            );
            let _ = write!(self.out, "{}", paint(DIM, status));
            let _ = self.out.flush();
        }
    }

    /// Clears the status line before other output follows.
    pub fn finish(&mut self) {
        if self.terminal {
            let _ = write!(self.out, "\r\x1b[2K");
            let _ = self.out.flush();
        }
    }
}

impl Observer for Progress {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Started(_) => self.in_flight += 1,
            Event::Retrying { action, error, delay } => {
                let text = format!("  retrying {} in {:.1?}: {error}", action.address, delay);
                self.line(paint(YELLOW, text));
            }
            Event::Finished { action, outcome } => {
                self.done += 1;
                let text = match outcome {
                    Outcome::Done { elapsed } => {
                        self.in_flight -= 1;
                        format!("  {} {} {}", past(action.action.verb()), action.address, paint(DIM, format!("({elapsed:.1?})")))
                    }
                    Outcome::Failed { error, .. } => {
                        self.in_flight -= 1;
                        self.failed += 1;
                        paint(RED, format!("  failed  {}: {error}", action.address))
                    }
                    Outcome::Skipped { .. } => return,
                };
                self.line(text);
            }
            Event::Interrupted { in_flight } => self.line(paint(
                YELLOW,
                format!("Interrupted: starting nothing new, waiting for {in_flight} operation(s) in flight, then saving state. Press Ctrl-C again to stop at once."),
            )),
        }
    }
}

fn past(verb: &str) -> String {
    match verb {
        "create" | "update" | "replace" | "delete" => format!("{verb}d"),
        other => other.to_owned(),
    }
}
