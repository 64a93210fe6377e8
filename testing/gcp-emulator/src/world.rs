//! What the emulator holds: the project's buckets (their labels and IAM policies; objects
//! live in fake-gcs-server), the XML API's multipart uploads under way, its service
//! accounts and their keys, its Compute Engine resources, its GKE clusters, and who may do
//! what. Pure state, no I/O: both protocols answer from it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::compute::Compute;
use crate::container::Container;
use crate::keys;
use crate::xml::Upload;

/// An error as Google's APIs answer it: gRPC status and HTTP code alike.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    Invalid(String),
    Unauthenticated(String),
    Denied(String),
    NotFound(String),
    AlreadyExists(String),
    /// Compute Engine's and Cloud Storage's failed precondition (HTTP 412).
    FailedPrecondition(String),
    /// A failed precondition as the APIs on google.rpc's HTTP mapping answer it (400), e.g.
    /// GKE's "incompatible operation" under way or a stale label fingerprint.
    Precondition(String),
    /// A quota is used up.
    Exhausted(String),
    /// Compute Engine: the resource is used by another (a network by its subnetworks).
    InUse(String),
    /// Compute Engine: an operation on the resource is still under way.
    NotReady(String),
    Internal(String),
}

impl Fault {
    /// The HTTP status, Google's status name, the gRPC code, and the reason and operation
    /// error code Compute Engine gives: one table for every protocol.
    fn codes(&self) -> (u16, &'static str, tonic::Code, &'static str, &'static str) {
        use tonic::Code;
        match self {
            Self::Invalid(_) => {
                (400, "INVALID_ARGUMENT", Code::InvalidArgument, "invalid", "INVALID_FIELD_VALUE")
            }
            Self::Unauthenticated(_) => {
                (401, "UNAUTHENTICATED", Code::Unauthenticated, "required", "UNAUTHENTICATED")
            }
            Self::Denied(_) => {
                (403, "PERMISSION_DENIED", Code::PermissionDenied, "forbidden", "PERMISSION_DENIED")
            }
            Self::NotFound(_) => (404, "NOT_FOUND", Code::NotFound, "notFound", "RESOURCE_NOT_FOUND"),
            Self::AlreadyExists(_) => {
                (409, "ALREADY_EXISTS", Code::AlreadyExists, "alreadyExists", "RESOURCE_ALREADY_EXISTS")
            }
            Self::FailedPrecondition(_) => {
                (412, "FAILED_PRECONDITION", Code::FailedPrecondition, "conditionNotMet", "CONDITION_NOT_MET")
            }
            Self::Precondition(_) => (
                400,
                "FAILED_PRECONDITION",
                Code::FailedPrecondition,
                "failedPrecondition",
                "CONDITION_NOT_MET",
            ),
            Self::Exhausted(_) => {
                (429, "RESOURCE_EXHAUSTED", Code::ResourceExhausted, "quotaExceeded", "QUOTA_EXCEEDED")
            }
            Self::InUse(_) => (
                400,
                "FAILED_PRECONDITION",
                Code::FailedPrecondition,
                "resourceInUseByAnotherResource",
                "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE",
            ),
            Self::NotReady(_) => (
                400,
                "FAILED_PRECONDITION",
                Code::FailedPrecondition,
                "resourceNotReady",
                "RESOURCE_NOT_READY",
            ),
            Self::Internal(_) => (500, "INTERNAL", Code::Internal, "backendError", "INTERNAL_ERROR"),
        }
    }

    /// The HTTP status it is answered with.
    pub fn http_status(&self) -> u16 {
        self.codes().0
    }

    pub fn message(&self) -> &str {
        match self {
            Self::Invalid(m)
            | Self::Unauthenticated(m)
            | Self::Denied(m)
            | Self::NotFound(m)
            | Self::AlreadyExists(m)
            | Self::FailedPrecondition(m)
            | Self::Precondition(m)
            | Self::Exhausted(m)
            | Self::InUse(m)
            | Self::NotReady(m)
            | Self::Internal(m) => m,
        }
    }

    /// Google's JSON error body.
    pub fn body(&self) -> serde_json::Value {
        let (code, status, ..) = self.codes();
        serde_json::json!({"error": {"code": code, "message": self.message(), "status": status}})
    }

    /// As a google.rpc `Status` (a GKE operation's `error`): the gRPC code's number and
    /// the message.
    pub fn rpc_status(&self) -> serde_json::Value {
        serde_json::json!({"code": self.codes().2 as i32, "message": self.message()})
    }

