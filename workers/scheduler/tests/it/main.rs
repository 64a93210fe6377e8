//! Integration tests of S1, S5–S12 (`shared/acceptance/scheduler.md`): the scheduler and
//! every worker are separate OS processes; faults are real SIGKILL and SIGSTOP. S2–S4 and
//! the S10 speedup are performance figures: `bench/scheduler.sh` measures them.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on what they do not expect")]

mod support;

mod faults;
mod graphs;
