//! The training run loop, written once for pretraining and finetuning. Around
//! [`Trainer::train_on`] (the step: forward, backward, accumulation, clipping,
//! AdamW) it owns what every run does the same way:
//!
//! - `OUT/log.csv`: `step,loss,<eval column>,lr,grad_norm,ms_per_step`, one row
//!   per step; on resume the rows up to the resumed step are kept.
//! - the progress bar (step, loss, last evaluation, lr, examples/s, ETA);
//! - Ctrl-C (the `stop` flag) and `stop_at`: the run ends after the current
//!   step, with an evaluation at that step;
//! - evaluation every `eval_every` steps and at the last step; the task may ask
//!   to stop there (early stopping);
//! - a checkpoint every `save_every` steps;
//! - a non-finite loss or gradient: nothing is updated, the last good state is
//!   saved (unless no step of this run succeeded, or that state is not finite
//!   either: then nothing is written), the run stops with an error naming the
//!   step and the parameter (and its group) or micro-batch at fault.
//!
//! With several ranks (`mpirun -np N`, the trainer's communicator) every rank
//! runs this loop on its share of each global batch; rank 0 alone writes
//! log.csv, checkpoints, figures and the progress bar; the parameters are
//! checked identical on every rank every `check_every` steps and before every
//! checkpoint; Ctrl-C on any rank stops every rank after the same step.
//!
//! What differs between tasks is a [`TrainingTask`]: its batches, its loss, its
//! evaluation and how it saves. Pretraining's is in `src/pretrain/run.rs`,
//! finetuning's in `src/finetune/run.rs`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use pixel_engine::{Device, Tape, Var};
use pixel_model::params::ParamVars;
use pixel_model::train::{HasParams, Trainer};

/// The task-specific half of a training run.
pub trait TrainingTask {
    type Model: HasParams;
    type Batch;

    /// The evaluation column of log.csv and the progress bar ("eval_loss",
    /// "dev_accuracy").
    fn eval_column(&self) -> String;

    /// The micro-batches of step `step` (counted from 0), on the model's
    /// device. Called once per step, before that step's [`TrainingTask::loss`]
    /// calls.
    fn micro_batches(&mut self, step: u64) -> anyhow::Result<Vec<Self::Batch>>;

    /// The scalar loss of one micro-batch (the step's loss closure).
    fn loss(
        &mut self,
        model: &Self::Model,
        tape: &mut Tape,
        params: &ParamVars<'_>,
        batch: &Self::Batch,
    ) -> Var;

    /// Evaluates the model after `done` steps.
    fn evaluate(&mut self, model: &Self::Model, done: u64) -> anyhow::Result<Evaluation>;

    /// Saves the state after `done` steps; returns the directory written.
    /// Called on rank 0 only.
    fn save(
        &mut self,
        trainer: &Trainer<Self::Model>,
        done: u64,
        why: SaveReason,
    ) -> anyhow::Result<PathBuf>;

    /// Anything else to do after step `done` (pretraining's reconstruction
    /// figures); called on rank 0 only. Nothing by default.
    fn after_step(&mut self, _trainer: &Trainer<Self::Model>, _done: u64) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Why the loop asks the task to save.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveReason {
    /// Every `save_every` steps.
    Cadence,
    /// A step gave a non-finite loss or gradient: the state before it.
    LastGood,
}

/// What one evaluation found.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// Written to the evaluation column of log.csv.
    pub value: f32,
    /// A line printed above the progress bar, if any.
    pub note: Option<String>,
    /// End the run here (early stopping).
    pub stop: bool,
}

