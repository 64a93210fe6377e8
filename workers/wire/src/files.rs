//! Files a client ships with its work, like Hadoop streaming's `-files`: a student's
//! `mapper.py` or `train.py`, read from their own directory, carried inside the job's
//! messages, and written into a fresh directory for every task that runs a command, which
//! runs there (never in the service's own working directory).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// At most this many files per job.
pub const MAX_FILES: usize = 32;

/// At most this many bytes in all per job: code, not data (data goes in the bucket).
pub const MAX_BYTES: u64 = 4 << 20;

/// The files shipped with one job; empty for most.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Shipped(Vec<ShippedFile>);

/// One shipped file: its bare name in the task's directory, its bytes, and whether it is
/// executable (so that `./mapper.sh` works as it did at home).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShippedFile {
    pub name: String,
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub executable: bool,
}

/// Why files could not be shipped or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("cannot read {path}: {source}", path = path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a regular file: ship files one by one", path = path.display())]
    NotAFile { path: PathBuf },
    #[error("two files are named `{name}`: the names of shipped files must differ")]
    Duplicate { name: String },
    #[error("{count} files shipped; at most {MAX_FILES} may go with one job")]
    TooMany { count: usize },
    #[error(
        "the shipped files come to {bytes} bytes, past the limit of {MAX_BYTES} ({biggest} is the \
         largest): ship code only, and put data in the bucket as an input"
    )]
    TooBig { bytes: u64, biggest: String },
    #[error("`{name}` is not a plain file name (no directories, `.` or `..`)")]
    BadName { name: String },
    #[error("cannot make the task's directory: {0}")]
    TaskDir(#[source] std::io::Error),
}

impl Shipped {
    /// Reads `paths` from this machine (relative ones from `base`), checking the limits;
    /// each file keeps its own name.
    pub fn read(base: &Path, paths: &[PathBuf]) -> Result<Self, FilesError> {
        if paths.len() > MAX_FILES {
            return Err(FilesError::TooMany { count: paths.len() });
        }
        let mut files: Vec<ShippedFile> = vec![];
        for given in paths {
            let path = base.join(given);
            let read = |source| FilesError::Read { path: path.clone(), source };
            let meta = std::fs::metadata(&path).map_err(read)?;
            if !meta.is_file() {
                return Err(FilesError::NotAFile { path });
            }
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if files.iter().any(|f| f.name == name) {
                return Err(FilesError::Duplicate { name });
            }
            let data = std::fs::read(&path).map_err(read)?;
            files.push(ShippedFile { name, data, executable: meta.permissions().mode() & 0o111 != 0 });
        }
        let shipped = Self(files);
        shipped.check()?;
        Ok(shipped)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The files' names, in the order given.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|f| f.name.as_str())
    }

    /// The limits and names, as a receiver checks them again: the sender may not be ours.
    fn check(&self) -> Result<(), FilesError> {
        if self.0.len() > MAX_FILES {
            return Err(FilesError::TooMany { count: self.0.len() });
        }
        let bytes = self.0.iter().map(|f| f.data.len() as u64).sum::<u64>();
        if bytes > MAX_BYTES {
            let biggest = self.0.iter().max_by_key(|f| f.data.len()).map(|f| f.name.clone());
            return Err(FilesError::TooBig { bytes, biggest: biggest.unwrap_or_default() });
        }
        for f in &self.0 {
            let plain =
                !f.name.is_empty() && f.name != "." && f.name != ".." && !f.name.contains(['/', '\0']);
            if !plain {
                return Err(FilesError::BadName { name: f.name.clone() });
            }
        }
        Ok(())
    }

    /// A fresh directory holding the files, for one task's command to run in; removed
    /// when dropped.
    pub fn task_dir(&self) -> Result<tempfile::TempDir, FilesError> {
        self.check()?;
        let dir = tempfile::Builder::new().prefix("lab-task-").tempdir().map_err(FilesError::TaskDir)?;
        for f in &self.0 {
            let mode = if f.executable { 0o755 } else { 0o644 };
            let mut out = std::fs::OpenOptions::new();
            std::os::unix::fs::OpenOptionsExt::mode(out.write(true).create_new(true), mode);
            out.open(dir.path().join(&f.name))
                .and_then(|mut file| file.write_all(&f.data))
                .map_err(FilesError::TaskDir)?;
        }
        Ok(dir)
    }
}

/// Bytes as one base64 string in JSON, not an array of numbers.
mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_travel_as_base64_and_land_in_a_fresh_directory_with_their_mode() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("mapper.py"), "print('hi')\n").unwrap();
        std::fs::write(home.path().join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(home.path().join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let shipped = Shipped::read(home.path(), &["mapper.py".into(), home.path().join("run.sh")]).unwrap();
        let json = serde_json::to_string(&shipped).unwrap();
        assert_eq!(
            json,
            r#"[{"name":"mapper.py","data":"cHJpbnQoJ2hpJykK"},{"name":"run.sh","data":"IyEvYmluL3NoCg==","executable":true}]"#
        );
        let back: Shipped = serde_json::from_str(&json).unwrap();
        let (one, two) = (back.task_dir().unwrap(), back.task_dir().unwrap());
        assert_ne!(one.path(), two.path());
        assert_eq!(std::fs::read_to_string(one.path().join("mapper.py")).unwrap(), "print('hi')\n");
        let mode =
            |name: &str| std::fs::metadata(one.path().join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode("mapper.py"), mode("run.sh")), (0o644, 0o755));
        let path = one.path().to_owned();
        drop(one);
        assert!(!path.exists());
    }

    #[test]
    fn limits_and_names_are_refused_with_what_is_allowed() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("big.bin"), vec![0u8; MAX_BYTES as usize + 1]).unwrap();
        std::fs::create_dir(home.path().join("dir")).unwrap();
        std::fs::create_dir(home.path().join("other")).unwrap();
        std::fs::write(home.path().join("a.py"), "").unwrap();
        std::fs::write(home.path().join("other/a.py"), "").unwrap();
        let read = |paths: &[&str]| {
            let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
            Shipped::read(home.path(), &paths).unwrap_err().to_string()
        };
        assert!(read(&["big.bin"]).starts_with(
            "the shipped files come to 4194305 bytes, past the limit of 4194304 (big.bin is the largest)"
        ));
        assert!(read(&["dir"]).ends_with("dir is not a regular file: ship files one by one"));
        assert!(read(&["missing.py"]).contains("missing.py: No such file"));
        assert_eq!(
            read(&["a.py", "other/a.py"]),
            "two files are named `a.py`: the names of shipped files must differ"
        );
        assert_eq!(read(&["a.py"; 33]), "33 files shipped; at most 32 may go with one job");
        // From a sender that is not ours: no way out of the task's directory.
        let forged: Shipped = serde_json::from_str(r#"[{"name":"../x","data":""}]"#).unwrap();
        assert_eq!(
            forged.task_dir().unwrap_err().to_string(),
            "`../x` is not a plain file name (no directories, `.` or `..`)"
        );
    }
}
