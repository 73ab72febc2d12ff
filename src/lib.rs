//! pixel: PIXEL (Pixel-based Encoder of Language) on a small explicit compute engine.
//!
//! This library re-exports the workspace crates so examples, tests and benches
//! can use one path.

pub use pixel_engine as engine;
pub use pixel_kernels as kernels;
pub use pixel_model as model;
pub use pixel_render as render;
pub use pixel_tasks as tasks;

pub mod features;
pub mod figures;
pub mod finetune;
pub mod pretrain;
pub mod train_loop;

use pixel_model::PixelConfig;

/// A model preset (tiny, small, base) or a config.json path, at L = `num_patches`.
pub fn config_preset(spec: &str, num_patches: usize) -> anyhow::Result<PixelConfig> {
    let cfg = match spec {
        "tiny" => PixelConfig::tiny(num_patches),
        "small" => PixelConfig::small(num_patches),
        "base" => PixelConfig::base(num_patches),
        path => PixelConfig::from_file(path)
            .map_err(|e| anyhow::anyhow!("--config {path}: not a preset (tiny, small, base) and not a readable config.json: {e}"))?
            .with_num_patches(num_patches),
    };
    cfg.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
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
