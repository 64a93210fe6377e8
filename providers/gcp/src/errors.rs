//! google-cloud errors as labctl's: what a retry can help, and what "not there" looks like.

use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::error::Error;
use labctl_provider_api::{ErrorKind, ProviderError};

/// The error's status code, from its gRPC status or its HTTP status (Compute Engine's errors
/// carry no status code of their own).
pub fn code(e: &Error) -> Option<Code> {
    match e.status().map(|s| s.code) {
        Some(Code::Unknown) | None => e.http_status_code().map(http_code).or(e.status().map(|s| s.code)),
        known => known,
    }
}

/// The status code an HTTP status stands for.
pub fn http_code(status: u16) -> Code {
    match status {
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        408 => Code::DeadlineExceeded,
        409 => Code::AlreadyExists,
        412 => Code::FailedPrecondition,
        429 => Code::ResourceExhausted,
        501 => Code::Unimplemented,
        500..=599 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// Whether the thing asked for does not exist.
pub fn is_not_found(e: &Error) -> bool {
    code(e) == Some(Code::NotFound)
}

/// Whether something of that name already exists.
pub fn is_conflict(e: &Error) -> bool {
    code(e) == Some(Code::AlreadyExists)
}

/// How Compute Engine refuses what a moment later it may allow (a resource another still
/// uses, or one busy with another operation): its error bodies' `reason`s, and the words of
/// its messages, which is what the client keeps of them.
const TRANSIENT_REASONS: [&str; 2] = ["resourceInUseByAnotherResource", "resourceNotReady"];
const TRANSIENT_MESSAGES: [&str; 2] = ["is already being used by", "is not ready"];

/// Whether Compute Engine refused `e` for now only.
fn transient(e: &Error) -> bool {
    let body = e.http_payload().and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok());
    let reason = body.as_ref().and_then(|b| b["error"]["errors"][0]["reason"].as_str());
    let message = e.status().map(|s| s.message.as_str()).unwrap_or_default();
    reason.is_some_and(|r| TRANSIENT_REASONS.contains(&r))
        || TRANSIENT_MESSAGES.iter().any(|m| message.contains(m))
}

/// `what` failed because of `e`, as a provider error of the right kind.
pub fn failed(what: impl Into<String>) -> impl FnOnce(Error) -> ProviderError {
    let what = what.into();
    move |e| {
        let kind = match code(&e) {
            _ if e.is_timeout() => ErrorKind::Timeout,
            _ if transient(&e) => ErrorKind::Unavailable,
            _ if e.is_transport() || e.is_io() || e.is_connect() => ErrorKind::Unavailable,
            Some(Code::ResourceExhausted) => ErrorKind::Throttled,
            Some(Code::DeadlineExceeded) => ErrorKind::Timeout,
            Some(Code::Unavailable | Code::Internal | Code::Aborted) => ErrorKind::Unavailable,
            Some(
                Code::InvalidArgument | Code::FailedPrecondition | Code::AlreadyExists | Code::OutOfRange,
            ) => ErrorKind::Invalid,
            _ => ErrorKind::Fatal,
        };
        let message =
            e.status().map(|s| s.message.clone()).filter(|m| !m.is_empty()).unwrap_or_else(|| e.to_string());
        ProviderError::new(kind, format!("{what}: {message}"))
    }
}

/// The answer, or `None` if what was asked for does not exist.
pub fn found<T>(result: Result<T, Error>, what: impl Into<String>) -> Result<Option<T>, ProviderError> {
    match result {
        Ok(t) => Ok(Some(t)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(failed(what)(e)),
    }
}

/// A delete's answer: done, also if there was nothing to delete.
pub fn deleted<T>(result: Result<T, Error>, what: impl Into<String>) -> Result<(), ProviderError> {
    found(result, what).map(drop)
}
