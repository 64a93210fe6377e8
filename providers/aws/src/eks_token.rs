//! EKS bearer tokens, minted here as `aws eks get-token` does: the API server's
//! aws-iam-authenticator replays a presigned STS `GetCallerIdentity` to learn who calls.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine;

/// What every EKS token starts with.
const PREFIX: &str = "k8s-aws-v1.";

/// The header that binds a token to one cluster (signed, so it cannot be replayed on another).
pub(crate) const CLUSTER_HEADER: &str = "x-k8s-aws-id";

/// How long the presigned request is valid; the authenticator accepts a token for 15
/// minutes after it was signed whatever this says.
const PRESIGNED_FOR: Duration = Duration::from_secs(60);

/// How long labctl uses a token: under the authenticator's 15 minutes.
pub(crate) const TOKEN_LIFETIME: Duration = Duration::from_secs(14 * 60);

/// A token for cluster `cluster` in `region`, signed at `now` with `credentials`:
/// `k8s-aws-v1.` and the unpadded base64url of the presigned STS URL.
pub(crate) fn mint(
    cluster: &str,
    region: &str,
    credentials: Credentials,
    now: SystemTime,
) -> Result<String, String> {
    let url = format!("https://sts.{region}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15");
    let identity = Identity::from(credentials);
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(PRESIGNED_FOR);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| format!("signing an EKS token: {e}"))?
        .into();
    let headers = [(CLUSTER_HEADER, cluster)];
    let request = SignableRequest::new("GET", &url, headers.into_iter(), SignableBody::Bytes(&[]))
        .map_err(|e| format!("signing an EKS token: {e}"))?;
    let (instructions, _signature) =
        sign(request, &params).map_err(|e| format!("signing an EKS token: {e}"))?.into_parts();
    let mut signed = url::Url::parse(&url).map_err(|e| e.to_string())?;
    for (name, value) in instructions.params() {
        signed.query_pairs_mut().append_pair(name, value);
    }
    Ok(format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signed.as_str())))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// What aws-iam-authenticator's `tokenVerifier.Verify` checks before it replays the
    /// request (pkg/token/token.go): the prefix, base64url, an https STS host of the
    /// region, path `/`, only the query parameters it allows, `GetCallerIdentity`, the
    /// cluster header signed, a signature no older than 15 minutes.
    fn verify(token: &str, region: &str) -> BTreeMap<String, String> {
        let encoded = token.strip_prefix(PREFIX).expect("the k8s-aws-v1. prefix");
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).expect("base64url");
        let url = url::Url::parse(std::str::from_utf8(&decoded).unwrap()).unwrap();
        assert_eq!(url.scheme(), "https");
        assert_eq!(url.host_str(), Some(format!("sts.{region}.amazonaws.com").as_str()));
        assert_eq!(url.path(), "/");
        let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
        let allowed = [
            "Action",
            "Version",
            "X-Amz-Algorithm",
            "X-Amz-Credential",
            "X-Amz-Date",
            "X-Amz-Expires",
            "X-Amz-Security-Token",
            "X-Amz-Signature",
            "X-Amz-SignedHeaders",
        ];
        for key in query.keys() {
            assert!(allowed.contains(&key.as_str()), "the authenticator refuses the parameter {key}");
        }
        assert_eq!(query["Action"], "GetCallerIdentity");
        assert_eq!(query["Version"], "2011-06-15");
        assert_eq!(query["X-Amz-Algorithm"], "AWS4-HMAC-SHA256");
        let signed: Vec<&str> = query["X-Amz-SignedHeaders"].split(';').collect();
        assert!(signed.contains(&CLUSTER_HEADER) && signed.contains(&"host"), "{signed:?}");
        assert_eq!(query["X-Amz-Expires"], "60");
        let signature = &query["X-Amz-Signature"];
        assert!(signature.len() == 64 && signature.bytes().all(|b| b.is_ascii_hexdigit()));
        query
    }

    #[test]
    fn a_token_is_a_presigned_sts_get_caller_identity_bound_to_the_cluster() {
        let credentials = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_558_400); // 2026-12-06T12:00:00Z
        let token = mint("bigdata-aws-shared", "eu-west-1", credentials.clone(), at).unwrap();
        let query = verify(&token, "eu-west-1");
        assert_eq!(query["X-Amz-Credential"], "AKIDEXAMPLE/20261206/eu-west-1/sts/aws4_request");
        assert_eq!(query["X-Amz-Date"], "20261206T120000Z");
        assert!(!query.contains_key("X-Amz-Security-Token"));
        // The cluster's name is signed: another cluster's token differs in its signature.
        let other = mint("another", "eu-west-1", credentials, at).unwrap();
        assert_ne!(verify(&other, "eu-west-1")["X-Amz-Signature"], query["X-Amz-Signature"]);
    }

    #[test]
    fn temporary_credentials_carry_their_session_token() {
        let credentials = Credentials::new("ASIAEXAMPLE", "secret", Some("session".into()), None, "test");
        let token = mint("c", "us-east-1", credentials, SystemTime::now()).unwrap();
        assert_eq!(verify(&token, "us-east-1")["X-Amz-Security-Token"], "session");
    }
}
