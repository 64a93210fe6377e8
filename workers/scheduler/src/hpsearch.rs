//! The hyperparameter-search workload: a grid of model configurations × k folds, each fit
//! a task, gathered by one `best` task. The same search runs sequentially in-process for
//! comparison; both give bit-identical numbers.

use serde_json::{json, Value};

use crate::client::Client;
use crate::functions;
use crate::model::{Params, Source};
use crate::protocol::{Payload, TaskSpec};

/// A search: which data, which configurations, how many folds.
#[derive(Debug, Clone)]
pub struct Search {
    pub source: Source,
    pub grid: Vec<Params>,
    pub folds: u32,
}

impl Search {
    /// 4 penalties × 4 learning rates = 16 configurations.
    pub fn grid(source: Source, epochs: u32, folds: u32) -> Self {
        let mut grid = vec![];
        for alpha in [0.0001, 0.001, 0.01, 0.1] {
            for learning_rate in [0.01, 0.03, 0.1, 0.3] {
                grid.push(Params { alpha, learning_rate, epochs });
            }
        }
        Self { source, grid, folds }
    }

    fn fits(&self) -> Vec<Payload> {
        let mut out = vec![];
        for p in &self.grid {
            for fold in 0..self.folds {
                let args = json!({ "dataset": self.source, "params": p, "fold": fold, "folds": self.folds });
                out.push(Payload::Builtin { function: "fit".into(), args });
            }
        }
        out
    }

    /// The search as a task graph: fits `0..n`, then `best` (id `n`) over all of them.
    pub fn graph(&self) -> (Vec<TaskSpec>, u64) {
        let fits = self.fits();
        let n = fits.len() as u64;
        let mut tasks: Vec<TaskSpec> = fits
            .into_iter()
            .enumerate()
            .map(|(i, payload)| TaskSpec { id: i as u64, deps: vec![], payload, gpus: 0, priority: 0 })
            .collect();
        let best = Payload::Builtin { function: "best".into(), args: Value::Null };
        tasks.push(TaskSpec { id: n, deps: (0..n).collect(), payload: best, gpus: 0, priority: 0 });
        (tasks, n)
    }

    /// Runs every fit here, one after the other.
    pub fn sequential(&self) -> Result<Value, String> {
        let results: Result<Vec<Value>, String> =
            self.fits().iter().map(|p| functions::run(p, &[])).collect();
        functions::best(&results?)
    }

    /// Runs the search through a scheduler.
    pub async fn distributed(&self, client: &mut Client) -> Result<Value, String> {
        let (tasks, best) = self.graph();
        let mut outcome = client.run(tasks, &[best]).await?;
        match outcome.results.remove(&best) {
            Some(v) => Ok(v),
            None => Err(outcome.errors.remove(&best).unwrap_or_else(|| "no result".into())),
        }
    }
}
