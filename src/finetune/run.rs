//! The finetuning loop: model from a checkpoint (or from scratch), AdamW with
//! warmup and linear decay, evaluation on the dev set every N steps, early
//! stopping, the best checkpoint kept, a CSV log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context};
use pixel_engine::optim::{AdamW, AdamWConfig, LrSchedule};
use pixel_engine::{Rng, Tape};
use pixel_model::checkpoint::save_checkpoint;
use pixel_model::heads::{is_encoder_param, Pooling};
use pixel_model::train::{accumulate_gradients, clip_and_update};
use pixel_model::ForwardMode;
use pixel_render::Layout;

use crate::pretrain::run::step_progress_bar;

use super::checkpoint::{build_model, task_metadata};
pub use super::checkpoint::{load_finetuned, task_renderer, FinetunedModel};
use super::data::{load_dataset, make_batch, render_examples, BatchOrder, Dataset, Example};
use super::eval::{majority_predictions, predict, rendered_words, score, EvalReport};
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
    pub pooling: Pooling,
    /// Class labels (classification); `None` reads them from the train file.
    pub labels: Option<Vec<String>>,
    /// Use only the first N training / dev examples (quick runs and tests).
    pub max_train_examples: Option<usize>,
    pub max_dev_examples: Option<usize>,
    pub progress: bool,
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

