//! The provider conformance suite: what every provider must do, run for each through a
//! [`World`] (local here; aws against moto and kubernetes against its test cluster in their
//! modules). What exists is always checked through the provider's own listing, never
//! through labctl.

use std::process::{Command, Stdio};
use std::time::Instant;

use rand::Rng;

use crate::support::{finish, Env, Run};

/// A provider under test: its lab, how to run labctl against it, and how to list what
/// exists there.
pub trait World {
    /// The lab's name.
    const LAB: &'static str;
    /// How many times the crash test kills a run.
    const KILLS: usize;
    /// Whether every student verifies after the apply that repairs a kill: the world runs
    /// what it makes (the VM runner boots AWS's VMs).
    const REPAIR_VERIFIES: bool = false;

    /// A scratch directory holding this world's lab as `lab.toml`.
    fn env(&self) -> Env;

    /// `labctl ARGS` in `env` with what this world needs (credentials, endpoints).
    fn command(&self, env: &Env, args: &[&str]) -> Command {
        env.command(args)
    }

    /// Everything of the lab that exists, as the provider lists it: one line per thing,
    /// sorted, generated ids masked so that two converged runs list the same lines.
    fn inventory(&self, env: &Env) -> Vec<String>;

    /// Deletes one student's resource behind labctl's back.
    fn delete_by_hand(&self, env: &Env) -> Drift;

    /// What still runs for the lab outside the provider's API once a destroy is done (the
    /// runner's VMs, given time to power off).
    fn running(&self) -> Vec<String> {
        vec![]
    }

    /// What a destroy without state says still exists (after a lost state).
    const LEFT_BEHIND: &'static str;
}

/// A change made by hand, and what the next plan must say about it.
pub struct Drift {
    /// The resource's address, e.g. `student["bob"].bucket`.
    pub address: &'static str,
    /// Lines (or parts of lines) the plan shows for it.
    pub plan_shows: &'static [&'static str],
}

fn run<W: World>(w: &W, env: &Env, args: &[&str]) -> Run {
    Run::from(w.command(env, args).output().unwrap())
}

