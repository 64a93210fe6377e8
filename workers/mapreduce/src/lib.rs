//! labctl's bundled MapReduce engine, after Dean & Ghemawat (OSDI 2004): a coordinator
//! hands map tasks over input splits and then reduce tasks over hash partitions to workers,
//! re-runs what is lost or late, and publishes each task's output exactly once.
//!
//! [`core`] is the coordinator's logic as a pure state machine; [`coordinator`] and
//! [`worker`] are its network edges; [`task`] runs one task; [`job`] holds the map and
//! reduce functions; [`storage`] reads and writes through `object_store`.

pub mod collect;
pub mod coordinator;
pub mod core;
pub mod job;
pub mod protocol;
pub mod reference;
pub mod report;
pub mod storage;
pub mod task;
pub mod worker;
