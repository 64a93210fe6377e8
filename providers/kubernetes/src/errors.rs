//! Kubernetes API errors as provider errors: what retrying can fix, and what it cannot.

use labctl_provider_api::{ErrorKind, ProviderError};

/// Whether the API said the object does not exist.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Classifies a failed request about `what` (e.g. `deployment ada/mapreduce`).
pub(crate) fn failed(what: &str, e: kube::Error) -> ProviderError {
    let kind = match &e {
        kube::Error::Api(s) => match s.code {
            429 => ErrorKind::Throttled,
            // A stale write: the next attempt sees the new state.
            409 | 500..=599 => ErrorKind::Unavailable,
            // Creating in a namespace that is still terminating: it will be gone soon.
            403 if is_terminating(s) => ErrorKind::Unavailable,
            401 | 403 => ErrorKind::Fatal,
            _ => ErrorKind::Invalid,
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) => ErrorKind::Unavailable,
        _ => ErrorKind::Fatal,
    };
    let detail = match &e {
        kube::Error::Api(s) if (s.code == 401 || s.code == 403) && !is_terminating(s) => {
            format!("{} (the kubeconfig's user may not do this)", s.message)
        }
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    };
    ProviderError::new(kind, format!("{what}: {detail}"))
}

fn is_terminating(status: &kube::core::Status) -> bool {
    status.message.contains("because it is being terminated")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        let status = kube::core::Status::failure("boom", "Reason").with_code(code);
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn what_retrying_can_fix() {
        for (code, kind) in [
            (429, ErrorKind::Throttled),
            (409, ErrorKind::Unavailable),
            (503, ErrorKind::Unavailable),
            (403, ErrorKind::Fatal),
            (422, ErrorKind::Invalid),
        ] {
            assert_eq!(failed("deployment a/b", api(code)).kind, kind, "HTTP {code}");
        }
        assert!(is_not_found(&api(404)));
        assert!(!is_not_found(&api(410)));
        assert_eq!(
            failed("deployment a/b", api(403)).message,
            "deployment a/b: boom (the kubeconfig's user may not do this)"
        );
        let terminating = kube::core::Status::failure("deployments.apps \"b\" is forbidden: unable to create new content in namespace a because it is being terminated", "Forbidden").with_code(403);
        assert_eq!(
            failed("applying deployment a/b", kube::Error::Api(Box::new(terminating))).kind,
            ErrorKind::Unavailable
        );
    }
}