/// Runs finetuning; writes OUT/log.csv, OUT/summary.json and OUT/best
/// (config.json + model.safetensors). Setting `stop` ends the run after the
/// current step, with a last dev evaluation.
pub fn run_finetuning(
    opts: &FinetuneOptions,
    stop: &AtomicBool,
) -> anyhow::Result<FinetuneSummary> {
    anyhow::ensure!(opts.batch_size > 0, "--batch-size must be at least 1");
    anyhow::ensure!(opts.grad_accum > 0, "--grad-accum must be at least 1");
    anyhow::ensure!(opts.steps > 0, "--steps must be at least 1");
    anyhow::ensure!(opts.eval_every > 0, "--eval-every must be at least 1");
    let task = opts.task;
    let labels = match (task.fixed_labels(), &opts.labels) {
        (Some(fixed), _) => fixed,
        (None, Some(given)) => given.clone(),
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
    let renderer = task_renderer(opts.max_seq_length, opts.layout)?;
    let (train_r, train_stats) = render_examples(&renderer, &train, opts.progress, "train");
    let (dev_r, dev_stats) = render_examples(&renderer, &dev, opts.progress, "dev");
    eprintln!("train {}: {train_stats}", opts.train.display());
    eprintln!("dev {}: {dev_stats}", opts.dev.display());

    let mut rng = Rng::new(opts.seed);
    let head = task.head(labels.len(), opts.pooling);
    let mut model = build_model(opts, head, &mut rng)?;
    task_metadata(&mut model.config, task, &labels, opts.layout, opts.pooling);
    if opts.freeze_encoder {
        model.params.freeze(is_encoder_param);
    }
    let mut optimizer = AdamW::new(AdamWConfig {
        weight_decay: opts.weight_decay,
        ..Default::default()
    });
    let schedule = LrSchedule::WarmupLinear {
        max_lr: opts.lr,
        warmup: opts.warmup_steps,
        total: opts.steps,
    };

    std::fs::create_dir_all(&opts.out).with_context(|| format!("{}", opts.out.display()))?;
    let csv_path = opts.out.join("log.csv");
    let mut csv = std::io::BufWriter::new(
        std::fs::File::create(&csv_path).with_context(|| format!("{}", csv_path.display()))?,
    );
    writeln!(
        csv,
        "step,loss,lr,grad_norm,dev_{},ms_per_step",
        task.metric_name()
    )?;

    let eval_batch = opts.batch_size.max(16);
    let dev_words = rendered_words(&dev_r);
    let baseline = score(
        task,
        &labels,
        &dev,
        &majority_predictions(task, &train, &dev, &dev_words),
    );
    let mut best = score(
        task,
        &labels,
        &dev,
        &predict(&model, task, &dev, &dev_r, eval_batch),
    );
    eprintln!(
        "dev before training: {} | majority baseline: {}",
        best.summary, baseline.summary
    );
    let best_path = best_dir(&opts.out);
    save_checkpoint(&best_path, &model.config, &model.params.state_dict())?;
    let mut best_step = 0;
    let mut since_best = 0;
    let mut stopped_early = false;

    let bar = step_progress_bar(opts.progress, opts.steps, 0);
    let mut order = BatchOrder::new(train.len(), opts.batch_size, opts.seed ^ 0x5eed);
    let start = Instant::now();
    let (mut first_loss, mut last_loss) = (f32::NAN, f32::NAN);
    let mut step = 0u64;
    while step < opts.steps {
        let t0 = Instant::now();
        let n = opts.grad_accum as f32;
        let mut sum = vec![None; model.params.len()];
        let mut loss_total = 0.0f64;
        for _ in 0..opts.grad_accum {
            let idx = order.next_batch();
            let ex: Vec<&Example> = idx.iter().map(|&i| &train[i]).collect();
            let rs: Vec<_> = idx.iter().map(|&i| &train_r[i]).collect();
            let batch = make_batch(task, &ex, &rs, true);
            let mut tape = Tape::new();
            let pv = model.params.vars(&mut tape);
            let mode = ForwardMode {
                training: true,
                rng: &mut rng,
            };
            let out = model.forward(&mut tape, &pv, &batch, mode);
            let loss_var = out.loss.expect("labelled batch gives a loss");
            let loss = loss_var.value().item();
            if !loss.is_finite() {
                bail!("step {}: the training loss is {loss}", step + 1);
            }
            loss_total += loss as f64;
            let mut grads = tape.backward(&loss_var);
            let grads = model.params.take_grads(&pv, &mut grads);
            accumulate_gradients(&mut sum, grads, n);
        }
        let lr = schedule.lr(step);
        let (grad_norm, _) = clip_and_update(
            &mut model.params,
            &mut optimizer,
            &mut sum,
            opts.max_grad_norm,
            lr,
        )?;
        step += 1;
        let loss = (loss_total / n as f64) as f32;
        if step == 1 {
            first_loss = loss;
        }
        last_loss = loss;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let mut dev_metric = String::new();
        let interrupted = stop.load(Ordering::SeqCst);
        if step.is_multiple_of(opts.eval_every) || step == opts.steps || interrupted {
            let report = score(
                task,
                &labels,
                &dev,
                &predict(&model, task, &dev, &dev_r, eval_batch),
            );
            let metric = report.metric;
            dev_metric = format!("{metric:.4}");
            if metric > best.metric || best_step == 0 {
                best = report;
                best_step = step;
                since_best = 0;
                save_checkpoint(&best_path, &model.config, &model.params.state_dict())?;
            } else {
                since_best += 1;
            }
            bar.println(format!(
                "step {step}: dev {} {metric:.2} (best {:.2} at step {best_step})",
                task.metric_name(),
                best.metric
            ));
        }
        writeln!(
            csv,
            "{step},{loss:.6},{lr:.6e},{grad_norm:.6},{dev_metric},{ms:.1}"
        )?;
        bar.set_position(step);
        bar.set_message(format!("loss {loss:.4}"));
        if interrupted || (since_best >= opts.patience && opts.patience > 0) {
            stopped_early = true;
            break;
        }
    }
    bar.finish_and_clear();
    csv.flush()?;
    let summary = FinetuneSummary {
        steps: step,
        best_step,
        best,
        baseline,
        first_loss,
        last_loss,
        seconds: start.elapsed().as_secs_f64(),
        stopped_early,
        best_dir: best_path,
    };
    write_summary(opts, &summary, train.len(), dev.len())?;
    Ok(summary)
}

/// OUT/summary.json: the run's settings and results in one machine-readable file.
fn write_summary(
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
