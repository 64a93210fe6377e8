//! A command's failure and the process exit codes.

/// Exit code for invalid input (lab file, roster, arguments), as clap uses for usage errors.
pub const EXIT_INVALID: u8 = 2;
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_INTERRUPTED: u8 = 130;

/// A command's failure: what to print and which exit code to use.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    /// Already rendered; empty if everything was printed already.
    pub message: String,
}

impl CliError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self { code: EXIT_INVALID, message: message.into() }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Self { code: EXIT_FAILURE, message: message.into() }
    }
}
