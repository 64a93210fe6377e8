//! Cloud Storage's XML API of objects, path style (`/{bucket}`, `/{bucket}/{object}`), as
//! `object_store`'s GCS client and V4 signed URLs use it. The caller holds a bearer JWT
//! signed with a key the emulator issued (as for the JSON API), or the request is signed as
//! a signed URL (`X-Goog-Algorithm`: see signed_url.rs); the bucket's IAM policy then
//! decides, and the owner may do anything. fake-gcs-server serves this API on its public
//! host only, without multipart uploads, copies or paged listings, so each request becomes
//! requests of its JSON API:
//!
//! - `GET`, `HEAD /b/o` (a `Range`, `?generation=`), needing get: the same of
//!   `/download/storage/v1/b/B/o/O`, which answers with the XML API's headers;
//! - `PUT /b/o`, needing create: a media upload, its metadata from the headers;
//! - `PUT /b/o` with `x-goog-copy-source: b/o2`, needing get of the source and create:
//!   `copyTo`; from another bucket, the owner's only (as the JSON API's copies are);
//! - `DELETE /b/o`, needing delete: `objects.delete`;
//! - `GET /b?list-type=2` (`prefix`, `delimiter`, `start-after`, `continuation-token`,
//!   `max-keys`), needing list: a page of `objects.list`, as a `ListBucketResult`;
//! - multipart uploads (`POST /b/o?uploads`, `PUT ?partNumber=&uploadId=`, `POST` and
//!   `DELETE ?uploadId=`), needing create: the parts are held here, and the object they
//!   make is uploaded whole on completion.
//!
//! Preconditions (`x-goog-if-*`, `If-*` headers) are not served: 501. Refusals are Cloud
//! Storage's XML `<Error>`s: 401 without a valid credential, 403 refused, 404 no such
//! bucket, object or upload.

use std::collections::BTreeMap;

use aws_lc_rs::digest::{digest, SHA256};
use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderName, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_ENCODING, CONTENT_LANGUAGE,
    CONTENT_TYPE,
};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::rest::{self, param, Body};
use crate::world::{Caller, Fault, Permission};
use crate::{signed_url, Emulator};

/// What a 404 of a bucket is.
const NO_BUCKET: (&str, &str) = ("NoSuchBucket", "The specified bucket does not exist.");

/// What a 404 of an object is.
const NO_KEY: (&str, &str) = ("NoSuchKey", "The specified key does not exist.");

/// What a 404 of a multipart upload is.
const NO_UPLOAD: (&str, &str) = ("NoSuchUpload", "The requested upload was not found.");

/// The least size of a multipart upload's parts, but the last: 5 MiB.
const LEAST_PART: usize = 5 << 20;

/// The headers that are the object's metadata (with `x-goog-meta-*`).
const METADATA: [HeaderName; 5] =
    [CONTENT_TYPE, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_ENCODING, CONTENT_LANGUAGE];

/// Why a request is refused, as Cloud Storage's XML API says it.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    message: &'static str,
    details: String,
    /// The string to sign and the canonical request the emulator computed, when a
    /// signature did not match them.
    pub computed: Option<(String, String)>,
}

impl Refusal {
    pub fn new(status: u16, code: &'static str, message: &'static str, details: String) -> Self {
        Self { status, code, message, details, computed: None }
    }

    pub fn invalid(details: String) -> Self {
        Self::new(400, "InvalidArgument", "Invalid argument.", details)
    }

    fn not_implemented(details: String) -> Self {
        let message = "A header or query you provided requested a function that is not implemented.";
        Self::new(501, "NotImplemented", message, details)
    }

    /// What `fault` is in the XML API; `missing` is the code and message of a 404
    /// ([`NO_BUCKET`], [`NO_KEY`]…).
    fn of(fault: &Fault, missing: (&'static str, &'static str)) -> Self {
        match fault {
            Fault::NotFound(m) => Self::new(404, missing.0, missing.1, m.clone()),
            Fault::Unauthenticated(m) => {
                Self::new(401, "AuthenticationRequired", "Authentication required.", m.clone())
            }
            Fault::Denied(m) => Self::new(403, "AccessDenied", "Access denied.", m.clone()),
            Fault::Invalid(m) => Self::invalid(m.clone()),
            other => {
                Self::new(500, "InternalError", "We encountered an internal error.", other.message().into())
            }
        }
    }

