use super::*;

fn def(id: TaskId, deps: &[TaskId]) -> TaskDef {
    TaskDef { id, deps: deps.to_vec(), gpus: 0, priority: 0 }
}

/// The tasks assigned by `cmds`, per worker.
fn assigned(cmds: &[Command]) -> Vec<(WorkerId, Vec<TaskId>)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Assign { worker, tasks } => Some((*worker, tasks.iter().map(|t| t.0).collect())),
            _ => None,
        })
        .collect()
}

#[test]
fn dependencies_run_first_and_results_reach_the_client() {
    let mut core = Core::new(0);
    core.on_worker_joined(1, 1, 0);
    let cmds = core.on_submit(7, vec![def(1, &[]), def(2, &[1])], &[2]);
    assert_eq!(assigned(&cmds), vec![(1, vec![1])]);
    let cmds = core.on_finished(1, &[1]);
    assert_eq!(assigned(&cmds), vec![(1, vec![2])]);
    let cmds = core.on_finished(1, &[2]);
    assert!(cmds.contains(&Command::Fetch { task: 2, worker: 1, client: 7 }), "{cmds:?}");
    assert!(cmds.contains(&Command::Release { worker: 1, task: 1 }), "inputs are released: {cmds:?}");
}

#[test]
fn placement_prefers_the_worker_holding_the_inputs() {
    let mut core = Core::new(4);
    core.on_worker_joined(1, 1, 0);
    core.on_worker_joined(2, 1, 0);
    core.on_submit(1, vec![def(1, &[])], &[]);
    let holder = core.tasks[&1].state.clone();
    let State::Assigned(w) = holder else { panic!() };
    core.on_finished(w, &[1]);
    let cmds = core.on_submit(1, vec![def(2, &[1])], &[2]);
    assert_eq!(assigned(&cmds), vec![(w, vec![2])]);
}

#[test]
fn prefetch_bounds_what_a_worker_holds_and_load_is_spread() {
    let mut core = Core::new(2);
    core.on_worker_joined(1, 1, 0);
    core.on_worker_joined(2, 1, 0);
    let cmds = core.on_submit(1, (1..=10).map(|i| def(i, &[])).collect(), &[]);
    let per: Vec<usize> = assigned(&cmds).iter().map(|(_, t)| t.len()).collect();
    assert_eq!(per, vec![3, 3], "slots + prefetch each");
    assert_eq!(core.counts()["ready"], 4);
}

#[test]
fn an_idle_worker_steals_queued_tasks_and_no_task_runs_twice() {
    let mut core = Core::new(100);
    core.on_worker_joined(1, 1, 0);
    core.on_submit(1, (1..=20).map(|i| def(i, &[])).collect(), &[]);
    let cmds = core.on_worker_joined(2, 1, 0);
    let Some(Command::Steal { worker: 1, tasks }) =
        cmds.iter().find(|c| matches!(c, Command::Steal { .. })).cloned()
    else {
        panic!("expected a steal: {cmds:?}");
    };
    assert_eq!(tasks.len(), 10);
    // The victim had already started one of them: it gives back the rest.
    let given: Vec<TaskId> = tasks[1..].to_vec();
    let cmds = core.on_stolen(1, &given);
    assert_eq!(
        assigned(&cmds),
        vec![(2, {
            let mut g = given.clone();
            g.sort();
            g
        })]
    );
    assert_eq!(core.stats.stolen, 9);
    // A completion of a task that moved is not accepted from its old worker.
    core.on_finished(1, &[given[0]]);
    assert_eq!(core.stats.finished, 0);
}

#[test]
fn a_lost_worker_s_results_are_recomputed_when_needed() {
    let mut core = Core::new(0);
    core.on_worker_joined(1, 1, 0);
    core.on_submit(1, vec![def(1, &[]), def(2, &[]), def(3, &[1, 2])], &[3]);
    core.on_finished(1, &[1]);
    core.on_finished(1, &[2]);
    // 3 is running on worker 1 with its inputs there; worker 2 joins; worker 1 dies.
    core.on_worker_joined(2, 1, 0);
    let cmds = core.on_worker_lost(1);
    let first = assigned(&cmds);
    assert_eq!(first, vec![(2, vec![1])], "inputs first: {cmds:?}");
    assert!(core.stats.recomputed >= 2);
    assert_eq!(assigned(&core.on_finished(2, &[1])), vec![(2, vec![2])]);
    assert_eq!(assigned(&core.on_finished(2, &[2])), vec![(2, vec![3])]);
    assert!(core.on_finished(2, &[3]).contains(&Command::Fetch { task: 3, worker: 2, client: 1 }));
}

