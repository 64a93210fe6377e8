//! The same job run sequentially in one process: the reference the distributed run must
//! match, and a quick way to run a small job without a cluster.

use crate::collect::{records, Collector, Combine};
use crate::job::JobKind;
use crate::storage::{input_files, Location};
use crate::task::{groups, read_split, splits};

/// Runs `job` over `inputs` sequentially (no combiner, one partition); returns the output.
pub async fn run(job: &JobKind, inputs: &[String]) -> Result<Vec<u8>, String> {
    let files = input_files(inputs).await?;
    let mut all = Vec::new();
    for split in splits(&files, u64::MAX) {
        let data = read_split(&Location::parse(&split.url)?, &split).await?;
        let doc = split.url.rsplit('/').next().unwrap_or(&split.url).to_owned();
        let mut out = Collector::new(Combine::None);
        job.map(&doc, 0, &data, &mut out)?;
        all.extend(out.finish(1).remove(0));
    }
    let mut pairs: Vec<(&[u8], &[u8])> = records(&all).collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::new();
    job.reduce(groups(&pairs), &mut out)?;
    Ok(out)
}
