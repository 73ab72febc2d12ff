//! Two full training steps of a tiny PIXEL (two micro-batches each: gradient
//! averaging, global-norm clipping, fused AdamW) on the CPU and on CUDA,
//! compared: the step statistics and every parameter afterwards. Needs the
//! `cuda` feature; skipped with a message when no driver is present.
#![cfg(feature = "cuda")]

use pixel::engine::optim::LrSchedule;
use pixel::engine::{Device, Rng, Tensor};
use pixel::model::train::{PretrainBatch, Trainer};
use pixel::model::{PatchMasking, PixelConfig, PixelForPreTraining};

const B: usize = 2;
const L: usize = 16;

/// A batch with padding and 4 removed patches per row, drawn from `seed`.
fn batch(cfg: &PixelConfig, seed: u64) -> PretrainBatch {
    let mut rng = Rng::new(seed);
    let mut pixels = Tensor::zeros(&[B, cfg.num_channels, cfg.patch_size, cfg.patch_size * L]);
    rng.fill_uniform(pixels.data_mut(), 0.0, 1.0);
    let attention_mask: Vec<f32> = (0..B * L)
        .map(|i| if i % L < 12 + i / L { 1.0 } else { 0.0 })
        .collect();
    let mut mask = vec![0.0f32; B * L];
    for row in 0..B {
        for j in 0..4 {
            mask[row * L + (3 * j + row + 1) % L] = 1.0;
        }
    }
    PretrainBatch {
        pixel_values: std::sync::Arc::new(pixels),
        attention_mask,
        masking: PatchMasking::explicit(&mask, B, L).expect("equal rows"),
    }
}

/// (loss, grad norm, clip coefficient) of each step, then every parameter.
fn train(device: Device) -> (Vec<f32>, Vec<Tensor>) {
    let cfg = PixelConfig::tiny(L);
    let mut model = PixelForPreTraining::new(cfg.clone(), &mut Rng::new(1));
    model
        .params
        .to_device(device)
        .expect("parameters to device");
    let schedule = LrSchedule::Constant { lr: 1e-3 };
    let mut trainer = Trainer::new(model, 0.05, schedule, 0.5);
    let mut stats = Vec::new();
    for step in 0..2u64 {
        let micro: Vec<PretrainBatch> = (0..2u64)
            .map(|m| {
                let mut b = batch(&cfg, 10 * step + m);
                let on_device = b.pixel_values.to_device(device).expect("pixels to device");
                b.pixel_values = std::sync::Arc::new(on_device);
                b
            })
            .collect();
        let s = trainer
            .train_step(&micro, false, &mut Rng::new(0))
            .expect("finite step");
        stats.extend([s.loss, s.grad_norm as f32, s.clip_coef]);
    }
    let params = trainer
        .model
        .params
        .iter()
        .map(|p| p.value.to_host())
        .collect();
    (stats, params)
}

#[test]
fn training_steps_on_cuda_match_the_cpu() {
    let (cpu_stats, cpu_params) = train(Device::Cpu);
    assert!(
        cpu_stats.iter().all(|v| v.is_finite()),
        "CPU steps: {cpu_stats:?}"
    );
    if let Err(e) = pixel::engine::kernels::cuda::device(0) {
        eprintln!("CUDA half skipped: {e}");
        return;
    }
    let (gpu_stats, gpu_params) = train(Device::Cuda(0));
    for (i, (c, g)) in cpu_stats.iter().zip(&gpu_stats).enumerate() {
        assert!(
            (c - g).abs() <= 1e-4 * (1.0 + c.abs()),
            "step statistic {i}: CPU {c}, CUDA {g}"
        );
    }
    for (i, (c, g)) in cpu_params.iter().zip(&gpu_params).enumerate() {
        for (&a, &b) in c.data().iter().zip(g.data()) {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + a.abs()),
                "parameter {i}: CPU {a}, CUDA {b}"
            );
        }
    }
}
