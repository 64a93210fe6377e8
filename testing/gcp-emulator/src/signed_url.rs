//! V4 signed URLs (`GOOG4-RSA-SHA256`), as google-cloud-storage's `SignedUrlBuilder` makes
//! them (path style, `/{bucket}/{object}`): the canonical request is rebuilt from the
//! request as it came (the `host` header without its port, as the builder signs it), and
//! its signature checked against the keys the emulator issued to the account in
//! `X-Goog-Credential`, within `X-Goog-Date` + `X-Goog-Expires`. What a verified request
//! may do is the XML API's (see xml.rs), as its signer.

use aws_lc_rs::digest::{digest, SHA256};
use jiff::{SignedDuration, Timestamp};

use crate::rest::param;
use crate::world::World;
use crate::xml::Refusal;
use crate::{gcs, keys};

/// The longest a signed URL may live: seven days.
const LONGEST: i64 = 7 * 24 * 3600;

/// A request as it came: what its signature covers.
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as sent, still percent-encoded.
    pub path: &'a str,
    /// The query's parameters, decoded, in order.
    pub query: &'a [(String, String)],
    pub headers: &'a http::HeaderMap,
}

/// Checks the signature of `request` against the keys `world` issued, and its expiry
/// `now`: who signed it.
pub fn verify(world: &World, request: &Request, now: Timestamp) -> Result<String, Refusal> {
    let param = |name: &str| param(request.query, name);
    let invalid = Refusal::invalid;
    if param("X-Goog-Algorithm") != Some("GOOG4-RSA-SHA256") {
        return Err(invalid("The emulator verifies GOOG4-RSA-SHA256 signatures only.".into()));
    }
    let credential = param("X-Goog-Credential").unwrap_or_default();
    let date = param("X-Goog-Date").unwrap_or_default();
    let (email, scope) = credential
        .split_once('/')
        .filter(|(_, scope)| {
            let parts: Vec<&str> = scope.split('/').collect();
            matches!(parts.as_slice(), [day, _, "storage", "goog4_request"] if day.len() == 8 && date.starts_with(day))
        })
        .ok_or_else(|| invalid(format!("Invalid credential for the date {date}: {credential}")))?;
    let signed_at = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", date)
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC))
        .map_err(|e| invalid(format!("Invalid X-Goog-Date {date}: {e}")))?
        .timestamp();
    let expires = param("X-Goog-Expires")
        .and_then(|e| e.parse::<i64>().ok())
        .filter(|e| (1..=LONGEST).contains(e))
        .ok_or_else(|| invalid(format!("X-Goog-Expires must be from 1 to {LONGEST} seconds.")))?;
    let expiry = signed_at + SignedDuration::from_secs(expires);
    if now > expiry {
        let details = format!("Request signature expired at: {expiry}");
        return Err(Refusal::new(400, "ExpiredToken", "Invalid argument.", details));
    }
    let signed_headers = param("X-Goog-SignedHeaders").unwrap_or_default();
    if !signed_headers.split(';').any(|h| h == "host") {
        return Err(invalid("X-Goog-SignedHeaders must include host.".into()));
    }
    let (canonical, string_to_sign) = canonical(request, signed_headers, date, scope);
    let signature = param("X-Goog-Signature").and_then(unhex).unwrap_or_default();
    if !world.keys(email).any(|(_, public)| keys::verify(public, &string_to_sign, &signature)) {
        let mut refusal = Refusal::new(
            403,
            "SignatureDoesNotMatch",
            "Access denied.",
            "The request signature we calculated does not match the signature you provided. Check your Google secret key and signing method.".into(),
        );
        refusal.computed = Some((string_to_sign, canonical));
        return Err(refusal);
    }
    Ok(email.to_owned())
}