    /// The XML error body.
    pub fn xml(&self) -> String {
        let computed = self.computed.as_ref().map_or(String::new(), |(string_to_sign, canonical)| {
            format!(
                "<StringToSign>{}</StringToSign><CanonicalRequest>{}</CanonicalRequest>",
                escape(string_to_sign),
                escape(canonical)
            )
        });
        let (code, message, details) = (self.code, self.message, escape(&self.details));
        document(&format!(
            "<Error><Code>{code}</Code><Message>{message}</Message><Details>{details}</Details>{computed}</Error>"
        ))
    }
}

/// A multipart upload under way: the object it makes, with the metadata its initiation
/// gave, and the parts uploaded so far by number (ETag and bytes).
pub struct Upload {
    bucket: String,
    object: String,
    metadata: HeaderMap,
    parts: BTreeMap<u32, (String, Bytes)>,
}

impl Emulator {
    /// Answers an XML API request.
    pub async fn xml(&self, request: http::Request<Bytes>) -> http::Response<Body> {
        let answer = self.xml_answer(request).await;
        answer.unwrap_or_else(|refusal| response(refusal.status, &[], refusal.xml()))
    }

    async fn xml_answer(&self, request: http::Request<Bytes>) -> Result<http::Response<Body>, Refusal> {
        let query = rest::query(request.uri());
        let caller = self.xml_caller(&request, &query)?;
        let path = request.uri().path();
        let segments = rest::segments(path.trim_start_matches('/')).map_err(|f| Refusal::of(&f, NO_KEY))?;
        let (bucket, object) = match segments.split_first() {
            Some((bucket, object)) if !bucket.is_empty() => (bucket.as_str(), object.join("/")),
            _ => {
                return Err(Refusal::not_implemented(format!("The emulator serves objects only, not {path}")))
            }
        };
        let headers = request.headers();
        if let Some(condition) =
            headers.keys().find(|h| ["if-", "x-goog-if-"].iter().any(|p| h.as_str().starts_with(p)))
        {
            return Err(Refusal::not_implemented(format!(
                "The emulator serves no preconditions ({condition})."
            )));
        }
        let copy_source = headers.get("x-goog-copy-source").and_then(|v| v.to_str().ok());
        let upload = param(&query, "uploadId");
        let body = request.body().clone();
        let target = Target { caller: &caller, bucket, object: &object };
        match (request.method().as_str(), object.is_empty(), upload) {
            ("GET", true, _) => self.list(target, &query).await,
            ("GET" | "HEAD", false, _) => {
                target.allow(self, Permission::Get)?;
                let generation = param(&query, "generation");
                let media = self.gcs.download(request.method().clone(), bucket, &object, generation, headers);
                let media = media.await.map_err(|f| Refusal::of(&f, NO_KEY))?;
                Ok(media.map(|body| body.map_err(Into::into).boxed()))
            }
            ("PUT", false, Some(upload)) => self.part(target, upload, param(&query, "partNumber"), body),
            ("PUT", false, None) => match copy_source {
                Some(source) => self.copy(target, source).await,
                None => {
                    target.allow(self, Permission::Create)?;
                    let stored = self.gcs.upload(bucket, &object, &metadata(headers), body).await;
                    let stored = stored.map_err(|f| Refusal::of(&f, NO_BUCKET))?;
                    Ok(response(200, &described(&stored), String::new()))
                }
            },
            ("POST", false, None) if param(&query, "uploads").is_some() => self.initiate(target, headers),
            ("POST", false, Some(upload)) => self.complete(target, upload, &body).await,
            ("DELETE", false, Some(upload)) => {
                target.allow(self, Permission::Create)?;
                let mut world = self.world();
                find(&mut world.uploads, upload, &target)?;
                world.uploads.remove(upload);
                Ok(response(204, &[], String::new()))
            }
            ("DELETE", false, None) => {
                target.allow(self, Permission::Delete)?;
                self.gcs.delete_object(bucket, &object).await.map_err(|f| Refusal::of(&f, NO_KEY))?;
                Ok(response(204, &[], String::new()))
            }
            (verb, ..) => Err(Refusal::not_implemented(format!("The emulator does not serve {verb} {path}"))),
        }
    }

    /// Who makes `request`: the signer of its signature, or the holder of its bearer token.
    fn xml_caller(
        &self,
        request: &http::Request<Bytes>,
        query: &[(String, String)],
    ) -> Result<Caller, Refusal> {
        if param(query, "X-Goog-Algorithm").is_none() {
            return self.authenticate(request).map_err(|f| Refusal::of(&f, NO_KEY));
        }
        let (method, path, headers) = (request.method().as_str(), request.uri().path(), request.headers());
        let world = self.world();
        let email = signed_url::verify(
            &world,
            &signed_url::Request { method, path, query, headers },
            jiff::Timestamp::now(),
        )?;
        Ok(world.caller(email))
    }

