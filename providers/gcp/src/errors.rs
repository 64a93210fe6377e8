//! google-cloud errors as labctl's: what a retry can help, and what "not there" looks like.

use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::error::Error;
use labctl_provider_api::{ErrorKind, ProviderError};

/// The error's status code, from its gRPC status or its HTTP status.
fn code(e: &Error) -> Option<Code> {
    if let Some(status) = e.status() {
        return Some(status.code);
    }
    Some(match e.http_status_code()? {
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::AlreadyExists,
        412 => Code::FailedPrecondition,
        429 => Code::ResourceExhausted,
        500..=599 => Code::Unavailable,
        _ => Code::Unknown,
    })
}

pub fn is_not_found(e: &Error) -> bool {
    code(e) == Some(Code::NotFound)
}

pub fn is_conflict(e: &Error) -> bool {
    matches!(code(e), Some(Code::AlreadyExists | Code::Aborted))
}

/// `what` failed because of `e`, as a provider error of the right kind.
pub fn failed(what: impl Into<String>) -> impl FnOnce(Error) -> ProviderError {
    let what = what.into();
    move |e| {
        let kind = match code(&e) {
            _ if e.is_timeout() => ErrorKind::Timeout,
            _ if e.is_transport() || e.is_io() || e.is_connect() => ErrorKind::Unavailable,
            Some(Code::ResourceExhausted) => ErrorKind::Throttled,
            Some(Code::Unavailable | Code::Internal | Code::DeadlineExceeded | Code::Aborted) => {
                ErrorKind::Unavailable
            }
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
