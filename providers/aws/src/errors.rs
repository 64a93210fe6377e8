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

/// Whether the service said the thing does not exist, with one of `codes`. A bare 404 is
/// not enough: an endpoint that is not AWS at all (a wrong `endpoint`) answers that too,
/// and taking it for "gone" would drop every resource from state.
pub(crate) fn is_missing<E: ProvideErrorMetadata>(
    e: &SdkError<E, aws_smithy_runtime_api::http::Response>,
    codes: &[&str],
) -> bool {
    match e {
        SdkError::ServiceError(s) => s.err().code().is_some_and(|c| codes.contains(&c)),
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
        Err(e) if is_missing(&e, codes) => Ok(()),
        other => done(other, what),
    }
}

/// A request's outcome, its answer dropped; `what` says what was being done.
pub(crate) fn done<T, E>(
    result: Result<T, SdkError<E, aws_smithy_runtime_api::http::Response>>,
    what: &str,
) -> Result<(), ProviderError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    result.map(drop).map_err(failed(what))
}

/// A provider error for a failed request; `what` says what was being done.
pub(crate) fn failed<E>(
    what: impl Display,
) -> impl FnOnce(SdkError<E, aws_smithy_runtime_api::http::Response>) -> ProviderError
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
        SdkError::DispatchFailure(f) if f.is_io() || f.is_timeout() => {
            ProviderError::new(ErrorKind::Unavailable, format!("{what}: cannot reach AWS: {}", source_chain(e)))
        }
        // Typically no credentials: trying again cannot help.
        SdkError::DispatchFailure(_) => ProviderError::fatal(format!(
            "{what}: {}\n  (credentials come from the standard AWS chain: AWS_PROFILE, `aws sso login`, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)",
            source_chain(e)
        )),
        SdkError::ResponseError(_) => ProviderError::new(ErrorKind::Unavailable, format!("{what}: {}", source_chain(e))),
        _ => ProviderError::new(ErrorKind::Fatal, format!("{what}: {}", source_chain(e))),
    }
}

/// An error and its causes on one line (the SDK's own message is often just "dispatch failure").
pub(crate) fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut next = e.source();
    while let Some(cause) = next {
        parts.push(cause.to_string());
        next = cause.source();
    }
    parts.dedup();
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::head_bucket::HeadBucketError;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;

    use super::*;

    fn answer(status: u16, code: &str, message: &str) -> SdkError<HeadBucketError, Response> {
        let meta = ErrorMetadata::builder().code(code).message(message).build();
        SdkError::service_error(
            HeadBucketError::generic(meta),
            Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty()),
        )
    }

    fn kind(status: u16, code: &str, message: &str) -> ErrorKind {
        failed("reading bucket b")(answer(status, code, message)).kind
    }

    #[test]
    fn throttling_and_transient_answers_are_retried_and_the_rest_is_not() {
        assert_eq!(kind(503, "SlowDown", "Please reduce your request rate."), ErrorKind::Throttled);
        assert_eq!(kind(400, "RequestLimitExceeded", ""), ErrorKind::Throttled);
        assert_eq!(kind(400, "Throttling", "Rate exceeded"), ErrorKind::Throttled);
        assert_eq!(kind(429, "", ""), ErrorKind::Throttled);
        assert_eq!(kind(500, "InternalError", ""), ErrorKind::Unavailable);
        assert_eq!(kind(400, "DependencyViolation", "has dependencies"), ErrorKind::Unavailable);
        assert_eq!(kind(400, "InvalidParameterValue", "Value (x) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name"), ErrorKind::Unavailable);
        assert_eq!(kind(403, "AccessDenied", "no"), ErrorKind::Invalid);
        assert_eq!(kind(400, "InvalidParameterValue", "bad CIDR"), ErrorKind::Invalid);
    }

    #[test]
    fn messages_say_what_was_being_done_and_what_aws_said() {
        let e = failed("creating bucket b")(answer(
            409,
            "BucketAlreadyExists",
            "The requested bucket name is not available.",
        ));
        assert_eq!(
            e.message,
            "creating bucket b: BucketAlreadyExists: The requested bucket name is not available."
        );
        assert!(
            !is_missing(&answer(404, "", "Not Found"), &["NoSuchBucket"]),
            "a bare 404 is not AWS saying gone"
        );
        assert!(is_missing(&answer(404, "NotFound", ""), &["NotFound"]));
        assert!(is_missing(&answer(400, "NoSuchEntity", ""), &["NoSuchEntity"]));
        assert!(!is_missing(&answer(403, "AccessDenied", ""), &["NoSuchEntity"]));
    }
}
