//! labctl's bundled task scheduler, after Dask distributed and HyperQueue: a scheduler
//! places the tasks of a graph on workers (by data locality and load, with work stealing),
//! keeps results where they were made, recomputes what a lost worker held, and fails a
//! task that keeps killing workers.
//!
//! [`core`] is the scheduler's logic as a pure state machine; [`server`] and [`worker`]
//! are its network edges; [`client`] is the library the smoke workloads use.

pub mod client;
pub mod core;
pub mod functions;
pub mod graph;
pub mod hpsearch;
pub mod model;
pub mod protocol;
pub mod server;
pub mod worker;
