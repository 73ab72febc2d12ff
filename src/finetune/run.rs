//! Finetuning as a [`TrainingTask`]: model from a checkpoint (or from
//! scratch), AdamW with warmup and linear decay, evaluation on the dev set
//! every N steps, early stopping, the best checkpoint kept. The loop itself
//! (log.csv, progress bar, Ctrl-C, non-finite handling) is
//! [`crate::train_loop`].

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use pixel_engine::optim::LrSchedule;
use pixel_engine::{Device, Rng, Tape, Var};
use pixel_model::checkpoint::save_checkpoint;
use pixel_model::data_parallel::DataParallel;
use pixel_model::heads::{is_encoder_param, FinetuneBatch, PixelForFinetuning, Pooling};
use pixel_model::params::ParamVars;
use pixel_model::train::Trainer;
use pixel_model::ForwardMode;
use pixel_render::{Layout, Rendering, RenderingStrategy};

use crate::atomic_dir::write_dir_atomically;
use crate::train_loop::{
    check_optimizer_flags, run_training, to_device, Evaluation, LoopOutcome, LoopSettings,
    SaveReason, TrainingTask,
};

use super::data::{
    check_pairs, holds_pairs, load_dataset, make_batch, render_examples, Dataset, Example,
    PAIRS_FIELD,
};
use super::eval::{majority_predictions, predict, rendered_words, score, EvalReport};
use super::shard::{join_ranks, RankBatches};
use super::task_model::{
    build_model, check_finetuning_fits, finetune_rendering, planned_config, task_metadata,
};
pub use super::task_model::{load_finetuned, task_renderer, FinetunedModel};
use super::Task;

/// Everything a finetuning run is told.
#[derive(Clone, Debug)]
pub struct FinetuneOptions {
    pub task: Task,
    pub train: PathBuf,
    pub dev: PathBuf,
    /// Pretrained (or finetuned) checkpoint; `None` trains from scratch.
    pub init: Option<PathBuf>,
    /// Preset or config.json for a model from scratch (ignored with `init`).
    pub scratch_config: String,
    pub out: PathBuf,
    pub max_seq_length: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub lr: f32,
    pub steps: u64,
    pub warmup_steps: u64,
    pub weight_decay: f32,
    pub max_grad_norm: f32,
    /// Overrides the config's hidden and attention dropout.
    pub dropout: Option<f64>,
    /// Train the head only (a probe of the encoder's features).
    pub freeze_encoder: bool,
    pub eval_every: u64,
    /// Evaluations without improvement before stopping.
    pub patience: usize,
    pub seed: u64,
    pub layout: Layout,
    /// Rendering strategy; `None`: the `--init` checkpoint's (continuous from scratch). One
    /// that differs from the checkpoint's needs `allow_rendering_mismatch`.
    pub rendering: Option<RenderingStrategy>,
    pub allow_rendering_mismatch: bool,
    pub pooling: Pooling,
    /// Class labels (classification); `None` reads them from the train file.
    pub labels: Option<Vec<String>>,
    /// Use only the first N training / dev examples (quick runs and tests).
    pub max_train_examples: Option<usize>,
    pub max_dev_examples: Option<usize>,
    pub progress: bool,
    /// Where training and evaluation run.
    pub device: Device,
    /// QA only: stride, question limit, post-processing.
    pub qa: super::qa::QaSettings,
    /// The ranks this run is shared by (one process by default): each
    /// trains on its share of every global batch; rank 0 alone writes.
    pub parallel: DataParallel,
    /// With several ranks: check the parameters identical every N steps.
    pub check_every: u64,
}

/// What a run achieved.
#[derive(Clone, Debug)]
pub struct FinetuneSummary {
    pub steps: u64,
    pub best_step: u64,
    /// Best dev metric in percent, and its report.
    pub best: EvalReport,
    /// The majority baseline on the same dev examples.
    pub baseline: EvalReport,
    /// Training loss of the first and the last step.
    pub first_loss: f32,
    pub last_loss: f32,
    pub seconds: f64,
    /// Early stopping or Ctrl-C ended the run before its last step.
    pub stopped_early: bool,
    pub best_dir: PathBuf,
}

/// Directory of the best checkpoint under a run's output directory.
pub fn best_dir(out: &Path) -> PathBuf {
    out.join("best")
}

fn take_examples(mut ds: Dataset, max: Option<usize>) -> Vec<Example> {
    if let Some(n) = max {
        ds.examples.truncate(n);
    }
    ds.examples
}

/// Directory of the last good state when a step went non-finite.
pub fn last_good_dir(out: &Path) -> PathBuf {
    out.join("last")
}

