//! The model code of the hyperparameter-search workload: linear regression with L2
//! penalty (ridge), trained by full-batch gradient descent, scored by mean squared error
//! on a held-out fold. Plain Rust, deterministic to the last bit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use labctl_datasets::{Dataset, DatasetKind};
use serde::{Deserialize, Serialize};

/// Rows of features and their targets.
#[derive(Debug)]
pub struct Table {
    pub x: Vec<Vec<f64>>,
    pub y: Vec<f64>,
}

/// Where the data comes from: a CSV file (`x1..xn,y` with a header) or the built-in
/// generator.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Source {
    File { path: String },
    Generated { rows: u64, seed: u64 },
}

/// Loads (once per process) the table of `source`.
pub fn table(source: &Source) -> Result<Arc<Table>, String> {
    static CACHE: OnceLock<Mutex<HashMap<Source, Arc<Table>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(t) = cache.lock().unwrap_or_else(PoisonError::into_inner).get(source) {
        return Ok(t.clone());
    }
    let text = match source {
        Source::File { path } => std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?,
        Source::Generated { rows, seed } => {
            let ds = Dataset { kind: DatasetKind::Tabular { rows: *rows, files: 1 }, seed: *seed };
            let mut out = Vec::new();
            ds.write_part(&ds.parts()[0], &mut out).map_err(|e| e.to_string())?;
            String::from_utf8(out).map_err(|e| e.to_string())?
        }
    };
    let t = Arc::new(parse(&text)?);
    cache.lock().unwrap_or_else(PoisonError::into_inner).insert(source.clone(), t.clone());
    Ok(t)
}

fn parse(text: &str) -> Result<Table, String> {
    let (mut x, mut y) = (vec![], vec![]);
    for (i, line) in text.lines().enumerate().skip(1) {
        let v: Result<Vec<f64>, _> = line.split(',').map(str::parse::<f64>).collect();
        let mut v = v.map_err(|e| format!("line {}: {e}", i + 1))?;
        y.push(v.pop().ok_or_else(|| format!("line {}: empty", i + 1))?);
        x.push(v);
    }
    Ok(Table { x, y })
}

/// One model configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub alpha: f64,
    pub learning_rate: f64,
    pub epochs: u32,
}

/// Trains on every fold but `fold` (of `folds`, rows dealt round-robin) and returns the
/// mean squared error on `fold`.
pub fn fit_and_score(t: &Table, p: Params, fold: u32, folds: u32) -> f64 {
    let n_features = t.x.first().map_or(0, Vec::len);
    let in_fold = |i: usize| i as u32 % folds == fold;
    let train: Vec<usize> = (0..t.y.len()).filter(|&i| !in_fold(i)).collect();
    let mut w = vec![0.0; n_features];
    let mut b = 0.0;
    let n = train.len().max(1) as f64;
    let mut grad = vec![0.0; n_features];
    for _ in 0..p.epochs {
        grad.iter_mut().for_each(|g| *g = 0.0);
        let mut grad_b = 0.0;
        for &i in &train {
            let row = &t.x[i];
            let err = row.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() + b - t.y[i];
            for (g, a) in grad.iter_mut().zip(row) {
                *g += err * a;
            }
            grad_b += err;
        }
        for (wi, g) in w.iter_mut().zip(&grad) {
            *wi -= p.learning_rate * (g / n + p.alpha * *wi);
        }
        b -= p.learning_rate * grad_b / n;
    }
    let test: Vec<usize> = (0..t.y.len()).filter(|&i| in_fold(i)).collect();
    let sse: f64 = test
        .iter()
        .map(|&i| {
            let pred = t.x[i].iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() + b;
            (pred - t.y[i]).powi(2)
        })
        .sum();
    sse / test.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_beats_the_mean_and_is_deterministic() {
        let t = table(&Source::Generated { rows: 2000, seed: 3 }).unwrap();
        let p = Params { alpha: 0.001, learning_rate: 0.3, epochs: 200 };
        let trained = fit_and_score(&t, p, 0, 3);
        let untrained = fit_and_score(&t, Params { epochs: 0, ..p }, 0, 3);
        assert!(trained < untrained / 4.0, "{trained} vs {untrained}");
        assert_eq!(trained.to_bits(), fit_and_score(&t, p, 0, 3).to_bits());
    }
}
