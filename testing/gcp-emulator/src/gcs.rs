//! fake-gcs-server, which holds the objects: started as the emulator's child (it dies with
//! the emulator, even a killed one) and reached over its JSON API (its XML API answers on
//! its public host only, and lacks most of what clients use).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderMap, AUTHORIZATION, CONTENT_ENCODING, HOST};
use serde_json::{json, Value};

use crate::world::Fault;

/// A running fake-gcs-server.
pub struct FakeGcs {
    /// Killed on drop.
    child: tokio::process::Child,
    url: String,
    http: reqwest::Client,
}

impl FakeGcs {
    /// Starts `binary` on a free loopback port, keeping objects in memory; the upload URLs
    /// it hands out point at `external_url` (the emulator, which forwards them). Another
    /// emulator may take the same free port first: then it starts again on another.
    pub async fn start(binary: &Path, external_url: &str) -> Result<Self, String> {
        let mut failed = String::new();
        for _ in 0..3 {
            match Self::start_once(binary, external_url).await {
                Ok(gcs) => return Ok(gcs),
                Err(e) => failed = e,
            }
        }
        Err(failed)
    }

    async fn start_once(binary: &Path, external_url: &str) -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let mut command = tokio::process::Command::new(binary);
        command
            .args(["-scheme", "http", "-backend", "memory", "-host", "127.0.0.1", "-log-level", "warn"])
            .args(["-port", &port.to_string(), "-external-url", external_url, "-public-host", external_url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe; it asks the kernel to kill the child when the
        // emulator dies, however it dies.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut gcs = Self { child, url: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() };
        let start = Instant::now();
        loop {
            // One that lost the port to another exits at once; what answers is then not it.
            if let Ok(Some(status)) = gcs.child.try_wait() {
                return Err(format!("fake-gcs-server exited ({status}) on port {port}"));
            }
            if gcs.http.get(format!("{}/storage/v1/b", gcs.url)).send().await.is_ok() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Ok(Some(status)) = gcs.child.try_wait() {
                    return Err(format!("fake-gcs-server exited ({status}) on port {port}"));
                }
                return Ok(gcs);
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err("fake-gcs-server did not answer within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// fake-gcs-server's answer to `request`, its body still streaming.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<http::Response<reqwest::Body>, Fault> {
        let response = request.send().await.map_err(|e| Fault::Internal(format!("fake-gcs-server: {e}")))?;
        Ok(http::Response::from(response))
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Value, Fault> {
        let (parts, body) = self.send(request).await?.into_parts();
        let body = read(body).await?;
        match parts.status.as_u16() {
            200..=299 => Ok(serde_json::from_slice(&body).unwrap_or(Value::Null)),
            status => Err(fault(status, &body)),
        }
    }

    pub async fn create_bucket(&self, name: &str) -> Result<(), Fault> {
        self.call(
            self.http.post(format!("{}/storage/v1/b", self.url)).body(json!({ "name": name }).to_string()),
        )
        .await
        .map(drop)
    }

    pub async fn delete_bucket(&self, name: &str) -> Result<(), Fault> {
        self.call(self.http.delete(format!("{}/storage/v1/b/{}", self.url, encode(name)))).await.map(drop)
    }

    /// One page of the bucket's objects: `objects.list` with `query`.
    pub async fn list_objects(&self, bucket: &str, query: &[(&str, &str)]) -> Result<Value, Fault> {
        let url = format!("{}/storage/v1/b/{}/o", self.url, encode(bucket));
        self.call(self.http.get(url).query(query)).await
    }

    pub async fn delete_object(&self, bucket: &str, object: &str) -> Result<(), Fault> {
        let url = format!("{}/storage/v1/b/{}/o/{}", self.url, encode(bucket), encode(object));
        self.call(self.http.delete(url)).await.map(drop)
    }

    /// Stores `media` as `object` of `bucket` (a media upload) with the metadata the XML API
    /// takes in headers, `metadata`: Content-Type, Cache-Control, Content-Disposition,
    /// Content-Language, `x-goog-meta-*`, and Content-Encoding, which goes in the query
    /// (fake-gcs-server would decompress a gzip body). The stored object's resource.
    pub async fn upload(
        &self,
        bucket: &str,
        object: &str,
        metadata: &HeaderMap,
        media: Bytes,
    ) -> Result<Value, Fault> {
        let mut headers = metadata.clone();
        let encoding = headers.remove(CONTENT_ENCODING);
        let mut query = vec![("uploadType", "media"), ("name", object)];
        if let Some(encoding) = encoding.as_ref().and_then(|e| e.to_str().ok()) {
            query.push(("contentEncoding", encoding));
        }
        let url = format!("{}/upload/storage/v1/b/{}/o", self.url, encode(bucket));
        self.call(self.http.post(url).query(&query).headers(headers).body(media)).await
    }

    /// Copies `from` to `to` (each a bucket and an object name): the copy's resource.
    pub async fn copy(&self, from: (&str, &str), to: (&str, &str)) -> Result<Value, Fault> {
        let url = format!(
            "{}/storage/v1/b/{}/o/{}/copyTo/b/{}/o/{}",
            self.url,
            encode(from.0),
            encode(from.1),
            encode(to.0),
            encode(to.1)
        );
        self.call(self.http.post(url)).await
    }

    /// Sends a client's JSON API request on as it came (path and query, headers, body) and
    /// answers with fake-gcs-server's answer.
    pub async fn forward(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>, Fault> {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let out = self.http.request(parts.method, format!("{}{path}", self.url)).body(body);
        let (parts, body) = self.send(forwarded(out, &parts.headers)).await?.into_parts();
        Ok(http::Response::from_parts(parts, read(body).await?))
    }

    /// `method` (`GET` or `HEAD`) of the media of `object` of `bucket` (of its `generation`,
    /// if given), streamed, with the headers the XML API answers with (`Content-Length`,
    /// `ETag`, `Last-Modified`, `x-goog-generation`, `x-goog-meta-*`…), the client's
    /// `headers` sent on: a `Range` is honoured (416 past the end, already an XML error).
    pub async fn download(
        &self,
        method: http::Method,
        bucket: &str,
        object: &str,
        generation: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<http::Response<reqwest::Body>, Fault> {
        let url = format!("{}/download/storage/v1/b/{}/o/{}", self.url, encode(bucket), encode(object));
        let mut request = forwarded(self.http.request(method, url), headers);
        if let Some(generation) = generation {
            request = request.query(&[("generation", generation)]);
        }
        let media = self.send(request).await?;
        match media.status().as_u16() {
            200..=299 | 416 => Ok(media),
            404 => Err(Fault::NotFound(format!("No such object: {bucket}/{object}"))),
            status => Err(fault(status, &read(media.into_body()).await?)),
        }
    }
}

/// `request` with a client's `headers`, but those meant for the emulator.
fn forwarded(mut request: reqwest::RequestBuilder, headers: &HeaderMap) -> reqwest::RequestBuilder {
    for (name, value) in headers {
        if name != HOST && name != AUTHORIZATION {
            request = request.header(name, value);
        }
    }
    request
}

/// What fake-gcs-server's answer `status` (not 2xx) with `body` means.
fn fault(status: u16, body: &[u8]) -> Fault {
    let body = String::from_utf8_lossy(body);
    match status {
        400 => Fault::Invalid(format!("fake-gcs-server: {body}")),
        404 => Fault::NotFound(format!("fake-gcs-server: {body}")),
        409 => Fault::AlreadyExists(format!("fake-gcs-server: {body}")),
        _ => Fault::Internal(format!("fake-gcs-server answered {status}: {body}")),
    }
}

/// A body of fake-gcs-server's, read whole.
async fn read(body: reqwest::Body) -> Result<Bytes, Fault> {
    use http_body_util::BodyExt;
    let body = body.collect().await.map_err(|e| Fault::Internal(format!("fake-gcs-server: {e}")))?;
    Ok(body.to_bytes())
}

/// A path segment, percent-encoded as the JSON API wants object names.
pub fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
