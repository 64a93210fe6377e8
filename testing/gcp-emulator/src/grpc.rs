//! `google.storage.v2.Storage` over gRPC: what google-cloud-storage's `StorageControl`
//! calls and no installable emulator serves — buckets (labels, IAM policies), listing and
//! deleting objects. Objects themselves are fake-gcs-server's.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use googleapis_tonic_google_storage_v2::google::iam::v1 as iam;
use googleapis_tonic_google_storage_v2::google::storage::v2 as storage;
use tonic::body::Body;
use tonic::{Request, Response, Status};

use crate::world::{Bucket, Caller, Fault, Permission, Policy, World};
use crate::Emulator;

/// `google.storage.v2.Storage`: buckets and objects.
#[derive(Clone)]
pub struct StorageService(pub Arc<Emulator>);

impl tonic::server::NamedService for StorageService {
    const NAME: &'static str = "google.storage.v2.Storage";
}

/// `google.storage.control.v2.StorageControl`: where google-cloud-storage asks for bucket
/// IAM policies.
#[derive(Clone)]
pub struct ControlService(pub Arc<Emulator>);

impl tonic::server::NamedService for ControlService {
    const NAME: &'static str = "google.storage.control.v2.StorageControl";
}

type Answer = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

/// Both services as tonic's router wants them, routed by method name.
macro_rules! routed {
    ($service:ty) => {
        impl tower_service::Service<http::Request<Body>> for $service {
            type Response = http::Response<Body>;
            type Error = Infallible;
            type Future = Answer;

            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
                Poll::Ready(Ok(()))
            }

            fn call(&mut self, request: http::Request<Body>) -> Answer {
                route(self.0.clone(), <$service as tonic::server::NamedService>::NAME, request)
            }
        }
    };
}

routed!(StorageService);
routed!(ControlService);

/// The method `request` calls, if `service` serves it: StorageControl only the bucket IAM
/// policies here, Storage the rest (and those too, as its proto has them).
fn route(e: Arc<Emulator>, service: &str, request: http::Request<Body>) -> Answer {
    let path = request.uri().path().to_owned();
    let method =
        path.strip_prefix('/').and_then(|p| p.strip_prefix(service)).and_then(|p| p.strip_prefix('/'));
    let method = match method {
        Some(m @ ("GetIamPolicy" | "SetIamPolicy")) => m,
        Some(m) if service == <StorageService as tonic::server::NamedService>::NAME => m,
        _ => "",
    };
    match method {
        "CreateBucket" => unary(request, move |r| async move { e.create_bucket(r).await }),
        "GetBucket" => unary(request, move |r| async move { e.get_bucket(r) }),
        "ListBuckets" => unary(request, move |r| async move { e.list_buckets(r) }),
        "UpdateBucket" => unary(request, move |r| async move { e.update_bucket(r) }),
        "DeleteBucket" => unary(request, move |r| async move { e.delete_bucket(r).await }),
        "GetIamPolicy" => unary(request, move |r| async move { e.get_iam_policy(r) }),
        "SetIamPolicy" => unary(request, move |r| async move { e.set_iam_policy(r) }),
        "ListObjects" => unary(request, move |r| async move { e.list_objects(r).await }),
        "DeleteObject" => unary(request, move |r| async move { e.delete_object(r).await }),
        _ => {
            let status = Status::unimplemented(format!("the emulator does not serve {path}"));
            Box::pin(async move { Ok(status.into_http()) })
        }
    }
}

/// Decodes a unary request as `Req`, answers it with `handle` and encodes its answer.
fn unary<Req, Resp, F, Fut>(request: http::Request<Body>, handle: F) -> Answer
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    F: FnOnce(Request<Req>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Resp, Fault>> + Send + 'static,
{
    Box::pin(async move {
        let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<Resp, Req>::default());
        Ok(grpc.unary(Once(Some(handle)), request).await)
    })
}

/// A handler called once, as tonic's unary service.
struct Once<F>(Option<F>);