/// The best dev evaluation so far with its checkpoint (OUT/best), and early
/// stopping: what every finetuning task does with an evaluation.
pub(crate) struct BestSoFar {
    pub(crate) report: EvalReport,
    pub(crate) step: u64,
    /// Evaluations since the best one.
    since: usize,
    path: PathBuf,
    /// Rank 0 writes OUT/best; the other ranks only keep the score.
    lead: bool,
}

impl BestSoFar {
    /// Starts from the evaluation before training, whose model becomes
    /// OUT/best (written by rank 0 of `opts.parallel` only).
    pub(crate) fn start(
        opts: &FinetuneOptions,
        report: EvalReport,
        model: &PixelForFinetuning,
    ) -> anyhow::Result<BestSoFar> {
        let path = best_dir(&opts.out);
        let lead = opts.parallel.rank() == 0;
        if lead {
            save_model_atomically(&path, model)?;
        }
        Ok(BestSoFar {
            report,
            step: 0,
            since: 0,
            path,
            lead,
        })
    }

    /// Keeps `report` and saves `model` as OUT/best when it beats the best so
    /// far; stops after `patience` evaluations without improvement (0: never).
    pub(crate) fn update(
        &mut self,
        report: EvalReport,
        done: u64,
        model: &PixelForFinetuning,
        opts: &FinetuneOptions,
    ) -> anyhow::Result<Evaluation> {
        let metric = report.metric;
        if metric > self.report.metric || self.step == 0 {
            self.report = report;
            self.step = done;
            self.since = 0;
            if self.lead {
                save_model_atomically(&self.path, model)?;
            }
        } else {
            self.since += 1;
        }
        Ok(Evaluation {
            value: metric as f32,
            note: Some(format!(
                "step {done}: dev {} {metric:.2} (best {:.2} at step {})",
                opts.task.metric_name(),
                self.report.metric,
                self.step
            )),
            stop: opts.patience > 0 && self.since >= opts.patience,
        })
    }
}

/// Saves the model as OUT/last (the last good state before a non-finite step).
pub(crate) fn save_last_good(
    opts: &FinetuneOptions,
    trainer: &Trainer<PixelForFinetuning>,
) -> anyhow::Result<PathBuf> {
    let dir = last_good_dir(&opts.out);
    save_model_atomically(&dir, &trainer.model)?;
    Ok(dir)
}

/// Writes `model` (config.json + model.safetensors) as `dir`, whole or not
/// at all: a crash or a full disk mid-save leaves the previous `dir` intact.
fn save_model_atomically(dir: &Path, model: &PixelForFinetuning) -> anyhow::Result<()> {
    let weights = model.params.state_dict();
    write_dir_atomically(dir, |tmp| {
        Ok(save_checkpoint(tmp, &model.config, &weights)?)
    })
}

/// The run loop's settings for a finetuning run; `unit` names what a batch holds.
pub(crate) fn loop_settings(opts: &FinetuneOptions, unit: &'static str) -> LoopSettings {
    LoopSettings {
        out: opts.out.clone(),
        steps: opts.steps,
        start_step: 0,
        stop_at: None,
        eval_every: opts.eval_every,
        save_every: None,
        examples_per_step: opts.batch_size * opts.grad_accum * opts.parallel.world_size(),
        unit,
        progress: opts.progress,
        check_every: opts.check_every,
    }
}

/// The summary of a finished run, also written to OUT/summary.json (by rank 0).
pub(crate) fn finish(
    opts: &FinetuneOptions,
    outcome: &LoopOutcome,
    best: BestSoFar,
    baseline: EvalReport,
    train_examples: usize,
    dev_examples: usize,
) -> anyhow::Result<FinetuneSummary> {
    let summary = FinetuneSummary {
        steps: outcome.last_step,
        best_step: best.step,
        best: best.report,
        baseline,
        first_loss: outcome.losses.first().map_or(f32::NAN, |l| l.1),
        last_loss: outcome.losses.last().map_or(f32::NAN, |l| l.1),
        seconds: outcome.seconds,
        stopped_early: outcome.interrupted || outcome.stopped_by_task,
        best_dir: best.path,
    };
    if opts.parallel.rank() == 0 {
        write_summary(opts, &summary, train_examples, dev_examples)?;
    }
    Ok(summary)
}