    /// Compute Engine's error body: no status name, the reason in `errors`.
    pub fn compute_body(&self) -> serde_json::Value {
        let (code, _, _, reason, _) = self.codes();
        let message = self.message();
        serde_json::json!({"error": {"code": code, "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}]}})
    }

    /// The fields of a Compute Engine operation that ended with this error.
    pub fn operation_error(&self) -> serde_json::Value {
        let (status, _, _, _, code) = self.codes();
        let reason = http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason());
        serde_json::json!({
            "error": {"errors": [{"code": code, "message": self.message()}]},
            "httpErrorStatusCode": status,
            "httpErrorMessage": reason.unwrap_or_default().to_uppercase(),
        })
    }
}

impl From<Fault> for tonic::Status {
    fn from(f: Fault) -> Self {
        tonic::Status::new(f.codes().2, f.message())
    }
}

/// Who is calling: the project's owner (the key the emulator starts with) or one of its
/// service accounts.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    Owner,
    Account(String),
}

/// What a caller wants to do to a bucket's objects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Permission {
    Get,
    List,
    Create,
    Delete,
}

impl Permission {
    fn name(self) -> &'static str {
        match self {
            Self::Get => "storage.objects.get",
            Self::List => "storage.objects.list",
            Self::Create => "storage.objects.create",
            Self::Delete => "storage.objects.delete",
        }
    }

    /// Whether `role` grants it (the predefined storage roles).
    fn granted_by(self, role: &str) -> bool {
        match role {
            "roles/storage.admin" | "roles/storage.objectAdmin" => true,
            "roles/storage.objectViewer" => matches!(self, Self::Get | Self::List),
            "roles/storage.objectCreator" => self == Self::Create,
            "roles/storage.objectUser" => true,
            _ => false,
        }
    }
}

/// A bucket's metadata.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub labels: BTreeMap<String, String>,
    pub created: SystemTime,
    pub metageneration: i64,
    pub policy: Policy,
}

/// A bucket's IAM policy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub version: i32,
    /// Role → members.
    pub bindings: Vec<(String, Vec<String>)>,
    /// Moves with every change: a set naming an older one is refused.
    pub etag: u64,
}

/// A service account.
#[derive(Debug, Clone)]
pub struct Account {
    pub account_id: String,
    pub unique_id: String,
    pub display_name: String,
    pub description: String,
    /// Key id → its public half and when it was made.
    pub keys: BTreeMap<String, (Vec<u8>, SystemTime)>,
}

/// The project the emulator serves.
pub struct World {
    pub project: String,
    pub project_number: u64,
    pub owner: String,
    owner_key: (String, Vec<u8>),
    /// The token endpoint its key files name (see oauth.rs).
    pub token_uri: String,
    /// The access tokens it issued: their account and until when they hold.
    tokens: BTreeMap<String, (String, SystemTime)>,
    pub buckets: BTreeMap<String, Bucket>,
    /// The XML API's multipart uploads under way, by upload id.
    pub uploads: BTreeMap<String, Upload>,
    pub accounts: BTreeMap<String, Account>,
    pub compute: Compute,
    pub container: Container,
    next_id: u64,
}

impl World {
    /// An empty project whose owner holds the key `owner_key`.
    pub fn new(project: &str, owner: String, owner_key: &keys::Issued) -> Self {
        Self {
            project: project.to_owned(),
            project_number: 424_242_424_242,
            owner,
            owner_key: (owner_key.id.clone(), owner_key.public.clone()),
            token_uri: owner_key.file["token_uri"].as_str().unwrap_or_default().to_owned(),
            tokens: BTreeMap::new(),
            buckets: BTreeMap::new(),
            uploads: BTreeMap::new(),
            accounts: BTreeMap::new(),
            compute: Compute::default(),
            container: Container::default(),
            next_id: 100_000_000_000_000_000,
        }
    }

    /// Brings the operations of Compute Engine and GKE to where they stand `now`: GKE's
    /// first, whose clusters keep the networks they use from being deleted.
    pub fn settle(&mut self, now: SystemTime) {
        self.container.settle(now);
        let users = self.container.network_users();
        self.compute.settle(&self.project, now, &users);
    }

