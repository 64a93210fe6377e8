//! Integration tests: coordinator and workers as separate OS processes.
