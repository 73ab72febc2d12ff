//! `OUT/summary.json` of a pretraining run: what was trained, the best constant
//! prediction its eval loss is measured against, and (once it ends) how it
//! ended. Written when the eval baseline is known and again at the end, so
//! `pixel compare` can read a run in progress too.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The file name inside a run's output directory.
pub const SUMMARY_FILE: &str = "summary.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunSummary {
    /// "running" until the run ends, then "done" or "interrupted".
    pub status: String,
    /// The model's shape: encoder and decoder width x layers.
    pub model: String,
    pub rendering: String,
    pub max_seq_length: usize,
    pub mask_ratio: f64,
    /// Strips per micro-batch on each rank; a step is batch_size x grad_accum x ranks strips.
    pub batch_size: usize,
    pub grad_accum: usize,
    #[serde(default = "one")]
    pub ranks: usize,
    pub steps: u64,
    pub lr: f32,
    pub seed: u64,
    pub train_strips: usize,
    pub eval_strips: usize,
    /// Eval loss of predicting every masked patch as the mean target patch.
    pub constant_baseline: f32,
    /// Steps done in all (a resumed run's earlier ones included), the last
    /// eval loss and this invocation's seconds (None while running).
    pub steps_done: Option<u64>,
    pub final_eval_loss: Option<f32>,
    pub seconds: Option<f64>,
}

fn one() -> usize {
    1
}

impl RunSummary {
    /// Strips per optimizer step.
    pub fn strips_per_step(&self) -> usize {
        self.batch_size * self.grad_accum * self.ranks
    }

    /// Writes `dir/summary.json` (through a temporary file, so a reader never
    /// sees half a file).
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(SUMMARY_FILE);
        let tmp = dir.join(format!("{SUMMARY_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self)? + "\n";
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Reads `dir/summary.json`.
    pub fn read(dir: &Path) -> anyhow::Result<RunSummary> {
        let path = dir.join(SUMMARY_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a run summary", path.display()))
    }
}
