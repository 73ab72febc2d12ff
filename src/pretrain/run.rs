//! The pretraining loop: data on a worker thread, train steps, evaluation,
//! CSV log, progress bar, checkpoints, reconstructions, Ctrl-C handling.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use pixel_engine::{Rng, Tape, Var};
use pixel_model::train::{PretrainBatch, Trainer};
use pixel_model::{PixelConfig, PixelForPreTraining};
use pixel_render::{Layout, RenderConfig, Renderer};

use super::checkpoint::{load_training_checkpoint, save_training_checkpoint, TrainerState};
use super::corpus::Corpus;
use super::data::{derive_seed, pack_lines, BatchMaker, Prefetcher};
use crate::figures::{write_loss_curve_png, write_reconstruction_png, ReconstructionRow};

/// Settings of one pretraining run.
#[derive(Clone, Debug)]
pub struct PretrainOptions {
    pub config: PixelConfig,
    /// None: the bundled corpus.
    pub corpus: Option<PathBuf>,
    pub out: PathBuf,
    pub steps: u64,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub lr: f32,
    pub min_lr: f32,
    pub warmup_steps: u64,
    pub weight_decay: f32,
    pub max_grad_norm: f32,
    pub seed: u64,
    pub layout: Layout,
    pub eval_every: u64,
    pub save_every: u64,
    pub recon_every: u64,
    pub resume: bool,
    pub progress: bool,
    /// Stop (with a checkpoint) once this many steps are done, keeping the
    /// schedule of `steps` (what Ctrl-C does, at a chosen step).
    pub stop_at: Option<u64>,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct PretrainSummary {
    /// (step, training loss) of every step run in this invocation.
    pub losses: Vec<(u64, f32)>,
    /// (step, eval loss).
    pub eval_losses: Vec<(u64, f32)>,
    pub steps_done: u64,
    pub train_strips: usize,
    pub eval_strips: usize,
    /// Eval loss of the best constant prediction (see [`constant_baseline`]).
    pub constant_baseline: f32,
    pub seconds: f64,
    pub interrupted: bool,
}

/// Checkpoint directory of a run.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

fn make_renderer(cfg: &PixelConfig, layout: Layout) -> anyhow::Result<Renderer> {
    let rc = RenderConfig {
        max_seq_length: cfg.num_patches(),
        layout,
        ..Default::default()
    };
    Renderer::new(rc).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Run (or resume) pretraining. `stop` is polled between steps (Ctrl-C):
/// when set, a checkpoint is written and the run returns early.
pub fn run_pretraining(
    opts: &PretrainOptions,
    stop: &AtomicBool,
) -> anyhow::Result<PretrainSummary> {
    opts.config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    if opts.batch_size == 0 || opts.grad_accum == 0 || opts.steps == 0 {
        bail!("--batch-size, --grad-accum and --steps must be at least 1");
    }
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create output directory {}", opts.out.display()))?;
    let corpus = match &opts.corpus {
        Some(p) => Corpus::load(p)?,
        None => Corpus::bundled(),
    };
    let corpus_name = opts
        .corpus
        .as_ref()
        .map_or("bundled KJV selections".to_string(), |p| {
            p.display().to_string()
        });
    let mut renderer = make_renderer(&opts.config, opts.layout)?;
    let (mut strips, pack) = pack_lines(&corpus.lines, &mut renderer);
    if strips.len() < 2 {
        bail!(
            "corpus {corpus_name} gives only {} strips of text; need at least 2",
            strips.len()
        );
    }
    // Hold out the last 2% of strips (at least 2, at most 64) for evaluation.
    let n_eval = (strips.len() / 50)
        .clamp(2, 64)
        .min(strips.len() / 2)
        .max(1);
    let eval_texts = strips.split_off(strips.len() - n_eval);
    let train_texts = Arc::new(strips);
    if opts.progress {
        eprintln!(
            "corpus: {corpus_name}: {} lines from {} files ({} invalid UTF-8 lines skipped); {} train strips, {} eval strips of {} patches ({} long lines split, {} short strips dropped)",
            corpus.lines.len(), corpus.files, corpus.invalid_utf8_lines, train_texts.len(), eval_texts.len(),
            opts.config.num_patches(), pack.split_lines, pack.dropped_short
        );
    }
    let mut maker = BatchMaker::new(
        train_texts.clone(),
        renderer.fork(),
        opts.batch_size,
        opts.config.mask_ratio,
        opts.seed,
    );
    // Fixed evaluation batches (fixed masks).
    let mut eval_rng = Rng::new(derive_seed(opts.seed, 3, 0));
    let eval_batches: Vec<PretrainBatch> = eval_texts
        .chunks(opts.batch_size)
        .map(|c| maker.render_and_mask(c, &mut eval_rng))
        .collect();

    let baseline = constant_baseline(
        &PixelForPreTraining::new(opts.config.clone(), &mut Rng::new(0)),
        &eval_batches,
    );
    if opts.progress {
        eprintln!(
            "eval: {} strips; best constant prediction (the plateau) scores {baseline:.4}",
            eval_texts.len()
        );
    }
    let state = TrainerState {
        step: 0,
        seed: opts.seed,
        total_steps: opts.steps,
        max_lr: opts.lr,
        min_lr: opts.min_lr,
        warmup_steps: opts.warmup_steps,
        weight_decay: opts.weight_decay,
        max_grad_norm: opts.max_grad_norm,
        batch_size: opts.batch_size,
        grad_accum: opts.grad_accum,
        layout: format!("{:?}", opts.layout).to_lowercase(),
        corpus: corpus_name,
    };
    let ckpt = checkpoint_dir(&opts.out);
    let (mut trainer, mut state) = if opts.resume {
        let (trainer, saved) = load_training_checkpoint(&ckpt, Some(&opts.config))
            .with_context(|| format!("--resume: cannot resume from {}", ckpt.display()))?;
        let same = TrainerState {
            step: saved.step,
            ..state.clone()
        };
        if same != saved {
            bail!("--resume: settings differ from the checkpoint's ({saved:?}); rerun with the same flags");
        }
        (trainer, saved)
    } else {
        let model = PixelForPreTraining::new(
            opts.config.clone(),
            &mut Rng::new(derive_seed(opts.seed, 0, 0)),
        );
        (
            Trainer::new(
                model,
                opts.weight_decay,
                state.schedule(),
                opts.max_grad_norm,
            ),
            state,
        )
    };
    let start_step = trainer.step();
    let csv_path = opts.out.join("log.csv");
    let mut csv = open_log(&csv_path, start_step)?;

    let accum = opts.grad_accum as u64;
    // The data worker produces micro-batches; step s uses micro-batches s*accum .. (s+1)*accum.
    let prefetch = Prefetcher::spawn(maker, start_step * accum, opts.steps * accum, 4);
    let bar = step_progress_bar(opts.progress, opts.steps, start_step);
    let mut summary = PretrainSummary {
        constant_baseline: baseline,
        train_strips: train_texts.len(),
        eval_strips: eval_texts.len(),
        ..Default::default()
    };
    let started = Instant::now();
    let mut step_started = Instant::now();
    for step in start_step..opts.steps {
        if stop.load(Ordering::SeqCst) || opts.stop_at.is_some_and(|s| step >= s) {
            summary.interrupted = true;
            break;
        }
        let mut micro = Vec::with_capacity(opts.grad_accum);
        for _ in 0..accum {
            let (_, b) = prefetch.receiver.recv().context("data worker stopped")?;
            micro.push(b);
        }
        let mut rng = Rng::new(derive_seed(opts.seed, 4, step));
        let stats = match trainer.train_step(&micro, true, &mut rng) {
            Ok(s) => s,
            Err(e) => {
                state.step = trainer.step();
                save_training_checkpoint(&ckpt, &trainer, &state)?;
                bar.abandon();
                bail!(
                    "{e}; stopped and saved the last good checkpoint (step {}) to {}",
                    state.step,
                    ckpt.display()
                );
            }
        };
        let ms = step_started.elapsed().as_secs_f64() * 1e3;
        step_started = Instant::now();
        summary.losses.push((step, stats.loss));
        let done = step + 1;
        let mut eval_loss = None;
        if done % opts.eval_every == 0 || done == opts.steps {
            let l = evaluate(&trainer.model, &eval_batches);
            summary.eval_losses.push((done, l));
            eval_loss = Some(l);
        }
        writeln!(
            csv,
            "{done},{:.6},{},{:.6e},{:.6},{:.1}",
            stats.loss,
            eval_loss.map_or(String::new(), |l| format!("{l:.6}")),
            stats.lr,
            stats.grad_norm,
            ms
        )?;
        let secs = started.elapsed().as_secs_f64();
        let sent_per_s = ((done - start_step) as f64 * (opts.batch_size * opts.grad_accum) as f64)
            / secs.max(1e-9);
        bar.set_position(done);
        bar.set_message(format!(
            "loss {:.4}{} lr {:.2e} {:.1} strips/s",
            stats.loss,
            summary
                .eval_losses
                .last()
                .map_or(String::new(), |(_, l)| format!(" eval {l:.4}")),
            stats.lr,
            sent_per_s
        ));
        if done % opts.save_every == 0 && done != opts.steps {
            state.step = done;
            save_training_checkpoint(&ckpt, &trainer, &state)?;
        }
        if done % opts.recon_every == 0 && done != opts.steps {
            write_reconstructions(
                &trainer.model,
                &eval_batches[0],
                &opts.out.join(format!("recon_step{done:06}.png")),
            )?;
        }
    }
    drop(prefetch);
    csv.flush()?;
    state.step = trainer.step();
    save_training_checkpoint(&ckpt, &trainer, &state)?;
    write_reconstructions(
        &trainer.model,
        &eval_batches[0],
        &opts.out.join("reconstruction.png"),
    )?;
    let (all_train, all_eval) = read_log(&csv_path)?;
    write_loss_curve_png(
        &opts.out.join("loss.png"),
        &all_train,
        &all_eval,
        "pixel pretrain: loss",
    )?;
    summary.steps_done = state.step - start_step;
    summary.seconds = started.elapsed().as_secs_f64();
    bar.finish();
    Ok(summary)
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

/// Mean loss over the fixed evaluation batches (no dropout, no tape).
pub fn evaluate(model: &PixelForPreTraining, batches: &[PretrainBatch]) -> f32 {
    let mut total = 0.0f64;
    for b in batches {
        total += model
            .infer(&b.pixel_values, &b.attention_mask, &b.masking)
            .0 as f64;
    }
    (total / batches.len().max(1) as f64) as f32
}

/// The loss of the best constant prediction on the evaluation batches: every
/// loss patch predicted as the mean target patch (the "grey band" plateau a
/// model sits on before it learns to use context). Eval loss / this < 1 means
/// the model uses the visible patches.
pub fn constant_baseline(model: &PixelForPreTraining, batches: &[PretrainBatch]) -> f32 {
    let dim = model.config.patch_dim();
    let mut targets: Vec<f32> = Vec::new(); // (loss patches, dim)
    for b in batches {
        let mut tape = Tape::no_grad();
        let pixels = Var::constant(b.pixel_values.clone());
        let target = pixel_model::loss::patch_target(&mut tape, &model.config, &pixels);
        for (row, (m, a)) in target
            .data()
            .chunks(dim)
            .zip(b.masking.mask.iter().zip(&b.attention_mask))
        {
            if m * a != 0.0 {
                targets.extend_from_slice(row);
            }
        }
    }
    let n = targets.len() / dim;
    if n == 0 {
        return f32::NAN;
    }
    let mut mean = vec![0.0f64; dim];
    for row in targets.chunks(dim) {
        mean.iter_mut()
            .zip(row)
            .for_each(|(m, &v)| *m += v as f64 / n as f64);
    }
    let se: f64 = targets
        .chunks(dim)
        .map(|row| {
            row.iter()
                .zip(&mean)
                .map(|(&v, m)| (v as f64 - m).powi(2))
                .sum::<f64>()
                / dim as f64
        })
        .sum();
    (se / n as f64) as f32
}

/// Reconstruction figure for (up to 4 examples of) one batch.
pub fn write_reconstructions(
    model: &PixelForPreTraining,
    batch: &PretrainBatch,
    path: &Path,
) -> anyhow::Result<()> {
    let (_, logits) = model.infer(&batch.pixel_values, &batch.attention_mask, &batch.masking);
    let rows = reconstruction_rows(model, batch, logits.data(), 4);
    write_reconstruction_png(
        path,
        &rows,
        model.config.num_patches(),
        model.config.norm_pix_loss,
        false,
    )?;
    let square = path.with_extension("square.png");
    if model.config.num_patches() >= 64 {
        write_reconstruction_png(
            &square,
            &rows,
            model.config.num_patches(),
            model.config.norm_pix_loss,
            true,
        )?;
    }
    Ok(())
}

/// Split a batch and its logits (B, L, P*P*C) into figure rows.
pub fn reconstruction_rows(
    model: &PixelForPreTraining,
    batch: &PretrainBatch,
    logits: &[f32],
    max_rows: usize,
) -> Vec<ReconstructionRow> {
    let l = model.config.num_patches();
    let b = batch.masking.batch;
    let per_image = batch.pixel_values.numel() / b;
    let per_logits = logits.len() / b;
    (0..b.min(max_rows))
        .map(|i| ReconstructionRow {
            pixel_values: batch.pixel_values.data()[i * per_image..(i + 1) * per_image].to_vec(),
            mask: batch.masking.mask[i * l..(i + 1) * l].to_vec(),
            attention_mask: batch.attention_mask[i * l..(i + 1) * l].to_vec(),
            prediction: logits[i * per_logits..(i + 1) * per_logits].to_vec(),
            label: format!("example {i}"),
        })
        .collect()
}

const LOG_HEADER: &str = "step,loss,eval_loss,lr,grad_norm,ms_per_step";

/// Open the CSV log; on resume keep only rows up to `start_step`.
fn open_log(path: &Path, start_step: u64) -> anyhow::Result<std::fs::File> {
    let mut kept = vec![LOG_HEADER.to_string()];
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

/// (step, loss) and (step, eval loss) from the CSV log.
/// (step, value) points of a curve.
type Curve = Vec<(u64, f32)>;

fn read_log(path: &Path) -> anyhow::Result<(Curve, Curve)> {
    let text = std::fs::read_to_string(path)?;
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