    /// A page of the bucket's objects, `object_store`'s parameters (`prefix`, `delimiter`,
    /// `start-after`, `continuation-token`, `max-keys`) as `objects.list` takes them.
    async fn list(
        &self,
        target: Target<'_>,
        query: &[(String, String)],
    ) -> Result<http::Response<Body>, Refusal> {
        target.allow(self, Permission::List)?;
        let get = |name: &str| param(query, name).unwrap_or_default();
        let asked = [
            ("prefix", get("prefix")),
            ("delimiter", get("delimiter")),
            ("startOffset", get("start-after")),
            ("pageToken", get("continuation-token")),
            ("maxResults", get("max-keys")),
        ];
        let asked: Vec<_> = asked.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        let page =
            self.gcs.list_objects(target.bucket, &asked).await.map_err(|f| Refusal::of(&f, NO_BUCKET))?;
        let (prefix, delimiter) = (get("prefix"), get("delimiter"));
        Ok(response(200, &[], listing(target.bucket, prefix, delimiter, get("start-after"), &page)))
    }

    /// A copy of `source` (`bucket/object`, percent-encoded) to the target: from the same
    /// bucket, or by the owner.
    async fn copy(&self, target: Target<'_>, source: &str) -> Result<http::Response<Body>, Refusal> {
        let segments = rest::segments(source.trim_start_matches('/')).map_err(|f| Refusal::of(&f, NO_KEY))?;
        let (from_bucket, from_object) = match segments.split_first() {
            Some((bucket, object)) if !bucket.is_empty() && !object.is_empty() => {
                (bucket.as_str(), object.join("/"))
            }
            _ => return Err(Refusal::invalid(format!("Invalid x-goog-copy-source: {source}"))),
        };
        if from_bucket != target.bucket {
            let owner = self.world().owner_only(target.caller, "copy objects between buckets");
            owner.map_err(|f| Refusal::of(&f, NO_BUCKET))?;
        }
        Target { bucket: from_bucket, object: &from_object, ..target }.allow(self, Permission::Get)?;
        target.allow(self, Permission::Create)?;
        let copied = self.gcs.copy((from_bucket, &from_object), (target.bucket, target.object)).await;
        let copied = copied.map_err(|f| Refusal::of(&f, NO_KEY))?;
        let result = format!(
            "<CopyObjectResult><LastModified>{}</LastModified><ETag>{}</ETag></CopyObjectResult>",
            text(&copied["updated"]),
            escape(&etag(&copied))
        );
        Ok(response(200, &described(&copied), document(&result)))
    }

    /// A multipart upload of the target begins, with the metadata of `headers`.
    fn initiate(&self, target: Target<'_>, headers: &HeaderMap) -> Result<http::Response<Body>, Refusal> {
        target.allow(self, Permission::Create)?;
        let mut world = self.world();
        let id = format!("{:x}", world.fresh_id());
        let upload = Upload {
            bucket: target.bucket.to_owned(),
            object: target.object.to_owned(),
            metadata: metadata(headers),
            parts: BTreeMap::new(),
        };
        world.uploads.insert(id.clone(), upload);
        let result = format!(
            "<InitiateMultipartUploadResult><Bucket>{}</Bucket><Key>{}</Key><UploadId>{id}</UploadId></InitiateMultipartUploadResult>",
            escape(target.bucket),
            escape(target.object)
        );
        Ok(response(200, &[], document(&result)))
    }

