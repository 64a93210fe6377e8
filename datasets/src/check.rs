//! The independent word count the MapReduce smoke workload is checked against: a plain
//! sequential count of the dataset's files in this process, sharing no code with the engine.

use std::collections::HashMap;
use std::path::Path;

/// Compares the job's output (`part-r-*` files of `word<TAB>count`) with a fresh count of
/// the dataset's files.
pub fn wordcount(dataset: &Path, output: &Path) -> Result<(), String> {
    let expected = count(dataset)?;
    let mut got: HashMap<String, u64> = HashMap::new();
    for file in files(output, "part-r-")? {
        let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        for line in text.lines() {
            let (word, n) = line
                .split_once('\t')
                .ok_or_else(|| format!("malformed output line `{line}` in {}", file.display()))?;
            let n: u64 = n.parse().map_err(|_| format!("malformed count in `{line}`"))?;
            if got.insert(word.to_owned(), n).is_some() {
                return Err(format!("`{word}` appears in two output partitions"));
            }
        }
    }
    same_counts("the word count output", &expected, &got)
}

/// Whether `got`, what `what` counted, equals the independent count `expected`; else how
/// many words differ.
pub fn same_counts(
    what: &str,
    expected: &HashMap<String, u64>,
    got: &HashMap<String, u64>,
) -> Result<(), String> {
    if got == expected {
        return Ok(());
    }
    let wrong = expected.iter().filter(|(w, n)| got.get(*w) != Some(n)).count()
        + got.keys().filter(|w| !expected.contains_key(*w)).count();
    Err(format!("{what} differs from an independent count for {wrong} of {} words", expected.len()))
}

/// A sequential count of the words (ASCII letter runs, lower-cased) of the dataset's files.
pub fn count(dataset: &Path) -> Result<HashMap<String, u64>, String> {
    let mut counts = HashMap::new();
    for file in files(dataset, "")? {
        let text = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        for word in text.split(|b| !b.is_ascii_alphabetic()).filter(|w| !w.is_empty()) {
            *counts.entry(String::from_utf8_lossy(word).to_ascii_lowercase()).or_default() += 1;
        }
    }
    Ok(counts)
}

/// Files in `dir` whose names start with `prefix`, skipping `_` and `.` names.
fn files(dir: &Path, prefix: &str) -> Result<Vec<std::path::PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut out: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            p.is_file() && name.starts_with(prefix) && !name.starts_with('_') && !name.starts_with('.')
        })
        .collect();
    out.sort();
    Ok(out)
}
