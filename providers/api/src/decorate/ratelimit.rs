//! A per-provider request rate limit: requests are spaced evenly, at most `rate` a second.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::{Deps, Found, KindSchema, Observed, Provider, ProviderError, ResourceSpec, StudentResources};

/// Even spacing of requests: each waits for its slot.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// `None` or a non-positive rate means unlimited.
    pub fn new(rate_per_second: Option<f64>) -> Self {
        let interval =
            rate_per_second.filter(|r| *r > 0.0).map_or(Duration::ZERO, |r| Duration::from_secs_f64(1.0 / r));
        Self { interval, next: Mutex::new(None) }
    }

    /// Waits for this request's slot.
    pub async fn acquire(&self) {
        if self.interval.is_zero() {
            return;
        }
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + self.interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// A provider whose every call (each retry included) waits for a slot of its rate limit.
pub struct RateLimited {
    inner: Arc<dyn Provider>,
    limiter: RateLimiter,
}

impl RateLimited {
    /// `provider` limited to `rate_per_second` requests; unwrapped when unlimited.
    pub fn wrap(provider: Arc<dyn Provider>, rate_per_second: Option<f64>) -> Arc<dyn Provider> {
        let limiter = RateLimiter::new(rate_per_second);
        if limiter.interval.is_zero() {
            return provider;
        }
        Arc::new(Self { inner: provider, limiter })
    }
}

#[async_trait]
impl Provider for RateLimited {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kinds(&self) -> &[KindSchema] {
        self.inner.kinds()
    }

    async fn read(&self, kind: &str, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
        self.limiter.acquire().await;
        self.inner.read(kind, prior).await
    }

    /// Part of a refresh, whose `read` took the slot.
    async fn edits(&self, kind: &str, prior: &Observed) -> Result<Vec<String>, ProviderError> {
        self.inner.edits(kind, prior).await
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Deps) -> Result<Observed, ProviderError> {
        self.limiter.acquire().await;
        self.inner.create(spec, deps).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        prior: &Observed,
        deps: &Deps,
    ) -> Result<Observed, ProviderError> {
        self.limiter.acquire().await;
        self.inner.update(spec, prior, deps).await
    }

    async fn delete(&self, kind: &str, prior: &Observed) -> Result<(), ProviderError> {
        self.limiter.acquire().await;
        self.inner.delete(kind, prior).await
    }

    async fn sweep(&self, lab: &str) -> Result<Vec<Found>, ProviderError> {
        self.limiter.acquire().await;
        self.inner.sweep(lab).await
    }

    async fn retag(&self, spec: &ResourceSpec, prior: &Observed) -> Result<Observed, ProviderError> {
        self.limiter.acquire().await;
        self.inner.retag(spec, prior).await
    }

    async fn labs(&self) -> Result<Vec<String>, ProviderError> {
        self.limiter.acquire().await;
        self.inner.labs().await
    }

    async fn archive(
        &self,
        student: &StudentResources,
        into: &std::path::Path,
    ) -> Result<usize, ProviderError> {
        self.limiter.acquire().await;
        self.inner.archive(student, into).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced() {
        let limiter = RateLimiter::new(Some(10.0));
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(400));
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let limiter = RateLimiter::new(None);
        let start = Instant::now();
        for _ in 0..100 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
