//! pixel: PIXEL (Pixel-based Encoder of Language) on a small explicit compute engine.
//!
//! This library re-exports the workspace crates so examples, tests and benches
//! can use one path.

pub use pixel_engine as engine;
pub use pixel_kernels as kernels;
pub use pixel_model as model;
pub use pixel_render as render;
pub use pixel_tasks as tasks;

pub mod figures;
pub mod finetune;
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

/// Keep freed buffers in the process instead of returning them to the kernel:
/// a training step allocates and frees the same large activation buffers every
/// time, and glibc's default (mmap for big blocks, unmapped on free) turns each
/// of them into fresh page faults. Call once at start-up.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
