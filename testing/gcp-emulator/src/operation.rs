//! How the emulator's long-running operations move, Compute Engine's and GKE's alike: each
//! is PENDING for a [`STEP`], RUNNING for one more, then DONE, and takes effect when DONE.

use std::time::{Duration, SystemTime};

/// How long an operation is PENDING, then RUNNING, before it is DONE.
pub const STEP: Duration = Duration::from_millis(100);

/// Where an operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Done,
}

impl Phase {
    /// Where an operation started at `start` stands `now`.
    pub fn at(start: SystemTime, now: SystemTime) -> Self {
        match now.duration_since(start).unwrap_or_default().as_nanos() / STEP.as_nanos() {
            0 => Self::Pending,
            1 => Self::Running,
            _ => Self::Done,
        }
    }

    /// Its `status`, as both APIs write it.
    pub fn status(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Done => "DONE",
        }
    }
}

/// When an operation started at `start` runs.
pub fn running_at(start: SystemTime) -> SystemTime {
    start + STEP
}

/// When an operation started at `start` is DONE.
pub fn done_at(start: SystemTime) -> SystemTime {
    start + 2 * STEP
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_is_pending_then_running_then_done() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let phase = |ms| Phase::at(start, start + Duration::from_millis(ms));
        assert_eq!(
            [phase(0), phase(99), phase(100), phase(199)],
            [Phase::Pending, Phase::Pending, Phase::Running, Phase::Running]
        );
        assert_eq!((phase(200), Phase::at(start, done_at(start))), (Phase::Done, Phase::Done));
        assert_eq!(Phase::at(start, running_at(start)).status(), "RUNNING");
        assert_eq!(Phase::at(start, start - STEP), Phase::Pending);
    }
}