impl<Req, Resp, F, Fut> tower_service::Service<Request<Req>> for Once<F>
where
    Resp: Send + 'static,
    F: FnOnce(Request<Req>) -> Fut,
    Fut: Future<Output = Result<Resp, Fault>> + Send + 'static,
{
    type Response = Response<Resp>;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Resp>, Status>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Req>) -> Self::Future {
        let Some(handle) = self.0.take() else {
            return Box::pin(async { Err(Status::internal("a unary handler was called twice")) });
        };
        // Run to its end even if the client goes away, as a real server's change does:
        // dropped halfway, it could leave fake-gcs-server's side made and the emulator's not.
        let answer = tokio::spawn(handle(request));
        Box::pin(async move {
            match answer.await {
                Ok(answer) => answer.map(Response::new).map_err(Status::from),
                Err(e) => Err(Status::internal(format!("the handler failed: {e}"))),
            }
        })
    }
}

/// A bucket's short name from its resource name `projects/_/buckets/<name>`.
fn bucket_name(resource: &str) -> Result<&str, Fault> {
    resource
        .strip_prefix("projects/_/buckets/")
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .ok_or_else(|| Fault::Invalid(format!("Invalid bucket name: '{resource}'")))
}

fn policy_message(policy: &Policy) -> iam::Policy {
    iam::Policy {
        version: policy.version,
        bindings: policy
            .bindings
            .iter()
            .map(|(role, members)| iam::Binding {
                role: role.clone(),
                members: members.clone(),
                condition: None,
            })
            .collect(),
        etag: policy.etag.to_string().into_bytes(),
        audit_configs: vec![],
    }
}

fn timestamp(at: SystemTime) -> prost_types::Timestamp {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp { seconds: since.as_secs() as i64, nanos: since.subsec_nanos() as i32 }
}

/// Whether `name` is a bucket name GCS accepts (3–63 of lowercase letters, digits, `-`,
/// `_` and `.`, starting and ending with a letter or digit).
fn valid_bucket_name(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
        && edge(name.chars().next())
        && edge(name.chars().last())
}

/// Whether every label is one GCP accepts: keys start with a lowercase letter, keys and
/// values are at most 63 of lowercase letters, digits, `-` and `_`.
fn check_labels(labels: &HashMap<String, String>) -> Result<(), Fault> {
    let allowed = |s: &str| {
        s.len() <= 63 && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_".contains(c))
    };
    for (key, value) in labels {
        if !key.starts_with(|c: char| c.is_ascii_lowercase()) || !allowed(key) || !allowed(value) {
            return Err(Fault::Invalid(format!(
                "Invalid argument: label {key}={value} is not a valid label"
            )));
        }
    }
    Ok(())
}

impl Emulator {
    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Fault> {
        let authorization = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        self.world().authenticate(authorization)
    }

    fn bucket_message(&self, world: &World, name: &str, b: &Bucket) -> storage::Bucket {
        storage::Bucket {
            name: format!("projects/_/buckets/{name}"),
            bucket_id: name.to_owned(),
            project: format!("projects/{}", world.project_number),
            metageneration: b.metageneration,
            etag: b.metageneration.to_string(),
            location: "US-CENTRAL1".into(),
            location_type: "region".into(),
            storage_class: "STANDARD".into(),
            labels: b.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            create_time: Some(timestamp(b.created)),
            update_time: Some(timestamp(b.created)),
            ..Default::default()
        }
    }