#[test]
fn a_task_that_kills_three_workers_fails_with_its_dependents() {
    let mut core = Core::new(0);
    core.on_submit(9, vec![def(1, &[]), def(2, &[1]), def(3, &[])], &[2, 3]);
    for w in 1..=3 {
        core.on_worker_joined(w, 1, 0);
        core.on_started(&[1]);
        let cmds = core.on_worker_lost(w);
        if w < 3 {
            assert!(!cmds.iter().any(|c| matches!(c, Command::Error { .. })));
        } else {
            assert!(
                cmds.contains(&Command::Error { client: 9, task: 1, error: "task killed 3 workers".into() }),
                "{cmds:?}"
            );
            assert!(cmds.contains(&Command::Error {
                client: 9,
                task: 2,
                error: "dependency 1 failed: task killed 3 workers".into()
            }));
        }
    }
    // The independent task still runs.
    let cmds = core.on_worker_joined(4, 1, 0);
    assert!(assigned(&cmds).iter().any(|(_, t)| t.contains(&3)), "{cmds:?}");
}

#[test]
fn errors_reach_the_client_for_the_task_and_all_dependents() {
    let mut core = Core::new(0);
    core.on_worker_joined(1, 2, 0);
    core.on_submit(5, vec![def(1, &[]), def(2, &[1]), def(3, &[2]), def(4, &[])], &[3, 4]);
    let cmds = core.on_failed(1, 1, "boom".into());
    let errors: Vec<TaskId> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::Error { task, .. } => Some(*task),
            _ => None,
        })
        .collect();
    assert_eq!(errors, vec![1, 2, 3]);
    assert!(core.on_finished(1, &[4]).contains(&Command::Fetch { task: 4, worker: 1, client: 5 }));
}

#[test]
fn gpu_tasks_wait_for_a_gpu_worker() {
    let mut core = Core::new(0);
    core.on_worker_joined(1, 1, 0);
    let cmds = core.on_submit(1, vec![TaskDef { id: 1, deps: vec![], gpus: 1, priority: 0 }], &[1]);
    assert!(assigned(&cmds).is_empty());
    assert_eq!(assigned(&core.on_worker_joined(2, 1, 1)), vec![(2, vec![1])]);
}

#[test]
fn higher_priority_first() {
    let mut core = Core::new(0);
    core.on_submit(1, vec![def(1, &[]), TaskDef { id: 2, deps: vec![], gpus: 0, priority: 5 }], &[]);
    assert_eq!(assigned(&core.on_worker_joined(1, 1, 0)), vec![(1, vec![2])]);
}

#[test]
fn a_departed_client_s_tasks_are_forgotten_and_their_results_released() {
    let mut core = Core::new(0);
    core.on_worker_joined(1, 1, 0);
    core.on_submit(3, vec![def(1, &[]), def(2, &[1]), def(3, &[])], &[2]);
    core.on_finished(1, &[1]);
    let (mut ids, cmds) = core.on_client_left(3);
    ids.sort();
    assert_eq!(ids, vec![1, 2, 3]);
    assert!(cmds.contains(&Command::Release { worker: 1, task: 1 }), "{cmds:?}");
    assert!(core.counts().is_empty());
    // A late report of a forgotten task only releases its result.
    assert_eq!(core.on_finished(1, &[2]), vec![Command::Release { worker: 1, task: 2 }]);
}

#[test]
fn a_stolen_task_whose_input_was_lost_waits_for_it_again() {
    let mut core = Core::new(0);
    core.on_worker_joined(2, 1, 0);
    core.on_submit(1, vec![def(1, &[])], &[]);
    core.on_finished(2, &[1]);
    core.on_submit(1, vec![def(3, &[])], &[]);
    core.on_worker_joined(1, 1, 0);
    let cmds = core.on_submit(1, vec![def(2, &[1])], &[2]);
    assert_eq!(assigned(&cmds), vec![(1, vec![2])], "worker 2 is full");
    // Worker 2 dies with task 1's result; task 2 still sits in worker 1's queue.
    core.on_worker_lost(2);
    // Worker 1 gives task 2 back: it must wait for task 1, which runs first.
    let cmds = core.on_stolen(1, &[2]);
    assert_eq!(assigned(&cmds), vec![(1, vec![1])], "{cmds:?}");
    assert_eq!(assigned(&core.on_finished(1, &[1])), vec![(1, vec![2])]);
}
