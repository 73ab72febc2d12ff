//! `pixel bench --device cuda`: one PIXEL pretraining step (forward, backward,
//! AdamW) on GPU 0: ms/step, sentences/s, TFLOP/s, the share of GPU time spent
//! in cuBLAS matmuls, and device memory in use.

use pixel_model::PixelConfig;

use super::bench::BenchArgs;

#[cfg(not(feature = "cuda"))]
pub fn run(_args: &BenchArgs, _cfg: PixelConfig) -> anyhow::Result<()> {
    anyhow::bail!("--device cuda: this build has no CUDA support; rebuild with --features cuda")
}

#[cfg(feature = "cuda")]
pub fn run(args: &BenchArgs, cfg: PixelConfig) -> anyhow::Result<()> {
    use std::time::Instant;

    use pixel_engine::kernels::cuda;
    use pixel_engine::optim::LrSchedule;
    use pixel_engine::tensor::synchronize;
    use pixel_engine::{Device, Rng};
    use pixel_model::flops::pretraining_step_flops;
    use pixel_model::masking::SpanMaskingGenerator;
    use pixel_model::train::{PretrainBatch, Trainer};
    use pixel_model::PixelForPreTraining;

    use super::bench::{median, synthetic_batch};

    let gpu = cuda::device(0).map_err(|e| anyhow::anyhow!("--device cuda: {e}"))?;
    let device = Device::Cuda(0);
    cuda::set_tf32(args.tf32);
    let name = gpu.ctx.name().unwrap_or_else(|_| "unknown GPU".into());
    let mut rng = Rng::new(0);
    let mut model = PixelForPreTraining::new(cfg.clone(), &mut rng);
    model
        .params
        .to_device(device)
        .map_err(|e| anyhow::anyhow!("--device cuda: {e}"))?;
    let l = cfg.num_patches();
    let b = args.step_batch;
    println!(
        "pixel bench on {name}: config {} (hidden {}, {} layers; decoder {}x{}), L = {l}, batch {b}, dropout {}, TF32 {}",
        args.config,
        cfg.hidden_size,
        cfg.num_hidden_layers,
        cfg.decoder_hidden_size,
        cfg.decoder_num_hidden_layers,
        args.dropout,
        if args.tf32 { "on" } else { "off" }
    );
    let schedule = LrSchedule::Constant { lr: 1.5e-4 };
    let mut trainer = Trainer::new(model, 0.05, schedule, 1.0);
    let generator = SpanMaskingGenerator::new(l, cfg.mask_ratio);
    // Batches are made and copied to the GPU before the clock starts: the
    // step itself moves nothing between host and device but the loss and
    // the gradient norm.
    let next_batch = |rng: &mut Rng| -> anyhow::Result<PretrainBatch> {
        let mut batch = synthetic_batch(&cfg, b, &generator, rng);
        let on_device = batch.pixel_values.to_device(device);
        batch.pixel_values = std::sync::Arc::new(on_device.map_err(|e| anyhow::anyhow!("{e}"))?);
        Ok(batch)
    };
    let step = |trainer: &mut Trainer, batch: &PretrainBatch, rng: &mut Rng| {
        let start = Instant::now();
        let stats = trainer
            .train_step(std::slice::from_ref(batch), true, rng)
            .map_err(|e| anyhow::anyhow!("{e}"));
        synchronize(device);
        stats.map(|_| start.elapsed().as_secs_f64())
    };
    let mut times = Vec::new();
    for rep in 0..=args.repeats.max(1) {
        let batch = next_batch(&mut rng)?;
        let t = step(&mut trainer, &batch, &mut rng)?;
        if rep > 0 {
            times.push(t); // the first step compiles nothing but warms the allocator
        }
    }
    // One more step with every matmul timed by CUDA events.
    let batch = next_batch(&mut rng)?;
    cuda::gemm_timing_start();
    let profiled = step(&mut trainer, &batch, &mut rng)?;
    let gemm_s = cuda::gemm_timing_take() / 1e3;
    let med = median(times.clone());
    let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
    let flops = pretraining_step_flops(&cfg, b);
    let (free, total) = gpu.ctx.mem_get_info().unwrap_or((0, 0));
    println!(
        "{:<44} {:>10} {:>10} {:>12} {:>10} {:>12} {:>12}",
        "scenario",
        "median ms",
        "best ms",
        "sentences/s",
        "TFLOP/s",
        "matmul share",
        "GPU mem used"
    );
    println!(
        "{:<44} {:>10.1} {:>10.1} {:>12.1} {:>10.1} {:>11.0}% {:>9.2} GiB",
        format!("pretraining step (fwd+bwd+AdamW), batch {b}"),
        med * 1e3,
        best * 1e3,
        b as f64 / med,
        flops / med / 1e12,
        100.0 * gemm_s / profiled,
        (total - free) as f64 / (1u64 << 30) as f64
    );
    Ok(())
}
