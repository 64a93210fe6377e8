//! The emulator's HTTP side: IAM's service accounts and keys (`iam.googleapis.com/v1`),
//! Compute Engine (`compute.googleapis.com/compute/v1`, the owner's only: see compute.rs),
//! GKE (`container.googleapis.com/v1`, its `projects/*/locations/*` paths, the owner's only:
//! see container.rs), Cloud Storage's JSON API, which it forwards to fake-gcs-server once the caller's key and
//! the bucket's IAM policy allow the request, and every other path to Cloud Storage's XML
//! API of objects (see xml.rs), as is any request signed as a V4 signed URL. Every JSON body
//! in or out is checked against the API's discovery document.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use crate::discovery::{Api, Method};
use crate::world::{Account, Caller, Fault, Permission, World};
use crate::{compute, container, keys, Emulator};

/// A response body: whole, or streamed from fake-gcs-server.
pub type Body = http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Answers one HTTP request.
pub async fn serve(
    emulator: Arc<Emulator>,
    request: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Body>, std::convert::Infallible> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(error(&Fault::Invalid(format!("unreadable body: {e}")))),
    };
    let request = http::Request::from_parts(parts, body);
    let path = request.uri().path().to_owned();
    let signed = param(&query(request.uri()), "X-Goog-Algorithm").is_some();
    let json_apis = [
        "/compute/v1/projects/",
        "/v1/projects/",
        "/storage/v1/",
        "/upload/storage/v1/",
        "/download/storage/v1/",
    ];
    if path == crate::oauth::PATH && request.method() == http::Method::POST {
        let (status, body) = crate::oauth::grant(&mut emulator.world(), request.body(), SystemTime::now());
        return Ok(json_response(status, &body));
    }
    let answer = if signed || !json_apis.iter().any(|p| path.starts_with(p)) {
        Ok(emulator.xml(request).await)
    } else if path.starts_with("/compute/v1/projects/") {
        // Compute Engine's errors have a body of their own.
        Ok(match emulator.compute(request).await {
            Ok(answer) => json_response(200, &answer),
            Err(fault) => json_response(fault.http_status(), &fault.compute_body()),
        })
    } else if path.starts_with("/v1/projects/") && path.split('/').nth(4) == Some("locations") {
        emulator.container(request).await.map(|answer| json_response(200, &answer))
    } else if path.starts_with("/v1/projects/") {
        emulator.iam(request).await.map(|(status, body)| json_response(status, &body))
    } else {
        emulator.storage(request).await.map(|r| r.map(whole))
    };
    Ok(answer.unwrap_or_else(|fault| error(&fault)))
}

/// A request to Compute Engine or GKE as routed by the discovery document.
pub struct Call<'a> {
    /// The document's id of the method, e.g. `compute.instances.insert`.
    pub method: &'a str,
    /// Its path parameters: `project`, `zone`, `instance`, … (`projectsId`, `clustersId`, …).
    pub params: &'a BTreeMap<String, String>,
    /// Its query parameters (`filter`, `maxResults`, `pageToken`, …).
    pub query: &'a BTreeMap<String, String>,
    /// The request body (`{}` when there is none).
    pub body: &'a Value,
}