fn kill_at<W: World>(w: &W, env: &Env, args: &[&str], after: std::time::Duration) -> Run {
    let child = w.command(env, args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(after);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    finish(child)
}

#[track_caller]
fn assert_no_changes(run: &Run, when: &str) {
    assert!(run.stdout.contains("No changes"), "{when}: the plan is not empty:\n{}", run.all());
}

/// Apply, re-plan and re-apply change nothing; destroy leaves nothing the provider lists,
/// and a second destroy has nothing to do.
pub fn apply_replans_clean_and_destroy_leaves_nothing<W: World>(w: &W) {
    let env = w.env();
    run(w, &env, &["apply", "lab.toml", "--yes"]).ok();
    let made = w.inventory(&env);
    assert!(!made.is_empty(), "apply made nothing the provider lists");
    assert_no_changes(&run(w, &env, &["plan", "lab.toml"]).ok(), "re-plan after apply");
    let serial = env.state(W::LAB)["serial"].clone();
    assert_no_changes(&run(w, &env, &["apply", "lab.toml", "--yes", "--no-verify"]).ok(), "re-apply");
    assert_eq!(env.state(W::LAB)["serial"], serial, "a re-apply writes no state");
    assert_eq!(w.inventory(&env), made, "a re-apply touches nothing");

    run(w, &env, &["destroy", "lab.toml", "--yes"]).ok();
    assert_eq!(w.inventory(&env), Vec::<String>::new(), "destroy left these");
    let again = run(w, &env, &["destroy", "lab.toml", "--yes"]).ok();
    assert!(again.stdout.contains("Nothing to destroy."), "{}", again.all());
}

/// SIGKILL apply (and every other time destroy) at random moments: each time the next
/// apply converges to exactly what an undisturbed one made (no duplicate, nothing lost) and,
/// where the world runs it, every student verifies; destroy leaves nothing, running or not.
pub fn killed_at_any_point_converges_without_duplicates<W: World>(w: &W) {
    let env = w.env();
    let apply = ["apply", "lab.toml", "--yes", "--no-verify"];
    // An undisturbed apply: what it makes, and how long it takes, to spread the kills over.
    let start = Instant::now();
    run(w, &env, &apply).ok();
    let full = start.elapsed();
    let made = w.inventory(&env);
    let addresses = env.state_addresses(W::LAB);
    run(w, &env, &["destroy", "lab.toml", "--yes"]).ok();

    let mut rng = rand::thread_rng();
    let mut landed = 0;
    // How long an apply from nothing takes varies with the machine's load: a kill that came
    // after the apply finished makes the next ones come sooner.
    let mut full = full;
    for trial in 0..W::KILLS {
        let killed = kill_at(w, &env, &apply, full.mul_f64(rng.gen_range(0.05..1.1)));
        if killed.code != 0 {
            landed += 1;
        } else {
            full /= 2;
        }
        let partial = w.inventory(&env);
        for line in &made {
            let (there, wanted) = (count(&partial, line), count(&made, line));
            assert!(there <= wanted, "trial {trial}: {there} × `{line}` after a kill, {wanted} wanted");
        }

        let again = run(w, &env, &apply);
        assert_eq!(again.code, 0, "trial {trial}: apply after a kill failed:\n{}", again.all());
        if W::REPAIR_VERIFIES {
            let verified = run(w, &env, &["verify", "lab.toml"]);
            assert_eq!(verified.code, 0, "trial {trial}: verify after the repair:\n{}", verified.all());
        }
        assert_eq!(w.inventory(&env), made, "trial {trial}: apply after a kill");
        assert_eq!(env.state_addresses(W::LAB), addresses, "trial {trial}");
        assert_no_changes(&run(w, &env, &["plan", "lab.toml"]).ok(), &format!("trial {trial}"));

        if trial % 2 == 1 {
            kill_at(w, &env, &["destroy", "lab.toml", "--yes"], full.mul_f64(rng.gen_range(0.0..0.5)));
        }
        run(w, &env, &["destroy", "lab.toml", "--yes"]).ok();
        assert_eq!(w.inventory(&env), Vec::<String>::new(), "trial {trial}: destroy left these");
        assert_eq!(w.running(), Vec::<String>::new(), "trial {trial}: destroy left these running");
    }
    assert!(landed * 4 >= W::KILLS, "only {landed} of {} kills landed during an apply", W::KILLS);
}

fn count(lines: &[String], line: &str) -> usize {
    lines.iter().filter(|l| *l == line).count()
}

/// A resource deleted by hand: the plan shows that one as drift and nothing of any other
/// student; apply repairs it.
pub fn deleted_by_hand_is_drift_that_apply_repairs<W: World>(w: &W) {
    let env = w.env();
    run(w, &env, &["apply", "lab.toml", "--yes", "--no-verify"]).ok();
    let made = w.inventory(&env);
    let drift = w.delete_by_hand(&env);
    assert_ne!(w.inventory(&env), made, "deleting by hand changed nothing the provider lists");

    let plan = run(w, &env, &["plan", "lab.toml"]).ok();
    assert!(plan.stdout.contains(drift.address), "{}", plan.stdout);
    for shown in drift.plan_shows {
        assert!(plan.stdout.contains(shown), "the plan does not show `{shown}`:\n{}", plan.stdout);
    }
    let student = drift.address.split(']').next().unwrap();
    for line in plan.stdout.lines().filter(|l| l.contains("student[\"")) {
        assert!(line.contains(student), "only {student}] drifted, yet the plan shows: {line}");
    }
    run(w, &env, &["apply", "lab.toml", "--yes", "--no-verify"]).ok();
    assert_eq!(w.inventory(&env), made, "apply repaired the drift");
    assert_no_changes(&run(w, &env, &["plan", "lab.toml"]).ok(), "after the repair");
    run(w, &env, &["destroy", "lab.toml", "--yes"]).ok();
    assert_eq!(w.inventory(&env), Vec::<String>::new());
}

/// With the state lost, destroy says what is left and how to remove it; `--sweep` finds
/// it by its tags and removes it all.
pub fn lost_state_is_swept<W: World>(w: &W) {
    let env = w.env();
    run(w, &env, &["apply", "lab.toml", "--yes", "--no-verify"]).ok();
    let made = w.inventory(&env);
    std::fs::remove_dir_all(env.path(".labctl")).unwrap();

    let plain = run(w, &env, &["destroy", "lab.toml", "--yes"]);
    assert_eq!(plain.code, 1, "a destroy that knows nothing must say what is left:\n{}", plain.all());
    assert!(plain.stdout.contains("Nothing to destroy."), "{}", plain.all());
    assert!(plain.stderr.contains(W::LEFT_BEHIND), "{}", plain.stderr);
    assert!(plain.stderr.contains("labctl destroy --sweep"), "{}", plain.stderr);
    assert_eq!(w.inventory(&env), made, "a destroy without state deletes nothing");

    let swept = run(w, &env, &["destroy", "lab.toml", "--sweep", "--yes"]).ok();
    assert!(swept.stdout.contains("- orphan."), "{}", swept.stdout);
    assert_eq!(w.inventory(&env), Vec::<String>::new(), "the sweep left these");
}

/// The suite's tests for one world: `conformance!(start_expression)` inside a provider's
/// test module.
macro_rules! conformance {
    ($world:expr) => {
        mod conformance {
            use super::*;
            use crate::conformance as suite;

            #[test]
            fn apply_replans_clean_and_destroy_leaves_nothing() {
                suite::apply_replans_clean_and_destroy_leaves_nothing(&$world);
            }

            #[test]
            fn killed_at_any_point_converges_without_duplicates() {
                suite::killed_at_any_point_converges_without_duplicates(&$world);
            }

            #[test]
            fn deleted_by_hand_is_drift_that_apply_repairs() {
                suite::deleted_by_hand_is_drift_that_apply_repairs(&$world);
            }

            #[test]
            fn lost_state_is_swept() {
                suite::lost_state_is_swept(&$world);
            }
        }
    };
}
pub(crate) use conformance;