/// The loop's settings.
#[derive(Clone, Debug)]
pub struct LoopSettings {
    /// log.csv is written here.
    pub out: PathBuf,
    /// Steps of the schedule: the run ends after step `steps`.
    pub steps: u64,
    /// Steps already done (resume).
    pub start_step: u64,
    /// End once this many steps are done, keeping the schedule of `steps`.
    pub stop_at: Option<u64>,
    pub eval_every: u64,
    /// `None`: no periodic checkpoints (the task saves what it keeps itself).
    pub save_every: Option<u64>,
    /// Examples per optimizer step (batch x accumulation), for examples/s.
    pub examples_per_step: usize,
    /// What an example is called in the progress bar ("strips", "examples").
    pub unit: &'static str,
    pub progress: bool,
    /// With several ranks: compare parameter checksums every this many steps
    /// (and before every checkpoint).
    pub check_every: u64,
}

/// `--check-every`'s default.
pub const DEFAULT_CHECK_EVERY: u64 = 100;

/// What the loop did.
#[derive(Clone, Debug, Default)]
pub struct LoopOutcome {
    /// (step, training loss) of every step run, steps counted from 1.
    pub losses: Vec<(u64, f32)>,
    /// (step, evaluation value).
    pub evaluations: Vec<(u64, f32)>,
    /// Steps done in total (start step included).
    pub last_step: u64,
    /// Ctrl-C or `stop_at` ended the run before step `steps`.
    pub interrupted: bool,
    /// The task asked to stop (early stopping).
    pub stopped_by_task: bool,
    pub seconds: f64,
    /// Seconds this rank spent in the gradient all-reduce, over all steps
    /// run, and the bytes it sent to it per step (0 on one process).
    pub reduce_seconds: f64,
    pub reduce_bytes_per_step: usize,
    /// Of `reduce_seconds`, those the steps waited for after backward (the
    /// part overlap did not hide).
    pub reduce_exposed_seconds: f64,
}

