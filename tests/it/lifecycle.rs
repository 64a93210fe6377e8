//! E2 plan is a value, E3 idempotence, E4 change, E10 destroy; the local provider's
//! instance of the conformance suite.

use crate::conformance::{conformance, Drift, World};
use crate::support::{expected_addresses, expected_files, files_under, lab, stable, Env};

/// The local provider in the conformance suite: six students, each with a bucket, two
/// datasets and placeholders, in a scratch data directory.
struct Local;

impl World for Local {
    const LAB: &'static str = "conform";
    const KILLS: usize = 20;
    const LEFT_BEHIND: &'static str = "local bucket `conform-ada`";

    fn env(&self) -> Env {
        let env = Env::new();
        env.write("lab.toml", &lab(Self::LAB, &["ada", "bob", "cy", "dee", "eve", "fay"], 3));
        env
    }

    /// Every file and directory under the data directory.
    fn inventory(&self, env: &Env) -> Vec<String> {
        let mut found = vec![];
        let mut stack = vec![env.data()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                let kind = if path.is_dir() { "dir" } else { "file" };
                found.push(format!("{kind} {}", path.strip_prefix(env.data()).unwrap().display()));
                if path.is_dir() {
                    stack.push(path);
                }
            }
        }
        found.sort();
        found
    }

    fn delete_by_hand(&self, env: &Env) -> Drift {
        std::fs::remove_dir_all(env.data().join("conform/buckets/conform-bob/datasets/corpus")).unwrap();
        Drift {
            address: "student[\"bob\"].dataset[\"corpus\"]",
            plan_shows: &[
                "+ student[\"bob\"].dataset[\"corpus\"] (dataset)  # deleted outside labctl",
                "Plan: 1 to create, 0 to update, 0 to replace, 0 to delete.",
            ],
        }
    }
}

conformance!(Local);

#[test]
fn apply_then_reapply_changes_nothing() {
    let env = Env::new();
    env.write("lab.toml", &lab("lab1", &["ada", "bob"], 2));
    assert_eq!(env.run(&["plan", "lab.toml", "--detailed-exitcode"]).code, 3, "changes: exit 3");
    env.run(&["apply", "lab.toml", "--yes"]).ok();
    env.run(&["plan", "lab.toml", "--detailed-exitcode"]).ok();
    assert_eq!(env.state_addresses("lab1"), expected_addresses(&["ada", "bob"], 2));
    assert_eq!(env.data_files(), expected_files("lab1", &["ada", "bob"]));
    let serial = env.state("lab1")["serial"].clone();
    let mtime = |f: &str| std::fs::metadata(env.data().join(f)).unwrap().modified().unwrap();
    let before = mtime("lab1/buckets/lab1-ada/datasets/corpus/part-00000.txt");

    let again = env.run(&["apply", "lab.toml", "--yes"]).ok();
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);
    assert_eq!(env.state("lab1")["serial"], serial, "state untouched");
    assert_eq!(mtime("lab1/buckets/lab1-ada/datasets/corpus/part-00000.txt"), before, "data untouched");
}

#[test]
fn a_saved_plan_is_applied_exactly_and_refused_once_stale() {
    let env = Env::new();
    env.write("lab.toml", &lab("lab1", &["ada"], 1));
    env.run(&["plan", "lab.toml", "--out", "p1.json"]).ok();
    // The lab file changes after the plan was saved: the plan still applies as saved.
    env.write("lab.toml", &lab("lab1", &["ada", "bob"], 1));
    let applied = env.run(&["apply", "p1.json"]).ok();
    assert!(applied.stdout.contains("Apply complete: 5 created"), "{}", applied.stdout);
    assert_eq!(env.state_addresses("lab1"), expected_addresses(&["ada"], 1));

    let again = env.run(&["apply", "p1.json"]);
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("the plan is stale: it was made against state serial 0"),
        "{}",
        again.stderr
    );
}

