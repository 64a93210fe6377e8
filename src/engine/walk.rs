//! The pure core of the engine: which actions may start, given which have finished.
//! No I/O and no clock, so every ordering rule is unit-tested directly.

use std::collections::{HashMap, VecDeque};

use crate::plan::Action;

#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Waiting,
    Running,
    Done,
    Failed,
    /// Not run because something it waits for failed (or was skipped, or the walk stopped).
    Skipped {
        because: String,
    },
}

/// Progress through a plan's actions as a DAG, in time linear in actions + edges.
#[derive(Debug)]
pub struct Walk {
    addresses: Vec<String>,
    waiting_on: Vec<usize>,
    dependents: Vec<Vec<usize>>,
    status: Vec<Status>,
    ready: VecDeque<usize>,
    running: usize,
}

impl Walk {
    /// Orders `actions` by their `deps`: an action waits for the actions (in this plan) on
    /// the addresses it lists. Dependencies without an action are already in place.
    pub fn new(actions: &[Action]) -> Self {
        let index: HashMap<&str, usize> =
            actions.iter().enumerate().map(|(i, a)| (a.address.as_str(), i)).collect();
        let mut waiting_on = vec![0; actions.len()];
        let mut dependents = vec![vec![]; actions.len()];
        for (i, a) in actions.iter().enumerate() {
            for dep in &a.deps {
                if let Some(&j) = index.get(dep.as_str()) {
                    waiting_on[i] += 1;
                    dependents[j].push(i);
                }
            }
        }
        let ready = (0..actions.len()).filter(|&i| waiting_on[i] == 0).collect();
        Self {
            addresses: actions.iter().map(|a| a.address.clone()).collect(),
            waiting_on,
            dependents,
            status: vec![Status::Waiting; actions.len()],
            ready,
            running: 0,
        }
    }

    /// The next action that may start now, marked running.
    pub fn next_ready(&mut self) -> Option<usize> {
        let i = self.ready.pop_front()?;
        self.status[i] = Status::Running;
        self.running += 1;
        Some(i)
    }

    /// Records that action `i` finished. Returns the actions skipped because it failed.
    pub fn finish(&mut self, i: usize, ok: bool) -> Vec<usize> {
        debug_assert_eq!(self.status[i], Status::Running);
        self.running -= 1;
        if ok {
            self.status[i] = Status::Done;
            for k in 0..self.dependents[i].len() {
                let d = self.dependents[i][k];
                self.waiting_on[d] -= 1;
                if self.waiting_on[d] == 0 && self.status[d] == Status::Waiting {
                    self.ready.push_back(d);
                }
            }
            vec![]
        } else {
            self.status[i] = Status::Failed;
            self.skip_dependents(i)
        }
    }

    /// Marks every action that has not started as skipped (after an interrupt, or when the
    /// rest can never become ready). Returns them.
    pub fn stop(&mut self, because: &str) -> Vec<usize> {
        self.ready.clear();
        let mut skipped = vec![];
        for (i, s) in self.status.iter_mut().enumerate() {
            if *s == Status::Waiting {
                *s = Status::Skipped { because: because.to_owned() };
                skipped.push(i);
            }
        }
        skipped
    }

    fn skip_dependents(&mut self, failed: usize) -> Vec<usize> {
        let mut skipped = vec![];
        let mut stack = vec![failed];
        while let Some(i) = stack.pop() {
            for k in 0..self.dependents[i].len() {
                let d = self.dependents[i][k];
                if self.status[d] == Status::Waiting {
                    self.status[d] = Status::Skipped { because: self.addresses[failed].clone() };
                    skipped.push(d);
                    stack.push(d);
                }
            }
        }
        skipped
    }

    /// Nothing is running and nothing can start: the walk is over.
    pub fn is_stuck_or_done(&self) -> bool {
        self.running == 0 && self.ready.is_empty()
    }

    pub fn status(&self, i: usize) -> &Status {
        &self.status[i]
    }
}

#[cfg(test)]
mod tests {
    use labctl_provider_api::Tags;

    use super::*;
    use crate::plan::ActionKind;

    fn action(address: &str, deps: &[&str]) -> Action {
        Action {
            address: address.into(),
            action: ActionKind::Create,
            provider: "null".into(),
            kind: "null".into(),
            tags: Tags::default(),
            spec: None,
            deps: deps.iter().map(|d| d.to_string()).collect(),
            changes: vec![],
            reason: None,
        }
    }

    fn drain(walk: &mut Walk) -> Vec<usize> {
        std::iter::from_fn(|| walk.next_ready()).collect()
    }

    #[test]
    fn dependencies_first() {
        let actions =
            [action("b", &["a"]), action("a", &[]), action("c", &["a", "b"]), action("d", &["elsewhere"])];
        let mut walk = Walk::new(&actions);
        assert_eq!(drain(&mut walk), vec![1, 3]);
        walk.finish(3, true);
        walk.finish(1, true);
        assert_eq!(drain(&mut walk), vec![0]);
        walk.finish(0, true);
        assert_eq!(drain(&mut walk), vec![2]);
        walk.finish(2, true);
        assert!(walk.is_stuck_or_done());
    }

    #[test]
    fn a_failure_skips_only_its_dependents_transitively() {
        let actions = [
            action("ada.bucket", &[]),
            action("ada.dataset", &["ada.bucket"]),
            action("ada.after", &["ada.dataset"]),
            action("bob.bucket", &[]),
            action("bob.dataset", &["bob.bucket"]),
        ];
        let mut walk = Walk::new(&actions);
        assert_eq!(drain(&mut walk), vec![0, 3]);
        assert_eq!(walk.finish(0, false), vec![1, 2]);
        assert_eq!(walk.status(2), &Status::Skipped { because: "ada.bucket".into() });
        assert!(walk.finish(3, true).is_empty());
        assert_eq!(drain(&mut walk), vec![4]);
        walk.finish(4, true);
        assert!(walk.is_stuck_or_done());
    }

    #[test]
    fn stop_skips_what_has_not_started() {
        let actions = [action("a", &[]), action("b", &["a"]), action("c", &[])];
        let mut walk = Walk::new(&actions);
        assert_eq!(walk.next_ready(), Some(0));
        assert_eq!(walk.stop("interrupted"), vec![1, 2]);
        assert_eq!(walk.next_ready(), None);
        walk.finish(0, true);
        assert!(walk.is_stuck_or_done());
    }

    #[test]
    fn a_cycle_never_becomes_ready() {
        let actions = [action("a", &["b"]), action("b", &["a"])];
        let mut walk = Walk::new(&actions);
        assert!(walk.is_stuck_or_done());
        assert_eq!(walk.stop("cycle").len(), 2);
    }
}