/// Runs steps `start_step + 1 ..= steps` of `trainer` on `task`. `stop` is
/// polled after every step (Ctrl-C).
pub fn run_training<T: TrainingTask>(
    trainer: &mut Trainer<T::Model>,
    task: &mut T,
    settings: &LoopSettings,
    stop: &AtomicBool,
) -> anyhow::Result<LoopOutcome> {
    anyhow::ensure!(settings.eval_every > 0, "--eval-every must be at least 1");
    anyhow::ensure!(settings.check_every > 0, "--check-every must be at least 1");
    let lead = trainer.parallel.rank() == 0;
    let column = task.eval_column();
    let csv_path = settings.out.join("log.csv");
    let mut csv = match lead {
        true => Some(open_log(&csv_path, &column, settings.start_step)?),
        false => None,
    };
    let bar = step_progress_bar(
        settings.progress && lead,
        settings.steps,
        settings.start_step,
    );
    let mut outcome = LoopOutcome {
        last_step: settings.start_step,
        ..Default::default()
    };
    let started = Instant::now();
    let mut last_eval: Option<f32> = None;
    let reached_stop_at = |done: u64| settings.stop_at.is_some_and(|s| done >= s);
    outcome.interrupted = reached_stop_at(settings.start_step);
    for step in settings.start_step..settings.steps {
        if outcome.interrupted || outcome.stopped_by_task {
            break;
        }
        let step_started = Instant::now();
        trainer.parallel.comm.set_step(step + 1);
        let micro = task.micro_batches(step)?;
        let stats = match trainer.train_on(&micro, |model, tape, params, batch| {
            task.loss(model, tape, params, batch)
        }) {
            Ok(s) => s,
            Err(e) => {
                bar.abandon();
                let Some(csv) = csv.as_mut() else {
                    bail!("{e}; stopped (rank 0 saves the last good state, after step {step})");
                };
                csv.flush()?;
                if step == settings.start_step {
                    bail!(
                        "{e}; stopped at the first step of this run: no step succeeded, so nothing was saved"
                    );
                }
                // The save refuses non-finite weights (e.g. an update that
                // overflowed them): then there is no good state to keep.
                match task.save(trainer, step, SaveReason::LastGood) {
                    Ok(dir) => bail!(
                        "{e}; stopped and saved the last good state (after step {step}) to {}",
                        dir.display()
                    ),
                    Err(save) => bail!(
                        "{e}; stopped with no good state to save: the state after step {step} is not usable either ({save:#}); nothing was written"
                    ),
                }
            }
        };
        drop(micro);
        outcome.reduce_seconds += stats.reduce_s;
        outcome.reduce_exposed_seconds += stats.reduce_exposed_s;
        outcome.reduce_bytes_per_step = stats.reduce_bytes;
        let ms = step_started.elapsed().as_secs_f64() * 1e3;
        let done = step + 1;
        outcome.losses.push((done, stats.loss));
        outcome.last_step = done;
        outcome.interrupted =
            any_rank(trainer, stop.load(Ordering::SeqCst))? || reached_stop_at(done);
        let mut eval_value = String::new();
        if done.is_multiple_of(settings.eval_every) || done == settings.steps || outcome.interrupted
        {
            // Every rank evaluates (identical parameters, identical result), so
            // an early stop is the same decision everywhere.
            let e = task.evaluate(&trainer.model, done)?;
            if let Some(note) = &e.note {
                bar.println(note);
            }
            outcome.evaluations.push((done, e.value));
            outcome.stopped_by_task = e.stop;
            last_eval = Some(e.value);
            eval_value = format!("{:.6}", e.value);
        }
        let save =
            settings.save_every.is_some_and(|n| done.is_multiple_of(n)) && done != settings.steps;
        if save || done.is_multiple_of(settings.check_every) {
            check_same_parameters(trainer, done)?;
        }
        let Some(csv) = csv.as_mut() else {
            continue;
        };
        writeln!(
            csv,
            "{done},{:.6},{eval_value},{:.6e},{:.6},{ms:.1}",
            stats.loss, stats.lr, stats.grad_norm
        )?;
        let per_s = (outcome.losses.len() * settings.examples_per_step) as f64
            / started.elapsed().as_secs_f64().max(1e-9);
        bar.set_position(done);
        bar.set_message(format!(
            "loss {:.4}{} lr {:.2e} {per_s:.1} {}/s",
            stats.loss,
            last_eval.map_or(String::new(), |v| format!(" {column} {v:.4}")),
            stats.lr,
            settings.unit,
        ));
        if save {
            task.save(trainer, done, SaveReason::Cadence)
                .with_context(|| format!("step {done}: the checkpoint was not written"))?;
        }
        task.after_step(trainer, done)?;
    }
    if let Some(csv) = csv.as_mut() {
        csv.flush()?;
    }
    bar.finish_and_clear();
    outcome.seconds = started.elapsed().as_secs_f64();
    Ok(outcome)
}

/// Checks the optimizer flags every run shares before anything is loaded: a
/// learning rate that is not a positive finite number (or a negative decay or
/// clip norm) would train to NaN, or away from the loss, and save that.
pub fn check_optimizer_flags(
    lr: f32,
    min_lr: Option<f32>,
    weight_decay: f32,
    max_grad_norm: f32,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        lr.is_finite() && lr > 0.0,
        "--lr must be a positive finite number, got {lr}"
    );
    if let Some(min_lr) = min_lr {
        anyhow::ensure!(
            min_lr.is_finite() && (0.0..=lr).contains(&min_lr),
            "--min-lr must be a finite number in [0, --lr {lr}], got {min_lr}"
        );
    }
    anyhow::ensure!(
        weight_decay.is_finite() && weight_decay >= 0.0,
        "--weight-decay must be a finite number >= 0, got {weight_decay}"
    );
    anyhow::ensure!(
        max_grad_norm.is_finite() && max_grad_norm > 0.0,
        "--max-grad-norm must be a positive finite number, got {max_grad_norm}"
    );
    Ok(())
}

