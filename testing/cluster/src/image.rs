//! Container images without a registry: an OCI image archive of one layer, written from
//! files on this host (a dynamically linked binary brings the shared libraries `ldd`
//! names), for `ctr images import` into each node's containerd.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use labctl_test_host::netns::run;
use serde_json::json;
use sha2::{Digest, Sha256};

/// What goes into an image.
#[derive(Debug, Clone)]
pub struct Image {
    /// Its reference, e.g. `labctl.test/workers:dev`.
    pub name: String,
    /// Host files and where they go in the image (`/usr/local/bin/lab-mapreduce`).
    pub files: Vec<(PathBuf, String)>,
    pub entrypoint: Vec<String>,
}

impl Image {
    /// Writes the image as an OCI archive at `archive`, staging its layer in `work`.
    pub fn write(&self, work: &Path, archive: &Path) -> io::Result<()> {
        let stage = work.join("rootfs");
        let blobs = work.join("oci/blobs/sha256");
        fs::create_dir_all(&blobs)?;
        fs::create_dir_all(stage.join("tmp"))?;
        fs::create_dir_all(stage.join("etc"))?;
        fs::write(stage.join("etc/passwd"), "root:x:0:0:root:/root:/sbin/nologin\n")?;
        for (from, to) in &self.files {
            copy_into(&stage, from, to)?;
            for library in shared_libraries(from)? {
                let path = library.display().to_string();
                copy_into(&stage, &library, &path)?;
            }
        }
        let layer = work.join("layer.tar");
        run(Command::new("chmod").arg("1777").arg(stage.join("tmp")))?;
        run(Command::new("tar")
            .args(["--numeric-owner", "--owner=0", "--group=0", "--sort=name", "-C"])
            .arg(&stage)
            .arg("-cf")
            .arg(&layer)
            .arg("."))?;
        let layer = blob(&blobs, &fs::read(&layer)?)?;
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
                "Entrypoint": self.entrypoint,
                "WorkingDir": "/",
            },
            "rootfs": { "type": "layers", "diff_ids": [layer.0] },
        });
        let config = blob(&blobs, &serde_json::to_vec(&config)?)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1 },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.0, "size": layer.1 }],
        });
        let manifest = blob(&blobs, &serde_json::to_vec(&manifest)?)?;
        let index = json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest.0,
                "size": manifest.1,
                "platform": { "architecture": "amd64", "os": "linux" },
                "annotations": {
                    "io.containerd.image.name": self.name,
                    "org.opencontainers.image.ref.name": self.name,
                },
            }],
        });
        let oci = work.join("oci");
        fs::write(oci.join("index.json"), serde_json::to_vec(&index)?)?;
        fs::write(oci.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        run(Command::new("tar").arg("-C").arg(&oci).arg("-cf").arg(archive).arg("."))?;
        fs::remove_dir_all(stage)?;
        fs::remove_dir_all(oci)
    }
}

/// Stores `data` in `blobs` under its digest; returns the digest and size.
fn blob(blobs: &Path, data: &[u8]) -> io::Result<(String, usize)> {
    let hex: String = Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect();
    fs::write(blobs.join(&hex), data)?;
    Ok((format!("sha256:{hex}"), data.len()))
}

fn copy_into(stage: &Path, from: &Path, to: &str) -> io::Result<()> {
    let target = stage.join(to.trim_start_matches('/'));
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::copy(from, &target).map(drop)
}

/// The shared libraries and loader a dynamically linked executable needs (none for a
/// static one), as `ldd` resolves them on this host.
fn shared_libraries(binary: &Path) -> io::Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(binary).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, resolved)) => resolved.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}
