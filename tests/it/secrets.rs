//! E11: no secret in plan output, logs or errors; state and secret files are mode 0600.

use std::os::unix::fs::PermissionsExt;

use crate::support::{lab, Env};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn tokens_never_appear_in_output_and_files_are_private() {
    let env = Env::new();
    env.write("lab.toml", &lab("lab1", &["ada", "bob"], 0));
    let mut outputs = vec![env.run(&["apply", "lab.toml", "--yes", "-vv"]).ok()];
    let token =
        std::fs::read_to_string(env.data().join("lab1/students/ada/token")).unwrap().trim().to_owned();
    assert_eq!(token.len(), 64);

    std::fs::remove_dir_all(env.data().join("lab1/buckets/lab1-bob")).unwrap();
    for args in [
        &["plan", "lab.toml", "-vv"][..],
        &["plan", "lab.toml", "--json"],
        &["status", "lab.toml", "--json"],
        &["output", "lab.toml"],
        &["output", "lab.toml", "--json"],
        &["state", "show", "lab.toml", "student[\"ada\"].credential"],
        &["state", "show", "lab.toml", "student[\"ada\"].credential", "--json"],
        &["state", "list", "lab.toml", "--json"],
    ] {
        outputs.push(env.run(args).ok());
    }
    outputs
        .push(env.run_with_faults("delete:credential:invalid:9", &["destroy", "lab.toml", "--yes", "-vv"]));
    for run in &outputs {
        assert!(!run.all().contains(&token), "a token leaked:\n{}", run.all());
    }
    let shown = env.run(&["output", "lab.toml", "--student", "ada"]).ok();
    assert!(shown.stdout.contains("credential.token = (sensitive)"), "{}", shown.stdout);
    let revealed = env.run(&["output", "lab.toml", "--student", "ada", "--show-sensitive"]).ok();
    assert!(revealed.stdout.contains(&token), "asked for, it is shown");

    assert_eq!(mode(&env.path(".labctl/lab1.state.json")), 0o600);
    assert_eq!(mode(&env.path(".labctl/lab1.state.json.backup")), 0o600);
    assert_eq!(mode(&env.path(".labctl")), 0o700);
    assert_eq!(mode(&env.data().join("lab1/students/ada/token")), 0o600);
}

#[test]
fn saved_plans_are_private() {
    let env = Env::new();
    env.write("lab.toml", &lab("lab1", &["ada"], 0));
    env.run(&["plan", "lab.toml", "--out", "p.json"]).ok();
    assert_eq!(mode(&env.path("p.json")), 0o600);
}
