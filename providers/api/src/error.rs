use crate::Observed;

/// Why a provider call failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The API asked us to slow down (HTTP 429, `Throttling`, `RequestLimitExceeded`).
    Throttled,
    /// The service failed on its side (HTTP 5xx, connection reset).
    Unavailable,
    /// No answer in time.
    Timeout,
    /// The request itself is wrong (HTTP 4xx validation, a name already taken by someone
    /// else, a quota): trying again cannot help.
    Invalid,
    /// Anything else that cannot be retried (local I/O error, permission denied).
    Fatal,
}

impl ErrorKind {
    /// Whether the same request may succeed if sent again later.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Throttled | Self::Unavailable | Self::Timeout)
    }
}

/// A failed provider call: what kind of failure, a message for the instructor, and — for a
/// create that failed half-way — what was left behind, so the engine can record it as
/// tainted and repair it on the next run.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub kind: ErrorKind,
    pub message: String,
    pub partial: Option<Observed>,
}

impl ProviderError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), partial: None }
    }

    /// A request that can never succeed as sent.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    /// A non-retryable failure, typically local I/O.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Fatal, message)
    }

    /// Records what a half-finished create left behind.
    pub fn with_partial(mut self, partial: Observed) -> Self {
        self.partial = Some(partial);
        self
    }
}