/// A lab past its `expires` can no longer be planned or applied (nor a plan saved before),
/// but its own file still shows, verifies and destroys it; the expiry is kept in state.
#[test]
fn an_expired_lab_refuses_plan_and_apply_but_is_destroyed_by_its_file() {
    let env = Env::new();
    let expires = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + 4).unwrap();
    let text =
        lab("lab1", &["ada"], 1).replace("name = \"lab1\"", &format!("name = \"lab1\"\nexpires = {expires}"));
    env.write("lab.toml", &text);
    env.run(&["apply", "lab.toml", "--yes"]).ok();
    env.run(&["plan", "lab.toml", "--out", "saved.json"]).ok();
    assert_eq!(env.state("lab1")["expires"], expires.to_string());
    let serial = env.state("lab1")["serial"].clone();
    while jiff::Timestamp::now() <= expires {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    for args in [&["plan", "lab.toml"][..], &["apply", "lab.toml", "--yes"], &["apply", "saved.json"]] {
        let refused = env.run(args);
        assert_eq!(refused.code, 2, "{args:?}: {}", refused.all());
        assert!(
            refused.stderr.contains(&format!("expired at {expires}: plan and apply refuse")),
            "{}",
            refused.stderr
        );
        assert!(refused.stderr.contains("labctl destroy"), "{}", refused.stderr);
    }
    assert_eq!(env.state("lab1")["serial"], serial, "nothing was applied");
    for args in [
        &["validate", "lab.toml"][..],
        &["status", "lab.toml"],
        &["output", "lab.toml"],
        &["state", "list", "lab.toml"],
    ] {
        let run = env.run(args).ok();
        assert!(run.stderr.contains(&format!("this lab expired at {expires}")), "{args:?}: {}", run.stderr);
    }
    env.run(&["plan", "lab.toml", "--destroy"]).ok();
    let destroyed = env.run(&["destroy", "lab.toml", "--yes"]).ok();
    assert!(destroyed.stdout.contains("Destroy complete"), "{}", destroyed.stdout);
    assert!(env.state_addresses("lab1").is_empty());
}

