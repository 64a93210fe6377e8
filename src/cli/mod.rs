//! The `labctl` command: argument parsing, the commands, exit codes.

mod args;
mod commands;
mod inspect;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

pub use args::Cli;

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

/// Parses the command line, runs the command, returns the process exit code.
pub fn main() -> ExitCode {
    // Output piped into a reader that stops (`labctl output | head`) ends labctl quietly, as
    // it does any Unix tool, instead of a panic on the next write.
    // SAFETY: resetting a signal's disposition at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(commands::run(cli.command)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if !e.message.is_empty() {
                let mut err = anstream::stderr();
                let _ = writeln!(
                    err,
                    "{} {}",
                    crate::report::paint(anstyle::AnsiColor::Red.on_default().bold(), "error:"),
                    e.message
                );
            }
            ExitCode::from(e.code)
        }
    }
}

fn init_logging(verbose: u8) {
    // The AWS SDK warns about every credential source it tries; labctl reports the outcome.
    let default = match verbose {
        0 => "warn,aws_config=error,aws_smithy_runtime=error",
        1 => "info,aws_config=error,aws_smithy_runtime=error",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}