    /// Part `number` of the upload `id` of the target: its ETag.
    fn part(
        &self,
        target: Target<'_>,
        id: &str,
        number: Option<&str>,
        part: Bytes,
    ) -> Result<http::Response<Body>, Refusal> {
        target.allow(self, Permission::Create)?;
        let number = number
            .and_then(|n| n.parse().ok())
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| Refusal::invalid("partNumber must be from 1 to 10000.".into()))?;
        let etag = part_etag(&part);
        find(&mut self.world().uploads, id, &target)?.parts.insert(number, (etag.clone(), part));
        Ok(response(200, &[("etag", etag)], String::new()))
    }

    /// The upload `id` of the target completes with the parts its `CompleteMultipartUpload`
    /// lists: the object is stored, the upload gone.
    async fn complete(
        &self,
        target: Target<'_>,
        id: &str,
        body: &[u8],
    ) -> Result<http::Response<Body>, Refusal> {
        target.allow(self, Permission::Create)?;
        let listed = listed_parts(&String::from_utf8_lossy(body)).map_err(Refusal::invalid)?;
        let (metadata, media) = {
            let mut world = self.world();
            let upload = find(&mut world.uploads, id, &target)?;
            (upload.metadata.clone(), assemble(&upload.parts, &listed)?)
        };
        let stored = self.gcs.upload(target.bucket, target.object, &metadata, media).await;
        let stored = stored.map_err(|f| Refusal::of(&f, NO_BUCKET))?;
        self.world().uploads.remove(id);
        let result = format!(
            "<CompleteMultipartUploadResult><Bucket>{}</Bucket><Key>{}</Key><ETag>{}</ETag></CompleteMultipartUploadResult>",
            escape(target.bucket),
            escape(target.object),
            escape(&etag(&stored))
        );
        Ok(response(200, &described(&stored), document(&result)))
    }
}

/// Who asks, of which bucket and object (empty: of the bucket's objects).
#[derive(Clone, Copy)]
struct Target<'a> {
    caller: &'a Caller,
    bucket: &'a str,
    object: &'a str,
}

impl Target<'_> {
    /// Refuses the caller unless the bucket's policy grants it `permission`.
    fn allow(&self, emulator: &Emulator, permission: Permission) -> Result<(), Refusal> {
        let allowed = emulator.world().authorize(self.caller, self.bucket, permission);
        allowed.map_err(|f| Refusal::of(&f, NO_BUCKET))
    }
}

/// The upload `id`, if it is one of `target`'s object.
fn find<'a>(
    uploads: &'a mut BTreeMap<String, Upload>,
    id: &str,
    target: &Target<'_>,
) -> Result<&'a mut Upload, Refusal> {
    let upload = uploads.get_mut(id).filter(|u| u.bucket == target.bucket && u.object == target.object);
    let missing = || Fault::NotFound(format!("No upload {id} of {}/{}", target.bucket, target.object));
    upload.ok_or_else(|| Refusal::of(&missing(), NO_UPLOAD))
}

/// The headers of `headers` that the XML API makes the object's metadata.
fn metadata(headers: &HeaderMap) -> HeaderMap {
    let kept = |name: &HeaderName| METADATA.contains(name) || name.as_str().starts_with("x-goog-meta-");
    headers.iter().filter(|(name, _)| kept(name)).map(|(n, v)| (n.clone(), v.clone())).collect()
}

/// An answer: `headers`, and `body` (XML, if any).
fn response(status: u16, headers: &[(&str, String)], body: String) -> http::Response<Body> {
    let mut response = http::Response::builder().status(status);
    if !body.is_empty() {
        response = response.header(CONTENT_TYPE, "application/xml; charset=UTF-8");
    }
    for (name, value) in headers {
        response = response.header(*name, value);
    }
    response.body(rest::whole(Bytes::from(body))).unwrap_or_default()
}

/// The headers describing a stored object (its JSON API resource), as the XML API answers
/// a write.
fn described(object: &Value) -> [(&'static str, String); 2] {
    [("etag", etag(object)), ("x-goog-generation", text(&object["generation"]))]
}

/// An object's ETag (of its JSON API resource), quoted as the XML API's headers are.
fn etag(object: &Value) -> String {
    format!("\"{}\"", object["etag"].as_str().unwrap_or_default())
}

/// A JSON value as text: a string as it is (the JSON API's 64-bit numbers are strings).
fn text(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_owned)
}

/// A part's ETag: opaque to clients, as Cloud Storage's MD5 is; here its SHA-256's first half.
fn part_etag(part: &[u8]) -> String {
    let hash: String = digest(&SHA256, part).as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hash}\"")
}