/// A body held whole.
pub fn whole(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn json_response(status: u16, body: &Value) -> http::Response<Body> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json; charset=UTF-8")
        .body(whole(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

fn error(fault: &Fault) -> http::Response<Body> {
    json_response(fault.http_status(), &fault.body())
}

/// The request's JSON body (`{}` when empty), checked against what `api` says `verb path`
/// takes; the method, to check the answer with.
fn checked_body<'a>(api: &'a Api, request: &http::Request<Bytes>) -> Result<(Value, &'a Method), Fault> {
    let path = request.uri().path();
    let method = api
        .method(request.method().as_str(), path)
        .ok_or_else(|| Fault::NotFound(format!("no method of the API serves {} {path}", request.method())))?;
    let body: Value = if request.body().is_empty() {
        json!({})
    } else {
        serde_json::from_slice(request.body())
            .map_err(|e| Fault::Invalid(format!("Invalid JSON payload received. {e}")))?
    };
    if let Some(schema) = &method.request {
        api.check(schema, &body).map_err(Fault::Invalid)?;
    }
    Ok((body, method))
}

/// `answer`, once it is what the document says `method` returns: if not, the emulator's
/// bug (500).
fn checked_answer(api: &Api, method: &Method, answer: Value) -> Result<Value, Fault> {
    if let Some(schema) = &method.response {
        api.check(schema, &answer).map_err(|e| {
            Fault::Internal(format!("the emulator's answer breaks the discovery document: {e}"))
        })?;
    }
    Ok(answer)
}

/// The query's parameters, decoded (`+` is a space), in order.
pub fn query(uri: &http::Uri) -> Vec<(String, String)> {
    query_pairs(uri.query().unwrap_or_default())
}

/// The pairs of a query string or form body (`a=1&b=2`), decoded, in order.
pub fn query_pairs(text: &str) -> Vec<(String, String)> {
    let pairs = text.split('&').filter(|p| !p.is_empty());
    let decode = |s: &str| percent_decode(&s.replace('+', " "));
    pairs.map(|p| p.split_once('=').unwrap_or((p, ""))).map(|(k, v)| (decode(k), decode(v))).collect()
}

/// The first value of the query parameter `name`.
pub fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The `/`-separated segments of `path`, percent-decoded; none may be `.` or `..`, which
/// would walk out of where they are once a forwarded URL is normalised.
pub fn segments(path: &str) -> Result<Vec<String>, Fault> {
    let segments: Vec<String> = path.split('/').map(percent_decode).collect();
    if segments.iter().any(|s| s == "." || s == "..") {
        return Err(Fault::Invalid(format!("Invalid path: {path}")));
    }
    Ok(segments)
}

/// `at` as Google's JSON writes times (RFC 3339).
pub fn rfc3339(at: SystemTime) -> String {
    jiff::Timestamp::try_from(at).map(|t| t.to_string()).unwrap_or_default()
}

impl Emulator {
    /// Who signed the request's bearer token.
    pub fn authenticate(&self, request: &http::Request<Bytes>) -> Result<Caller, Fault> {
        let authorization = request.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        self.world().authenticate(authorization)
    }

    /// An IAM request: `(status, body)`, the body checked against the document's response
    /// schema (a mismatch is the emulator's bug: 500).
    async fn iam(&self, request: http::Request<Bytes>) -> Result<(u16, Value), Fault> {
        let caller = self.authenticate(&request)?;
        let (body, method) = checked_body(&self.iam, &request)?;
        self.world().owner_only(&caller, "manage service accounts")?;
        let answer = self.iam_answer(request.method(), request.uri().path(), &body)?;
        Ok((200, checked_answer(&self.iam, method, answer)?))
    }

    /// A Compute Engine request, the owner's only; its answer checked against the document.
    /// A `wait` on an operation answers once the operation is done.
    async fn compute(&self, request: http::Request<Bytes>) -> Result<Value, Fault> {
        let caller = self.authenticate(&request)?;
        let (body, method) = checked_body(&self.compute, &request)?;
        self.world().owner_only(&caller, "manage Compute Engine resources")?;
        let (params, query): (_, BTreeMap<_, _>) =
            (method.params(request.uri().path()), query(request.uri()).into_iter().collect());
        let call = Call { method: &method.id, params: &params, query: &query, body: &body };
        let wait = compute::wait_time(&self.world(), &call, SystemTime::now());
        tokio::time::sleep(wait).await;
        let answer = compute::answer(&mut self.world(), &call, SystemTime::now())?;
        checked_answer(&self.compute, method, answer)
    }

    /// A GKE request, the owner's only; its answer checked against the document.
    async fn container(&self, request: http::Request<Bytes>) -> Result<Value, Fault> {
        let caller = self.authenticate(&request)?;
        let (body, method) = checked_body(&self.container, &request)?;
        self.world().owner_only(&caller, "manage Kubernetes Engine clusters")?;
        let (params, query): (_, BTreeMap<_, _>) =
            (method.params(request.uri().path()), query(request.uri()).into_iter().collect());
        let call = Call { method: &method.id, params: &params, query: &query, body: &body };
        let answer = container::answer(&mut self.world(), &call, SystemTime::now())?;
        checked_answer(&self.container, method, answer)
    }

    fn iam_answer(&self, verb: &http::Method, path: &str, body: &Value) -> Result<Value, Fault> {
        let mut world = self.world();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let project = segments[2];
        if project != world.project && project != "-" {
            return Err(Fault::NotFound(format!("Project {project} not found")));
        }
        if segments.get(3) != Some(&"serviceAccounts") {
            return Err(Fault::NotFound(format!("the emulator does not serve {verb} {path}")));
        }
        let rest = &segments[4..];
        match (verb.as_str(), rest) {
            ("POST", []) => create_account(&mut world, body),
            ("GET", []) => {
                let accounts: Vec<Value> =
                    world.accounts.iter().map(|(e, a)| account_json(&world, e, a)).collect();
                Ok(json!({ "accounts": accounts }))
            }
            ("GET", [email]) => Ok(account_json(&world, email, world.account(email)?)),
            ("PATCH", [email]) => {
                let wanted = &body["serviceAccount"];
                let mask = body["updateMask"].as_str().unwrap_or_default();
                let account = world.account_mut(email)?;
                for field in mask.split(',').filter(|f| !f.is_empty()) {
                    match field {
                        "description" => {
                            account.description = wanted[field].as_str().unwrap_or_default().into()
                        }
                        "displayName" | "display_name" => {
                            account.display_name = wanted["displayName"].as_str().unwrap_or_default().into()
                        }
                        other => return Err(Fault::Invalid(format!("Field {other} cannot be patched."))),
                    }
                }
                Ok(account_json(&world, email, world.account(email)?))
            }
            ("DELETE", [email]) => {
                world.account(email)?;
                world.accounts.remove(*email);
                Ok(json!({}))
            }
            ("POST", [email, "keys"]) => {
                // Generating an RSA key takes a while: not while holding the world.
                drop(world);
                self.create_key(email)
            }
            ("GET", [email, "keys"]) => {
                let account = world.account(email)?;
                let keys: Vec<Value> =
                    account.keys.iter().map(|(id, (_, at))| key_json(&world, email, id, *at)).collect();
                Ok(json!({ "keys": keys }))
            }
            ("GET", [email, "keys", id]) => {
                let at = world.account(email)?.keys.get(*id).map(|(_, at)| *at);
                let at =
                    at.ok_or_else(|| Fault::NotFound(format!("Service account key {id} does not exist.")))?;
                Ok(key_json(&world, email, id, at))
            }
            ("DELETE", [email, "keys", id]) => {
                let account = world.account_mut(email)?;
                account
                    .keys
                    .remove(*id)
                    .ok_or_else(|| Fault::NotFound(format!("Service account key {id} does not exist.")))?;
                Ok(json!({}))
            }
            _ => Err(Fault::NotFound(format!("the emulator does not serve {verb} {path}"))),
        }
    }

    /// A JSON API storage request: authorized by the bucket's policy, then fake-gcs-server's.
    async fn storage(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>, Fault> {
        let caller = self.authenticate(&request)?;
        let path = request.uri().path().to_owned();
        let json = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/json"));
        if json && !request.body().is_empty() && path.starts_with("/storage/") {
            checked_body(&self.storage_json, &request)?;
        }
        // `b/<bucket>/o[/<object>]`, each segment percent-encoded.
        let segments = segments(path.split_once("/v1/").map(|(_, rest)| rest).unwrap_or_default())?;
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let (bucket, permission) = match (request.method().as_str(), segments.as_slice()) {
            ("GET", ["b", bucket, "o"]) => (*bucket, Permission::List),
            ("POST", ["b", bucket, "o"]) => (*bucket, Permission::Create),
            ("PUT", ["b", bucket, "o"]) => (*bucket, Permission::Create), // a resumable upload's parts
            ("GET", ["b", bucket, "o", _]) => (*bucket, Permission::Get),
            ("DELETE", ["b", bucket, "o", _]) => (*bucket, Permission::Delete),
            ("PATCH" | "PUT", ["b", bucket, "o", _]) => (*bucket, Permission::Create),
            // Buckets themselves, and object operations across buckets (copy, rewrite,
            // compose): the owner's.
            _ => {
                self.world().owner_only(&caller, "administer buckets")?;
                return self.gcs.forward(request).await;
            }
        };
        self.world().authorize(&caller, bucket, permission)?;
        self.gcs.forward(request).await
    }
}

/// `s` with its `%XX` escapes decoded.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `projects.serviceAccounts.create`: an account id GCP accepts, once.
fn create_account(world: &mut World, body: &Value) -> Result<Value, Fault> {
    let id = body["accountId"].as_str().unwrap_or_default();
    let valid = (6..=30).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(Fault::Invalid(format!(
            "Invalid account ID '{id}': it must be 6 to 30 lowercase letters, digits or hyphens, start with a letter and not end with a hyphen"
        )));
    }
    let email = format!("{id}@{}.iam.gserviceaccount.com", world.project);
    if world.accounts.contains_key(&email) || email == world.owner {
        return Err(Fault::AlreadyExists(format!(
            "Service account {id} already exists within project projects/{}.",
            world.project
        )));
    }
    let unique_id = world.fresh_id().to_string();
    let account = Account {
        account_id: id.to_owned(),
        unique_id,
        display_name: body["serviceAccount"]["displayName"].as_str().unwrap_or_default().to_owned(),
        description: body["serviceAccount"]["description"].as_str().unwrap_or_default().to_owned(),
        keys: Default::default(),
    };
    let answer = account_json(world, &email, &account);
    world.accounts.insert(email, account);
    Ok(answer)
}

fn account_json(world: &World, email: &str, a: &Account) -> Value {
    json!({
        "name": format!("projects/{}/serviceAccounts/{email}", world.project),
        "projectId": world.project,
        "uniqueId": a.unique_id,
        "email": email,
        "displayName": a.display_name,
        "description": a.description,
        "etag": STANDARD.encode(a.account_id.as_bytes()),
        "oauth2ClientId": a.unique_id,
    })
}

impl Emulator {
    /// `projects.serviceAccounts.keys.create`: an RSA key, its key file returned once.
    fn create_key(&self, email: &str) -> Result<Value, Fault> {
        let (id, project, client_id) = {
            let mut world = self.world();
            let client_id = world.account(email)?.unique_id.clone();
            (format!("{:040x}", world.fresh_id()), world.project.clone(), client_id)
        };
        let token_uri = self.world().token_uri.clone();
        let issued =
            keys::issue(&project, email, &client_id, id.clone(), &token_uri).map_err(Fault::Internal)?;
        let now = SystemTime::now();
        let mut world = self.world();
        world.account_mut(email)?.keys.insert(id.clone(), (issued.public, now));
        let mut answer = key_json(&world, email, &id, now);
        answer["privateKeyType"] = json!("TYPE_GOOGLE_CREDENTIALS_FILE");
        // Google hands key files out pretty-printed.
        let file = serde_json::to_string_pretty(&issued.file).map_err(|e| Fault::Internal(e.to_string()))?;
        answer["privateKeyData"] = json!(STANDARD.encode(file));
        Ok(answer)
    }
}

fn key_json(world: &World, email: &str, id: &str, at: SystemTime) -> Value {
    json!({
        "name": format!("projects/{}/serviceAccounts/{email}/keys/{id}", world.project),
        "keyAlgorithm": "KEY_ALG_RSA_2048",
        "validAfterTime": rfc3339(at),
        "validBeforeTime": "9999-12-31T23:59:59Z",
        "keyOrigin": "GOOGLE_PROVIDED",
        "keyType": "USER_MANAGED",
        "disabled": false,
    })
}
