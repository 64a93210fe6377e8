//! Service-account keys as Google issues them (an RSA key pair; the private half in a JSON
//! key file), and the self-signed JWTs clients sign with them, verified by the public half.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

/// The token endpoint of the keys unit tests issue.
#[cfg(test)]
pub const TOKEN_URI: &str = "http://127.0.0.1:1/token";

/// A key the emulator issued: its id, the public half it verifies tokens with, and the
/// key file handed to the caller once.
pub struct Issued {
    pub id: String,
    pub public: Vec<u8>,
    pub file: Value,
}

/// A new RSA-2048 key for the service account `email` of `project`, and its key file,
/// whose access tokens come from `token_uri`.
pub fn issue(
    project: &str,
    email: &str,
    client_id: &str,
    id: String,
    token_uri: &str,
) -> Result<Issued, String> {
    let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|e| format!("RSA key generation: {e}"))?;
    let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).map_err(|e| format!("{e}"))?;
    let public = aws_lc_rs::signature::KeyPair::public_key(&pair).as_ref().to_vec();
    let file = json!({
        "type": "service_account",
        "project_id": project,
        "private_key_id": id,
        "private_key": pem("PRIVATE KEY", pkcs8.as_ref()),
        "client_email": email,
        "client_id": client_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": format!("https://www.googleapis.com/robot/v1/metadata/x509/{email}"),
        "universe_domain": "googleapis.com",
    });
    Ok(Issued { id, public, file })
}

/// DER bytes as PEM, 64 characters a line.
pub fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or("")).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// The claims of a self-signed JWT that matter here.
#[derive(Debug, PartialEq)]
pub struct Signed {
    /// The key id in its header.
    pub key: String,
    /// Who signed it (`iss`).
    pub email: String,
    /// All its claims.
    pub claims: Value,
}

/// Reads a self-signed JWT (`header.claims.signature`) without checking it: which key
/// claims to have signed it.
pub fn claims(token: &str) -> Result<(Signed, String, Vec<u8>), String> {
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the bearer token is not a JWT".into());
    };
    let decode = |part: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|e| format!("the JWT is not base64url: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("the JWT is not JSON: {e}"))
    };
    let (head, body) = (decode(header)?, decode(claims)?);
    if head["alg"] != "RS256" {
        return Err(format!("the JWT is signed with {}, not RS256", head["alg"]));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    if body["exp"].as_u64().is_none_or(|exp| exp < now) {
        return Err("the JWT has expired".into());
    }
    if body["iss"] != body["sub"] && !body["sub"].is_null() {
        return Err("the JWT's subject is not its issuer".into());
    }
    let signed = Signed {
        key: head["kid"].as_str().unwrap_or_default().to_owned(),
        email: body["iss"].as_str().unwrap_or_default().to_owned(),
        claims: body,
    };
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|e| format!("the JWT's signature: {e}"))?;
    Ok((signed, format!("{header}.{claims}"), signature))
}

/// Whether `signature` over `message` was made by the private half of `public`.
pub fn verify(public: &[u8], message: &str, signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public).verify(message.as_bytes(), signature).is_ok()
}

/// `message` signed RSA-SHA256 with the private key of the key file `file`, as
/// google-cloud-auth signs JWTs and signed URLs.
#[cfg(test)]
pub fn sign(file: &Value, message: &str) -> Vec<u8> {
    let pem = file["private_key"].as_str().unwrap_or_default();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let pair = KeyPair::from_pkcs8(&STANDARD.decode(body).expect("a PEM key")).expect("a PKCS#8 key");
    let mut signature = vec![0; pair.public_modulus_len()];
    let rng = aws_lc_rs::rand::SystemRandom::new();
    pair.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, message.as_bytes(), &mut signature)
        .expect("RSA signing");
    signature
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JWT signed the way google-cloud-auth signs one, with the key file's private key.
    fn jwt(file: &Value, claims: Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": file["private_key_id"]});
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(sign(file, &message)))
    }

    #[test]
    fn a_token_signed_with_the_issued_key_verifies_and_no_other_does() {
        let ada = issue("p", "ada@p.iam.gserviceaccount.com", "1", "k1".into(), TOKEN_URI).unwrap();
        let bob = issue("p", "bob@p.iam.gserviceaccount.com", "2", "k2".into(), TOKEN_URI).unwrap();
        let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 60;
        let email = "ada@p.iam.gserviceaccount.com";
        let token = jwt(&ada.file, json!({"iss": email, "sub": email, "exp": exp}));
        let (signed, message, signature) = claims(&token).unwrap();
        assert_eq!((signed.key.as_str(), signed.email.as_str()), ("k1", email));
        assert_eq!(signed.claims["exp"], exp);
        assert!(verify(&ada.public, &message, &signature));
        assert!(!verify(&bob.public, &message, &signature));
        let expired = jwt(&ada.file, json!({"iss": email, "sub": email, "exp": 1}));
        assert_eq!(claims(&expired).unwrap_err(), "the JWT has expired");
    }
}
