//! Deterministic datasets seeded into every student's bucket.
//!
//! The same kind, size and seed always give the same bytes, on every machine and in every
//! version of labctl, so the answers the smoke workloads expect are reproducible. The
//! generator is a hand-rolled SplitMix64 for exactly that reason: `rand`'s generators do not
//! promise a stable stream across releases.

#![warn(clippy::print_stdout)]

pub mod check;

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

/// What a named dataset is made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DatasetKind {
    /// Lines of words drawn from a Zipf distribution over a fixed vocabulary (word count,
    /// inverted index, grep).
    Text { size_bytes: u64, files: u32 },
    /// CSV rows `x1..x8,y` with `y` a noisy linear function of the features (model fitting).
    Tabular { rows: u64, files: u32 },
}

/// One file of a dataset: its name inside the dataset and how to produce its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub name: String,
    index: u32,
}

/// A dataset definition: kind plus seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    #[serde(flatten)]
    pub kind: DatasetKind,
    pub seed: u64,
}

impl Dataset {
    /// The files the dataset consists of, in order.
    pub fn parts(&self) -> Vec<Part> {
        let (files, ext) = match self.kind {
            DatasetKind::Text { files, .. } => (files, "txt"),
            DatasetKind::Tabular { files, .. } => (files, "csv"),
        };
        (0..files.max(1)).map(|index| Part { name: format!("part-{index:05}.{ext}"), index }).collect()
    }

    /// Writes every part into the directory `dir` (made if missing), as `parts` names them.
    pub fn write_into(&self, dir: &std::path::Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for part in self.parts() {
            let mut out = io::BufWriter::new(std::fs::File::create(dir.join(&part.name))?);
            self.write_part(&part, &mut out)?;
            out.flush()?;
        }
        Ok(())
    }

    /// Writes one part's bytes to `out`.
    pub fn write_part(&self, part: &Part, out: &mut impl Write) -> io::Result<()> {
        let mut rng =
            SplitMix64::new(self.seed ^ (u64::from(part.index) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        match self.kind {
            DatasetKind::Text { size_bytes, files } => {
                write_text(&mut rng, share(size_bytes, files, part.index), out)
            }
            DatasetKind::Tabular { rows, files } => {
                write_tabular(&mut rng, self.seed, share(rows, files, part.index), out)
            }
        }
    }
}

/// Part `index`'s share of `total` split over `files` files.
fn share(total: u64, files: u32, index: u32) -> u64 {
    let files = u64::from(files.max(1));
    total / files + u64::from(u64::from(index) < total % files)
}

const VOCABULARY: usize = 20_000;
const ZIPF_EXPONENT: f64 = 1.05;

/// Zipf text: lines of 8–16 lowercase words, stopping at the first line that reaches `bytes`.
fn write_text(rng: &mut SplitMix64, bytes: u64, out: &mut impl Write) -> io::Result<()> {
    // The vocabulary is the same for every part: it comes from a fixed seed.
    let mut vocab_rng = SplitMix64::new(0x5EED);
    let words: Vec<Vec<u8>> = (0..VOCABULARY)
        .map(|_| {
            let len = 2 + vocab_rng.below(9) as usize;
            (0..len).map(|_| b'a' + vocab_rng.below(26) as u8).collect()
        })
        .collect();
    let mut cdf = Vec::with_capacity(VOCABULARY);
    let mut acc = 0.0;
    for rank in 1..=VOCABULARY {
        acc += 1.0 / (rank as f64).powf(ZIPF_EXPONENT);
        cdf.push(acc);
    }
    let mut written = 0u64;
    let mut line = Vec::with_capacity(256);
    while written < bytes {
        line.clear();
        for i in 0..8 + rng.below(9) {
            if i > 0 {
                line.push(b' ');
            }
            let target = rng.unit() * acc;
            let rank = cdf.partition_point(|&c| c < target).min(VOCABULARY - 1);
            line.extend_from_slice(&words[rank]);
        }
        line.push(b'\n');
        out.write_all(&line)?;
        written += line.len() as u64;
    }
    Ok(())
}

const FEATURES: usize = 8;

/// Tabular rows: the weights come from the dataset seed so every part shares them.
fn write_tabular(rng: &mut SplitMix64, seed: u64, rows: u64, out: &mut impl Write) -> io::Result<()> {
    let mut weights_rng = SplitMix64::new(seed);
    let weights: Vec<f64> = (0..FEATURES).map(|_| weights_rng.unit() * 4.0 - 2.0).collect();
    let header: Vec<String> = (1..=FEATURES).map(|i| format!("x{i}")).collect();
    writeln!(out, "{},y", header.join(","))?;
    for _ in 0..rows {
        let x: Vec<f64> = (0..FEATURES).map(|_| rng.unit() * 2.0 - 1.0).collect();
        let noise = (rng.unit() - 0.5) * 0.5;
        let y: f64 = x.iter().zip(&weights).map(|(a, b)| a * b).sum::<f64>() + noise;
        for v in &x {
            write!(out, "{v:.6},")?;
        }
        writeln!(out, "{y:.6}")?;
    }
    Ok(())
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and its stream never changes.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(ds: &Dataset) -> Vec<Vec<u8>> {
        ds.parts()
            .iter()
            .map(|p| {
                let mut v = vec![];
                ds.write_part(p, &mut v).unwrap();
                v
            })
            .collect()
    }

    #[test]
    fn same_seed_same_bytes_and_sizes_add_up() {
        let ds = Dataset { kind: DatasetKind::Text { size_bytes: 10_000, files: 3 }, seed: 7 };
        let a = bytes(&ds);
        assert_eq!(a, bytes(&ds));
        let total: usize = a.iter().map(Vec::len).sum();
        assert!((10_000..10_000 + 3 * 200).contains(&total), "{total}");
        let other = Dataset { seed: 8, ..ds };
        assert_ne!(a, bytes(&other));
    }

    #[test]
    fn text_is_zipf_like() {
        let ds = Dataset { kind: DatasetKind::Text { size_bytes: 200_000, files: 1 }, seed: 1 };
        let text = String::from_utf8(bytes(&ds).remove(0)).unwrap();
        let mut counts = std::collections::HashMap::new();
        for w in text.split_whitespace() {
            *counts.entry(w).or_insert(0u32) += 1;
        }
        let mut freq: Vec<u32> = counts.into_values().collect();
        freq.sort_unstable_by(|a, b| b.cmp(a));
        // The most frequent word is far more common than the hundredth.
        assert!(freq[0] > 20 * freq[99], "{} vs {}", freq[0], freq[99]);
    }

    #[test]
    fn tabular_rows_split_over_files() {
        let ds = Dataset { kind: DatasetKind::Tabular { rows: 10, files: 3 }, seed: 3 };
        let lines: Vec<usize> =
            bytes(&ds).iter().map(|b| b.iter().filter(|&&c| c == b'\n').count() - 1).collect();
        assert_eq!(lines, vec![4, 3, 3]);
    }
}