/// Runs finetuning; writes OUT/log.csv, OUT/summary.json and OUT/best
/// (config.json + model.safetensors). Setting `stop` ends the run after the
/// current step, with a last dev evaluation. A non-finite loss or gradient
/// stops the run with an error naming the step, after saving the model as it
/// was before that step to OUT/last.
pub fn run_finetuning(
    opts: &FinetuneOptions,
    stop: &AtomicBool,
) -> anyhow::Result<FinetuneSummary> {
    anyhow::ensure!(opts.batch_size > 0, "--batch-size must be at least 1");
    anyhow::ensure!(opts.grad_accum > 0, "--grad-accum must be at least 1");
    anyhow::ensure!(opts.steps > 0, "--steps must be at least 1");
    anyhow::ensure!(opts.eval_every > 0, "--eval-every must be at least 1");
    anyhow::ensure!(opts.check_every > 0, "--check-every must be at least 1");
    check_optimizer_flags(opts.lr, None, opts.weight_decay, opts.max_grad_norm)?;
    if let Some(p) = opts.dropout {
        anyhow::ensure!(
            (0.0..1.0).contains(&p),
            "--dropout must be in [0, 1), got {p}"
        );
    }
    if let Some(n) = opts.max_train_examples {
        anyhow::ensure!(n > 0, "--max-train-examples must be at least 1");
    }
    if let Some(n) = opts.max_dev_examples {
        anyhow::ensure!(n > 0, "--max-dev-examples must be at least 1");
    }
    anyhow::ensure!(
        opts.max_seq_length >= 2,
        "--max-seq-length must be at least 2 (a patch of text and the end patch), got {}",
        opts.max_seq_length
    );
    if let Some(config) = planned_config(opts)? {
        check_finetuning_fits(&config, opts)?;
    }
    let task = opts.task;
    if task == Task::Qa {
        return super::qa::run::run_qa_finetuning(opts, stop);
    }
    let labels = match (task.fixed_labels(), &opts.labels) {
        (Some(fixed), _) => fixed,
        (None, Some(given)) => check_given_labels(given)?,
        (None, None) => super::data::classification_labels(&opts.train)?,
    };
    let train = take_examples(
        load_dataset(task, &opts.train, &labels)?,
        opts.max_train_examples,
    );
    let dev = take_examples(
        load_dataset(task, &opts.dev, &labels)?,
        opts.max_dev_examples,
    );
    check_not_empty(train.len(), &opts.train, "training")?;
    check_not_empty(dev.len(), &opts.dev, "dev")?;
    let pairs = holds_pairs(&train);
    check_pairs(
        pairs,
        holds_pairs(&dev),
        &format!("--dev {}", opts.dev.display()),
    )?;
    let mut rng = Rng::new(opts.seed);
    let head = task.head(labels.len(), opts.pooling);
    let mut model = build_model(opts, head, &mut rng)?;
    let rendering = finetune_rendering(opts, &model.config)?;
    task_metadata(
        &mut model.config,
        task,
        &labels,
        opts.layout,
        rendering,
        opts.pooling,
    );
    if let Some(pairs) = pairs {
        model.config.extra.insert(PAIRS_FIELD.into(), pairs.into());
    }

    let lead = opts.parallel.rank() == 0;
    let renderer = task_renderer(opts.max_seq_length, opts.layout, rendering)?;
    let bars = opts.progress && lead;
    let (train_r, train_stats) = render_examples(&renderer, &train, bars, "train");
    let (dev_r, dev_stats) = render_examples(&renderer, &dev, bars, "dev");
    if lead {
        eprintln!("train {}: {train_stats}", opts.train.display());
        eprintln!("dev {}: {dev_stats}", opts.dev.display());
    }
    if opts.freeze_encoder {
        model.params.freeze(is_encoder_param);
    }
    model
        .params
        .to_device(opts.device)
        .map_err(|e| anyhow::anyhow!("moving the model to {:?}: {e}", opts.device))?;
    let schedule = LrSchedule::WarmupLinear {
        max_lr: opts.lr,
        warmup: opts.warmup_steps,
        total: opts.steps,
    };
    let mut trainer = Trainer::new(model, opts.weight_decay, schedule, opts.max_grad_norm);
    join_ranks(&mut trainer, opts)?;
    std::fs::create_dir_all(&opts.out).with_context(|| format!("{}", opts.out.display()))?;

    let eval_batch = opts.batch_size.max(16);
    let dev_words = rendered_words(&dev_r);
    let baseline = score(
        task,
        &labels,
        &dev,
        &majority_predictions(task, &train, &dev, &dev_words),
    );
    let best = score(
        task,
        &labels,
        &dev,
        &predict(&trainer.model, task, &dev, &dev_r, eval_batch)?,
    );
    if lead {
        eprintln!(
            "dev before training: {} | majority baseline: {}",
            best.summary, baseline.summary
        );
    }
    let best = BestSoFar::start(opts, best, &trainer.model)?;
    let mut run = Finetuning {
        opts,
        labels: &labels,
        train: &train,
        train_r: &train_r,
        dev: &dev,
        dev_r: &dev_r,
        batches: RankBatches::new(train.len(), opts),
        eval_batch,
        best,
    };
    let settings = loop_settings(opts, "examples");
    let outcome = run_training(&mut trainer, &mut run, &settings, stop)?;
    finish(opts, &outcome, run.best, baseline, train.len(), dev.len())
}

