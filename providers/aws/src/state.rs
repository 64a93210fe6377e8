//! The `s3` state backend: state as one S3 object (`s3://bucket/key`) and its lock as a
//! second object (`key.lock`) created with a conditional write (`If-None-Match: *`). Turn
//! on bucket versioning to keep every earlier state.
//!
//! The engine saves state synchronously; these calls block on the runtime in place, which
//! needs labctl's multi-threaded runtime.

use std::io;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use labctl_provider_api::RemoteState;

/// How long a new lock object settles before it is read back to check it is still ours.
const LOCK_SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

/// Where a state lives in S3, and a client to reach it.
#[derive(Debug, Clone)]
pub struct S3Object {
    client: aws_sdk_s3::Client,
    pub bucket: String,
    pub key: String,
}

/// The S3 settings state access uses: those of the lab's AWS provider if it has one, else
/// the standard AWS chain.
#[derive(Debug, Clone, Default)]
pub(crate) struct S3Settings {
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub profile: Option<String>,
}

impl S3Object {
    /// `s3://bucket/key`, if `url` is one.
    pub fn parse(url: &str) -> Option<(String, String)> {
        let (bucket, key) = url.strip_prefix("s3://")?.split_once('/')?;
        (!bucket.is_empty() && !key.is_empty()).then(|| (bucket.to_owned(), key.to_owned()))
    }

    pub(crate) fn connect(bucket: String, key: String, settings: &S3Settings) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &settings.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(endpoint) = &settings.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        let shared = block(loader.load());
        let path_style = settings.endpoint.is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some();
        let config = aws_sdk_s3::config::Builder::from(&shared).force_path_style(path_style).build();
        Self { client: aws_sdk_s3::Client::from_conf(config), bucket, key }
    }

    fn lock_key(&self) -> String {
        format!("{}.lock", self.key)
    }

    fn get_key(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        match block(self.client.get_object().bucket(&self.bucket).key(key).send()) {
            Ok(out) => {
                block(out.body.collect()).map(|b| Some(b.into_bytes().to_vec())).map_err(io::Error::other)
            }
            Err(e) if e.code() == Some("NoSuchKey") => Ok(None),
            Err(e) => Err(s3_error(&format!("s3://{}/{key}", self.bucket), &e)),
        }
    }
}

impl RemoteState for S3Object {
    fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    fn get(&self) -> io::Result<Option<Vec<u8>>> {
        self.get_key(&self.key)
    }

    fn put(&self, bytes: Vec<u8>) -> io::Result<()> {
        block(
            self.client.put_object().bucket(&self.bucket).key(&self.key).body(ByteStream::from(bytes)).send(),
        )
        .map(|_| ())
        .map_err(|e| s3_error(&self.url(), &e))
    }

    fn create_lock(&self, bytes: Vec<u8>) -> io::Result<bool> {
        let key = self.lock_key();
        let body = ByteStream::from(bytes.clone());
        let sent = block(
            self.client.put_object().bucket(&self.bucket).key(&key).if_none_match("*").body(body).send(),
        );
        match sent {
            // S3 makes the conditional write atomic; S3-compatible stores that check and then
            // write (moto, some self-hosted servers) can let two writers through within
            // milliseconds of each other. Reading the lock back after a short settle makes
            // the one overwritten notice that it lost.
            Ok(_) => {
                block(tokio::time::sleep(LOCK_SETTLE));
                Ok(self.get_key(&key)?.is_some_and(|held| held == bytes))
            }
            Err(e) if matches!(e.code(), Some("PreconditionFailed" | "ConditionalRequestConflict")) => {
                Ok(false)
            }
            Err(e) => Err(s3_error(&format!("s3://{}/{key}", self.bucket), &e)),
        }
    }

    fn get_lock(&self) -> io::Result<Option<Vec<u8>>> {
        self.get_key(&self.lock_key())
    }

    fn delete_lock(&self) -> io::Result<()> {
        block(self.client.delete_object().bucket(&self.bucket).key(self.lock_key()).send())
            .map(|_| ())
            .map_err(|e| s3_error(&self.url(), &e))
    }
}

fn s3_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    what: &str,
    e: &aws_sdk_s3::error::SdkError<E, R>,
) -> io::Error {
    let detail = match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                s.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            s
        }
    };
    io::Error::other(format!("{what}: {detail}"))
}

/// Runs a future to completion from synchronous code inside labctl's runtime.
fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}
