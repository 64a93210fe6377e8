//! Small file-system helpers with crash-safe writes and provider-shaped errors.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use labctl_provider_api::ProviderError;
use serde::de::DeserializeOwned;

pub fn io_error(path: &Path, e: io::Error) -> ProviderError {
    ProviderError::fatal(format!("{}: {e}", path.display()))
}

/// Writes `path` through a temporary sibling, fsync and rename: readers see the old
/// content or the new, never a part.
pub fn write_with(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<(), ProviderError> {
    let parent = path.parent().expect("paths written here have a parent");
    fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let file = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        fill(&mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_error(path, e)
    })
}

pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ProviderError> {
    write_with(path, mode, |out| out.write_all(bytes))
}

/// Parses a JSON file; `None` if it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, ProviderError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ProviderError::fatal(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

pub fn remove_file(path: &Path) -> Result<(), ProviderError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io_error(path, e)),
        _ => Ok(()),
    }
}

pub fn remove_dir_all(path: &Path) -> Result<(), ProviderError> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io_error(path, e)),
        _ => Ok(()),
    }
}

/// Removes the now-empty directories above `path`, up to but not including `stop`, so
/// that a destroyed lab leaves no trace. Stops at the first directory that is not empty.
pub fn prune_empty(stop: &Path, path: &Path) {
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == stop || !d.starts_with(stop) || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}
