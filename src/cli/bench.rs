//! `pixel bench`: time the encoder forward (no tape) and a full pretraining
//! step (forward, backward, AdamW) and print ms, GFLOP/s and peak memory.

use std::time::Instant;

use pixel::train_loop::DeviceArg;
use pixel_engine::optim::LrSchedule;
use pixel_engine::{Rng, Tape, Tensor, Var};
use pixel_model::flops::{encoder_forward_flops, pretraining_step_flops};
use pixel_model::masking::SpanMaskingGenerator;
use pixel_model::train::{PretrainBatch, Trainer};
use pixel_model::{ForwardMode, PatchMasking, PixelConfig, PixelForPreTraining};

use super::mem::{format_bytes, peak_rss_bytes, reset_peak_rss};

/// Arguments of `pixel bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Model preset (tiny, mini, small, base: `pixel info --presets`) or a config.json path.
    #[arg(long, default_value = "base")]
    pub config: String,
    /// Patches per strip (L).
    #[arg(long, default_value_t = 529)]
    pub max_seq_length: usize,
    /// Batch sizes for the encoder-only forward.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub forward_batches: Vec<usize>,
    /// Batch size of the pretraining step.
    #[arg(long, default_value_t = 8)]
    pub step_batch: usize,
    /// Timed repetitions of each scenario (after one warm-up).
    #[arg(long, default_value_t = 2)]
    pub repeats: usize,
    /// Skip the pretraining step (forward only).
    #[arg(long)]
    pub forward_only: bool,
    /// Dropout (hidden and attention) of the training step. 0 matches the
    /// PyTorch anchor (shared/anchors/torch_cpu_numbers.md); PIXEL pretrains with 0.1.
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f64,
    /// Also profile one training step: time per op kind and per model part.
    #[arg(long)]
    pub profile: bool,
    /// Benchmark only the GEMM: every path this CPU has (packed per ISA,
    /// matrixmultiply) on PIXEL-base's products in all layouts, GFLOP/s and %
    /// of the measured ceiling.
    #[arg(long)]
    pub gemm: bool,
    /// Where the pretraining step runs: cpu, or cuda (GPU 0; needs a build
    /// with --features cuda and an NVIDIA driver).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// CUDA only: allow TF32 tensor-core matmuls (off: FP32, as the CPU).
    #[arg(long)]
    pub tf32: bool,
    /// Activation checkpointing: recompute the MLPs' hidden activations in
    /// backward instead of keeping them (the same gradients; less memory, more
    /// FLOPs). A bare `--recompute-mlp` means all.
    #[arg(long, value_enum, default_value_t = super::RecomputeArg::None, num_args = 0..=1, default_missing_value = "all")]
    pub recompute_mlp: super::RecomputeArg,
}

/// Resolve `--config`: a preset name or a config.json file, at sequence length `l`.
pub fn resolve_config(spec: &str, l: usize) -> anyhow::Result<PixelConfig> {
    pixel::config_preset(spec, l)
}

fn synthetic_inputs(cfg: &PixelConfig, b: usize, rng: &mut Rng) -> (Tensor, Vec<f32>, Vec<usize>) {
    let l = cfg.num_patches();
    let mut pixels = Tensor::zeros(&[b, cfg.num_channels, cfg.patch_size, cfg.patch_size * l]);
    rng.fill_uniform(pixels.data_mut(), 0.0, 1.0);
    // Text over about 60% of each strip, the rest padding.
    let text = (l * 3 / 5).max(1);
    let mask: Vec<f32> = (0..b * l)
        .map(|i| if i % l <= text { 1.0 } else { 0.0 })
        .collect();
    (pixels, mask, vec![text + 1; b])
}

/// Synthetic pixels and text length, span-masked as in pretraining.
pub(super) fn synthetic_batch(
    cfg: &PixelConfig,
    b: usize,
    generator: &SpanMaskingGenerator,
    rng: &mut Rng,
) -> PretrainBatch {
    let l = cfg.num_patches();
    let (pixels, mask, text) = synthetic_inputs(cfg, b, rng);
    let patch_mask = generator.generate_batch(&text, rng);
    let masking = PatchMasking::controlled(&patch_mask, b, l, cfg.mask_ratio, rng);
    PretrainBatch {
        pixel_values: std::sync::Arc::new(pixels),
        attention_mask: mask,
        masking,
    }
}

