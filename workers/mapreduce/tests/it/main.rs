//! Integration tests of M1–M11 (`shared/acceptance/mapreduce.md`): the coordinator and
//! every worker are separate OS processes; crashes are real SIGKILLs and exits.

mod support;

mod correctness;
mod faults;
mod parallelism;
mod streaming;
