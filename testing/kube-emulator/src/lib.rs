//! A Kubernetes API server for tests, on loopback.
//!
//! [`kube_fake_client`] keeps objects in memory with real API semantics (resource versions,
//! label selectors, status subresources, server-side apply with field ownership). This
//! crate serves it over HTTP so that a `labctl` process can reach it through an ordinary
//! kubeconfig, and runs the few controllers whose effects labctl waits on — which the fake
//! itself does not run:
//!
//! - a namespace is gone only once its objects are (the namespace controller);
//! - a Deployment's status reports its replicas ready (the Deployment controller and the
//!   kubelets), except in namespaces a test holds back with [`Emulator::hold_unready`];
//! - a service-account token Secret gets its token (the token controller);
//! - with [`Emulator::run_jobs`], Jobs run for real as sandboxed processes ([`kubelet`]).
//!
//! The fake's router takes every `/api/v1/namespaces/…` path for a namespaced one, so it
//! cannot reach Namespaces themselves; [`rewrite`] routes those to a plural it can reach.
//! Every client of the emulator, its own controllers included, goes through HTTP.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::Client;
use serde_json::json;

/// How often the controllers look at the objects.
const RESYNC: Duration = Duration::from_millis(50);

mod kubelet;

/// What tests change in the controllers' behaviour.
#[derive(Default)]
struct Settings {
    /// Namespaces whose Deployments never become ready.
    held: BTreeSet<String>,
    /// Runs Jobs, when set.
    kubelet: Option<kubelet::Kubelet>,
}

type Shared = Arc<Mutex<Settings>>;

/// A running emulator; stops when dropped.
pub struct Emulator {
    addr: SocketAddr,
    settings: Shared,
    runtime: Option<tokio::runtime::Runtime>,
    /// The kubelet's volumes, hosts files and logs.
    work_dir: tempfile::TempDir,
}

impl Emulator {
    /// Starts an empty API server on a free loopback port, with its own runtime.
    pub fn start() -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().expect("an address"))
    }

    /// Starts an empty API server on `addr`, with its own runtime.
    pub fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let settings = Shared::default();
        let addr = runtime.block_on(serve(addr, settings.clone()))?;
        Ok(Self { addr, settings, runtime: Some(runtime), work_dir: tempfile::tempdir()? })
    }

    /// The server's URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig (YAML) whose only context, `emulator`, points at this server.
    pub fn kubeconfig(&self) -> String {
        kubeconfig(&self.url())
    }

    /// Runs `f` on the emulator's runtime (for a test that is not async itself).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.as_ref().expect("running").block_on(f)
    }

    /// From now on, Deployments in `namespace` never become ready.
    pub fn hold_unready(&self, namespace: &str) {
        self.settings.lock().expect("not poisoned").held.insert(namespace.to_owned());
    }

    /// From now on, Jobs run: each in a sandbox with its namespace's Deployments, their
    /// commands taken from `bin_dir` (see [`kubelet`]; needs root).
    pub fn run_jobs(&self, bin_dir: &Path) {
        let kubelet =
            kubelet::Kubelet { bin_dir: bin_dir.to_owned(), work_dir: self.work_dir.path().to_owned() };
        self.settings.lock().expect("not poisoned").kubelet = Some(kubelet);
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A kubeconfig for a server at `url` without TLS or credentials.
pub fn kubeconfig(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: {url}\ncontexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: emulator\ncurrent-context: emulator\nusers:\n- name: emulator\n  user: {{}}\n"
    )
}

/// Binds `addr`, serves the fake API on it and starts the controllers; returns the bound
/// address.
async fn serve(addr: SocketAddr, settings: Shared) -> std::io::Result<SocketAddr> {
    let fake = kube_fake_client::ClientBuilder::new()
        .with_resource::<StoredNamespace>()
        .with_status_subresource::<Deployment>()
        .with_status_subresource::<Job>()
        .build()
        .await
        .map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let client = fake.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| forward(client.clone(), req));
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    let url = format!("http://{addr}").parse().map_err(std::io::Error::other)?;
    let client = Client::try_from(kube::Config::new(url)).map_err(std::io::Error::other)?;
    tokio::spawn(controllers(client, settings));
    Ok(addr)
}

/// Hands one HTTP request to the fake and its answer back.
async fn forward(client: Client, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (mut parts, body) = req.into_parts();
    if parts.method == http::Method::DELETE {
        if let Some(namespace) = namespace_named(&parts.uri) {
            let _ = purge(&client, &namespace).await;
        }
    }
    parts.uri = rewrite(&parts.uri);
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let request = Request::from_parts(parts, kube::client::Body::from(body.to_vec()));
    let response = match client.send(request).await {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            Response::from_parts(parts, Full::new(bytes))
        }
        Err(e) => {
            let status = json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "message": e.to_string(), "reason": "InternalError", "code": 500 });
            let mut response = Response::new(Full::new(Bytes::from(status.to_string())));
            *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    };
    Ok(response)
}

/// Where Namespaces are kept in the fake: core `v1` with a plural its router does not mistake
/// for a namespaced path. The kind, group and version are the real ones, so the fake knows a
/// Namespace is cluster-scoped and bodies need no change.
struct StoredNamespace {
    metadata: ObjectMeta,
}

const NAMESPACES_PLURAL: &str = "clusternamespaces";