/// The `ListBucketResult` of a `page` of `objects.list` asked with `prefix` and
/// `delimiter`: `start-after` is exclusive where `startOffset` is not.
fn listing(bucket: &str, prefix: &str, delimiter: &str, start_after: &str, page: &Value) -> String {
    let items = page["items"].as_array().into_iter().flatten().filter(|o| o["name"] != start_after);
    let contents: Vec<String> = items
        .map(|o| {
            format!(
                "<Contents><Key>{}</Key><Generation>{}</Generation><LastModified>{}</LastModified><ETag>{}</ETag><Size>{}</Size></Contents>",
                escape(o["name"].as_str().unwrap_or_default()),
                text(&o["generation"]),
                text(&o["updated"]),
                escape(&etag(o)),
                text(&o["size"])
            )
        })
        .collect();
    let prefixes: Vec<String> = page["prefixes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| format!("<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>", escape(&text(p))))
        .collect();
    let next = page["nextPageToken"].as_str().unwrap_or_default();
    let mut result = format!(
        "<ListBucketResult xmlns='http://doc.s3.amazonaws.com/2006-03-01'><Name>{}</Name><Prefix>{}</Prefix>",
        escape(bucket),
        escape(prefix)
    );
    if !delimiter.is_empty() {
        result += &format!("<Delimiter>{}</Delimiter>", escape(delimiter));
    }
    result += &format!(
        "<KeyCount>{}</KeyCount><IsTruncated>{}</IsTruncated>",
        contents.len() + prefixes.len(),
        !next.is_empty()
    );
    if !next.is_empty() {
        result += &format!("<NextContinuationToken>{}</NextContinuationToken>", escape(next));
    }
    document(&format!("{result}{}{}</ListBucketResult>", contents.concat(), prefixes.concat()))
}

/// The parts a `CompleteMultipartUpload` lists: number and ETag, in its order.
fn listed_parts(xml: &str) -> Result<Vec<(u32, String)>, String> {
    let parts = elements(xml, "Part");
    if parts.is_empty() {
        return Err(format!("A CompleteMultipartUpload lists its parts: {xml}"));
    }
    parts
        .into_iter()
        .map(|part| {
            let number = elements(part, "PartNumber").first().and_then(|n| n.trim().parse().ok());
            let etag = elements(part, "ETag").first().map(|e| unescape(e.trim()));
            number.zip(etag).ok_or_else(|| format!("A part has a PartNumber and an ETag: {part}"))
        })
        .collect()
}

/// The media of the parts `listed` of those `uploaded`: listed in ascending order, each
/// uploaded with that ETag, each but the last at least 5 MiB.
fn assemble(uploaded: &BTreeMap<u32, (String, Bytes)>, listed: &[(u32, String)]) -> Result<Bytes, Refusal> {
    if listed.windows(2).any(|w| w[0].0 >= w[1].0) {
        let message = "The list of parts was not in ascending order. The parts list must be specified in order by part number.";
        return Err(Refusal::new(400, "InvalidPartOrder", message, String::new()));
    }
    let mut media = Vec::new();
    for (i, (number, etag)) in listed.iter().enumerate() {
        let part = uploaded.get(number).filter(|(e, _)| e.trim_matches('"') == etag.trim_matches('"'));
        let Some((_, part)) = part else {
            let message = "One or more of the specified parts could not be found. The part might not have been uploaded, or the specified entity tag might not have matched the part's entity tag.";
            return Err(Refusal::new(400, "InvalidPart", message, format!("Part {number}, ETag {etag}")));
        };
        if i + 1 < listed.len() && part.len() < LEAST_PART {
            let message = "Your proposed upload is smaller than the minimum allowed object size.";
            let details = format!(
                "Part {number} is {} bytes; all parts but the last are at least {LEAST_PART}.",
                part.len()
            );
            return Err(Refusal::new(400, "EntityTooSmall", message, details));
        }
        media.extend_from_slice(part);
    }
    Ok(Bytes::from(media))
}

/// What each `<tag>…</tag>` of `xml` holds, in order.
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut found = vec![];
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let inside = &rest[start + open.len()..];
        let Some(end) = inside.find(&close) else { break };
        found.push(&inside[..end]);
        rest = &inside[end + close.len()..];
    }
    found
}

/// An XML document of `root`.
fn document(root: &str) -> String {
    format!("<?xml version='1.0' encoding='UTF-8'?>{root}")
}