/// Is `mine` true on any rank (Ctrl-C reached one of them)? One process:
/// `mine`.
fn any_rank<M: HasParams>(trainer: &Trainer<M>, mine: bool) -> anyhow::Result<bool> {
    if trainer.parallel.world_size() == 1 {
        return Ok(mine);
    }
    let mut flag = [mine as u8 as f32];
    trainer
        .parallel
        .comm
        .all_reduce_sum_scale(&mut flag, 1.0)
        .map_err(|e| anyhow::anyhow!("sharing the stop flag: {e}"))?;
    Ok(flag[0] > 0.0)
}

/// Stops the run when the ranks no longer hold identical parameters after
/// `done` steps (a no-op on one process).
pub fn check_same_parameters<M: HasParams>(trainer: &Trainer<M>, done: u64) -> anyhow::Result<()> {
    trainer
        .parallel
        .check_identical(trainer.model.params(), done)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// `--device`: where training runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    /// The CPU kernels (AVX2/FMA when present).
    #[default]
    Cpu,
    /// NVIDIA GPU 0 (a build with --features cuda and an NVIDIA driver).
    Cuda,
}

impl DeviceArg {
    /// The engine device, checked usable now: a clear error when this build has
    /// no CUDA support or no driver is found.
    pub fn open(self) -> anyhow::Result<Device> {
        match self {
            DeviceArg::Cpu => Ok(Device::Cpu),
            DeviceArg::Cuda => open_cuda(),
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn open_cuda() -> anyhow::Result<Device> {
    bail!("--device cuda: this build has no CUDA support; rebuild with --features cuda")
}

#[cfg(feature = "cuda")]
fn open_cuda() -> anyhow::Result<Device> {
    pixel_engine::kernels::cuda::device(0).map_err(|e| anyhow::anyhow!("--device cuda: {e}"))?;
    Ok(Device::Cuda(0))
}

/// `tensor` on `device` (no copy when it is there already).
pub fn to_device(
    tensor: pixel_engine::Tensor,
    device: Device,
) -> anyhow::Result<pixel_engine::Tensor> {
    if tensor.device() == device {
        return Ok(tensor);
    }
    tensor
        .to_device(device)
        .map_err(|e| anyhow::anyhow!("moving a batch to {device:?}: {e}"))
}

/// A step progress bar (hidden when `enabled` is false), starting at `start`.
pub fn step_progress_bar(enabled: bool, steps: u64, start: u64) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] step {pos}/{len} {msg} (ETA {eta})",
        )
        .expect("progress template")
        .progress_chars("=> "),
    );
    bar.set_position(start);
    bar
}

/// Opens log.csv with its header; on resume keeps the rows up to `start_step`.
fn open_log(path: &Path, eval_column: &str, start_step: u64) -> anyhow::Result<std::fs::File> {
    let mut kept = vec![format!("step,loss,{eval_column},lr,grad_norm,ms_per_step")];
    if start_step > 0 {
        if let Ok(text) = std::fs::read_to_string(path) {
            kept.extend(
                text.lines()
                    .skip(1)
                    .filter(|l| {
                        l.split(',')
                            .next()
                            .and_then(|s| s.parse::<u64>().ok())
                            .is_some_and(|s| s <= start_step)
                    })
                    .map(String::from),
            );
        }
    }
    let mut f =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    for l in kept {
        writeln!(f, "{l}")?;
    }
    Ok(f)
}

/// (step, value) points of a curve.
pub type Curve = Vec<(u64, f32)>;

/// (step, training loss) and (step, evaluation value) from a log.csv.
pub fn read_log(path: &Path) -> anyhow::Result<(Curve, Curve)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (mut train, mut eval) = (Vec::new(), Vec::new());
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        let Some(step) = cols.first().and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        if let Some(l) = cols.get(1).and_then(|s| s.parse::<f32>().ok()) {
            train.push((step, l));
        }
        if let Some(l) = cols.get(2).and_then(|s| s.parse::<f32>().ok()) {
            eval.push((step, l));
        }
    }
    Ok((train, eval))
}
