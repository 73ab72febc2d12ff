//! pixel: PIXEL (Pixel-based Encoder of Language) on a small explicit compute engine.
//!
//! This library re-exports the workspace crates so examples, tests and benches
//! can use one path.

pub use pixel_engine as engine;
pub use pixel_kernels as kernels;
pub use pixel_model as model;
pub use pixel_render as render;
pub use pixel_tasks as tasks;

pub mod atomic_dir;
pub mod features;
pub mod figures;
pub mod finetune;
pub mod memory;
pub mod presets;
pub mod pretrain;
pub mod rendering;
pub mod train_loop;

use pixel_model::PixelConfig;

/// A model preset (tiny, mini, small, base) or a config.json path, at L = `num_patches`.
pub fn config_preset(spec: &str, num_patches: usize) -> anyhow::Result<PixelConfig> {
    let cfg = match PixelConfig::preset(spec, num_patches) {
        Some(cfg) => cfg,
        None => PixelConfig::from_file(spec)
            .map_err(|e| {
                anyhow::anyhow!(
                    "--config {spec}: not a preset ({}) and not a readable config.json: {e}",
                    PixelConfig::PRESET_NAMES.join(", ")
                )
            })?
            .with_num_patches(num_patches),
    };
    cfg.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    rendering::config_rendering(&cfg, spec)?;
    Ok(cfg)
}

/// The renderer draws 3-channel 16 x 16 patches: a model for other patches
/// cannot read its strips.
pub fn check_renderer_patches(cfg: &PixelConfig) -> anyhow::Result<()> {
    let p = pixel_render::PATCH;
    anyhow::ensure!(
        cfg.num_channels == 3 && cfg.patch_size == p,
        "the renderer draws 3-channel {p} x {p} patches; the model config has {} channels of {} x {}",
        cfg.num_channels,
        cfg.patch_size,
        cfg.patch_size
    );
    Ok(())
}

/// Keep freed buffers in the process instead of returning them to the kernel:
/// a training step allocates and frees the same large activation buffers every
/// time, and glibc's default (mmap for big blocks, unmapped on free) turns each
/// of them into fresh page faults. Trimming is off, not just raised: with a
/// 1 GiB threshold, backward freed more than that at the top of the heap every
/// step, so the next forward faulted it back in (PIXEL-base, batch 8 on a Zen
/// 4: the last three decoder layers' forward took 290 instead of 170 ms, 0.6 s
/// of a 15 s step). The process's RSS stays at its peak. Call once at start-up.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
    }
}