pub(super) fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.gemm {
        return super::bench_gemm::run(args.repeats.max(3));
    }
    let mut cfg = resolve_config(&args.config, args.max_seq_length)?;
    args.recompute_mlp.apply();
    anyhow::ensure!(
        (0.0..1.0).contains(&args.dropout),
        "--dropout must be in [0, 1)"
    );
    cfg.hidden_dropout_prob = args.dropout;
    cfg.attention_probs_dropout_prob = args.dropout;
    let largest = args.forward_batches.iter().copied().max().unwrap_or(1);
    pixel::memory::check_training_fits(&cfg, args.step_batch.max(largest), true, "the benchmark")?;
    match args.device {
        DeviceArg::Cpu => anyhow::ensure!(!args.tf32, "--tf32 applies to --device cuda only"),
        DeviceArg::Cuda => return super::bench_cuda::run(&args, cfg),
    }
    let mut rng = Rng::new(0);
    let model = PixelForPreTraining::new(cfg.clone(), &mut rng);
    let l = cfg.num_patches();
    println!(
        "pixel bench: config {} (hidden {}, {} layers; decoder {}x{}), L = {l}, dropout {}{}, {} rayon threads, ISA {}, GEMM {} ({})",
        args.config,
        cfg.hidden_size,
        cfg.num_hidden_layers,
        cfg.decoder_hidden_size,
        cfg.decoder_num_hidden_layers,
        args.dropout,
        match args.recompute_mlp {
            super::RecomputeArg::None => "",
            super::RecomputeArg::Decoder => ", decoder MLPs recomputed in backward",
            super::RecomputeArg::All => ", MLPs recomputed in backward",
        },
        rayon::current_num_threads(),
        pixel_kernels::cpu::isa(),
        pixel_kernels::gemm::default_path().name(),
        pixel_kernels::cpu::model_name()
    );
    println!(
        "{:<44} {:>10} {:>10} {:>10} {:>12}",
        "scenario", "median ms", "best ms", "GFLOP/s", "peak RSS"
    );
    for &b in &args.forward_batches {
        let (pixels, mask, _) = synthetic_inputs(&cfg, b, &mut rng);
        let pixels = Var::constant(pixels);
        reset_peak_rss();
        let mut times = Vec::new();
        for rep in 0..=args.repeats {
            let start = Instant::now();
            let mut tape = Tape::no_grad();
            let param_vars = model.params.vars(&mut tape);
            let mode = ForwardMode {
                training: false,
                rng: &mut rng,
            };
            let out = model.encode_unmasked(&mut tape, &param_vars, &pixels, &mask, mode);
            std::hint::black_box(out.data()[0]);
            if rep > 0 {
                times.push(start.elapsed().as_secs_f64());
            }
        }
        let flops = encoder_forward_flops(&cfg, b, l, l + 1);
        report(
            &format!("encoder forward, no tape, batch {b}"),
            &times,
            flops,
        );
    }
    if args.forward_only {
        return Ok(());
    }
    let b = args.step_batch;
    let schedule = LrSchedule::Constant { lr: 1.5e-4 };
    let mut trainer = Trainer::new(model, 0.05, schedule, 1.0);
    let generator = SpanMaskingGenerator::new(l, cfg.mask_ratio);
    reset_peak_rss();
    let mut times = Vec::new();
    for rep in 0..=args.repeats {
        let batch = synthetic_batch(&cfg, b, &generator, &mut rng);
        let start = Instant::now();
        trainer
            .train_step(std::slice::from_ref(&batch), true, &mut rng)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if rep > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    report(
        &format!("pretraining step (fwd+bwd+AdamW), batch {b}"),
        &times,
        pretraining_step_flops(&cfg, b),
    );
    if args.profile {
        let batch = synthetic_batch(&cfg, b, &generator, &mut rng);
        super::profile::profile_step(&mut trainer, &batch, &mut rng)?;
    }
    Ok(())
}

fn report(name: &str, times: &[f64], flops: f64) {
    let med = median(times.to_vec());
    let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
    let peak = peak_rss_bytes()
        .map(format_bytes)
        .unwrap_or_else(|| "n/a".into());
    println!(
        "{name:<44} {:>10.1} {:>10.1} {:>10.1} {:>12}",
        med * 1e3,
        best * 1e3,
        flops / med / 1e9,
        peak
    );
}
