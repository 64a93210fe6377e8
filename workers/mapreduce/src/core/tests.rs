use super::*;

const LIMITS: Limits = Limits { task_timeout: Duration::from_secs(10), max_attempts: 3 };

fn out(name: &str) -> Vec<Output> {
    vec![Output { temp: format!("{name}.tmp"), final_name: name.into(), bytes: 10 }]
}

fn assigned(cmds: &[Command]) -> (TaskId, u64) {
    match cmds {
        [Command::Assign { task, attempt, .. }] => (*task, *attempt),
        other => panic!("expected one assignment, got {other:?}"),
    }
}

/// A completion, and the edge publishing it successfully.
fn finish(job: &mut Job, worker: WorkerId, task: TaskId, attempt: u64, now: Instant) -> Vec<Command> {
    let mut cmds = job.handle(
        Event::Finished {
            worker,
            task,
            attempt,
            outputs: out(&format!("{task:?}")),
            stats: TaskStats::default(),
        },
        now,
    );
    if matches!(cmds[..], [Command::Commit { .. }]) {
        cmds.extend(job.handle(Event::Committed { task }, now));
    }
    cmds
}

#[test]
fn maps_then_reduces_then_exit() {
    let t0 = Instant::now();
    let mut job = Job::new(2, 1, LIMITS, t0);
    let (m0, a0) = assigned(&job.handle(Event::Request { worker: 1 }, t0));
    let (m1, a1) = assigned(&job.handle(Event::Request { worker: 2 }, t0));
    assert_eq!((m0.phase, m1.phase), (Phase::Map, Phase::Map));
    // No reduce starts before every map is done.
    assert_eq!(job.handle(Event::Request { worker: 3 }, t0), vec![Command::Wait { worker: 3 }]);
    assert!(matches!(finish(&mut job, 1, m0, a0, t0)[..], [Command::Commit { .. }]));
    assert_eq!(job.handle(Event::Request { worker: 1 }, t0), vec![Command::Wait { worker: 1 }]);
    finish(&mut job, 2, m1, a1, t0);
    assert_eq!(job.phase(), Phase::Reduce);
    let (r, ar) = assigned(&job.handle(Event::Request { worker: 1 }, t0));
    assert_eq!(r, TaskId { phase: Phase::Reduce, index: 0 });
    let cmds = finish(&mut job, 1, r, ar, t0 + Duration::from_secs(1));
    assert!(matches!(cmds[..], [Command::Commit { .. }, Command::Done]), "{cmds:?}");
    assert_eq!(job.handle(Event::Request { worker: 2 }, t0), vec![Command::Exit { worker: 2 }]);
    assert_eq!((job.counters.map_executions, job.counters.reduce_executions), (2, 1));
}

#[test]
fn a_straggler_gets_one_backup_and_the_late_completion_is_discarded() {
    let t0 = Instant::now();
    let mut job = Job::new(1, 1, LIMITS, t0);
    let (m, first) = assigned(&job.handle(Event::Request { worker: 1 }, t0));
    job.handle(Event::Tick, t0 + Duration::from_secs(5));
    assert_eq!(
        job.handle(Event::Request { worker: 2 }, t0),
        vec![Command::Wait { worker: 2 }],
        "not overdue yet"
    );
    job.handle(Event::Tick, t0 + Duration::from_secs(11));
    let (again, backup) = assigned(&job.handle(Event::Request { worker: 2 }, t0 + Duration::from_secs(11)));
    assert_eq!(again, m);
    // Further ticks do not pile up more copies while the backup is young.
    job.handle(Event::Tick, t0 + Duration::from_secs(12));
    assert_eq!(job.handle(Event::Request { worker: 3 }, t0), vec![Command::Wait { worker: 3 }]);

    assert!(matches!(
        finish(&mut job, 2, m, backup, t0 + Duration::from_secs(12))[..],
        [Command::Commit { .. }]
    ));
    let late = finish(&mut job, 1, m, first, t0 + Duration::from_secs(13));
    assert!(matches!(late[..], [Command::Discard { .. }]), "{late:?}");
    assert_eq!(job.counters.ignored_completions, 1);
    assert_eq!(job.counters.backup_executions, 1);
    assert_eq!(job.outputs(m), out(&format!("{m:?}")));
}

