//! Where job data lives, through `object_store`: local paths, `file://` URLs, `s3://`
//! buckets (configured from the standard `AWS_*` environment: `AWS_ENDPOINT` points at an
//! emulator or LocalStack, `AWS_ALLOW_HTTP=true` for a plain-HTTP one), and `gs://` buckets
//! (from the `GOOGLE_*` environment: `GOOGLE_SERVICE_ACCOUNT` names a key file, whose
//! `gcs_base_url` points at an emulator).
//!
//! A [`Location`] is a store plus a key prefix. Object stores have no rename, so outputs are
//! written under a temporary key and published once (`rename`, which is an atomic rename on
//! a local file system and a single copy on an object store).

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};

/// A store and a key prefix inside it.
#[derive(Debug, Clone)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
    /// The directory, when the store is the local file system.
    pub local_dir: Option<std::path::PathBuf>,
}

/// An input file and its size.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InputFile {
    pub url: String,
    pub size: u64,
}

impl Location {
    /// Parses a local path, `file://` URL, or object store URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        let path = match url.strip_prefix("file://") {
            Some(p) => p.to_owned(),
            None if url.starts_with("s3://") || url.starts_with("gs://") => {
                let built: Result<Arc<dyn ObjectStore>, _> = if url.starts_with("s3://") {
                    let s3 = object_store::aws::AmazonS3Builder::from_env().with_url(url).build();
                    s3.map(|s| Arc::new(s) as _)
                } else {
                    let gcs = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url).build();
                    gcs.map(|s| Arc::new(s) as _)
                };
                let store = built.map_err(|e| format!("`{url}`: {e}"))?;
                let key = url[5..].split_once('/').map_or("", |(_, k)| k).trim_end_matches('/');
                return Ok(Self { store, prefix: Path::from(key), local_dir: None });
            }
            None if url.contains("://") => {
                let parsed = url::Url::parse(url).map_err(|e| format!("`{url}`: {e}"))?;
                let (store, prefix) = object_store::parse_url_opts(&parsed, std::env::vars())
                    .map_err(|e| format!("`{url}`: {e}"))?;
                return Ok(Self { store: Arc::from(store), prefix, local_dir: None });
            }
            None => url.to_owned(),
        };
        let abs = std::path::absolute(&path).map_err(|e| format!("`{url}`: {e}"))?;
        let key = abs.to_string_lossy().trim_start_matches('/').to_owned();
        Ok(Self { store: Arc::new(LocalFileSystem::new()), prefix: Path::from(key), local_dir: Some(abs) })
    }

    /// The key of `name` under this location.
    pub fn key(&self, name: &str) -> Path {
        name.split('/').fold(self.prefix.clone(), |p, part| p.child(part))
    }

    pub async fn get(&self, key: &Path) -> Result<bytes::Bytes, String> {
        let r = self.store.get(key).await.map_err(|e| format!("reading {key}: {e}"))?;
        r.bytes().await.map_err(|e| format!("reading {key}: {e}"))
    }

    pub async fn get_range(&self, key: &Path, range: std::ops::Range<u64>) -> Result<bytes::Bytes, String> {
        if range.start >= range.end {
            return Ok(bytes::Bytes::new());
        }
        self.store.get_range(key, range).await.map_err(|e| format!("reading {key}: {e}"))
    }

    pub async fn put(&self, key: &Path, data: Vec<u8>) -> Result<(), String> {
        self.store
            .put(key, PutPayload::from(data))
            .await
            .map(|_| ())
            .map_err(|e| format!("writing {key}: {e}"))
    }

    /// Publishes `from` as `to`, once.
    pub async fn publish(&self, from: &Path, to: &Path) -> Result<(), String> {
        self.store.rename(from, to).await.map_err(|e| format!("publishing {from} as {to}: {e}"))
    }

    pub async fn delete(&self, key: &Path) -> Result<(), String> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(format!("deleting {key}: {e}")),
        }
    }

    /// The size of the object at this location.
    pub async fn size(&self) -> Result<u64, String> {
        self.store.head(&self.prefix).await.map(|m| m.size).map_err(|e| format!("{}: {e}", self.prefix))
    }

    /// Every object under `name` (recursively).
    pub async fn list(&self, name: &str) -> Result<Vec<object_store::ObjectMeta>, String> {
        let prefix = if name.is_empty() { self.prefix.clone() } else { self.key(name) };
        self.store.list(Some(&prefix)).try_collect().await.map_err(|e| format!("listing {prefix}: {e}"))
    }

    /// Removes everything under `name`, including (locally) the directories.
    pub async fn remove_all(&self, name: &str) -> Result<(), String> {
        for meta in self.list(name).await? {
            self.delete(&meta.location).await?;
        }
        if let Some(dir) = &self.local_dir {
            let _ = std::fs::remove_dir_all(dir.join(name));
        }
        Ok(())
    }
}

/// The input files of a job: each input is a file, or a prefix whose objects are all
/// taken (except names starting with `_` or `.`, such as markers and temporaries).
pub async fn input_files(inputs: &[String]) -> Result<Vec<InputFile>, String> {
    let mut files = vec![];
    for input in inputs {
        let loc = Location::parse(input)?;
        match loc.size().await {
            Ok(size) => files.push(InputFile { url: input.clone(), size }),
            Err(_) => {
                let strip = loc.prefix.as_ref().len();
                let relative = |m: &object_store::ObjectMeta| {
                    m.location.as_ref()[strip..].trim_start_matches('/').to_owned()
                };
                let mut found: Vec<String> = loc
                    .list("")
                    .await?
                    .iter()
                    .map(relative)
                    .filter(|rel| rel.split('/').all(|p| !p.starts_with('_') && !p.starts_with('.')))
                    .collect();
                if found.is_empty() {
                    return Err(format!("input `{input}` matches no file"));
                }
                found.sort();
                let base = input.trim_end_matches('/');
                for rel in found {
                    let url = format!("{base}/{rel}");
                    let size = Location::parse(&url)?.size().await?;
                    files.push(InputFile { url, size });
                }
            }
        }
    }
    Ok(files)
}
