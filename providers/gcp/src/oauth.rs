//! OAuth access tokens of labctl's own credentials, for GKE's Kubernetes API. With a user's
//! login or on Google's metadata server google-cloud-auth gives access tokens; with a
//! service-account key it gives self-signed JWTs, which Google's APIs take but GKE's API
//! servers do not. For a key, labctl trades an assertion signed with it for an access token
//! at the key's token endpoint (the JWT-bearer grant, RFC 7523), as Google's other client
//! libraries do.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use labctl_provider_api::{ErrorKind, ProviderError};
use serde_json::{json, Value};

use crate::clients::Gcp;

/// The scope asked for: what GKE's API servers want.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Google's token endpoint, when a key file names none.
const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// How long an assertion is good for (Google allows an hour at most).
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);

/// An access token and how long it holds.
pub struct AccessToken {
    pub token: String,
    pub lifetime: Duration,
}

/// An access token of labctl's credentials.
pub async fn access_token(c: &Gcp) -> Result<AccessToken, ProviderError> {
    let unavailable = |e: String| ProviderError::new(ErrorKind::Unavailable, format!("no access token: {e}"));
    let Some(key) = service_account_key(c.key_file.as_deref()) else {
        // Google's own access tokens, good for an hour; asked again well before that.
        let token = c.tokens.access_token().await.map_err(|e| unavailable(e.to_string()))?;
        return Ok(AccessToken { token: token.token, lifetime: Duration::from_secs(30 * 60) });
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let unsigned = unsigned_assertion(&key, now);
    let signature = c.signer().await?.sign(&unsigned).await.map_err(|e| unavailable(e.to_string()))?;
    let assertion = format!("{unsigned}.{}", URL_SAFE_NO_PAD.encode(signature));
    let form = [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", &assertion)];
    let answer =
        c.http.post(token_uri(&key)).form(&form).send().await.map_err(|e| unavailable(e.to_string()))?;
    let status = answer.status();
    let body: Value = answer.json().await.map_err(|e| unavailable(e.to_string()))?;
    match body["access_token"].as_str() {
        Some(token) if status.is_success() => {
            let seconds = body["expires_in"].as_u64().unwrap_or(3600);
            Ok(AccessToken { token: token.to_owned(), lifetime: Duration::from_secs(seconds / 2) })
        }
        _ => Err(ProviderError::fatal(format!(
            "{} refused labctl's key ({status}): {} {}",
            token_uri(&key),
            body["error"].as_str().unwrap_or_default(),
            body["error_description"].as_str().unwrap_or_default()
        ))),
    }
}

/// The service-account key labctl uses, if it uses one: `[provider.gcp] credentials`, or
/// the key file Application Default Credentials name.
fn service_account_key(configured: Option<&Path>) -> Option<Value> {
    let adc = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS");
    let path = configured.map(Path::to_path_buf).or_else(|| adc.map(Into::into))?;
    let key: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    (key["type"] == "service_account").then_some(key)
}

fn token_uri(key: &Value) -> &str {
    key["token_uri"].as_str().unwrap_or(GOOGLE_TOKEN_URI)
}

/// The assertion's `header.claims`, to be signed with the key: issued by the key's
/// account, for its token endpoint, asking for [`SCOPE`].
fn unsigned_assertion(key: &Value, now: Duration) -> String {
    let header = json!({ "alg": "RS256", "typ": "JWT", "kid": key["private_key_id"] });
    let claims = json!({
        "iss": key["client_email"],
        "scope": SCOPE,
        "aud": token_uri(key),
        "iat": now.as_secs(),
        "exp": (now + ASSERTION_LIFETIME).as_secs(),
    });
    let encode = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}", encode(&header), encode(&claims))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assertion_names_the_account_its_token_endpoint_and_the_scope() {
        let key = json!({
            "type": "service_account",
            "client_email": "labctl@p.iam.gserviceaccount.com",
            "private_key_id": "k1",
            "token_uri": "http://127.0.0.1:9/token",
        });
        let unsigned = unsigned_assertion(&key, Duration::from_secs(1_000));
        let parts: Vec<Value> = unsigned
            .split('.')
            .map(|p| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap())
            .collect();
        assert_eq!(parts[0], json!({ "alg": "RS256", "typ": "JWT", "kid": "k1" }));
        assert_eq!(
            parts[1],
            json!({
                "iss": "labctl@p.iam.gserviceaccount.com",
                "scope": SCOPE,
                "aud": "http://127.0.0.1:9/token",
                "iat": 1_000,
                "exp": 4_600,
            })
        );
        assert_eq!(token_uri(&json!({})), GOOGLE_TOKEN_URI);
    }
}