    /// A fresh numeric id (service accounts' unique ids, key ids, Compute Engine ids).
    pub fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Who holds the bearer token of `authorization`: a self-signed JWT (`Bearer <JWT>`),
    /// checked against the keys this project issued, or an access token it issued.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, Fault> {
        let unauthenticated = |why: String| {
            Fault::Unauthenticated(format!("Request had invalid authentication credentials: {why}"))
        };
        let token = authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .ok_or_else(|| unauthenticated("no bearer token".into()))?;
        if let Some((email, until)) = self.tokens.get(token) {
            if *until < SystemTime::now() {
                return Err(unauthenticated("the access token has expired".into()));
            }
            return Ok(self.caller(email.clone()));
        }
        let (signed, message, signature) = keys::claims(token).map_err(unauthenticated)?;
        let public = self.keys(&signed.email).find(|(id, _)| *id == signed.key).map(|(_, public)| public);
        let public =
            public.ok_or_else(|| unauthenticated(format!("no key {} of {}", signed.key, signed.email)))?;
        if !keys::verify(public, &message, &signature) {
            return Err(unauthenticated("the JWT's signature does not verify".into()));
        }
        Ok(self.caller(signed.email))
    }

    /// A new access token of `email`'s, good until `until`.
    pub fn issue_token(&mut self, email: String, until: SystemTime) -> String {
        // Unique by the counter, unguessable by the random part.
        let mut random = [0u8; 16];
        let _ = aws_lc_rs::rand::fill(&mut random);
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let token = format!("ya29.{:x}{hex}", self.fresh_id());
        self.tokens.insert(token.clone(), (email, until));
        token
    }

    /// The keys issued to `email` (the owner's or a service account's): id and public half.
    pub fn keys<'a>(&'a self, email: &str) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        let owner = (email == self.owner).then_some((self.owner_key.0.as_str(), self.owner_key.1.as_slice()));
        let accounts = self.accounts.get(email).into_iter().flat_map(|a| &a.keys);
        owner.into_iter().chain(accounts.map(|(id, (public, _))| (id.as_str(), public.as_slice())))
    }

    /// The caller holding a key of `email`.
    pub fn caller(&self, email: String) -> Caller {
        if email == self.owner {
            Caller::Owner
        } else {
            Caller::Account(email)
        }
    }

    /// Refuses anyone but the owner (bucket and IAM administration).
    pub fn owner_only(&self, caller: &Caller, what: &str) -> Result<(), Fault> {
        match caller {
            Caller::Owner => Ok(()),
            Caller::Account(email) => Err(Fault::Denied(format!(
                "{email} does not have permission to {what} in project {}",
                self.project
            ))),
        }
    }

    /// Refuses `caller` unless the bucket exists and its policy grants it `permission` (the
    /// owner may do anything).
    pub fn authorize(&self, caller: &Caller, bucket: &str, permission: Permission) -> Result<(), Fault> {
        let policy = &self.bucket(bucket)?.policy;
        let Caller::Account(email) = caller else { return Ok(()) };
        let member = format!("serviceAccount:{email}");
        let granted = {
            policy
                .bindings
                .iter()
                .any(|(role, members)| permission.granted_by(role) && members.contains(&member))
        };
        if granted {
            Ok(())
        } else {
            Err(Fault::Denied(format!(
                "{email} does not have {} access to the Google Cloud Storage bucket. Permission '{}' denied on resource (or it may not exist).",
                permission.name(),
                permission.name()
            )))
        }
    }

    pub fn bucket(&self, name: &str) -> Result<&Bucket, Fault> {
        self.buckets.get(name).ok_or_else(|| no_bucket(name))
    }

    pub fn bucket_mut(&mut self, name: &str) -> Result<&mut Bucket, Fault> {
        self.buckets.get_mut(name).ok_or_else(|| no_bucket(name))
    }

    /// The account of `email`, or Google's 404.
    pub fn account(&self, email: &str) -> Result<&Account, Fault> {
        self.accounts.get(email).ok_or_else(|| no_account(&self.project, email))
    }

    pub fn account_mut(&mut self, email: &str) -> Result<&mut Account, Fault> {
        self.accounts.get_mut(email).ok_or_else(|| no_account(&self.project, email))
    }
}

fn no_bucket(name: &str) -> Fault {
    Fault::NotFound(format!("The specified bucket does not exist: {name}"))
}

fn no_account(project: &str, email: &str) -> Fault {
    Fault::NotFound(format!("Service account projects/{project}/serviceAccounts/{email} not found."))
}