/// `--labels` as given: at least two, none twice (id2label and label2id must
/// be each other's inverse).
fn check_given_labels(given: &[String]) -> anyhow::Result<Vec<String>> {
    anyhow::ensure!(
        given.len() >= 2,
        "--labels: a classifier needs at least 2 labels, got {given:?}"
    );
    for (i, l) in given.iter().enumerate() {
        anyhow::ensure!(!given[..i].contains(l), "--labels: {l:?} is given twice");
    }
    Ok(given.to_vec())
}

/// A run needs at least one example of each split.
pub(crate) fn check_not_empty(n: usize, path: &Path, split: &str) -> anyhow::Result<()> {
    anyhow::ensure!(n > 0, "{}: no {split} examples", path.display());
    Ok(())
}

/// Finetuning as the run loop sees it: shuffled batches of rendered examples,
/// the head's loss, the dev metric with the best checkpoint kept and early
/// stopping, the last good state saved to OUT/last.
struct Finetuning<'a> {
    opts: &'a FinetuneOptions,
    labels: &'a [String],
    train: &'a [Example],
    train_r: &'a [Rendering],
    dev: &'a [Example],
    dev_r: &'a [Rendering],
    /// This rank's share of each step's examples, and their dropout.
    batches: RankBatches,
    eval_batch: usize,
    best: BestSoFar,
}

impl TrainingTask for Finetuning<'_> {
    type Model = PixelForFinetuning;
    type Batch = FinetuneBatch;

    fn eval_column(&self) -> String {
        format!("dev_{}", self.opts.task.metric_name())
    }

    fn micro_batches(&mut self, step: u64) -> anyhow::Result<Vec<FinetuneBatch>> {
        self.batches
            .step(step)
            .into_iter()
            .map(|idx| {
                let examples: Vec<&Example> = idx.iter().map(|&i| &self.train[i]).collect();
                let renderings: Vec<&Rendering> = idx.iter().map(|&i| &self.train_r[i]).collect();
                let mut batch = make_batch(self.opts.task, &examples, &renderings, true);
                batch.pixel_values = to_device(batch.pixel_values, self.opts.device)?;
                Ok(batch)
            })
            .collect()
    }

    fn loss(
        &mut self,
        model: &PixelForFinetuning,
        tape: &mut Tape,
        params: &ParamVars<'_>,
        batch: &FinetuneBatch,
    ) -> Var {
        let mut rng = self.batches.dropout_rng();
        let mode = ForwardMode {
            training: true,
            rng: &mut rng,
        };
        let out = model.forward(tape, params, batch, mode);
        out.loss.expect("labelled batch gives a loss")
    }

    fn evaluate(&mut self, model: &PixelForFinetuning, done: u64) -> anyhow::Result<Evaluation> {
        let task = self.opts.task;
        let predictions = predict(model, task, self.dev, self.dev_r, self.eval_batch)?;
        let report = score(task, self.labels, self.dev, &predictions);
        self.best.update(report, done, model, self.opts)
    }

    fn save(
        &mut self,
        trainer: &Trainer<PixelForFinetuning>,
        _done: u64,
        _why: SaveReason,
    ) -> anyhow::Result<PathBuf> {
        save_last_good(self.opts, trainer)
    }
}

/// OUT/summary.json: the run's settings and results in one machine-readable file.
pub(crate) fn write_summary(
    opts: &FinetuneOptions,
    s: &FinetuneSummary,
    train_examples: usize,
    dev_examples: usize,
) -> anyhow::Result<()> {
    let json = serde_json::json!({
        "task": opts.task.name(),
        "metric": opts.task.metric_name(),
        "train": opts.train.display().to_string(),
        "dev": opts.dev.display().to_string(),
        "train_examples": train_examples,
        "dev_examples": dev_examples,
        "init": opts.init.as_ref().map(|p| p.display().to_string()),
        "scratch_config": opts.scratch_config,
        "max_seq_length": opts.max_seq_length,
        "batch_size": opts.batch_size,
        "grad_accum": opts.grad_accum,
        "lr": opts.lr,
        "steps": s.steps,
        "best_step": s.best_step,
        "stopped_early": s.stopped_early,
        "best_metric": s.best.metric,
        "best_summary": s.best.summary,
        "baseline_metric": s.baseline.metric,
        "baseline_summary": s.baseline.summary,
        "first_loss": s.first_loss,
        "last_loss": s.last_loss,
        "seconds": s.seconds,
    });
    let path = opts.out.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("{}", path.display()))?;
    Ok(())
}
