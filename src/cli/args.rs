//! The command line, as clap types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Provision, verify and tear down Big Data teaching labs for a cohort of students.
///
/// Exit codes: 0 success, 1 failure (some resource could not be created or deleted),
/// 2 invalid input (lab file, roster, arguments), 130 interrupted.
#[derive(Debug, Parser)]
#[command(name = "labctl", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a lab file and its rosters without touching anything.
    Validate {
        /// The lab file (TOML).
        lab: PathBuf,
        /// Print diagnostics as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what apply would create, update, replace and delete.
    Plan {
        #[command(flatten)]
        target: Target,
        /// Save the plan to FILE; `labctl apply FILE` then performs exactly it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Plan the destruction of the lab instead.
        #[arg(long)]
        destroy: bool,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
        /// Exit 3 when the plan has changes (0 none, 1 error, 2 invalid input), for
        /// scheduled drift checks.
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Create or update every student's environment.
    ///
    /// Given a lab file, plans first and asks for confirmation (unless --yes). Given a plan
    /// saved by `labctl plan --out`, performs exactly that plan, and refuses if the state
    /// changed since it was made.
    Apply {
        /// A lab file, or a plan file saved by `labctl plan --out`.
        lab_or_plan: PathBuf,
        #[command(flatten)]
        place: Place,
        #[command(flatten)]
        run: RunOptions,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Do not run the smoke workloads after applying.
        #[arg(long)]
        no_verify: bool,
        /// Give every student a new cloud access key (the old ones stop working); their
        /// worker tokens stay. Hand out the new keys with `labctl output --handout`.
        #[arg(long)]
        rotate_keys: bool,
        /// Apply even when the cost estimate exceeds the lab's [lab.budget].
        #[arg(long)]
        ignore_budget: bool,
    },
    /// Run the smoke workloads in every student's environment: a pass/fail matrix.
    ///
    /// Word count through each student's MapReduce over their bucket, checked against an
    /// independent count; the hyperparameter search through their scheduler, checked
    /// against a sequential run. Exits 1 if any check fails.
    Verify {
        #[command(flatten)]
        target: Target,
        /// Only this student (repeatable).
        #[arg(long = "student", value_name = "ID")]
        students: Vec<String>,
        /// Print the matrix as JSON.
        #[arg(long)]
        json: bool,
        /// Also write the results as JUnit XML, for CI.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// Delete the lab's resources (all of them, or some students' or cohorts').
    Destroy {
        #[command(flatten)]
        target: Target,
        /// Only this student (repeatable).
        #[arg(long = "student", value_name = "ID")]
        students: Vec<String>,
        /// Only this cohort (repeatable).
        #[arg(long = "cohort", value_name = "NAME")]
        cohorts: Vec<String>,
        /// Also find resources carrying the lab's tags that state does not know (after a lost
        /// state file or a crash) and delete them.
        #[arg(long)]
        sweep: bool,
        /// First copy each student's bucket, minus the seeded datasets, into DIR/<student>/;
        /// a student whose copy fails keeps their bucket (exit 1).
        #[arg(long, value_name = "DIR")]
        archive: Option<PathBuf>,
        #[command(flatten)]
        run: RunOptions,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Resize a node pool of the lab's cluster now (warm the GPU pool before class, empty it
    /// after).
    ///
    /// Writes `desired = NODES` into the pool's table in the lab file (so that later applies
    /// keep it), then applies that pool only; other pending changes are left alone.
    Scale {
        #[command(flatten)]
        target: Target,
        /// The pool, as in [cluster.<name>.node_pool.<POOL>].
        pool: String,
        /// How many nodes it should run, from its min to its max.
        nodes: u32,
        /// The cluster, when more than one has a pool of that name.
        #[arg(long)]
        cluster: Option<String>,
        #[command(flatten)]
        run: RunOptions,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Destroy every lab past its expiry, found by its tags (no lab file or state needed).
    ///
    /// Each FILE's [provider.<name>] tables say where to look (a lab file will do; only
    /// those tables are read). Lists the labs found, those past the expiry their resources
    /// carry first; with --yes destroys those, as `destroy --sweep` would, and checks that
    /// nothing is left (exit 1 if something is). For cron or a scheduled CI job.
    Reap {
        /// Files with [provider.<name>] tables (lab files, or files holding only those).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Local provider data directory (default: the file's, else ~/.local/share/labctl).
        #[arg(long, value_name = "DIR", env = "LABCTL_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// First copy each student's bucket into DIR/<lab>/<student>/ (seeded datasets
        /// included: without the lab file they are not known); a student whose copy fails
        /// keeps their bucket (exit 1).
        #[arg(long, value_name = "DIR")]
        archive: Option<PathBuf>,
        #[command(flatten)]
        run: RunOptions,
        /// Destroy the labs past their expiry (without it, only list them).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Show each student's resources and whether they still exist.
    Status {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
    /// Show each student's outputs: bucket, credential, endpoints.
    Output {
        #[command(flatten)]
        target: Target,
        /// Only this student.
        #[arg(long = "student", value_name = "ID")]
        student: Option<String>,
        /// Print secret values instead of "(sensitive)".
        #[arg(long)]
        show_sensitive: bool,
        #[arg(long)]
        json: bool,
        /// Write one handout per student (Markdown and HTML, mode 0600) into DIR instead.
        #[arg(long, value_name = "DIR")]
        handout: Option<PathBuf>,
    },
    /// Inspect the state file, or break a lock.
    #[command(subcommand)]
    State(StateCommand),
    /// Print the JSON Schema of the lab file, for editor completion.
    Schema,
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List the resources in state.
    List {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
    /// Show one resource's attributes (secrets redacted).
    Show {
        #[command(flatten)]
        target: Target,
        /// Its address, e.g. 'student["ada"].bucket'.
        address: String,
        #[arg(long)]
        json: bool,
    },
    /// Break the state lock held by another run (make sure it is not running).
    Unlock {
        #[command(flatten)]
        target: Target,
    },
}

/// A lab file and where its state and data live.
#[derive(Debug, Args)]
pub struct Target {
    /// The lab file (TOML).
    pub lab: PathBuf,
    #[command(flatten)]
    pub place: Place,
}

#[derive(Debug, Clone, Default, Args)]
pub struct Place {
    /// State file (default: .labctl/<lab>.state.json beside the lab file).
    #[arg(long, value_name = "FILE", env = "LABCTL_STATE")]
    pub state: Option<PathBuf>,
    /// Local provider data directory (default: the lab's, else ~/.local/share/labctl).
    #[arg(long, value_name = "DIR", env = "LABCTL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct RunOptions {
    /// Provider operations in flight at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub parallelism: u32,
    /// Give up on a resource operation (retries included) after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub timeout: u64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}
