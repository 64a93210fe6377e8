//! E8: a second writer is refused with who holds the lock; a stuck holder's lock can be
//! broken explicitly.

use std::time::Duration;

use crate::support::{finish, lab, Env};

fn wait_for_lock(env: &Env) {
    for _ in 0..100 {
        if env.path(".labctl/lab1.state.json.lock").exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the first apply never took the lock");
}

#[test]
fn a_second_writer_is_refused_with_the_holder() {
    let env = Env::new();
    env.write("lab.toml", &lab("lab1", &["ada"], 0));
    let first = env.spawn(&["apply", "lab.toml", "--yes"], Some("create:dataset:sleep1500:10"));
    wait_for_lock(&env);
    for command in [&["apply", "lab.toml", "--yes"][..], &["destroy", "lab.toml", "--yes"][..]] {
        let second = env.run(command);
        assert_eq!(second.code, 1, "{}", second.all());
        let pid = first.id().to_string();
        assert!(second.stderr.contains("the state is locked by"), "{}", second.stderr);
        assert!(second.stderr.contains(&format!("(pid {pid} on ")), "{}", second.stderr);
        assert!(second.stderr.contains("running `apply`"), "{}", second.stderr);
        assert!(second.stderr.contains("labctl state unlock"), "{}", second.stderr);
    }
    finish(first).ok();
    env.run(&["destroy", "lab.toml", "--yes"]).ok();
}

#[test]
fn a_killed_holder_leaves_no_lock_and_a_stuck_one_can_be_broken() {
    let env = Env::new();
    env.write("lab.toml", &lab("lab1", &["ada"], 0));
    let stuck = env.spawn(&["apply", "lab.toml", "--yes"], Some("create:dataset:sleep60000:10"));
    wait_for_lock(&env);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(stuck.id() as i32, libc::SIGSTOP) };
    assert_eq!(env.run(&["apply", "lab.toml", "--yes"]).code, 1);

    let unlocked = env.run(&["state", "unlock", "lab.toml"]).ok();
    assert!(unlocked.stdout.contains("Broke the lock held by"), "{}", unlocked.stdout);
    env.run(&["apply", "lab.toml", "--yes"]).ok();

    unsafe { libc::kill(stuck.id() as i32, libc::SIGKILL) };
    finish(stuck);
    let nothing = env.run(&["state", "unlock", "lab.toml"]).ok();
    assert!(nothing.stdout.contains("is not locked"), "{}", nothing.stdout);
    env.run(&["destroy", "lab.toml", "--yes"]).ok();
}
