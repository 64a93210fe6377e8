//! How failures read: the message, each cause, and a hint, pinned as snapshots.

use crate::support::{lab, stable, Env};

/// A scratch directory with a small applied local lab, `lab1`.
fn applied() -> Env {
    let env = Env::new();
    env.write("lab.toml", &lab("lab1", &["ada"], 0));
    env.run(&["apply", "lab.toml", "--yes"]).ok();
    env
}

#[test]
fn a_damaged_state_names_the_file_the_cause_and_the_backup() {
    let env = applied();
    env.write(".labctl/lab1.state.json", "{ \"format_version\": 1, \"serial\": ");
    let _s = stable(&env);
    let run = env.run(&["plan", "lab.toml"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("damaged_state", run.stderr);
}

/// `destroy --sweep` needs no state: with the state damaged it destroys what the tags
/// say, leaving the damaged file and its backup for whoever wants to look at them.
#[test]
fn a_damaged_state_is_no_obstacle_to_destroy_sweep() {
    let env = applied();
    let damaged = "{ \"format_version\": 1, \"serial\": ";
    env.write(".labctl/lab1.state.json", damaged);
    let backup = std::fs::read(env.path(".labctl/lab1.state.json.backup")).ok();
    let refused = env.run(&["destroy", "lab.toml", "--yes"]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(env.data().join("lab1/buckets/lab1-ada").is_dir());

    let swept = env.run(&["destroy", "lab.toml", "--yes", "--sweep"]).ok();
    assert!(swept.stderr.contains("the state at") && swept.stderr.contains("is damaged"), "{}", swept.stderr);
    assert!(swept.stdout.contains("its unreadable state"), "{}", swept.stdout);
    assert!(!env.data().join("lab1").exists(), "everything tagged is gone");
    assert_eq!(std::fs::read_to_string(env.path(".labctl/lab1.state.json")).unwrap(), damaged);
    assert_eq!(std::fs::read(env.path(".labctl/lab1.state.json.backup")).ok(), backup);
}

#[test]
fn a_state_from_another_version_or_lab_is_refused_with_what_to_do() {
    let env = applied();
    let state = std::fs::read_to_string(env.path(".labctl/lab1.state.json")).unwrap();
    let _s = stable(&env);
    env.write(".labctl/lab1.state.json", &state.replace("\"format_version\":1", "\"format_version\":7"));
    let newer = env.run(&["plan", "lab.toml"]);
    assert_eq!(newer.code, 1);
    env.write(".labctl/lab1.state.json", &state);
    env.write("other.toml", &lab("lab2", &["ada"], 0));
    let other = env.run(&["plan", "other.toml", "--state", ".labctl/lab1.state.json"]);
    assert_eq!(other.code, 1);
    insta::assert_snapshot!("foreign_state", format!("{}\n{}", newer.stderr, other.stderr));
}

#[test]
fn a_file_that_is_no_plan_says_why() {
    let env = Env::new();
    let _s = stable(&env);
    env.write("broken.json", "{ \"format\": ");
    env.write("old.json", "{ \"format\": \"labctl-plan/1\" }");
    let broken = env.run(&["apply", "broken.json"]);
    let old = env.run(&["apply", "old.json"]);
    assert_eq!((broken.code, old.code), (2, 2));
    insta::assert_snapshot!("not_a_plan", format!("{}\n{}", broken.stderr, old.stderr));
}

#[test]
fn a_stale_plan_says_to_plan_again() {
    let env = applied();
    let _s = stable(&env);
    env.write("lab.toml", &lab("lab1", &["ada", "bob"], 0));
    env.run(&["plan", "lab.toml", "--out", "p.json"]).ok();
    env.run(&["apply", "lab.toml", "--yes"]).ok();
    let stale = env.run(&["apply", "p.json"]);
    assert_eq!(stale.code, 1);
    insta::assert_snapshot!("stale_plan", stale.stderr);
}

#[test]
fn handouts_that_cannot_be_written_name_the_path_and_the_cause() {
    let env = applied();
    env.write("handouts", "a file, not a directory");
    let _s = stable(&env);
    let run = env.run(&["output", "lab.toml", "--handout", "handouts/mon"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("handout_unwritable", run.stderr);
}
