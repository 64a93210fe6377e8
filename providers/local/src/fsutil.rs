//! Small file-system helpers with crash-safe writes and provider-shaped errors.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use labctl_provider_api::ProviderError;
use serde::de::DeserializeOwned;

pub fn io_error(path: &Path, e: io::Error) -> ProviderError {
    ProviderError::fatal(format!("{}: {e}", path.display()))
}

/// The temporary sibling `path` is written through. Its name is fixed, so a run that dies
/// mid-write leaves one that the next write of the same file reuses, and that
/// [`remove_file`] removes with the file.
fn temp_path(path: &Path) -> PathBuf {
    path.with_file_name(format!(".{}.tmp", path.file_name().unwrap_or_default().to_string_lossy()))
}

/// Writes `path` through a temporary sibling, fsync and rename: readers see the old
/// content or the new, never a part. One writer per path at a time (the state lock).
pub fn write_with(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<(), ProviderError> {
    let parent = path.parent().expect("paths written here have a parent");
    fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
    let tmp = temp_path(path);
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

/// Removes `path` and any temporary left by an interrupted write of it.
pub fn remove_file(path: &Path) -> Result<(), ProviderError> {
    for p in [temp_path(path), path.to_owned()] {
        match fs::remove_file(&p) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(io_error(&p, e)),
            _ => {}
        }
    }
    Ok(())
}

pub fn remove_dir_all(path: &Path) -> Result<(), ProviderError> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io_error(path, e)),
        _ => Ok(()),
    }
}

/// Removes the now-empty directories above `path`, up to but not including `stop`, so
/// that a destroyed lab leaves no trace. Stops at the first directory that is not empty;
/// one already removed (by a concurrent delete) does not stop it, so whichever delete
/// empties a directory last always goes on to its parent.
pub fn prune_empty(stop: &Path, path: &Path) {
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == stop || !d.starts_with(stop) {
            break;
        }
        match fs::remove_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(_) => break,
        }
        dir = d.parent();
    }
}
