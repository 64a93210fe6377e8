//! E5 partial failure, E9 retries, and tainted resources, against the real local provider
//! (with `LABCTL_FAULTS` where a failure cannot be produced for real).

use crate::support::{expected_addresses, expected_files, lab, stable, Env};

#[test]
fn one_students_failure_does_not_stop_the_others() {
    let env = Env::new();
    let _s = stable(&env);
    env.write("lab.toml", &lab("lab1", &["ada", "bob", "cy"], 0));
    // Someone else's directory already sits where bob's bucket would go.
    std::fs::create_dir_all(env.data().join("lab1/buckets/lab1-bob")).unwrap();
    std::fs::write(env.data().join("lab1/buckets/lab1-bob/theirs.txt"), "not ours").unwrap();

    let run = env.run(&["apply", "lab.toml", "--yes"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let summary = &run.stdout[run.stdout.find("Apply finished").expect("a summary")..];
    insta::assert_snapshot!("partial_failure_summary", summary);

    let mut expected = expected_addresses(&["ada", "cy"], 0);
    expected.push("student[\"bob\"].credential".into());
    expected.sort();
    assert_eq!(env.state_addresses("lab1"), expected, "state records everything that was created");
    assert_eq!(
        std::fs::read_to_string(env.data().join("lab1/buckets/lab1-bob/theirs.txt")).unwrap(),
        "not ours"
    );
}

#[test]
fn throttling_and_server_errors_are_retried() {
    let env = Env::new();
    env.write("lab.toml", &lab("lab1", &["ada", "bob"], 0));
    let run = env
        .run_with_faults(
            "create:bucket:throttled:2,create:dataset@bob:unavailable:1,read:bucket:timeout:1",
            &["apply", "lab.toml", "--yes"],
        )
        .ok();
    assert_eq!(run.stderr.matches("retrying student[\"").count(), 3, "{}", run.stderr);
    assert!(run.stderr.contains("injected throttled fault"), "{}", run.stderr);
    assert_eq!(env.data_files(), expected_files("lab1", &["ada", "bob"]));
    // Reads are retried too: the refresh of the next plan meets a timeout and still succeeds.
    let plan = env.run_with_faults("read:bucket:timeout:1", &["plan", "lab.toml"]).ok();
    assert!(plan.stdout.contains("No changes"), "{}", plan.stdout);
}

#[test]
fn validation_errors_are_not_retried() {
    let env = Env::new();
    env.write("lab.toml", &lab("lab1", &["ada", "bob"], 0));
    let run = env.run_with_faults("create:bucket@ada:invalid:5", &["apply", "lab.toml", "--yes"]);
    assert_eq!(run.code, 1);
    assert!(!run.stderr.contains("retrying"), "{}", run.stderr);
    assert!(
        run.stdout.contains("student[\"ada\"].bucket: create failed: injected invalid fault"),
        "{}",
        run.stdout
    );
    // The fault is gone: the next apply creates exactly what is missing.
    let next = env.run(&["apply", "lab.toml", "--yes"]).ok();
    assert!(next.stdout.contains("Apply complete: 3 created"), "{}", next.stdout);
}

#[test]
fn retries_stop_at_the_deadline() {
    let env = Env::new();
    env.write("lab.toml", &lab("lab1", &["ada"], 0));
    let run = env.run_with_faults(
        "create:credential:throttled:1000",
        &["apply", "lab.toml", "--yes", "--timeout", "2"],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("student[\"ada\"].credential: create failed: injected throttled fault"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("attempts in"), "{}", run.stdout);
}

#[test]
fn a_create_that_failed_half_way_is_tainted_and_replaced() {
    let env = Env::new();
    env.write("lab.toml", &lab("lab1", &["ada"], 0));
    let run = env.run_with_faults("create:dataset@corpus:partial:1", &["apply", "lab.toml", "--yes"]);
    assert_eq!(run.code, 1);
    let state = env.state("lab1");
    assert_eq!(state["resources"]["student[\"ada\"].dataset[\"corpus\"]"]["tainted"], true);
    let list = env.run(&["state", "list", "lab.toml"]).ok();
    assert!(list.stdout.contains("student[\"ada\"].dataset[\"corpus\"]  (tainted)"), "{}", list.stdout);

    let plan = env.run(&["plan", "lab.toml"]).ok();
    assert!(
        plan.stdout.contains("-/+ student[\"ada\"].dataset[\"corpus\"] (dataset)  # tainted"),
        "{}",
        plan.stdout
    );
    env.run(&["apply", "lab.toml", "--yes"]).ok();
    assert!(env.state("lab1")["resources"]["student[\"ada\"].dataset[\"corpus\"]"].get("tainted").is_none());
    assert_eq!(env.data_files(), expected_files("lab1", &["ada"]));
}