#[test]
fn tasks_of_a_lost_worker_are_reassigned() {
    let t0 = Instant::now();
    let mut job = Job::new(1, 1, LIMITS, t0);
    let (m, _) = assigned(&job.handle(Event::Request { worker: 1 }, t0));
    assert_eq!(job.handle(Event::Request { worker: 2 }, t0), vec![Command::Wait { worker: 2 }]);
    job.handle(Event::WorkerLost { worker: 1 }, t0);
    let (again, _) = assigned(&job.handle(Event::Request { worker: 2 }, t0));
    assert_eq!(again, m);
}

#[test]
fn a_failing_task_is_retried_then_fails_the_job_with_every_error() {
    let t0 = Instant::now();
    let mut job = Job::new(1, 1, LIMITS, t0);
    for i in 1..=3 {
        let (m, a) = assigned(&job.handle(Event::Request { worker: 1 }, t0));
        let cmds =
            job.handle(Event::Failed { worker: 1, task: m, attempt: a, error: format!("exit {i}") }, t0);
        if i < 3 {
            assert!(cmds.is_empty());
        } else {
            assert_eq!(
                cmds,
                vec![Command::JobFailed {
                    task: m,
                    errors: vec!["exit 1".into(), "exit 2".into(), "exit 3".into()]
                }]
            );
        }
    }
    assert!(job.is_finished());
}

#[test]
fn no_spurious_reexecution_when_tasks_finish_in_time() {
    let t0 = Instant::now();
    let mut job = Job::new(4, 3, LIMITS, t0);
    let mut now = t0;
    while !job.is_finished() {
        now += Duration::from_secs(4);
        job.handle(Event::Tick, now);
        if let [Command::Assign { task, attempt, .. }] = job.handle(Event::Request { worker: 1 }, now)[..] {
            finish(&mut job, 1, task, attempt, now + Duration::from_secs(4));
        }
    }
    assert_eq!(
        (job.counters.map_executions, job.counters.reduce_executions, job.counters.backup_executions),
        (4, 3, 0)
    );
}

#[test]
fn a_failed_publish_is_a_failed_attempt_and_the_job_is_not_done_before_the_output_is() {
    let t0 = Instant::now();
    let mut job = Job::new(1, 1, LIMITS, t0);
    let (m, a) = assigned(&job.handle(Event::Request { worker: 1 }, t0));
    finish(&mut job, 1, m, a, t0);
    let (r, a) = assigned(&job.handle(Event::Request { worker: 1 }, t0));
    let cmds = job.handle(
        Event::Finished { worker: 1, task: r, attempt: a, outputs: out("r"), stats: TaskStats::default() },
        t0,
    );
    assert!(matches!(cmds[..], [Command::Commit { .. }]), "no Done before publishing: {cmds:?}");
    assert!(job.handle(Event::CommitFailed { task: r, error: "disk full".into() }, t0).is_empty());
    assert!(!job.is_finished());
    assert_eq!(job.counters.failed_executions, 1);
    let (again, a2) = assigned(&job.handle(Event::Request { worker: 2 }, t0));
    assert_eq!(again, r);
    let cmds = finish(&mut job, 2, r, a2, t0);
    assert!(matches!(cmds[..], [Command::Commit { .. }, Command::Done]), "{cmds:?}");
}

#[test]
fn the_report_gives_phase_durations_in_seconds() {
    let counters = Counters { map_phase: Duration::from_millis(1500), ..Default::default() };
    let json = serde_json::to_value(&counters).unwrap();
    assert_eq!(json["map_phase_seconds"], 1.5);
    assert_eq!(json["reduce_phase_seconds"], 0.0);
    assert_eq!(serde_json::from_value::<Counters>(json).unwrap(), counters);
}
