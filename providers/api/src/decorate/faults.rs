//! Fault injection for testing the engine against a real provider: `LABCTL_FAULTS` makes
//! chosen provider calls fail (throttled, 5xx, timeout, invalid) or stall, a given number
//! of times, before the real call is made. Like moto's and LocalStack's fault injection,
//! it is for tests and drills; unset, the providers are used as they are.
//!
//! Format: comma-separated `OP:KIND[@ID]:EFFECT:TIMES`, where OP is
//! read|create|update|delete|archive (whose KIND is `bucket` and ID the student), ID
//! matches a substring of the resource id or address, EFFECT is
//! throttled|unavailable|timeout|invalid|sleep<ms>, or `partial`: the real call is made,
//! then reported as failed with what it made (a create that dies half-way). Example:
//! `create:bucket@bob:invalid:1,create:dataset:throttled:2`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::{
    Deps, ErrorKind, Found, KindSchema, Observed, Provider, ProviderError, ResourceSpec, StudentResources,
};

/// The environment variable holding the fault rules.
pub const ENV: &str = "LABCTL_FAULTS";

/// A `LABCTL_FAULTS` that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{ENV}: {problem}")]
pub struct FaultError {
    problem: String,
}

#[derive(Debug)]
struct Rule {
    op: String,
    kind: String,
    id: Option<String>,
    effect: Effect,
    remaining: AtomicU32,
}

#[derive(Debug, Clone, Copy)]
enum Effect {
    Fail(ErrorKind),
    Sleep(Duration),
    Partial,
}

/// A provider whose calls first pass through the configured faults.
pub struct Faulty {
    inner: Arc<dyn Provider>,
    rules: Vec<Rule>,
}

impl Faulty {
    /// Wraps `provider` if `LABCTL_FAULTS` is set (rules for other kinds are harmless).
    pub fn wrap_from_env(provider: Arc<dyn Provider>) -> Result<Arc<dyn Provider>, FaultError> {
        match std::env::var(ENV) {
            Ok(spec) if !spec.trim().is_empty() => {
                let rules = parse(&spec).map_err(|problem| FaultError { problem })?;
                Ok(Arc::new(Self { inner: provider, rules }))
            }
            _ => Ok(provider),
        }
    }

    /// Applies the matching rules before a call; returns whether the call must then be
    /// reported as a half-finished failure.
    async fn inject(&self, op: &str, kind: &str, id: &str) -> Result<bool, ProviderError> {
        let mut partial = false;
        for rule in &self.rules {
            let hit = rule.op == op
                && rule.kind == kind
                && rule.id.as_ref().is_none_or(|s| id.contains(s.as_str()));
            if !hit
                || rule
                    .remaining
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_err()
            {
                continue;
            }
            match rule.effect {
                Effect::Sleep(d) => tokio::time::sleep(d).await,
                Effect::Partial => partial = true,
                Effect::Fail(kind) => {
                    return Err(ProviderError::new(
                        kind,
                        format!("injected {kind:?} fault ({ENV})").to_lowercase(),
                    ))
                }
            }
        }
        Ok(partial)
    }
}

fn parse(spec: &str) -> Result<Vec<Rule>, String> {
    spec.split(',')
        .map(|rule| {
            let parts: Vec<&str> = rule.trim().split(':').collect();
            let [op, target, effect, times] = parts[..] else {
                return Err(format!("`{rule}` is not OP:KIND[@ID]:EFFECT:TIMES"));
            };
            let (kind, id) = match target.split_once('@') {
                Some((k, id)) => (k, Some(id.to_owned())),
                None => (target, None),
            };
            let effect = match effect {
                "throttled" => Effect::Fail(ErrorKind::Throttled),
                "unavailable" => Effect::Fail(ErrorKind::Unavailable),
                "timeout" => Effect::Fail(ErrorKind::Timeout),
                "invalid" => Effect::Fail(ErrorKind::Invalid),
                "partial" => Effect::Partial,
                s => match s.strip_prefix("sleep").and_then(|ms| ms.parse().ok()) {
                    Some(ms) => Effect::Sleep(Duration::from_millis(ms)),
                    None => return Err(format!("unknown effect `{s}`")),
                },
            };
            let times = times.parse().map_err(|_| format!("`{times}` is not a count"))?;
            Ok(Rule { op: op.into(), kind: kind.into(), id, effect, remaining: AtomicU32::new(times) })
        })
        .collect()
}

#[async_trait]
impl Provider for Faulty {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kinds(&self) -> &[KindSchema] {
        self.inner.kinds()
    }

    async fn read(&self, kind: &str, prior: &Observed) -> Result<Option<Observed>, ProviderError> {
        self.inject("read", kind, &prior.id).await?;
        self.inner.read(kind, prior).await
    }

    /// Part of a refresh, whose `read` the faults already had their say on.
    async fn edits(&self, kind: &str, prior: &Observed) -> Result<Vec<String>, ProviderError> {
        self.inner.edits(kind, prior).await
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Deps) -> Result<Observed, ProviderError> {
        let partial = self.inject("create", &spec.kind, &spec.address).await?;
        let made = self.inner.create(spec, deps).await?;
        if partial {
            let error = ProviderError::fatal(format!("injected failure after the create ({ENV})"));
            return Err(error.with_partial(made));
        }
        Ok(made)
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        prior: &Observed,
        deps: &Deps,
    ) -> Result<Observed, ProviderError> {
        self.inject("update", &spec.kind, &spec.address).await?;
        self.inner.update(spec, prior, deps).await
    }

    async fn delete(&self, kind: &str, prior: &Observed) -> Result<(), ProviderError> {
        self.inject("delete", kind, &prior.id).await?;
        self.inner.delete(kind, prior).await
    }

    async fn sweep(&self, lab: &str) -> Result<Vec<Found>, ProviderError> {
        self.inner.sweep(lab).await
    }

    async fn retag(&self, spec: &ResourceSpec, prior: &Observed) -> Result<Observed, ProviderError> {
        self.inject("retag", &spec.kind, &spec.address).await?;
        self.inner.retag(spec, prior).await
    }

    async fn labs(&self) -> Result<Vec<String>, ProviderError> {
        self.inner.labs().await
    }

    async fn archive(
        &self,
        student: &StudentResources,
        into: &std::path::Path,
    ) -> Result<usize, ProviderError> {
        self.inject("archive", "bucket", &student.student).await?;
        self.inner.archive(student, into).await
    }
}
