//! E7 interrupt (Ctrl-C). E6 (SIGKILL at random points) is in the conformance suite.

use std::time::{Duration, Instant};

use crate::support::{expected_addresses, expected_files, finish, lab, Env};

fn signal(child: &std::process::Child, sig: i32) {
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, sig) };
}

const STUDENTS: [&str; 6] = ["ada", "bob", "cy", "dee", "eve", "fay"];

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