/// `reap` goes by the expiry on the resources alone: with its lab file and state gone, a
/// lab past its expiry is listed, then destroyed with `--yes`, leaving nothing; a lab whose
/// expiry moved later (every resource retagged in place, nothing made again) and a lab
/// without one are kept.
#[test]
fn reap_destroys_only_labs_past_their_expiry_without_their_files_or_state() {
    let env = Env::new();
    let at = |secs: i64| jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + secs).unwrap();
    let expiring = |name: &str, expires: jiff::Timestamp| {
        lab(name, &["ada"], 0)
            .replace(&format!("name = \"{name}\""), &format!("name = \"{name}\"\nexpires = {expires}"))
    };
    let (soon, later) = (at(4), at(86_400));
    env.write("lab1.toml", &expiring("lab1", soon));
    env.write("lab2.toml", &expiring("lab2", soon));
    env.write("lab3.toml", &lab("lab3", &["ada"], 0));
    for file in ["lab1.toml", "lab2.toml", "lab3.toml"] {
        env.run(&["apply", file, "--yes"]).ok();
    }
    let tagged = |lab: &str| -> Vec<serde_json::Value> {
        files_under(&env.data().join(lab).join("tags"))
            .iter()
            .map(|f| {
                serde_json::from_slice::<serde_json::Value>(
                    &std::fs::read(env.data().join(lab).join("tags").join(f)).unwrap(),
                )
                .unwrap()["expires"]
                    .clone()
            })
            .collect()
    };
    assert_eq!(tagged("lab2"), vec![serde_json::json!(soon.to_string()); 2], "bucket and credential");

    env.write("lab2.toml", &expiring("lab2", later));
    let moved = env.run(&["plan", "lab2.toml"]).ok();
    assert!(
        moved.stdout.contains("Plan: 0 to create, 4 to update, 0 to replace, 0 to delete."),
        "{}",
        moved.stdout
    );
    assert!(moved.stdout.contains(&format!("labctl/expires: \"{soon}\" → \"{later}\"")), "{}", moved.stdout);
    let token = std::fs::read_to_string(env.data().join("lab2/students/ada/token")).unwrap();
    env.run(&["apply", "lab2.toml", "--yes"]).ok();
    assert_eq!(tagged("lab2"), vec![serde_json::json!(later.to_string()); 2]);
    assert_eq!(
        std::fs::read_to_string(env.data().join("lab2/students/ada/token")).unwrap(),
        token,
        "retagged, not remade"
    );
    env.run(&["plan", "lab2.toml", "--detailed-exitcode"]).ok();

    std::fs::remove_file(env.path("lab1.toml")).unwrap();
    std::fs::remove_file(env.path(".labctl/lab1.state.json")).unwrap();
    while jiff::Timestamp::now() <= soon {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    env.write("reap.toml", "[provider.local]\n");
    let listed = env.run(&["reap", "reap.toml"]).ok();
    assert!(
        listed.stdout.contains(&format!("  lab1 on local: expired at {soon}, 2 resources")),
        "{}",
        listed.stdout
    );
    assert!(listed.stdout.contains(&format!("  lab2 on local: expires at {later}")), "{}", listed.stdout);
    assert!(listed.stdout.contains("  lab3 on local: no expiry"), "{}", listed.stdout);
    assert!(listed.stdout.contains("Run again with --yes"), "{}", listed.stdout);
    assert!(env.data().join("lab1/buckets/lab1-ada").is_dir(), "listing destroys nothing");

    // What ada wrote outlives her lab in the archive.
    let bucket = env.data().join("lab1/buckets/lab1-ada");
    std::fs::create_dir_all(bucket.join("out")).unwrap();
    std::fs::write(bucket.join("out/result.txt"), "mine").unwrap();
    let reaped = env.run(&["reap", "reap.toml", "--yes", "--archive", "kept"]).ok();
    assert!(reaped.stdout.contains("Archived ada's work: 6 files in kept/lab1/ada."), "{}", reaped.stdout);
    assert!(reaped.stdout.contains("Nothing of lab `lab1` is left."), "{}", reaped.stdout);
    assert!(!env.data().join("lab1").exists(), "{:?}", files_under(&env.data().join("lab1")));
    assert_eq!(std::fs::read_to_string(env.path("kept/lab1/ada/out/result.txt")).unwrap(), "mine");
    for kept in ["lab2.toml", "lab3.toml"] {
        env.run(&["plan", kept, "--detailed-exitcode"]).ok();
    }
    let json = env.run(&["reap", "reap.toml", "--json"]).ok();
    let labs: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let names: Vec<(&str, bool)> = labs["labs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["lab"].as_str().unwrap(), l["expired"].as_bool().unwrap()))
        .collect();
    assert_eq!(names, [("lab2", false), ("lab3", false)]);
}

/// `destroy --archive` keeps what students wrote into their buckets and drops the seeded
/// datasets; a student whose copy fails keeps their bucket until a later run archives it.
#[test]
fn destroy_archive_keeps_students_work_and_a_failed_copy_keeps_their_environment() {
    let env = Env::new();
    env.write("lab.toml", &lab("lab1", &["ada", "bob"], 0));
    env.run(&["apply", "lab.toml", "--yes"]).ok();
    for student in ["ada", "bob"] {
        let bucket = env.data().join(format!("lab1/buckets/lab1-{student}"));
        std::fs::create_dir_all(bucket.join("out/wordcount")).unwrap();
        std::fs::write(bucket.join("out/wordcount/part-00000"), format!("{student} 1\n")).unwrap();
        std::fs::write(bucket.join("notes.md"), "mine").unwrap();
    }
    // bob's archive directory cannot be made: his copy fails.
    std::fs::create_dir_all(env.path("kept")).unwrap();
    std::fs::write(env.path("kept/bob"), "in the way").unwrap();

    let failed = env.run(&["destroy", "lab.toml", "--yes", "--archive", "kept"]);
    assert_eq!(failed.code, 1, "{}", failed.all());
    assert!(failed.stdout.contains("Archived ada's work: 2 files in kept/ada."), "{}", failed.stdout);
    assert!(failed.stderr.contains("kept the environment of 1 student(s)"), "{}", failed.stderr);
    assert!(failed.stderr.contains("bob: "), "{}", failed.stderr);
    assert_eq!(files_under(&env.path("kept/ada")), ["notes.md", "out/wordcount/part-00000"]);
    assert_eq!(std::fs::read_to_string(env.path("kept/ada/out/wordcount/part-00000")).unwrap(), "ada 1\n");
    assert!(!env.data().join("lab1/buckets/lab1-ada").exists(), "ada's bucket is deleted");
    let bob = env.data().join("lab1/buckets/lab1-bob");
    assert!(bob.join("out/wordcount/part-00000").exists(), "bob's work stays where it was");
    // His whole environment stays, whatever else might hold his work.
    let left = env.state_addresses("lab1");
    assert!(left.contains(&"student[\"bob\"].bucket".to_owned()), "{left:?}");
    assert!(left.iter().all(|a| a.starts_with("student[\"bob\"].")), "{left:?}");

    std::fs::remove_file(env.path("kept/bob")).unwrap();
    let done = env.run(&["destroy", "lab.toml", "--yes", "--archive", "kept"]).ok();
    assert!(done.stdout.contains("Archived bob's work: 2 files in kept/bob."), "{}", done.stdout);
    assert_eq!(std::fs::read_to_string(env.path("kept/bob/notes.md")).unwrap(), "mine");
    assert!(env.state_addresses("lab1").is_empty());
    assert!(!bob.exists());
}

#[test]
fn plan_output_shows_every_kind_of_change() {
    let env = Env::new();
    let _s = stable(&env);
    env.write("lab.toml", &lab("lab1", &["ada", "bob"], 2));
    env.run(&["apply", "lab.toml", "--yes"]).ok();
    // bob leaves, cy joins, ada's placeholders change an in-place and a forcing attribute.
    let changed = lab("lab1", &["ada", "cy"], 2).replace("input = \"v1\"", "input = \"v2\"");
    env.write("lab.toml", &changed);
    let plan = env.run(&["plan", "lab.toml"]).ok();
    insta::assert_snapshot!("plan_every_kind", plan.stdout);

    env.write("lab.toml", &changed.replace("triggers_replace = \"t1\"", "triggers_replace = \"t2\""));
    let plan = env.run(&["plan", "lab.toml", "--json"]).ok();
    let doc: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let replaced = doc["actions"].as_array().unwrap().iter().filter(|a| a["action"] == "replace").count();
    assert_eq!(replaced, 2, "ada's two placeholders: `triggers_replace` forces replacement");
}

#[test]
fn adding_and_removing_a_student_touches_only_theirs() {
    let env = Env::new();
    env.write("lab.toml", &lab("lab1", &["ada", "bob"], 1));
    env.run(&["apply", "lab.toml", "--yes"]).ok();
    let ada_token = std::fs::read_to_string(env.data().join("lab1/students/ada/token")).unwrap();

    env.write("lab.toml", &lab("lab1", &["ada", "bob", "cy"], 1));
    let added = env.run(&["apply", "lab.toml", "--yes", "--json"]).ok();
    let doc: serde_json::Value = serde_json::from_str(&added.stdout).unwrap();
    let touched: Vec<&str> =
        doc["actions"].as_array().unwrap().iter().map(|a| a["address"].as_str().unwrap()).collect();
    assert_eq!(touched.len(), 5);
    assert!(touched.iter().all(|a| a.starts_with("student[\"cy\"]")), "{touched:?}");

    env.write("lab.toml", &lab("lab1", &["ada", "cy"], 1));
    let removed = env.run(&["apply", "lab.toml", "--yes", "--json"]).ok();
    let doc: serde_json::Value = serde_json::from_str(&removed.stdout).unwrap();
    let actions = doc["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 5);
    assert!(actions
        .iter()
        .all(|a| a["action"] == "delete" && a["address"].as_str().unwrap().starts_with("student[\"bob\"]")));
    assert_eq!(env.data_files(), expected_files("lab1", &["ada", "cy"]));
    assert_eq!(
        std::fs::read_to_string(env.data().join("lab1/students/ada/token")).unwrap(),
        ada_token,
        "ada untouched"
    );
}

#[test]
fn a_changed_dataset_is_replaced_and_in_place_changes_update() {
    let env = Env::new();
    env.write("lab.toml", &lab("lab1", &["ada"], 1));
    env.run(&["apply", "lab.toml", "--yes"]).ok();
    let text = lab("lab1", &["ada"], 1)
        .replace("rows = 500", "rows = 600")
        .replace("input = \"v1\"", "input = \"v2\"");
    env.write("lab.toml", &text);
    let run = env.run(&["apply", "lab.toml", "--yes"]).ok();
    assert!(run.stdout.contains("-/+ student[\"ada\"].dataset[\"table\"] (dataset)"), "{}", run.stdout);
    assert!(run.stdout.contains("  ~ student[\"ada\"].null[0] (null)"), "{}", run.stdout);
    assert!(
        run.stdout.contains("Apply complete: 0 created, 1 updated, 1 replaced, 0 deleted"),
        "{}",
        run.stdout
    );
    let csv = std::fs::read_to_string(env.data().join("lab1/buckets/lab1-ada/datasets/table/part-00000.csv"))
        .unwrap();
    assert_eq!(csv.lines().count(), 601);
}

#[test]
fn destroy_runs_in_reverse_order_is_filtered_and_idempotent() {
    let env = Env::new();
    env.write("lab.toml", &lab("lab1", &["ada", "bob", "cy"], 0));
    env.run(&["apply", "lab.toml", "--yes"]).ok();

    let one = env.run(&["destroy", "lab.toml", "--student", "bob", "--yes"]).ok();
    let pos = |s: &str| one.stderr.find(s).unwrap_or_else(|| panic!("{s} not in {}", one.stderr));
    assert!(pos("deleted student[\"bob\"].dataset[\"corpus\"]") < pos("deleted student[\"bob\"].bucket"));
    assert_eq!(env.data_files(), expected_files("lab1", &["ada", "cy"]));

    env.run(&["destroy", "lab.toml", "--cohort", "mon", "--yes"]).ok();
    assert!(!env.data().join("lab1").exists(), "{:?}", env.data_files());
    assert!(env.state_addresses("lab1").is_empty());
    let again = env.run(&["destroy", "lab.toml", "--yes"]).ok();
    assert!(again.stdout.contains("Nothing to destroy."), "{}", again.stdout);
}

#[test]
fn status_output_and_state_show_what_exists() {
    let env = Env::new();
    let _s = stable(&env);
    env.write("lab.toml", &lab("lab1", &["ada", "bob"], 1));
    env.run(&["apply", "lab.toml", "--yes"]).ok();
    std::fs::remove_dir_all(env.data().join("lab1/buckets/lab1-bob/datasets/table")).unwrap();
    insta::assert_snapshot!("status", env.run(&["status", "lab.toml"]).ok().stdout);
    insta::assert_snapshot!("output_ada", env.run(&["output", "lab.toml", "--student", "ada"]).ok().stdout);
    let list = env.run(&["state", "list", "lab.toml"]).ok();
    assert_eq!(list.stdout.lines().count(), 10);
    let missing = env.run(&["state", "show", "lab.toml", "student[\"ada\"].bukket"]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("Did you mean `student[\"ada\"].bucket`?"), "{}", missing.stderr);
}

#[test]
fn apply_without_yes_needs_a_terminal_to_confirm() {
    let env = Env::new();
    env.write("lab.toml", &lab("lab1", &["ada"], 0));
    let run = env.run(&["apply", "lab.toml"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("refusing to apply without confirmation"), "{}", run.stderr);
    assert!(run.stdout.contains("Plan: 4 to create"), "the plan is shown first: {}", run.stdout);
    assert!(!env.data().exists());
}

#[test]
fn help_lists_every_command() {
    let env = Env::new();
    insta::assert_snapshot!("help", env.run(&["--help"]).ok().stdout);
    for command in [
        "validate",
        "plan",
        "apply",
        "verify",
        "destroy",
        "status",
        "output",
        "state",
        "schema",
        "completions",
    ] {
        let help = env.run(&[command, "--help"]).ok();
        assert!(help.stdout.contains("Usage: labctl"), "{command}: {}", help.stdout);
    }
    let completions = env.run(&["completions", "bash"]).ok();
    assert!(completions.stdout.contains("labctl"));
}
