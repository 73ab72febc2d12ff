//! Pretraining as a [`TrainingTask`]: corpus, strips and fixed evaluation
//! batches, data on a worker thread, the masked-reconstruction loss, training
//! checkpoints and reconstruction figures. The loop itself (log.csv, progress
//! bar, Ctrl-C, cadences, non-finite handling) is [`crate::train_loop`].

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context};
use pixel_engine::{Device, Rng, Tape, Tensor, Var};
use pixel_model::data_parallel::DataParallel;
use pixel_model::params::ParamVars;
use pixel_model::train::{pretraining_loss, PretrainBatch, Trainer};
use pixel_model::{PixelConfig, PixelForPreTraining};
use pixel_render::{Layout, RenderConfig, Renderer};

use super::corpus::Corpus;
use super::data::{derive_seed, pack_lines, BatchMaker, Prefetcher};
use super::summary::RunSummary;
use super::training_state::{load_training_checkpoint, save_training_checkpoint, TrainerState};
use crate::figures::{write_loss_curve_png, write_reconstruction_png, ReconstructionRow};
use crate::train_loop::{
    check_optimizer_flags, check_same_parameters, read_log, run_training, to_device, Evaluation,
    LoopSettings, SaveReason, TrainingTask,
};

/// Settings of one pretraining run.
#[derive(Clone, Debug)]
pub struct PretrainOptions {
    /// The model; its `"rendering"` field picks the rendering strategy (absent: continuous).
    pub config: PixelConfig,
    /// None: the bundled corpus.
    pub corpus: Option<PathBuf>,
    pub out: PathBuf,
    pub steps: u64,
    /// Strips per micro-batch, on each rank.
    pub batch_size: usize,
    /// Micro-batches per step on each rank: the global batch of a step is
    /// batch_size x grad_accum x world size strips.
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
    /// Where training runs (parameters and batches; figures and checkpoints
    /// are read back to the host).
    pub device: Device,
    /// Stop (with a checkpoint) once this many steps are done, keeping the
    /// schedule of `steps` (what Ctrl-C does, at a chosen step).
    pub stop_at: Option<u64>,
    /// The ranks this run is shared by (one process by default).
    pub parallel: DataParallel,
    /// With several ranks: check the parameters identical every N steps.
    pub check_every: u64,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct PretrainSummary {
    /// (step, training loss) of every step run in this invocation, steps
    /// counted from 1 as in log.csv.
    pub losses: Vec<(u64, f32)>,
    /// (step, eval loss).
    pub eval_losses: Vec<(u64, f32)>,
    pub steps_done: u64,
    /// Steps done in total (a resumed run's earlier steps included).
    pub last_step: u64,
    pub train_strips: usize,
    pub eval_strips: usize,
    /// Eval loss of the best constant prediction (see [`constant_baseline`]).
    pub constant_baseline: f32,
    pub seconds: f64,
    pub interrupted: bool,
    /// Seconds in the gradient all-reduce (this rank) and bytes per step.
    pub reduce_seconds: f64,
    pub reduce_bytes_per_step: usize,
    /// Of `reduce_seconds`, those not hidden behind backward.
    pub reduce_exposed_seconds: f64,
}

/// Checkpoint directory of a run.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

/// The renderer of a model: L patches and the rendering strategy of its config.
fn make_renderer(cfg: &PixelConfig, layout: Layout) -> anyhow::Result<Renderer> {
    let rc = RenderConfig {
        max_seq_length: cfg.num_patches(),
        layout,
        rendering: crate::rendering::config_rendering(cfg, "the model config")?,
        ..Default::default()
    };
    Renderer::new(rc).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Run (or resume) pretraining. `stop` is polled after every step (Ctrl-C):
/// when set, the run evaluates, writes a checkpoint and returns early.
///
/// With several ranks (`opts.parallel`), step s's global batch is the
/// micro-batches s x M .. (s + 1) x M of the run, M = world size x
/// grad_accum; rank r takes the grad_accum of them starting at
/// s x M + r x grad_accum. A micro-batch's strips, span masks and dropout
/// depend only on the seed and its index in the run, so N ranks x batch b
/// train on exactly what 1 rank x batch b x `--grad-accum N` does.
pub fn run_pretraining(
    opts: &PretrainOptions,
    stop: &AtomicBool,
) -> anyhow::Result<PretrainSummary> {
    opts.config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    if opts.batch_size == 0 || opts.grad_accum == 0 || opts.steps == 0 {
        bail!("--batch-size, --grad-accum and --steps must be at least 1");
    }
    check_optimizer_flags(
        opts.lr,
        Some(opts.min_lr),
        opts.weight_decay,
        opts.max_grad_norm,
    )?;
    crate::check_renderer_patches(&opts.config)?;
    crate::memory::check_training_fits(&opts.config, opts.batch_size, true, "pretraining")?;
    let (rank, world) = (opts.parallel.rank(), opts.parallel.world_size());
    let lead = rank == 0;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create output directory {}", opts.out.display()))?;
    let corpus = match &opts.corpus {
        Some(p) => Corpus::load(p)?,
        None => Corpus::bundled(),
    };
    if opts.progress {
        for line in corpus.skipped_report(20) {
            eprintln!("corpus: skipped {line}");
        }
    }
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
    if opts.progress && lead && renderer.rendering() != pixel_render::RenderingStrategy::Continuous
    {
        eprintln!("rendering: {}", renderer.rendering());
    }
    if opts.progress && lead {
        eprintln!(
            "corpus: {corpus_name}: {} lines from {} files ({} invalid UTF-8 lines, {} files, {} hidden entries skipped); {} train strips, {} eval strips of {} patches ({pack})",
            corpus.lines.len(), corpus.files, corpus.invalid_utf8_lines, corpus.skipped.len(), corpus.hidden, train_texts.len(), eval_texts.len(),
            opts.config.num_patches()
        );
    }
    let mut maker = BatchMaker::new(
        train_texts.clone(),
        renderer.fork(),
        &opts.config,
        opts.batch_size,
        opts.seed,
    );
    // Fixed evaluation batches (fixed masks), kept on the host.
    let mut eval_rng = Rng::new(derive_seed(opts.seed, 3, 0));
    let eval_batches: Vec<PretrainBatch> = eval_texts
        .chunks(opts.batch_size)
        .map(|c| maker.render_and_mask(c, &mut eval_rng))
        .collect();

    let baseline = constant_baseline(
        &PixelForPreTraining::new(opts.config.clone(), &mut Rng::new(0)),
        &eval_batches,
    );
    if opts.progress && lead {
        eprintln!(
            "eval: {} strips; best constant prediction (the plateau) scores {baseline:.4}",
            eval_texts.len()
        );
    }
    let cfg = &opts.config;
    let mut run_summary = RunSummary {
        status: "running".into(),
        model: format!(
            "encoder {} x {}, decoder {} x {}",
            cfg.hidden_size,
            cfg.num_hidden_layers,
            cfg.decoder_hidden_size,
            cfg.decoder_num_hidden_layers
        ),
        rendering: renderer.rendering().to_string(),
        max_seq_length: cfg.num_patches(),
        mask_ratio: cfg.mask_ratio,
        batch_size: opts.batch_size,
        grad_accum: opts.grad_accum,
        ranks: world,
        steps: opts.steps,
        lr: opts.lr,
        seed: opts.seed,
        train_strips: train_texts.len(),
        eval_strips: eval_texts.len(),
        constant_baseline: baseline,
        steps_done: None,
        final_eval_loss: None,
        seconds: None,
    };
    if lead {
        run_summary.write(&opts.out)?;
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
        grad_accum: opts.grad_accum * world,
        layout: format!("{:?}", opts.layout).to_lowercase(),
        corpus: corpus_name,
    };
    let ckpt = checkpoint_dir(&opts.out);
    let (mut trainer, state) = if opts.resume {
        let (trainer, saved) = load_training_checkpoint(&ckpt, Some(&opts.config), opts.device)
            .with_context(|| format!("--resume: cannot resume from {}", ckpt.display()))?;
        let differences = saved.differences(&state);
        if !differences.is_empty() {
            bail!(
                "--resume: {} settings differ from those of {} (checkpoint vs flags): {}; its grad_accum counts the micro-batches of all ranks (here {world} rank(s) x --grad-accum {}); rerun with the checkpoint's flags",
                differences.len(),
                ckpt.join("trainer_state.json").display(),
                differences.join(", "),
                opts.grad_accum
            );
        }
        (trainer, saved)
    } else {
        let mut model = PixelForPreTraining::new(
            opts.config.clone(),
            &mut Rng::new(derive_seed(opts.seed, 0, 0)),
        );
        model
            .params
            .to_device(opts.device)
            .map_err(|e| anyhow::anyhow!("moving the model to {:?}: {e}", opts.device))?;
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
    trainer.parallel = opts.parallel.clone();
    // Every rank starts from rank 0's state (bit-identical), checked.
    trainer
        .parallel
        .broadcast_state(&mut trainer.model.params, &mut trainer.optimizer)
        .map_err(|e| anyhow::anyhow!("sharing rank 0's parameters: {e}"))?;
    let start_step = trainer.step();
    check_same_parameters(&trainer, start_step)?;
    let (accum, per_step) = (opts.grad_accum as u64, (opts.grad_accum * world) as u64);
    let first = rank as u64 * accum;
    // The data worker produces this rank's micro-batches of steps start_step.. in order.
    let micro_ids = (start_step..opts.steps)
        .flat_map(move |s| (0..accum).map(move |a| s * per_step + first + a));
    let prefetch = Prefetcher::spawn(maker, micro_ids, 4);
    let mut task = Pretraining {
        opts,
        prefetch,
        micro_ids: Vec::new(),
        used: 0,
        rng: Rng::new(0),
        eval_batches,
        ckpt,
        state,
    };
    let settings = LoopSettings {
        out: opts.out.clone(),
        steps: opts.steps,
        start_step,
        stop_at: opts.stop_at,
        eval_every: opts.eval_every,
        save_every: Some(opts.save_every),
        examples_per_step: opts.batch_size * opts.grad_accum * world,
        unit: "strips",
        progress: opts.progress,
        check_every: opts.check_every,
    };
    let outcome = run_training(&mut trainer, &mut task, &settings, stop)?;
    let done = trainer.step();
    check_same_parameters(&trainer, done)?;
    let summary = PretrainSummary {
        losses: outcome.losses,
        eval_losses: outcome.evaluations,
        steps_done: done - start_step,
        last_step: done,
        train_strips: train_texts.len(),
        eval_strips: eval_texts.len(),
        constant_baseline: baseline,
        seconds: outcome.seconds,
        interrupted: outcome.interrupted,
        reduce_seconds: outcome.reduce_seconds,
        reduce_bytes_per_step: outcome.reduce_bytes_per_step,
        reduce_exposed_seconds: outcome.reduce_exposed_seconds,
    };
    // Rank 0 alone writes the final checkpoint and figures.
    if !lead {
        return Ok(summary);
    }
    run_summary.status = if summary.interrupted {
        "interrupted"
    } else {
        "done"
    }
    .into();
    run_summary.steps_done = Some(summary.last_step);
    run_summary.final_eval_loss = summary.eval_losses.last().map(|e| e.1);
    run_summary.seconds = Some(summary.seconds);
    run_summary.write(&opts.out)?;
    task.save(&trainer, done, SaveReason::Cadence)?;
    write_reconstructions(
        &trainer.model,
        &task.eval_batches[0],
        &opts.out.join("reconstruction.png"),
    )?;
    let (all_train, all_eval) = read_log(&opts.out.join("log.csv"))?;
    write_loss_curve_png(
        &opts.out.join("loss.png"),
        &all_train,
        &all_eval,
        "pixel pretrain: loss",
    )?;
    Ok(summary)
}

/// Pretraining as the run loop sees it: batches from the data worker, the
/// masked-reconstruction loss, the eval loss, training checkpoints and
/// reconstruction figures.
struct Pretraining<'a> {
    opts: &'a PretrainOptions,
    prefetch: Prefetcher,
    /// Run-wide indices of the current step's micro-batches on this rank,
    /// and how many of them the loss has used.
    micro_ids: Vec<u64>,
    used: usize,
    /// Dropout RNG of the current micro-batch (derived from the seed and the
    /// micro-batch's index in the run).
    rng: Rng,
    /// The fixed evaluation batches (on the host).
    eval_batches: Vec<PretrainBatch>,
    ckpt: PathBuf,
    state: TrainerState,
}

impl TrainingTask for Pretraining<'_> {
    type Model = PixelForPreTraining;
    type Batch = PretrainBatch;

    fn eval_column(&self) -> String {
        "eval_loss".into()
    }

    fn micro_batches(&mut self, _step: u64) -> anyhow::Result<Vec<PretrainBatch>> {
        self.micro_ids.clear();
        self.used = 0;
        (0..self.opts.grad_accum)
            .map(|_| {
                let (id, batch) = self
                    .prefetch
                    .receiver
                    .recv()
                    .context("data worker stopped")?;
                self.micro_ids.push(id);
                batch_to_device(batch, self.opts.device)
            })
            .collect()
    }

    fn loss(
        &mut self,
        model: &PixelForPreTraining,
        tape: &mut Tape,
        params: &ParamVars<'_>,
        batch: &PretrainBatch,
    ) -> Var {
        // With one micro-batch per step its index is the step: the dropout
        // stream of a plain run is the one it always was.
        let id = self.micro_ids.get(self.used).copied().unwrap_or(u64::MAX);
        self.used += 1;
        self.rng = Rng::new(derive_seed(self.opts.seed, 4, id));
        pretraining_loss(model, tape, params, batch, true, &mut self.rng)
    }

    fn evaluate(&mut self, model: &PixelForPreTraining, _done: u64) -> anyhow::Result<Evaluation> {
        Ok(Evaluation {
            value: evaluate(model, &self.eval_batches)?,
            note: None,
            stop: false,
        })
    }

    fn save(&mut self, trainer: &Trainer, done: u64, _why: SaveReason) -> anyhow::Result<PathBuf> {
        self.state.step = done;
        save_training_checkpoint(&self.ckpt, trainer, &self.state)?;
        Ok(self.ckpt.clone())
    }

    fn after_step(&mut self, trainer: &Trainer, done: u64) -> anyhow::Result<()> {
        if done.is_multiple_of(self.opts.recon_every) && done != self.opts.steps {
            write_reconstructions(
                &trainer.model,
                &self.eval_batches[0],
                &self.opts.out.join(format!("recon_step{done:06}.png")),
            )?;
        }
        Ok(())
    }
}

/// A pretraining batch with its pixels on `device`.
pub fn batch_to_device(mut batch: PretrainBatch, device: Device) -> anyhow::Result<PretrainBatch> {
    batch.pixel_values = Arc::new(to_device(Arc::unwrap_or_clone(batch.pixel_values), device)?);
    Ok(batch)
}

/// Inference on a host batch with the model wherever its parameters are:
/// (loss, logits on the host).
fn infer_on_model_device(
    model: &PixelForPreTraining,
    batch: &PretrainBatch,
) -> anyhow::Result<(f32, Tensor)> {
    let pixel_values = to_device((*batch.pixel_values).clone(), model.params.device())?;
    let (loss, logits) = model.infer(&pixel_values, &batch.attention_mask, &batch.masking);
    Ok((loss, logits.to_host()))
}

/// Mean loss over the fixed evaluation batches (no dropout, no tape).
pub fn evaluate(model: &PixelForPreTraining, batches: &[PretrainBatch]) -> anyhow::Result<f32> {
    let mut total = 0.0f64;
    for b in batches {
        total += infer_on_model_device(model, b)?.0 as f64;
    }
    Ok((total / batches.len().max(1) as f64) as f32)
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
        let pixels = Var::constant_arc(b.pixel_values.clone());
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
    let (_, logits) = infer_on_model_device(model, batch)?;
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
