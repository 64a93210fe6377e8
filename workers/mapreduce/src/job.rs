//! What a job computes: the built-in jobs, the streaming (external command) job, and the
//! test jobs the acceptance tests use. Map and reduce functions see whole byte buffers and
//! emit through a [`Collector`], which applies the job's combiner as records arrive.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use labctl_wire::files::Shipped;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::collect::{Collector, Combine};

/// A job as submitted: what to compute, over what, into where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub job: JobKind,
    /// Files or prefixes (directories), as paths or URLs (`file://`, `s3://`).
    pub inputs: Vec<String>,
    /// Where `part-r-NNNNN` files and `_SUCCESS` go.
    pub output: String,
    pub reduces: u32,
    pub combiner: bool,
    /// Files larger than this are split on line boundaries.
    pub split_size: u64,
    pub task_timeout_ms: u64,
    pub max_attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobKind {
    /// Words are maximal runs of ASCII letters, lowercased; output `word<TAB>count`.
    WordCount,
    /// Output `word<TAB>doc1,doc2,...`: the sorted, de-duplicated documents holding the word.
    InvertedIndex,
    /// Lines matching a regular expression; output `doc:offset<TAB>line`.
    Grep { pattern: String },
    /// Mapper and reducer are shell commands reading lines on stdin and writing
    /// `key<TAB>value` lines, like Hadoop Streaming; each call runs in a fresh directory
    /// holding the job's shipped `files` (the student's `mapper.py`, …).
    Streaming {
        mapper: String,
        reducer: String,
        #[serde(default, skip_serializing_if = "Shipped::is_empty")]
        files: Shipped,
    },
    /// Test job: every map and reduce call records its start and end in `probe_dir` and
    /// sleeps a random time in the given range; output is a word count.
    SleepProbe { probe_dir: String, map_ms: (u64, u64), reduce_ms: (u64, u64) },
    /// Test job: each call exits the process (1/3), or stalls up to 10 s (1/3), or works;
    /// output is a word count.
    Crash,
}

impl JobKind {
    /// The combiner this job uses when combining is on.
    pub fn combine(&self) -> Combine {
        match self {
            Self::WordCount | Self::SleepProbe { .. } | Self::Crash => Combine::Sum,
            Self::InvertedIndex => Combine::Distinct,
            Self::Grep { .. } | Self::Streaming { .. } => Combine::None,
        }
    }

    /// Runs the map function over `data` (whole lines of document `doc`).
    pub fn map(&self, doc: &str, offset: u64, data: &[u8], out: &mut Collector) -> Result<(), String> {
        match self {
            Self::WordCount => words(data, |w| out.emit_count(w, 1)),
            Self::InvertedIndex => words(data, |w| out.emit(w, doc.as_bytes())),
            Self::Grep { pattern } => {
                let re = regex::bytes::Regex::new(pattern).map_err(|e| format!("bad pattern: {e}"))?;
                let mut at = offset;
                for line in data.split_inclusive(|b| *b == b'\n') {
                    let text = line.strip_suffix(b"\n").unwrap_or(line);
                    if re.is_match(text) {
                        out.emit(format!("{doc}:{at:012}").as_bytes(), text);
                    }
                    at += line.len() as u64;
                }
            }
            Self::Streaming { mapper, files, .. } => {
                let dir = files.task_dir().map_err(|e| e.to_string())?;
                let stdout = run_command(mapper, data, &[("MAP_INPUT_FILE", doc)], "mapper", dir.path())?;
                for line in stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    let (k, v) = split_tab(line);
                    out.emit(k, v);
                }
            }
            Self::SleepProbe { probe_dir, map_ms, .. } => {
                probe(probe_dir, "map", *map_ms)?;
                words(data, |w| out.emit_count(w, 1));
            }
            Self::Crash => {
                chaos();
                words(data, |w| out.emit_count(w, 1));
            }
        }
        Ok(())
    }

    /// Runs the reduce function over every key of a partition, in key order, appending
    /// output lines to `out`.
    pub fn reduce<'a>(
        &self,
        groups: impl Iterator<Item = (&'a [u8], Vec<&'a [u8]>)>,
        out: &mut Vec<u8>,
    ) -> Result<u64, String> {
        let mut records = 0;
        match self {
            Self::Streaming { reducer, files, .. } => {
                let mut input = Vec::new();
                for (k, values) in groups {
                    for v in values {
                        input.extend_from_slice(k);
                        input.push(b'\t');
                        input.extend_from_slice(v);
                        input.push(b'\n');
                    }
                }
                let dir = files.task_dir().map_err(|e| e.to_string())?;
                let stdout = run_command(reducer, &input, &[], "reducer", dir.path())?;
                records = stdout.iter().filter(|b| **b == b'\n').count() as u64;
                out.extend_from_slice(&stdout);
                return Ok(records);
            }
            Self::SleepProbe { probe_dir, reduce_ms, .. } => probe(probe_dir, "reduce", *reduce_ms)?,
            Self::Crash => chaos(),
            _ => {}
        }
        for (key, values) in groups {
            match self {
                Self::WordCount | Self::SleepProbe { .. } | Self::Crash => {
                    let sum: u64 = values
                        .iter()
                        .map(|v| u64::from_le_bytes(v[..8].try_into().unwrap_or_default()))
                        .sum();
                    line(out, key, sum.to_string().as_bytes());
                }
                Self::InvertedIndex => {
                    let mut docs = values;
                    docs.sort_unstable();
                    docs.dedup();
                    line(out, key, &docs.join(&b","[..]));
                }
                Self::Grep { .. } => values.iter().for_each(|v| line(out, key, v)),
                Self::Streaming { .. } => unreachable!("handled above"),
            }
            records += 1;
        }
        Ok(records)
    }
}