    async fn create_bucket(
        &self,
        request: Request<storage::CreateBucketRequest>,
    ) -> Result<storage::Bucket, Fault> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let (project, labels) = r.bucket.map(|b| (b.project, b.labels)).unwrap_or_default();
        {
            let world = self.world();
            world.owner_only(&caller, "create buckets")?;
            // As the v2 API wants it: the parent `projects/_` (or none), the project in the
            // bucket.
            if !r.parent.is_empty() && r.parent != "projects/_" {
                return Err(Fault::Invalid(format!("Invalid parent: '{}': use projects/_", r.parent)));
            }
            let ours = [format!("projects/{}", world.project), format!("projects/{}", world.project_number)];
            if !ours.contains(&project) {
                return Err(Fault::Invalid(format!("Invalid project: '{project}'")));
            }
            if !valid_bucket_name(&r.bucket_id) {
                return Err(Fault::Invalid(format!("Invalid bucket name: '{}'", r.bucket_id)));
            }
            check_labels(&labels)?;
            if world.buckets.contains_key(&r.bucket_id) {
                return Err(Fault::AlreadyExists(
                    "Your previous request to create the named bucket succeeded and you already own it."
                        .into(),
                ));
            }
        }
        self.gcs.create_bucket(&r.bucket_id).await?;
        let mut world = self.world();
        let owner = format!("serviceAccount:{}", world.owner);
        let bucket = Bucket {
            labels: labels.into_iter().collect(),
            created: SystemTime::now(),
            metageneration: 1,
            policy: Policy {
                version: 1,
                bindings: vec![("roles/storage.legacyBucketOwner".into(), vec![owner])],
                etag: 1,
            },
        };
        let message = self.bucket_message(&world, &r.bucket_id, &bucket);
        world.buckets.insert(r.bucket_id, bucket);
        Ok(message)
    }

    fn get_bucket(&self, request: Request<storage::GetBucketRequest>) -> Result<storage::Bucket, Fault> {
        let caller = self.caller(&request)?;
        let world = self.world();
        world.owner_only(&caller, "get buckets")?;
        let name = bucket_name(&request.get_ref().name)?;
        Ok(self.bucket_message(&world, name, world.bucket(name)?))
    }

    fn list_buckets(
        &self,
        request: Request<storage::ListBucketsRequest>,
    ) -> Result<storage::ListBucketsResponse, Fault> {
        let caller = self.caller(&request)?;
        let world = self.world();
        world.owner_only(&caller, "list buckets")?;
        let r = request.into_inner();
        let size = if r.page_size > 0 { r.page_size as usize } else { 1000 };
        let mut names = world
            .buckets
            .iter()
            .filter(|(n, _)| n.starts_with(&r.prefix) && n.as_str() > r.page_token.as_str());
        let buckets: Vec<_> =
            names.by_ref().take(size).map(|(n, b)| self.bucket_message(&world, n, b)).collect();
        let more = names.next().is_some();
        let next_page_token = if more {
            buckets.last().map(|b| b.bucket_id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(storage::ListBucketsResponse { buckets, next_page_token, unreachable: vec![] })
    }

    fn update_bucket(
        &self,
        request: Request<storage::UpdateBucketRequest>,
    ) -> Result<storage::Bucket, Fault> {
        let caller = self.caller(&request)?;
        let mut world = self.world();
        world.owner_only(&caller, "update buckets")?;
        let r = request.into_inner();
        let wanted = r.bucket.ok_or_else(|| Fault::Invalid("Missing bucket".into()))?;
        let name = bucket_name(&wanted.name)?.to_owned();
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            return Err(Fault::Invalid("Empty UpdateMask paths are not allowed.".into()));
        }
        check_labels(&wanted.labels)?;
        let bucket = world.bucket_mut(&name)?;
        for path in paths {
            match path.strip_prefix("labels") {
                Some("") => bucket.labels = wanted.labels.clone().into_iter().collect(),
                Some(key) if key.starts_with('.') => {
                    let key = &key[1..];
                    match wanted.labels.get(key) {
                        Some(v) => bucket.labels.insert(key.to_owned(), v.clone()),
                        None => bucket.labels.remove(key),
                    };
                }
                _ => return Err(Fault::Invalid(format!("the emulator cannot update `{path}`"))),
            }
        }
        bucket.metageneration += 1;
        let bucket = bucket.clone();
        Ok(self.bucket_message(&world, &name, &bucket))
    }

    async fn delete_bucket(&self, request: Request<storage::DeleteBucketRequest>) -> Result<(), Fault> {
        let caller = self.caller(&request)?;
        let name = bucket_name(&request.get_ref().name)?.to_owned();
        {
            let world = self.world();
            world.owner_only(&caller, "delete buckets")?;
            world.bucket(&name)?;
        }
        let page = self.gcs.list_objects(&name, &[("maxResults", "1")]).await?;
        if page["items"].as_array().is_some_and(|items| !items.is_empty()) {
            return Err(Fault::FailedPrecondition("The bucket you tried to delete is not empty.".into()));
        }
        self.gcs.delete_bucket(&name).await?;
        self.world().buckets.remove(&name);
        Ok(())
    }

    fn get_iam_policy(&self, request: Request<iam::GetIamPolicyRequest>) -> Result<iam::Policy, Fault> {
        let caller = self.caller(&request)?;
        let world = self.world();
        world.owner_only(&caller, "get bucket IAM policies")?;
        Ok(policy_message(&world.bucket(bucket_name(&request.get_ref().resource)?)?.policy))
    }

    fn set_iam_policy(&self, request: Request<iam::SetIamPolicyRequest>) -> Result<iam::Policy, Fault> {
        let caller = self.caller(&request)?;
        let mut world = self.world();
        world.owner_only(&caller, "set bucket IAM policies")?;
        let r = request.into_inner();
        let wanted = r.policy.ok_or_else(|| Fault::Invalid("Missing policy".into()))?;
        let name = bucket_name(&r.resource)?.to_owned();
        let bucket = world.bucket_mut(&name)?;
        if !wanted.etag.is_empty() && wanted.etag != bucket.policy.etag.to_string().into_bytes() {
            return Err(Fault::FailedPrecondition(
                "The policy was changed since it was read (etag mismatch): read it again".into(),
            ));
        }
        for binding in &wanted.bindings {
            if !binding.role.starts_with("roles/") {
                return Err(Fault::Invalid(format!(
                    "Role {} is not supported for this resource.",
                    binding.role
                )));
            }
            if let Some(bad) = binding.members.iter().find(|m| !m.contains(':')) {
                return Err(Fault::Invalid(format!("Invalid member: {bad}")));
            }
        }
        bucket.policy = Policy {
            version: wanted.version.max(1),
            bindings: wanted.bindings.into_iter().map(|b| (b.role, b.members)).collect(),
            etag: bucket.policy.etag + 1,
        };
        Ok(policy_message(&bucket.policy))
    }

    async fn list_objects(
        &self,
        request: Request<storage::ListObjectsRequest>,
    ) -> Result<storage::ListObjectsResponse, Fault> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let name = bucket_name(&r.parent)?.to_owned();
        self.world().authorize(&caller, &name, Permission::List)?;
        let query =
            [("prefix", r.prefix.as_str()), ("pageToken", r.page_token.as_str()), ("maxResults", "1000")];
        let page = self.gcs.list_objects(&name, &query).await?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        let next_page_token = page["nextPageToken"].as_str().unwrap_or_default().to_owned();
        let number =
            |v: &serde_json::Value| v.as_str().and_then(|s| s.parse().ok()).or(v.as_i64()).unwrap_or(0);
        let objects = items
            .iter()
            .map(|o| storage::Object {
                name: o["name"].as_str().unwrap_or_default().to_owned(),
                bucket: r.parent.clone(),
                generation: number(&o["generation"]),
                metageneration: number(&o["metageneration"]),
                size: number(&o["size"]),
                content_type: o["contentType"].as_str().unwrap_or_default().to_owned(),
                ..Default::default()
            })
            .collect();
        Ok(storage::ListObjectsResponse { objects, prefixes: vec![], next_page_token })
    }

    async fn delete_object(&self, request: Request<storage::DeleteObjectRequest>) -> Result<(), Fault> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let name = bucket_name(&r.bucket)?.to_owned();
        self.world().authorize(&caller, &name, Permission::Delete)?;
        self.gcs.delete_object(&name, &r.object).await
    }
}