impl kube::Resource for StoredNamespace {
    type DynamicType = ();
    type Scope = k8s_openapi::ClusterResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Namespace".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        NAMESPACES_PLURAL.into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The namespace a `/api/v1/namespaces/{name}` path names.
fn namespace_named(uri: &http::Uri) -> Option<String> {
    let parts: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    match parts.as_slice() {
        ["api", "v1", "namespaces", name] => Some((*name).to_owned()),
        _ => None,
    }
}

/// `/api/v1/namespaces` and `/api/v1/namespaces/{name}` → the stored plural; anything else
/// as is.
fn rewrite(uri: &http::Uri) -> http::Uri {
    let parts: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    if !matches!(parts.as_slice(), ["api", "v1", "namespaces"] | ["api", "v1", "namespaces", _]) {
        return uri.clone();
    }
    let mut path = format!("/api/v1/{NAMESPACES_PLURAL}");
    if let Some(name) = parts.get(3) {
        path = format!("{path}/{name}");
    }
    if let Some(query) = uri.query() {
        path = format!("{path}?{query}");
    }
    path.parse().unwrap_or_else(|_| uri.clone())
}

/// The controllers, forever.
async fn controllers(client: Client, settings: Shared) {
    let mut started = BTreeSet::new();
    loop {
        tokio::time::sleep(RESYNC).await;
        let (held, kubelet) = {
            let s = settings.lock().expect("not poisoned");
            (s.held.clone(), s.kubelet.clone())
        };
        let _ = ready_deployments(&client, &held).await;
        let _ = issue_tokens(&client).await;
        if let Some(kubelet) = kubelet {
            let _ = kubelet::start_jobs(&client, &kubelet, &mut started).await;
            let _ = kubelet::collect_garbage(&client).await;
        }
    }
}

/// The namespaced kinds labctl creates, and students' pods and jobs: what deleting a
/// namespace deletes, and where a test looks for leftovers.
pub fn namespaced_kinds() -> Vec<ApiResource> {
    use k8s_openapi::api::{core::v1 as core, networking::v1 as net, rbac::v1 as rbac};
    vec![
        ApiResource::erase::<Deployment>(&()),
        ApiResource::erase::<Job>(&()),
        ApiResource::erase::<Pod>(&()),
        ApiResource::erase::<Secret>(&()),
        ApiResource::erase::<core::ConfigMap>(&()),
        ApiResource::erase::<core::PersistentVolumeClaim>(&()),
        ApiResource::erase::<core::Service>(&()),
        ApiResource::erase::<ServiceAccount>(&()),
        ApiResource::erase::<core::ResourceQuota>(&()),
        ApiResource::erase::<core::LimitRange>(&()),
        ApiResource::erase::<rbac::Role>(&()),
        ApiResource::erase::<rbac::RoleBinding>(&()),
        ApiResource::erase::<net::NetworkPolicy>(&()),
    ]
}

/// Deletes everything in `namespace`.
async fn purge(client: &Client, namespace: &str) -> kube::Result<()> {
    for resource in namespaced_kinds() {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        for object in api.list(&ListParams::default()).await?.items {
            if let Some(name) = object.metadata.name {
                api.delete(&name, &DeleteParams::default()).await?;
            }
        }
    }
    Ok(())
}

/// Reports every Deployment's replicas ready; in the held namespaces, seen but never ready
/// (as when an image cannot be pulled).
async fn ready_deployments(client: &Client, held: &BTreeSet<String>) -> kube::Result<()> {
    for d in Api::<Deployment>::all(client.clone()).list(&ListParams::default()).await?.items {
        let (Some(ns), Some(name)) = (d.metadata.namespace.clone(), d.metadata.name.clone()) else {
            continue;
        };
        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let ready = if held.contains(&ns) { 0 } else { replicas };
        let status = d.status.unwrap_or_default();
        if status.ready_replicas.unwrap_or(0) == ready && status.observed_generation == d.metadata.generation
        {
            continue;
        }
        let available = if ready == replicas {
            json!({ "type": "Available", "status": "True", "reason": "MinimumReplicasAvailable" })
        } else {
            json!({ "type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable", "message": "Deployment does not have minimum availability." })
        };
        let patch = json!({ "status": {
            "observedGeneration": d.metadata.generation,
            "replicas": replicas, "updatedReplicas": replicas, "readyReplicas": ready, "availableReplicas": ready,
            "unavailableReplicas": replicas - ready,
            "conditions": [available],
        }});
        Api::<Deployment>::namespaced(client.clone(), &ns)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(())
}

/// Fills in the token of service-account token Secrets whose service account exists.
async fn issue_tokens(client: &Client) -> kube::Result<()> {
    for s in Api::<Secret>::all(client.clone()).list(&ListParams::default()).await?.items {
        let (Some(ns), Some(name)) = (s.metadata.namespace.clone(), s.metadata.name.clone()) else {
            continue;
        };
        let has_token = s.data.as_ref().is_some_and(|d| d.contains_key("token"));
        if s.type_.as_deref() != Some("kubernetes.io/service-account-token") || has_token {
            continue;
        }
        let account =
            s.metadata.annotations.as_ref().and_then(|a| a.get("kubernetes.io/service-account.name"));
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
        if account.is_none() || accounts.get_opt(account.map_or("", String::as_str)).await?.is_none() {
            continue;
        }
        let token = format!("emulated-token-{ns}-{name}");
        let patch = json!({ "data": { "token": base64(&token), "ca.crt": base64("emulator has no TLS") } });
        Api::<Secret>::namespaced(client.clone(), &ns)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(())
}

fn base64(text: &str) -> String {
    use k8s_openapi::ByteString;
    serde_json::to_value(ByteString(text.as_bytes().to_vec()))
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