/// The canonical request of `request` and the string to sign of it, as the signer made
/// them.
fn canonical(request: &Request, signed_headers: &str, date: &str, scope: &str) -> (String, String) {
    let mut query: Vec<&(String, String)> =
        request.query.iter().filter(|(k, _)| k != "X-Goog-Signature").collect();
    query.sort();
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
    let header = |name: &str| {
        let value = request.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let value = match name {
            // `host:port` or `[v6]:port` → the host.
            "host" if value.starts_with('[') => value.split_inclusive(']').next().unwrap_or(value),
            "host" => value.split(':').next().unwrap_or(value),
            _ => value,
        };
        value.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let headers: String = signed_headers.split(';').map(|h| format!("{h}:{}\n", header(h))).collect();
    let payload = match signed_headers.split(';').any(|h| h == "x-goog-content-sha256") {
        true => header("x-goog-content-sha256"),
        false => "UNSIGNED-PAYLOAD".into(),
    };
    let canonical =
        [request.method, request.path, &query.join("&"), &headers, signed_headers, &payload].join("\n");
    let hash: String =
        digest(&SHA256, canonical.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let string_to_sign = ["GOOG4-RSA-SHA256", date, scope, &hash].join("\n");
    (canonical, string_to_sign)
}

/// A query parameter as the signer encodes it: form encoding (which keeps `*`), `~` kept
/// and spaces `%20`.
fn encode(text: &str) -> String {
    gcs::encode(text).replace("%2A", "*")
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::Account;

    const ADA: &str = "ada@p.iam.gserviceaccount.com";

    fn headers() -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::HOST, "127.0.0.1:8080".parse().unwrap());
        headers
    }

    /// The query of a URL signed by `email` at `date` for `expires` seconds, but its signature.
    fn unsigned(email: &str, date: &str, expires: u32) -> Vec<(String, String)> {
        [
            ("X-Goog-Algorithm", "GOOG4-RSA-SHA256".to_owned()),
            ("X-Goog-Credential", format!("{email}/{}/auto/storage/goog4_request", &date[..8])),
            ("X-Goog-Date", date.to_owned()),
            ("X-Goog-Expires", expires.to_string()),
            ("X-Goog-SignedHeaders", "host".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    #[test]
    fn the_canonical_request_is_the_one_google_cloud_storage_signs() {
        let query = unsigned(ADA, "20240102T030405Z", 600);
        let headers = headers();
        let request = Request { method: "GET", path: "/b/bin/a%20b", query: &query, headers: &headers };
        let scope = "20240102/auto/storage/goog4_request";
        let (canonical, string_to_sign) = canonical(&request, "host", "20240102T030405Z", scope);
        assert_eq!(
            canonical,
            "GET\n/b/bin/a%20b\nX-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=ada%40p.iam.gserviceaccount.com%2F20240102%2Fauto%2Fstorage%2Fgoog4_request&X-Goog-Date=20240102T030405Z&X-Goog-Expires=600&X-Goog-SignedHeaders=host\nhost:127.0.0.1\n\nhost\nUNSIGNED-PAYLOAD"
        );
        assert!(string_to_sign
            .starts_with("GOOG4-RSA-SHA256\n20240102T030405Z\n20240102/auto/storage/goog4_request\n"));
        assert_eq!(encode("a b*~+/"), "a%20b*~%2B%2F");
    }

    #[test]
    fn a_url_signed_with_an_issued_key_verifies_until_it_expires_and_a_tampered_one_never() {
        let owner =
            keys::issue("p", "owner@p.iam.gserviceaccount.com", "1", "k0".into(), crate::keys::TOKEN_URI)
                .unwrap();
        let mut world = World::new("p", "owner@p.iam.gserviceaccount.com".into(), &owner);
        let ada = keys::issue("p", ADA, "2", "k1".into(), crate::keys::TOKEN_URI).unwrap();
        let stranger = keys::issue("p", ADA, "2", "k2".into(), crate::keys::TOKEN_URI).unwrap();
        let account = Account {
            account_id: "ada".into(),
            unique_id: "2".into(),
            display_name: String::new(),
            description: String::new(),
            keys: [("k1".to_owned(), (ada.public.clone(), std::time::SystemTime::now()))].into(),
        };
        world.accounts.insert(ADA.into(), account);
        let headers = headers();
        let signed_at: Timestamp = "2024-01-02T03:04:05Z".parse().unwrap();
        let sign = |file: &serde_json::Value, path: &str| {
            let mut query = unsigned(ADA, "20240102T030405Z", 600);
            let request = Request { method: "GET", path, query: &query, headers: &headers };
            let (_, string_to_sign) =
                canonical(&request, "host", "20240102T030405Z", "20240102/auto/storage/goog4_request");
            let signature: String =
                keys::sign(file, &string_to_sign).iter().map(|b| format!("{b:02x}")).collect();
            query.push(("X-Goog-Signature".into(), signature));
            query
        };
        let check = |query: &[(String, String)], path: &str, now: Timestamp| {
            verify(&world, &Request { method: "GET", path, query, headers: &headers }, now)
        };
        let within = signed_at + SignedDuration::from_secs(600);

        let query = sign(&ada.file, "/b/bin/a%20b");
        assert_eq!(check(&query, "/b/bin/a%20b", within), Ok(ADA.to_owned()));

        let refused = |r: Result<String, Refusal>| r.map_err(|r| (r.status, r.code));
        let expired = within + SignedDuration::from_secs(1);
        assert_eq!(refused(check(&query, "/b/bin/a%20b", expired)), Err((400, "ExpiredToken")));
        assert_eq!(refused(check(&query, "/b/bin/other", within)), Err((403, "SignatureDoesNotMatch")));
        let mut longer = query.clone();
        longer[3].1 = "6000".into();
        assert_eq!(refused(check(&longer, "/b/bin/a%20b", within)), Err((403, "SignatureDoesNotMatch")));
        let not_issued = sign(&stranger.file, "/b/bin/a%20b");
        assert_eq!(refused(check(&not_issued, "/b/bin/a%20b", within)), Err((403, "SignatureDoesNotMatch")));
        let refusal = check(&not_issued, "/b/bin/a%20b", within).unwrap_err().xml();
        assert!(
            refusal.contains("<Code>SignatureDoesNotMatch</Code>")
                && refusal.contains("<CanonicalRequest>GET\n/b/bin/a%20b\n"),
            "{refusal}"
        );
    }
}
