//! OAuth 2.0's token endpoint for service-account keys, as `oauth2.googleapis.com/token`
//! serves it: the JWT-bearer grant (RFC 7523). The key files the emulator issues name it as
//! their `token_uri`; an assertion signed by an issued key, for that endpoint and with a
//! scope, gets an opaque access token of its account, which the emulator then accepts as a
//! bearer token like the self-signed JWTs (GKE's API servers accept only such tokens).

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::keys;
use crate::rest::query_pairs;
use crate::world::World;

/// Where the endpoint is on the emulator's HTTP address.
pub const PATH: &str = "/token";

/// How long an access token lasts, as Google's do.
const LIFETIME: Duration = Duration::from_secs(3600);

/// The grant the endpoint serves.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The answer to a token request (a form body): `(status, body)`, the error in OAuth's form.
pub fn grant(world: &mut World, form: &[u8], now: SystemTime) -> (u16, Value) {
    match token(world, form, now) {
        Ok(token) => {
            let answer = json!({ "access_token": token, "expires_in": LIFETIME.as_secs() - 1, "token_type": "Bearer" });
            (200, answer)
        }
        Err((error, description)) => (400, json!({ "error": error, "error_description": description })),
    }
}

fn token(world: &mut World, form: &[u8], now: SystemTime) -> Result<String, (&'static str, String)> {
    let form = query_pairs(&String::from_utf8_lossy(form));
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if field("grant_type") != Some(JWT_BEARER) {
        return Err((
            "unsupported_grant_type",
            format!("Invalid grant_type: {}", field("grant_type").unwrap_or("")),
        ));
    }
    let assertion =
        field("assertion").ok_or(("invalid_request", "Missing required parameter: assertion".into()))?;
    let invalid = |why: String| ("invalid_grant", why);
    let (signed, message, signature) = keys::claims(assertion).map_err(invalid)?;
    let body = &signed.claims;
    if body["aud"].as_str() != Some(world.token_uri.as_str()) {
        return Err(invalid(format!("Invalid JWT: audience {} is not {}", body["aud"], world.token_uri)));
    }
    if body["scope"].as_str().is_none_or(str::is_empty) {
        return Err(("invalid_scope", "Invalid OAuth scope or ID token audience provided.".into()));
    }
    let public =
        world.keys(&signed.email).find(|(id, _)| *id == signed.key).map(|(_, public)| public.to_vec());
    let verified = public.is_some_and(|public| keys::verify(&public, &message, &signature));
    if !verified {
        return Err(invalid("Invalid JWT Signature.".into()));
    }
    Ok(world.issue_token(signed.email, now + LIFETIME))
}