fn line(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.extend_from_slice(key);
    out.push(b'\t');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn split_tab(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|b| *b == b'\t') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[]),
    }
}

/// For each byte: 0 if it is not an ASCII letter, else the letter in lowercase.
const LOWER: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut c = b'a';
    while c <= b'z' {
        table[c as usize] = c;
        table[(c - 32) as usize] = c;
        c += 1;
    }
    table
};

/// Calls `f` with every word of `data`: maximal runs of ASCII letters, lowercased.
pub fn words(data: &[u8], mut f: impl FnMut(&[u8])) {
    let mut lower = Vec::with_capacity(64);
    let mut rest = data;
    while let Some(start) = rest.iter().position(|&b| LOWER[b as usize] != 0) {
        rest = &rest[start..];
        let len = rest.iter().position(|&b| LOWER[b as usize] == 0).unwrap_or(rest.len());
        let (word, tail) = rest.split_at(len);
        if word.iter().any(u8::is_ascii_uppercase) {
            lower.clear();
            lower.extend(word.iter().map(|&b| LOWER[b as usize]));
            f(&lower);
        } else {
            f(word);
        }
        rest = tail;
    }
}

/// Runs `sh -c command` in `dir` with `input` on stdin; its stdout, or an error with the
/// tail of its stderr.
fn run_command(
    command: &str,
    input: &[u8],
    env: &[(&str, &str)],
    role: &str,
    dir: &std::path::Path,
) -> Result<Vec<u8>, String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{role} `{command}` could not start: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        // A command that stops reading early (e.g. `head`) closes the pipe: not an error.
        let _ = stdin.write_all(&input);
    });
    let mut stdout = Vec::new();
    child.stdout.take().expect("piped").read_to_end(&mut stdout).map_err(|e| format!("{role}: {e}"))?;
    let mut stderr = Vec::new();
    let _ = child.stderr.take().expect("piped").read_to_end(&mut stderr);
    let status = child.wait().map_err(|e| format!("{role}: {e}"))?;
    let _ = feeder.join();
    if status.success() {
        return Ok(stdout);
    }
    let text = String::from_utf8_lossy(&stderr);
    let tail: Vec<&str> = text.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect();
    Err(format!("{role} `{command}` failed ({status}); stderr ends with:\n{}", tail.join("\n")))
}

/// Records this call's start and end (ns since the epoch) and pid in `dir`, sleeping a
/// random time in `ms` in between.
fn probe(dir: &str, phase: &str, ms: (u64, u64)) -> Result<(), String> {
    let now = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    let start = now();
    let sleep = rand::thread_rng().gen_range(ms.0..=ms.1.max(ms.0));
    std::thread::sleep(Duration::from_millis(sleep));
    let end = now();
    let pid = std::process::id();
    let path = std::path::Path::new(dir).join(format!("{phase}-{pid}-{start}"));
    std::fs::write(&path, format!("{phase} {start} {end} {pid}\n"))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The crash test's misbehaviour.
fn chaos() {
    let mut rng = rand::thread_rng();
    match rng.gen_range(0..3) {
        0 => std::process::exit(1),
        1 => std::thread::sleep(Duration::from_millis(rng.gen_range(0..10_000))),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lowercased_letter_runs() {
        let mut seen = vec![];
        words(b"Hello, wORLD! it's 42x-ray", |w| seen.push(String::from_utf8(w.to_vec()).unwrap()));
        assert_eq!(seen, ["hello", "world", "it", "s", "x", "ray"]);
    }

    #[test]
    fn streaming_reports_stderr_of_a_failing_command() {
        let dir = tempfile::tempdir().unwrap();
        let err = run_command("echo out; echo boom >&2; exit 3", b"", &[], "mapper", dir.path()).unwrap_err();
        assert!(err.contains("exit status: 3") && err.ends_with("boom"), "{err}");
        assert_eq!(run_command("cat", b"a\tb\n", &[], "mapper", dir.path()).unwrap(), b"a\tb\n");
    }
}
