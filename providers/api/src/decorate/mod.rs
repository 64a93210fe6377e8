//! Decorators of [`crate::Provider`]: a request rate limit and, for tests and drills,
//! injected faults. The registry wraps every provider in them; the engine sees only
//! `dyn Provider`.

mod faults;
mod ratelimit;

pub use faults::{FaultError, Faulty, ENV as FAULTS_ENV};
pub use ratelimit::{RateLimited, RateLimiter};
