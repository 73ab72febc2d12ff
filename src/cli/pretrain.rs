//! `pixel pretrain`: train PIXEL on rendered text (the main job).

use std::path::PathBuf;

use pixel::pretrain::run::{checkpoint_dir, run_pretraining, PretrainOptions};
use pixel::rendering::{config_rendering, set_config_rendering};
use pixel::train_loop::DeviceArg;

use super::parallel::ParallelArgs;
use pixel_render::{Layout, RenderingStrategy};

use super::bench::resolve_config;
use super::mem::{format_bytes, peak_rss_bytes};

/// Arguments of `pixel pretrain`. With no flags: a tiny PIXEL (hidden 64, 2
/// layers; decoder 32 x 2) on 32-patch strips of the bundled corpus, 20,000
/// steps, about 10 minutes on 2 cores.
#[derive(clap::Args, Debug)]
pub struct PretrainArgs {
    /// Model preset (tiny, mini, small, base: `pixel info --presets`) or a config.json path.
    #[arg(long, default_value = "tiny")]
    pub config: String,
    /// Patches per strip (L). PIXEL-base uses 529; the default run uses short strips.
    #[arg(long, default_value_t = 32)]
    pub max_seq_length: usize,
    /// Strips per micro-batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Micro-batches per optimizer step (gradient accumulation).
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Optimizer steps.
    #[arg(long, default_value_t = 20_000)]
    pub steps: u64,
    /// Peak learning rate (after warmup; cosine decay to --min-lr).
    #[arg(long, default_value_t = 3e-3)]
    pub lr: f32,
    /// Floor of the cosine decay (PIXEL: 1e-5).
    #[arg(long, default_value_t = 1e-5)]
    pub min_lr: f32,
    /// Warmup steps (default: 5% of --steps, as PIXEL's schedule).
    #[arg(long)]
    pub warmup_steps: Option<u64>,
    /// AdamW decoupled weight decay (not applied to biases and LayerNorm weights).
    #[arg(long, default_value_t = 0.05)]
    pub weight_decay: f32,
    /// Dropout for hidden states and attention (default: the preset's; PIXEL
    /// pretraining uses 0.1, the tiny preset 0).
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Std of the normal init of Linear weights and tokens (config
    /// initializer_range; PIXEL uses 0.02).
    #[arg(long)]
    pub init_std: Option<f64>,
    /// Fraction of each strip's patches masked, in spans (config mask_ratio; PIXEL
    /// uses 0.25). Lower is an easier reconstruction task with more context.
    #[arg(long)]
    pub mask_ratio: Option<f64>,
    /// Activation checkpointing: recompute the MLPs' hidden activations in
    /// backward instead of keeping them (the same gradients; less memory, more
    /// FLOPs). A bare `--recompute-mlp` means all.
    #[arg(long, value_enum, default_value_t = super::RecomputeArg::None, num_args = 0..=1, default_missing_value = "all")]
    pub recompute_mlp: super::RecomputeArg,
    /// Seed of everything random: init, data order, masks, dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Text corpus: a file, a directory, or .conllu files. Default: the bundled KJV selections.
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Rendering strategy: continuous (PIXEL's), bigrams, mono or words (default: the
    /// config file's, else continuous). Written into the checkpoint's config.json, so
    /// finetuning, evaluation and reconstruction draw strips the same way.
    #[arg(long)]
    pub rendering: Option<RenderingStrategy>,
    /// Renderer layout of the continuous and words renderings: pygame (as PIXEL's pretraining
    /// data; the default for continuous) or pango (the default for the others).
    #[arg(long)]
    pub layout: Option<Layout>,
    /// Output directory (checkpoint, log.csv, loss.png, reconstructions).
    #[arg(long, default_value = "out/pretrain")]
    pub out: PathBuf,
    /// Evaluate on the held-out strips every N steps.
    #[arg(long, default_value_t = 500)]
    pub eval_every: u64,
    /// Write a checkpoint every N steps (and at the end, and on Ctrl-C).
    #[arg(long, default_value_t = 2500)]
    pub save_every: u64,
    /// Write a reconstruction figure every N steps (and at the end).
    #[arg(long, default_value_t = 2500)]
    pub recon_every: u64,
    /// Stop after this many steps (checkpoint written), keeping the schedule of --steps.
    #[arg(long)]
    pub stop_at: Option<u64>,
    /// Continue from OUT/checkpoint with the same settings.
    #[arg(long)]
    pub resume: bool,
    /// Where training runs: cpu, or cuda (GPU 0: the model's parameters and
    /// every batch live there; needs a build with --features cuda and an
    /// NVIDIA driver). Checkpoints and figures are read back to the host.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    #[command(flatten)]
    pub parallel: ParallelArgs,
}

pub fn run(args: PretrainArgs) -> anyhow::Result<()> {
    let parallel = args.parallel.open(args.device)?;
    let lead = parallel.rank() == 0;
    let device = args.device.open()?;
    let mut config = resolve_config(&args.config, args.max_seq_length)?;
    args.recompute_mlp.apply();
    if let Some(p) = args.dropout {
        anyhow::ensure!(
            (0.0..1.0).contains(&p),
            "--dropout must be in [0, 1), got {p}"
        );
        config.hidden_dropout_prob = p;
        config.attention_probs_dropout_prob = p;
    }
    if let Some(s) = args.init_std {
        anyhow::ensure!(
            s > 0.0 && s.is_finite(),
            "--init-std must be positive, got {s}"
        );
        config.initializer_range = s;
    }
    if let Some(r) = args.mask_ratio {
        // At least one patch must stay visible and one be masked for a loss.
        anyhow::ensure!(
            r > 0.0 && r < 1.0,
            "--mask-ratio must be in (0, 1), got {r}"
        );
        config.mask_ratio = r;
    }
    if let Some(r) = args.rendering {
        set_config_rendering(&mut config, r);
    }
    let rendering = config_rendering(&config, &args.config)?;
    let layout = args.layout.unwrap_or(match rendering {
        RenderingStrategy::Continuous => Layout::Pygame,
        _ => Layout::Pango,
    });
    let opts = PretrainOptions {
        config,
        corpus: args.corpus,
        out: args.out.clone(),
        steps: args.steps,
        batch_size: args.batch_size,
        grad_accum: args.grad_accum,
        lr: args.lr,
        min_lr: args.min_lr,
        warmup_steps: args
            .warmup_steps
            .unwrap_or((args.steps as f64 * 0.05).ceil() as u64),
        weight_decay: args.weight_decay,
        max_grad_norm: 1.0,
        seed: args.seed,
        layout,
        eval_every: args.eval_every.max(1),
        save_every: args.save_every.max(1),
        recon_every: args.recon_every.max(1),
        resume: args.resume,
        progress: true,
        device,
        stop_at: args.stop_at,
        check_every: args.parallel.check_every,
        parallel,
    };
    let stop = super::stop_on_signal("finishing this step, evaluating and saving a checkpoint")?;
    let s = run_pretraining(&opts, stop)?;
    if !lead {
        super::exit_if_stopped_by_signal("rank 0 saved the checkpoint");
        return Ok(());
    }
    let first = s.losses.first().map(|x| x.1).unwrap_or(f32::NAN);
    let last_avg = {
        let tail: Vec<f32> = s.losses.iter().rev().take(20).map(|x| x.1).collect();
        tail.iter().sum::<f32>() / tail.len().max(1) as f32
    };
    println!(
        "{} {} steps in {:.1} s ({:.2} steps/s, {:.1} strips/s); loss {first:.4} -> {last_avg:.4} (mean of last 20){}; peak RSS {}",
        if s.interrupted { "interrupted after" } else { "done:" },
        s.steps_done,
        s.seconds,
        s.steps_done as f64 / s.seconds.max(1e-9),
        (s.steps_done as usize * opts.batch_size * opts.grad_accum * opts.parallel.world_size())
            as f64
            / s.seconds.max(1e-9),
        s.eval_losses.last().map_or(String::new(), |(st, l)| format!(
            "; eval loss {l:.4} at step {st} ({:.3} of the best constant prediction, {:.4})",
            l / s.constant_baseline,
            s.constant_baseline
        )),
        peak_rss_bytes().map(format_bytes).unwrap_or_else(|| "n/a".into())
    );
    let world = opts.parallel.world_size();
    if world > 1 {
        let steps = s.steps_done.max(1) as f64;
        println!(
            "data parallel: {world} ranks ({}); gradient all-reduce {:.2} ms per step ({:.1}% of the step), {:.2} ms per step waited for after backward (bucket copies included; overlap {}), {} per step per rank",
            opts.parallel.comm.backend(),
            s.reduce_seconds / steps * 1e3,
            100.0 * s.reduce_seconds / s.seconds.max(1e-9),
            s.reduce_exposed_seconds / steps * 1e3,
            if opts.parallel.overlap { "on" } else { "off" },
            format_bytes(s.reduce_bytes_per_step as u64)
        );
    }
    println!(
        "wrote {} (checkpoint), {}, {}, {}",
        checkpoint_dir(&args.out).display(),
        args.out.join("log.csv").display(),
        args.out.join("loss.png").display(),
        args.out.join("reconstruction.png").display()
    );
    super::exit_if_stopped_by_signal(&format!(
        "the checkpoint after step {} is in {} (--resume continues)",
        s.last_step,
        checkpoint_dir(&args.out).display()
    ));
    Ok(())
}
