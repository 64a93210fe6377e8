//! Integration tests of M1–M12 (`shared/acceptance/mapreduce.md`): the coordinator and
//! every worker are separate OS processes; crashes are real SIGKILLs and exits.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on what they do not expect")]

mod support;

mod correctness;
mod faults;
mod objectstore;
mod parallelism;
mod streaming;
