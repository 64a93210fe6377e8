//! Turning SDK errors into provider errors the engine knows how to retry.

use std::fmt::Display;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use labctl_provider_api::{ErrorKind, ProviderError};

/// Error codes AWS services use to ask a client to slow down.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "BandwidthLimitExceeded",
    "EC2ThrottledException",
];

/// Error codes for conditions that pass by themselves: a dependant still being deleted, a
/// concurrent change, a service hiccup.
const TRANSIENT: &[&str] = &[
    "InternalError",
    "ServiceUnavailable",
    "DependencyViolation",
    "DeleteConflict",
    "ConcurrentModification",
    "IncorrectState",
    "OperationAborted",
];

/// IAM is eventually consistent: a role or instance profile made a moment ago may not be
/// usable by EC2 or EKS yet.
fn is_propagating(code: &str, message: &str) -> bool {
    (code == "InvalidParameterValue" && message.contains("IAM Instance Profile"))
        || (code == "InvalidParameterException" && message.contains("could not be assumed"))
}

/// The service's error code, if the service answered with one.
pub(crate) fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    match e {
        SdkError::ServiceError(s) => s.err().code(),
        _ => None,
    }
}

/// Whether the service said the thing does not exist (any of `codes`, or HTTP 404).
pub(crate) fn is_missing<E: ProvideErrorMetadata>(e: &SdkError<E, aws_smithy_runtime_api::http::Response>, codes: &[&str]) -> bool {
    match e {
        SdkError::ServiceError(s) => s.err().code().is_some_and(|c| codes.contains(&c)) || s.raw().status().as_u16() == 404,
        _ => false,
    }
}

/// Succeeds on a request whose target is already gone.
pub(crate) fn ignore_missing<T, E>(
    result: Result<T, SdkError<E, aws_smithy_runtime_api::http::Response>>,
    codes: &[&str],
    what: &str,
) -> Result<(), ProviderError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_missing(&e, codes) => Ok(()),
        Err(e) => Err(failed(what)(e)),
    }
}

/// A provider error for a failed request; `what` says what was being done.
pub(crate) fn failed<E>(what: impl Display) -> impl FnOnce(SdkError<E, aws_smithy_runtime_api::http::Response>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |e| classify(&what.to_string(), &e)
}

fn classify<E>(what: &str, e: &SdkError<E, aws_smithy_runtime_api::http::Response>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match e {
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let code = s.err().code().unwrap_or("");
            let message = s.err().message().unwrap_or("");
            let kind = if THROTTLING.contains(&code) || status == 429 {
                ErrorKind::Throttled
            } else if status >= 500 || TRANSIENT.contains(&code) || is_propagating(code, message) {
                ErrorKind::Unavailable
            } else {
                ErrorKind::Invalid
            };
            let detail = match (code, message) {
                ("", "") => format!("HTTP {status}"),
                (code, "") => code.to_owned(),
                ("", message) => message.to_owned(),
                (code, message) => format!("{code}: {message}"),
            };
            ProviderError::new(kind, format!("{what}: {detail}"))
        }
        SdkError::TimeoutError(_) => ProviderError::new(ErrorKind::Timeout, format!("{what}: no answer in time")),
        SdkError::DispatchFailure(f) if !f.is_user() => {
            ProviderError::new(ErrorKind::Unavailable, format!("{what}: cannot reach AWS: {}", source_chain(e)))
        }
        SdkError::ResponseError(_) => ProviderError::new(ErrorKind::Unavailable, format!("{what}: {}", source_chain(e))),
        _ => ProviderError::new(ErrorKind::Fatal, format!("{what}: {}", source_chain(e))),
    }
}

/// An error and its causes on one line (the SDK's own message is often just "dispatch failure").
fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut next = e.source();
    while let Some(cause) = next {
        parts.push(cause.to_string());
        next = cause.source();
    }
    parts.dedup();
    parts.join(": ")
}
