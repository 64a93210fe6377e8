//! Retrying provider calls: exponential backoff with jitter, within a deadline, only for
//! errors that say retrying can help.

use std::time::Duration;

use rand::Rng;

/// How long to wait between attempts and when to give up.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max_delay: Duration,
    /// Give up once the next attempt would start after this much time.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            deadline: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (1 for the first retry): "equal jitter", half
    /// of the exponential step fixed and half random, so waits grow but never synchronise.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let step = self.base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(self.max_delay);
        let half = step / 2;
        half + half.mul_f64(rng.gen::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn delays_grow_exponentially_with_jitter_and_are_capped() {
        let policy = RetryPolicy {
            base: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            deadline: Duration::from_secs(5),
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for (attempt, step_ms) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (30, 1000)] {
            let samples: Vec<Duration> = (0..50).map(|_| policy.delay(attempt, &mut rng)).collect();
            let step = Duration::from_millis(step_ms);
            assert!(samples.iter().all(|d| *d >= step / 2 && *d <= step), "attempt {attempt}: {samples:?}");
            assert!(samples.iter().any(|d| *d != samples[0]), "jittered");
        }
    }
}
