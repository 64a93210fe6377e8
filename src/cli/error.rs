//! A command's failure — what went wrong, why, what to do about it — and the exit codes.

use std::error::Error;
use std::fmt::Write as _;

use crate::error::sources;
use crate::plan::PlanFileError;
use crate::state::{LockError, StateError};

/// Exit code for invalid input (lab file, roster, arguments), as clap uses for usage errors.
pub const EXIT_INVALID: u8 = 2;
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit code of `plan --detailed-exitcode` when the plan has changes.
pub const EXIT_CHANGES: u8 = 3;

/// A command's failure, as printed: `error: MESSAGE`, then a `caused by:` line per cause,
/// then a `hint:`.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    /// What went wrong; empty if everything was printed already.
    pub message: String,
    /// Why, outermost first: the sources of the error behind it.
    pub causes: Vec<String>,
    /// What the user can do about it.
    pub hint: Option<String>,
}

impl CliError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self { code: EXIT_INVALID, message: message.into(), causes: vec![], hint: None }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Self { code: EXIT_FAILURE, message: message.into(), causes: vec![], hint: None }
    }

    /// `error` as a failure with `code`: its message, and its sources as the causes.
    pub fn from_error(code: u8, error: &dyn Error) -> Self {
        Self { code, message: error.to_string(), causes: sources(error), hint: None }
    }

    /// Adds `error` (and its sources) as the cause of this failure.
    pub fn caused_by(mut self, error: &dyn Error) -> Self {
        self.causes.push(error.to_string());
        self.causes.extend(sources(error));
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The message, its causes and its hint, one per line.
    pub fn render(&self) -> String {
        let mut out = self.message.clone();
        for cause in &self.causes {
            let _ = write!(out, "\n  caused by: {cause}");
        }
        if let Some(hint) = &self.hint {
            let _ = write!(out, "\n  hint: {hint}");
        }
        out
    }
}

impl From<StateError> for CliError {
    fn from(e: StateError) -> Self {
        let failure = Self::from_error(EXIT_FAILURE, &e);
        match e.hint() {
            Some(hint) => failure.with_hint(hint),
            None => failure,
        }
    }
}

impl From<PlanFileError> for CliError {
    fn from(e: PlanFileError) -> Self {
        let code = if matches!(e, PlanFileError::Write { .. }) { EXIT_FAILURE } else { EXIT_INVALID };
        let failure = Self::from_error(code, &e);
        match e.hint() {
            Some(hint) => failure.with_hint(hint),
            None => failure,
        }
    }
}

impl From<LockError> for CliError {
    fn from(e: LockError) -> Self {
        let failure = Self::from_error(EXIT_FAILURE, &e);
        match e {
            LockError::Held(_) | LockError::HeldUnknown(_) => failure.with_hint(
                "wait for that run to finish; if it is gone for good, break the lock with `labctl state unlock LAB`",
            ),
            LockError::Io(_) => failure,
        }
    }
}
