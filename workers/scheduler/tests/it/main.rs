//! Integration tests: scheduler and workers as separate OS processes.
