//! Running one task on a worker: reading a split, mapping, writing partitioned
//! intermediate files; or merging a partition's intermediate files and reducing. Everything
//! is written under attempt-specific temporary names; the coordinator publishes.

use serde::{Deserialize, Serialize};

use crate::collect::{records, Collector, Combine};
use crate::core::{Output, TaskStats};
use crate::job::JobKind;
use crate::storage::Location;

/// A byte range of an input file; its map task sees the whole lines that start in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub url: String,
    pub start: u64,
    pub end: u64,
    pub size: u64,
}

/// Everything a worker needs to run one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum TaskSpec {
    Map {
        index: u32,
        job: JobKind,
        combiner: bool,
        reduces: u32,
        split: Split,
        output: String,
    },
    /// `inputs` are intermediate keys relative to `output`.
    Reduce {
        index: u32,
        job: JobKind,
        inputs: Vec<String>,
        output: String,
    },
}

/// Where job `job` keeps its intermediate and temporary files, under its output.
pub fn job_temporaries(job: u64) -> String {
    format!("_temporary/job-{job}")
}

/// Where map task `map`'s intermediate data for partition `reduce` is published.
pub fn intermediate_name(job: u64, map: u32, reduce: u32) -> String {
    format!("{}/map-{map:05}/part-{reduce:05}", job_temporaries(job))
}

/// The final name of reduce partition `reduce`'s output.
pub fn output_name(reduce: u32) -> String {
    format!("part-r-{reduce:05}")
}

/// The temporary name attempt `attempt` of job `job` writes `name` under.
fn temp_name(job: u64, name: &str, attempt: u64) -> String {
    format!("{}/attempt-{attempt:06}/{}", job_temporaries(job), name.replace('/', "_"))
}

/// Runs a task; returns its outputs (under temporary names) and what it measured.
pub async fn run(task: TaskSpec, job_id: u64, attempt: u64) -> Result<(Vec<Output>, TaskStats), String> {
    match task {
        TaskSpec::Map { index, job, combiner, reduces, split, output } => {
            let input = Location::parse(&split.url)?;
            let data = read_split(&input, &split).await?;
            let bytes_in = data.len() as u64;
            let doc = split.url.rsplit('/').next().unwrap_or(&split.url).to_owned();
            let combine = if combiner { job.combine() } else { Combine::None };
            let parts = tokio::task::spawn_blocking(move || {
                let mut out = Collector::new(combine);
                job.map(&doc, split.start, &data, &mut out)?;
                Ok::<_, String>(out.finish(reduces))
            })
            .await
            .map_err(|e| format!("map task panicked: {e}"))??;
            let out = Location::parse(&output)?;
            let mut outputs = vec![];
            for (r, bytes) in parts.into_iter().enumerate() {
                outputs.push(
                    write(&out, &intermediate_name(job_id, index, r as u32), job_id, attempt, bytes).await?,
                );
            }
            Ok((outputs, TaskStats { bytes_in, records_out: 0 }))
        }
        TaskSpec::Reduce { index, job, inputs, output } => {
            let out = Location::parse(&output)?;
            let mut buffers = vec![];
            for name in &inputs {
                buffers.push(out.get(&out.key(name)).await?);
            }
            let bytes_in = buffers.iter().map(|b| b.len() as u64).sum();
            let (result, records_out) = tokio::task::spawn_blocking(move || {
                let mut all: Vec<(&[u8], &[u8])> = buffers.iter().flat_map(|b| records(b)).collect();
                all.sort_by(|a, b| a.0.cmp(b.0));
                let mut result = Vec::new();
                let n = job.reduce(groups(&all), &mut result)?;
                Ok::<_, String>((result, n))
            })
            .await
            .map_err(|e| format!("reduce task panicked: {e}"))??;
            let written = write(&out, &output_name(index), job_id, attempt, result).await?;
            Ok((vec![written], TaskStats { bytes_in, records_out }))
        }
    }
}

/// Consecutive records with equal keys, as (key, values).
pub fn groups<'a>(
    sorted: &'a [(&'a [u8], &'a [u8])],
) -> impl Iterator<Item = (&'a [u8], Vec<&'a [u8]>)> + 'a {
    let mut i = 0;
    std::iter::from_fn(move || {
        let key = sorted.get(i)?.0;
        let start = i;
        while i < sorted.len() && sorted[i].0 == key {
            i += 1;
        }
        Some((key, sorted[start..i].iter().map(|(_, v)| *v).collect()))
    })
}

async fn write(loc: &Location, name: &str, job: u64, attempt: u64, bytes: Vec<u8>) -> Result<Output, String> {
    let temp = temp_name(job, name, attempt);
    let len = bytes.len() as u64;
    loc.put(&loc.key(&temp), bytes).await?;
    Ok(Output { temp, final_name: name.to_owned(), bytes: len })
}

/// How much to read past the end of a split to finish its last line, per step.
const OVERRUN_STEP: u64 = 64 * 1024;

/// The whole lines starting in `[start, end)`: a split not at the start of its file skips
/// the partial line it begins in (the previous split owns it), and the last line is read
/// to its end even past `end`.
pub async fn read_split(loc: &Location, split: &Split) -> Result<Vec<u8>, String> {
    let key = &loc.prefix;
    let begin = split.start.saturating_sub(1);
    let mut data = loc.get_range(key, begin..split.end).await?.to_vec();
    if split.start > 0 {
        match data.iter().position(|b| *b == b'\n') {
            Some(nl) => {
                data.drain(..=nl);
            }
            // The split lies inside one line that started before it.
            None => return Ok(Vec::new()),
        }
    }
    let mut at = split.end;
    while at < split.size && data.last().is_some_and(|b| *b != b'\n') {
        let more = loc.get_range(key, at..(at + OVERRUN_STEP).min(split.size)).await?;
        match more.iter().position(|b| *b == b'\n') {
            Some(nl) => {
                data.extend_from_slice(&more[..=nl]);
                break;
            }
            None => data.extend_from_slice(&more),
        }
        at += more.len() as u64;
    }
    Ok(data)
}

/// Splits files into byte ranges of at most `split_size`.
pub fn splits(files: &[crate::storage::InputFile], split_size: u64) -> Vec<Split> {
    let mut out = vec![];
    for f in files {
        let mut start = 0;
        loop {
            let end = (start + split_size.max(1)).min(f.size);
            out.push(Split { url: f.url.clone(), start, end, size: f.size });
            if end >= f.size {
                break;
            }
            start = end;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::InputFile;

    #[tokio::test]
    async fn splits_cover_every_line_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        let text: String = (0..500).map(|i| format!("line {i} {}\n", "x".repeat(i % 37))).collect();
        std::fs::write(&path, &text).unwrap();
        let url = path.display().to_string();
        for size in [1, 7, 64, 1000, 100_000] {
            let mut joined = Vec::new();
            for s in splits(&[InputFile { url: url.clone(), size: text.len() as u64 }], size) {
                joined.extend(read_split(&Location::parse(&url).unwrap(), &s).await.unwrap());
            }
            assert_eq!(String::from_utf8(joined).unwrap(), text, "split size {size}");
        }
    }
}
