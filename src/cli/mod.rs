//! The `labctl` command: argument parsing, the commands, exit codes.

mod archive;
mod args;
mod commands;
mod error;
mod inspect;
mod open;
mod reap;
mod scale;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

pub use args::Cli;
use args::{Command, StateCommand};
use open::Opened;

use crate::registry;

pub use error::{CliError, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_INVALID};

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
    match runtime.block_on(run(cli.command)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if !e.message.is_empty() {
                let mut err = anstream::stderr();
                let _ = writeln!(
                    err,
                    "{} {}",
                    crate::report::paint(anstyle::AnsiColor::Red.on_default().bold(), "error:"),
                    e.render()
                );
            }
            ExitCode::from(e.code)
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let mut default = level.to_owned();
    if verbose < 2 {
        for target in registry::plugins().iter().flat_map(|p| p.quiet_log_targets()) {
            default.push_str(&format!(",{target}=error"));
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

/// Runs one command; its exit code, or the failure to print.
pub async fn run(command: Command) -> Result<u8, CliError> {
    match command {
        Command::Validate { lab, json } => inspect::validate(&lab, json),
        Command::Plan { target, out, destroy, json, detailed_exitcode } => {
            commands::plan_command(&target, out, destroy, json, detailed_exitcode).await
        }
        Command::Apply { lab_or_plan, place, run, yes, no_verify, rotate_keys, ignore_budget } => {
            commands::apply(
                &lab_or_plan,
                &place,
                &run,
                commands::ApplyOptions { yes, no_verify, rotate_keys, ignore_budget },
            )
            .await
        }
        Command::Verify { target, students, json, junit } => {
            commands::verify(&Opened::open(&target.lab, &target.place)?, &students, json, junit.as_deref())
                .await
        }
        Command::Destroy { target, students, cohorts, sweep, archive, run, yes } => {
            let filter = crate::plan::Filter { students, cohorts };
            commands::destroy(&target, filter, sweep, archive.as_deref(), &run, yes).await
        }
        Command::Scale { target, pool, nodes, cluster, run, yes } => {
            let request = scale::Scale {
                lab: &target.lab,
                place: &target.place,
                pool: &pool,
                cluster: cluster.as_deref(),
                nodes,
                yes,
            };
            scale::scale(request, &run).await
        }
        Command::Reap { files, data_dir, archive, run, yes } => {
            reap::reap(&files, data_dir, archive.as_deref(), &run, yes).await
        }
        Command::Status { target, json } => {
            inspect::status(&Opened::open(&target.lab, &target.place)?, json).await
        }
        Command::Output { target, handout: Some(dir), .. } => {
            let o = Opened::open(&target.lab, &target.place)?;
            let files = crate::report::write_handouts(&o.lab, &o.load_state()?, &dir, o.setup.as_ref())
                .map_err(|e| CliError::from_error(EXIT_FAILURE, &e))?;
            println!("Wrote {} handouts ({} files) to {}.", o.students(), files.len(), dir.display());
            Ok(0)
        }
        Command::Output { target, student, show_sensitive, json, handout: None } => inspect::output(
            &Opened::open(&target.lab, &target.place)?,
            student.as_deref(),
            show_sensitive,
            json,
        ),
        Command::State(StateCommand::List { target, json }) => {
            inspect::state_list(&Opened::open(&target.lab, &target.place)?, json)
        }
        Command::State(StateCommand::Show { target, address, json }) => {
            inspect::state_show(&Opened::open(&target.lab, &target.place)?, &address, json)
        }
        Command::State(StateCommand::Unlock { target }) => commands::unlock(&target),
        Command::Schema => inspect::schema(),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "labctl",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
    }
}
