//! The `notebook` smoke check: `notebooks/check.ipynb` run cell by cell in a kernel of the
//! student's own Jupyter server, after a cell of parameters. It counts the words of their
//! text dataset on their Dask cluster and with PySpark; both counts must equal
//! labctl's own sequential count.

use std::collections::HashMap;
use std::time::Instant;

use serde::Deserialize;
use serde_json::Value;

use crate::jupyter::{Jupyter, RunError};

/// The check notebook, as students can open it too.
pub const NOTEBOOK: &str = include_str!("../notebooks/check.ipynb");

/// What the check runs against.
pub struct Target<'a> {
    /// The Jupyter server's `host:port` and its token.
    pub jupyter: &'a str,
    pub token: &'a str,
    /// The text dataset's directory, as the kernel and the Dask workers see it.
    pub dataset: &'a str,
    pub dask_workers: u32,
    pub spark: bool,
}

#[derive(Deserialize)]
struct Notebook {
    cells: Vec<NotebookCell>,
}

#[derive(Deserialize)]
struct NotebookCell {
    cell_type: String,
    source: String,
    #[serde(default)]
    metadata: Value,
}

/// The counts the notebook prints last.
#[derive(Deserialize)]
struct Counts {
    dask: HashMap<String, u64>,
    spark: Option<HashMap<String, u64>>,
}

/// Runs the check notebook through `target`'s Jupyter server until `deadline`, its counts
/// compared with `expected` (labctl's own count of the same files); the error names the
/// part that failed (Jupyter, Dask, PySpark) and why.
pub fn run(target: &Target<'_>, expected: &HashMap<String, u64>, deadline: Instant) -> Result<(), String> {
    let notebook: Notebook = serde_json::from_str(NOTEBOOK).map_err(|e| format!("check.ipynb: {e}"))?;
    let jupyter = Jupyter::new(target.jupyter, target.token);
    let mut kernel = jupyter.start_kernel().map_err(|e| format!("Jupyter: {e}"))?;
    let mut printed = kernel
        .run(&parameters(target), deadline)
        .map_err(|e| explain("Jupyter", "the parameters cell", e))?;
    let code = notebook.cells.iter().filter(|c| c.cell_type == "code");
    for (n, cell) in code.enumerate() {
        let proves = cell.metadata["labctl"]["proves"].as_str().unwrap_or("the notebook");
        printed =
            kernel.run(&cell.source, deadline).map_err(|e| explain(proves, &format!("cell {}", n + 1), e))?;
    }
    let counts: Counts = serde_json::from_str(printed.trim())
        .map_err(|e| format!("the notebook's last cell printed no counts ({e}): {}", excerpt(&printed)))?;
    labctl_datasets::check::same_counts("Dask's word count", expected, &counts.dask)?;
    match (target.spark, counts.spark) {
        (true, Some(spark)) => labctl_datasets::check::same_counts("PySpark's word count", expected, &spark),
        (true, None) => Err("PySpark counted nothing".into()),
        (false, _) => Ok(()),
    }
}

/// The cell labctl puts first: where the data is and what to expect.
fn parameters(target: &Target<'_>) -> String {
    let dataset = serde_json::to_string(target.dataset).expect("a string serialises");
    let spark = if target.spark { "True" } else { "False" };
    format!("DATASET = {dataset}\nDASK_WORKERS = {}\nSPARK = {spark}\n", target.dask_workers)
}

fn explain(proves: &str, cell: &str, error: RunError) -> String {
    match error {
        RunError::Jupyter(e) => format!("Jupyter, running {cell} of check.ipynb: {e}"),
        RunError::Raised { name, message } => format!("{proves}: {name}: {message} ({cell} of check.ipynb)"),
    }
}

fn excerpt(text: &str) -> String {
    text.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notebook_parses_and_every_code_cell_says_what_it_proves() {
        let notebook: Notebook = serde_json::from_str(NOTEBOOK).unwrap();
        let proves: Vec<&str> = notebook
            .cells
            .iter()
            .filter(|c| c.cell_type == "code")
            .map(|c| c.metadata["labctl"]["proves"].as_str().unwrap())
            .collect();
        assert_eq!(proves, ["Dask", "Dask", "PySpark", "the result"]);
    }

    #[test]
    fn parameters_are_python_literals() {
        let target = Target {
            jupyter: "127.0.0.1:1",
            token: "t",
            dataset: "/data/it's \"here\"",
            dask_workers: 3,
            spark: false,
        };
        assert_eq!(
            parameters(&target),
            "DATASET = \"/data/it's \\\"here\\\"\"\nDASK_WORKERS = 3\nSPARK = False\n"
        );
    }

    #[test]
    fn a_failure_names_what_the_cell_proves() {
        let raised =
            RunError::Raised { name: "TimeoutError".into(), message: "Only 1/2 workers arrived".into() };
        assert_eq!(
            explain("Dask", "cell 1", raised),
            "Dask: TimeoutError: Only 1/2 workers arrived (cell 1 of check.ipynb)"
        );
    }
}
