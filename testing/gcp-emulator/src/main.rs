//! `labctl-gcp-emulator`: the GCP APIs labctl's tests need and no installable emulator
//! serves, on loopback. Test-only.
//!
//! ```text
//! labctl-gcp-emulator --deps DIR --project ID --owner-key FILE
//! ```
//!
//! `DIR` holds `fake-gcs-server` (the binary) and `discovery/` (Google's discovery
//! documents), as `testing/gcp-emulator/install.sh` lays them out. The emulator starts
//! fake-gcs-server as its child for objects, writes the project owner's service-account
//! key file to `FILE` (the only key that may administer the project), prints one JSON line
//! `{"http": URL, "grpc": URL}` once it serves, and runs until SIGTERM or SIGINT.
//!
//! Over HTTP: IAM service accounts, Compute Engine (networks, subnetworks, firewalls, VM
//! instances and their operations), GKE (clusters, their node pools and operations), Cloud
//! Storage's JSON API, and its XML API of objects
//! (what `object_store`'s GCS client speaks: objects, listings, copies, multipart uploads)
//! to bearer tokens and V4 signed URLs alike. Over gRPC: storage v2's buckets and their IAM
//! policies. Service-account keys the emulator issued are the only credentials: a key file
//! with `"gcs_base_url": "<http URL>"` added points `object_store` at it.

mod certificate;
mod compute;
mod container;
mod discovery;
mod gcs;
mod grpc;
mod keys;
mod oauth;
mod operation;
mod rest;
mod signed_url;
mod world;
mod xml;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use discovery::Api;
use gcs::FakeGcs;
use world::World;

/// Everything a request can reach.
pub struct Emulator {
    world: Mutex<World>,
    gcs: FakeGcs,
    /// `iam.v1`, `storage.v1`, `compute.v1` and `container.v1`'s discovery documents.
    iam: Api,
    storage_json: Api,
    compute: Api,
    container: Api,
}

impl Emulator {
    /// The state, even if a handler panicked while holding it.
    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct Args {
    deps: PathBuf,
    project: String,
    owner_key: PathBuf,
}

fn args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut deps, mut project, mut owner_key) = (None, None, None);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--deps" => deps = Some(PathBuf::from(value)),
            "--project" => project = Some(value),
            "--owner-key" => owner_key = Some(PathBuf::from(value)),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let usage = "usage: labctl-gcp-emulator --deps DIR --project ID --owner-key FILE";
    Ok(Args { deps: deps.ok_or(usage)?, project: project.ok_or(usage)?, owner_key: owner_key.ok_or(usage)? })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("labctl-gcp-emulator: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let args = args()?;
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot listen: {e}"));
    let (http_listener, grpc_listener) = (bind()?, bind()?);
    let address =
        |l: &std::net::TcpListener| l.local_addr().map(|a| format!("http://{a}")).map_err(|e| e.to_string());
    let (http_url, grpc_url) = (address(&http_listener)?, address(&grpc_listener)?);

    let discovery = args.deps.join("discovery");
    let (iam, storage_json) = (Api::load(&discovery, "iam.v1")?, Api::load(&discovery, "storage.v1")?);
    let (compute, container) = (Api::load(&discovery, "compute.v1")?, Api::load(&discovery, "container.v1")?);
    let gcs = FakeGcs::start(&args.deps.join("fake-gcs-server"), &http_url).await?;
    let owner = format!("labctl-owner@{}.iam.gserviceaccount.com", args.project);
    let key = keys::issue(&args.project, &owner, "1", "0".repeat(40), &format!("{http_url}{}", oauth::PATH))?;
    write_private(&args.owner_key, &key.file.to_string())?;
    let world = Mutex::new(World::new(&args.project, owner, &key));
    let emulator = Arc::new(Emulator { world, gcs, iam, storage_json, compute, container });

    let http = tokio::spawn(serve_http(emulator.clone(), http_listener));
    let grpc_listener =
        tokio::net::TcpListener::from_std(nonblocking(grpc_listener)?).map_err(|e| e.to_string())?;
    let grpc = tonic::transport::Server::builder()
        .add_service(grpc::StorageService(emulator.clone()))
        .add_service(grpc::ControlService(emulator))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(grpc_listener));
    let grpc = tokio::spawn(grpc);
    println!("{}", serde_json::json!({ "http": http_url, "grpc": grpc_url }));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        r = http => return Err(format!("the HTTP server stopped: {r:?}")),
        r = grpc => return Err(format!("the gRPC server stopped: {r:?}")),
    }
    Ok(())
}

fn nonblocking(listener: std::net::TcpListener) -> Result<std::net::TcpListener, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(listener)
}

/// Serves the REST APIs, one task per connection.
async fn serve_http(emulator: Arc<Emulator>, listener: std::net::TcpListener) -> Result<(), String> {
    let listener = tokio::net::TcpListener::from_std(nonblocking(listener)?).map_err(|e| e.to_string())?;
    loop {
        let (stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let emulator = emulator.clone();
        tokio::spawn(async move {
            // Each request runs to its end even if its client goes away (see grpc.rs).
            let service = hyper::service::service_fn(move |r| {
                let answer = tokio::spawn(rest::serve(emulator.clone(), r));
                async move {
                    match answer.await {
                        Ok(Ok(response)) => Ok(response),
                        Ok(Err(never)) => match never {},
                        Err(failed) => Err(failed),
                    }
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}

/// Writes a secret readable by its owner only.
fn write_private(path: &std::path::Path, contents: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(contents.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}