/// Text as XML holds it.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// XML text as it reads.
fn unescape(xml: &str) -> String {
    xml.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_json_page_lists_as_object_store_reads_it() {
        let page = json!({
            "items": [
                {"name": "in/a", "generation": "7", "updated": "2024-01-02T03:04:05.123Z", "etag": "e1", "size": "5"},
                {"name": "in/b&c", "generation": "8", "updated": "2024-01-02T03:04:06Z", "etag": "e2", "size": "0"},
            ],
            "prefixes": ["in/sub/"],
            "nextPageToken": "t<1>",
        });
        assert_eq!(
            listing("bin", "in/", "/", "in/a", &page),
            "<?xml version='1.0' encoding='UTF-8'?><ListBucketResult xmlns='http://doc.s3.amazonaws.com/2006-03-01'>\
             <Name>bin</Name><Prefix>in/</Prefix><Delimiter>/</Delimiter><KeyCount>2</KeyCount>\
             <IsTruncated>true</IsTruncated><NextContinuationToken>t&lt;1&gt;</NextContinuationToken>\
             <Contents><Key>in/b&amp;c</Key><Generation>8</Generation><LastModified>2024-01-02T03:04:06Z</LastModified>\
             <ETag>\"e2\"</ETag><Size>0</Size></Contents><CommonPrefixes><Prefix>in/sub/</Prefix></CommonPrefixes>\
             </ListBucketResult>"
        );
        let empty = listing("bin", "", "", "", &json!({}));
        assert!(
            empty.contains("<KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>"),
            "{empty}"
        );
    }

    #[test]
    fn the_parts_listed_assemble_in_order_each_but_the_last_at_least_5_mib() {
        let body = "<CompleteMultipartUpload><Part><ETag>\"a\"</ETag><PartNumber>1</PartNumber></Part>\
                    <Part>\n<PartNumber>3</PartNumber><ETag>&quot;c&quot;</ETag></Part></CompleteMultipartUpload>";
        let listed = listed_parts(body).unwrap();
        assert_eq!(listed, [(1, "\"a\"".to_owned()), (3, "\"c\"".to_owned())]);
        assert!(listed_parts("<CompleteMultipartUpload/>").is_err());
        assert!(listed_parts("<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>a</ETag></Part></CompleteMultipartUpload>").is_err());

        let big = Bytes::from(vec![1; LEAST_PART]);
        let uploaded: BTreeMap<u32, (String, Bytes)> = [
            (1, ("\"a\"".to_owned(), big.clone())),
            (2, ("\"b\"".to_owned(), Bytes::from_static(b"small"))),
            (3, ("\"c\"".to_owned(), Bytes::from_static(b"end"))),
        ]
        .into();
        let media = assemble(&uploaded, &listed).unwrap();
        assert_eq!((media.len(), &media[LEAST_PART..]), (LEAST_PART + 3, &b"end"[..]));
        let code = |listed: &[(u32, &str)]| {
            let listed: Vec<(u32, String)> = listed.iter().map(|(n, e)| (*n, e.to_string())).collect();
            assemble(&uploaded, &listed).map(|m| m.len()).map_err(|r| (r.status, r.code))
        };
        assert_eq!(code(&[(1, "a"), (2, "b")]), Ok(LEAST_PART + 5));
        assert_eq!(code(&[(2, "b"), (3, "c")]), Err((400, "EntityTooSmall")));
        assert_eq!(code(&[(3, "c"), (1, "a")]), Err((400, "InvalidPartOrder")));
        assert_eq!(code(&[(1, "a"), (3, "x")]), Err((400, "InvalidPart")));
        assert_eq!(code(&[(4, "d")]), Err((400, "InvalidPart")));
    }

    #[test]
    fn refusals_are_cloud_storage_xml_errors() {
        let unauthenticated = Refusal::of(&Fault::Unauthenticated("no bearer token".into()), NO_KEY);
        assert_eq!((unauthenticated.status, unauthenticated.code), (401, "AuthenticationRequired"));
        let missing = Refusal::of(&Fault::NotFound("a<b".into()), NO_KEY);
        assert_eq!(
            missing.xml(),
            "<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Details>a&lt;b</Details></Error>"
        );
        assert_eq!(Refusal::of(&Fault::Denied("no".into()), NO_BUCKET).status, 403);
        assert_eq!(rest::segments("b/in%2Fa%20b").unwrap(), ["b", "in/a b"]);
        assert!(rest::segments("b/in/%2e%2E/x").is_err() && rest::segments("b/./x").is_err());
        let mut headers = HeaderMap::new();
        for (name, value) in
            [("content-type", "text/csv"), ("x-goog-meta-lab", "1"), ("authorization", "x"), ("range", "y")]
        {
            headers.insert(HeaderName::from_static(name), value.parse().unwrap());
        }
        let kept = metadata(&headers);
        let kept: Vec<&str> = kept.keys().map(HeaderName::as_str).collect();
        assert_eq!(kept, ["content-type", "x-goog-meta-lab"]);
    }
}
