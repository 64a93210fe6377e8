//! What `destroy --archive` keeps of a student's bucket, and where: every object except
//! the seeded datasets', each under its key inside the student's archive directory.

use std::path::{Component, Path, PathBuf};

use crate::ProviderError;

/// Where object `key` of a student's bucket goes inside `into`, or `None` when there is
/// nothing to keep: a seeded dataset's object (`datasets/<name>/…`, `name` in `datasets`)
/// or a directory marker (`out/`). A key that would leave `into` (`..`, a root) is refused,
/// naming it.
pub fn destination(into: &Path, key: &str, datasets: &[&str]) -> Result<Option<PathBuf>, ProviderError> {
    let seeded = key
        .strip_prefix("datasets/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(name, _)| datasets.contains(&name));
    if seeded || key.is_empty() || key.ends_with('/') {
        return Ok(None);
    }
    let relative = Path::new(key.trim_start_matches('/'));
    if relative.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(ProviderError::invalid(format!(
            "object `{key}` cannot be archived under {}: its key leaves the directory",
            into.display()
        )));
    }
    Ok(Some(into.join(relative)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_datasets_and_markers_are_left_out_and_keys_stay_inside() {
        let into = Path::new("/archive/ada");
        let dest = |key| destination(into, key, &["corpus"]).map_err(|e| e.to_string());
        assert_eq!(dest("out/wordcount/part-00000"), Ok(Some(into.join("out/wordcount/part-00000"))));
        assert_eq!(dest("datasets/corpus/part-0"), Ok(None));
        assert_eq!(dest("datasets/mine/notes.txt"), Ok(Some(into.join("datasets/mine/notes.txt"))));
        assert_eq!(dest("out/"), Ok(None));
        assert_eq!(dest("/abs"), Ok(Some(into.join("abs"))));
        assert!(dest("out/../../etc/passwd").unwrap_err().contains("leaves the directory"));
    }
}
