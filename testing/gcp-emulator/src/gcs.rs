//! fake-gcs-server, which holds the objects: started as the emulator's child (it dies with
//! the emulator, even a killed one) and reached over its JSON API.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
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

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Value, Fault> {
        let response = request.send().await.map_err(|e| Fault::Internal(format!("fake-gcs-server: {e}")))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| Fault::Internal(format!("fake-gcs-server: {e}")))?;
        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        match status {
            200..=299 => Ok(value),
            404 => Err(Fault::NotFound(format!("fake-gcs-server: {}", String::from_utf8_lossy(&body)))),
            409 => Err(Fault::AlreadyExists(format!("fake-gcs-server: {}", String::from_utf8_lossy(&body)))),
            _ => Err(Fault::Internal(format!(
                "fake-gcs-server answered {status}: {}",
                String::from_utf8_lossy(&body)
            ))),
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

    /// One page of the bucket's objects under `prefix` (JSON API items), and the next
    /// page's token.
    pub async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        page_token: &str,
    ) -> Result<(Vec<Value>, String), Fault> {
        let mut query = vec![("prefix", prefix), ("maxResults", "1000")];
        if !page_token.is_empty() {
            query.push(("pageToken", page_token));
        }
        let url = format!("{}/storage/v1/b/{}/o", self.url, encode(bucket));
        let page = self.call(self.http.get(url).query(&query)).await?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        Ok((items, page["nextPageToken"].as_str().unwrap_or_default().to_owned()))
    }

    pub async fn delete_object(&self, bucket: &str, object: &str) -> Result<(), Fault> {
        let url = format!("{}/storage/v1/b/{}/o/{}", self.url, encode(bucket), encode(object));
        self.call(self.http.delete(url)).await.map(drop)
    }

    /// Sends a client's JSON API request on as it came (path and query, headers, body) and
    /// answers with fake-gcs-server's answer.
    pub async fn forward(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>, Fault> {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut out = self.http.request(parts.method, format!("{}{path}", self.url)).body(body);
        for (name, value) in &parts.headers {
            if name != http::header::HOST && name != http::header::AUTHORIZATION {
                out = out.header(name, value);
            }
        }
        let response = out.send().await.map_err(|e| Fault::Internal(format!("fake-gcs-server: {e}")))?;
        let mut answer = http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            answer = answer.header(name, value);
        }
        let body = response.bytes().await.map_err(|e| Fault::Internal(format!("fake-gcs-server: {e}")))?;
        answer.body(body).map_err(|e| Fault::Internal(e.to_string()))
    }
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
