//! E6 crash safety (SIGKILL at random points) and E7 interrupt (Ctrl-C).

use std::time::{Duration, Instant};

use rand::Rng;

use crate::support::{expected_addresses, expected_files, finish, lab, Env};

fn signal(child: &std::process::Child, sig: i32) {
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, sig) };
}

const STUDENTS: [&str; 6] = ["ada", "bob", "cy", "dee", "eve", "fay"];

/// Kills `apply` with SIGKILL at a random moment, 20 times; each time the next apply must
/// converge to exactly the lab (no duplicate, nothing lost, no temporary left), and destroy
/// must leave the data directory empty — checked on disk, not in state.
#[test]
fn sigkill_at_any_point_then_apply_converges_and_destroy_leaves_nothing() {
    let env = Env::new();
    env.write("lab.toml", &lab("crash", &STUDENTS, 3));
    // How long an undisturbed apply takes here, to spread the kills over it.
    let start = Instant::now();
    env.run(&["apply", "lab.toml", "--yes", "--parallelism", "4"]).ok();
    let full = start.elapsed();
    env.run(&["destroy", "lab.toml", "--yes"]).ok();

    let mut rng = rand::thread_rng();
    let mut killed_mid_apply = 0;
    for trial in 0..20 {
        let child = env.spawn(&["apply", "lab.toml", "--yes", "--parallelism", "4"], None);
        std::thread::sleep(full.mul_f64(rng.gen_range(0.05..1.1)));
        signal(&child, libc::SIGKILL);
        let run = finish(child);
        if run.code != 0 {
            killed_mid_apply += 1;
        }

        let again = env.run(&["apply", "lab.toml", "--yes"]);
        assert_eq!(again.code, 0, "trial {trial}: apply after kill failed:\n{}", again.all());
        assert_eq!(env.data_files(), expected_files("crash", &STUDENTS), "trial {trial}");
        assert_eq!(env.state_addresses("crash"), expected_addresses(&STUDENTS, 3), "trial {trial}");
        let plan = env.run(&["plan", "lab.toml"]).ok();
        assert!(plan.stdout.contains("No changes"), "trial {trial}: {}", plan.stdout);

        // Every other trial, kill a destroy too.
        if trial % 2 == 1 {
            let child = env.spawn(&["destroy", "lab.toml", "--yes"], None);
            std::thread::sleep(full.mul_f64(rng.gen_range(0.0..0.5)));
            signal(&child, libc::SIGKILL);
            finish(child);
        }
        env.run(&["destroy", "lab.toml", "--yes"]).ok();
        assert_eq!(env.data_files(), Vec::<String>::new(), "trial {trial}: destroy left files");
        let left: Vec<_> = walkdirs(&env.data());
        assert!(left.is_empty(), "trial {trial}: directories remain: {left:?}");
    }
    assert!(killed_mid_apply >= 5, "only {killed_mid_apply} of 20 kills landed during an apply");
}

/// A slow lab: every dataset takes 1.5 s to seed.
const SLOW: &str = "create:dataset:sleep1500:1000";

#[test]
fn ctrl_c_finishes_in_flight_work_saves_state_and_exits_non_zero() {
    let env = Env::new();
    env.write("lab.toml", &lab("lab1", &STUDENTS, 0));
    let child = env.spawn(&["apply", "lab.toml", "--yes", "--parallelism", "3"], Some(SLOW));
    std::thread::sleep(Duration::from_millis(700));
    signal(&child, libc::SIGINT);
    let run = finish(child);
    assert_eq!(run.code, 130, "{}", run.all());
    assert!(run.stderr.contains("Interrupted: starting nothing new"), "{}", run.stderr);
    assert!(run.stdout.contains("Apply interrupted:"), "{}", run.stdout);
    // What was in flight finished and is in state; what had not started was not done.
    let recorded = env.state_addresses("lab1");
    assert!(recorded.iter().any(|a| a.contains(".dataset[")), "in-flight seeding recorded: {recorded:?}");
    assert!(recorded.len() < expected_addresses(&STUDENTS, 0).len());

    env.run(&["apply", "lab.toml", "--yes"]).ok();
    assert_eq!(env.data_files(), expected_files("lab1", &STUDENTS));
}

#[test]
fn a_second_ctrl_c_exits_at_once_with_consistent_state() {
    let env = Env::new();
    env.write("lab.toml", &lab("lab1", &STUDENTS, 0));
    let child = env
        .spawn(&["apply", "lab.toml", "--yes", "--parallelism", "3"], Some("create:dataset:sleep5000:1000"));
    std::thread::sleep(Duration::from_millis(700));
    signal(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(200));
    let second = Instant::now();
    signal(&child, libc::SIGINT);
    let run = finish(child);
    assert!(second.elapsed() < Duration::from_secs(2), "took {:?}", second.elapsed());
    assert_eq!(run.code, 130, "{}", run.all());
    // The state file parses and the next run converges.
    let _ = env.state("lab1");
    env.run(&["apply", "lab.toml", "--yes"]).ok();
    assert_eq!(env.data_files(), expected_files("lab1", &STUDENTS));
    env.run(&["destroy", "lab.toml", "--yes"]).ok();
    assert!(env.data_files().is_empty());
}

/// Every directory under `root`, relative.
fn walkdirs(root: &std::path::Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                out.push(e.path().strip_prefix(root).unwrap().display().to_string());
                stack.push(e.path());
            }
        }
    }
    out
}
