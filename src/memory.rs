//! Size checks before allocating: a lower bound on the bytes a model, a
//! training step or a strip needs, against the memory the machine has, so an
//! absurd config or `--max-seq-length` is refused at once with the numbers
//! instead of aborting ("memory allocation of N bytes failed") or swapping
//! for minutes.
//!
//! The estimates count only what certainly exists at once (weights, AdamW
//! moments and gradients, the activations the tape keeps for backward, one
//! attention score matrix, the batch), so a run refused here could not have
//! fit; what is refused is what could not run, never a run that would.

use pixel_model::PixelConfig;

const F32: f64 = 4.0;

/// Bytes of memory this process may use: the machine's (MemTotal), or the
/// cgroup limit when that is lower. `None` where neither can be read.
pub fn machine_memory_bytes() -> Option<f64> {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        let line = t.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024.0)
    });
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|t| t.trim().parse::<f64>().ok());
    match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

/// Bytes as GiB/MiB text (TiB for the absurd).
pub fn format_bytes(b: f64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    if b >= 1024.0 * GIB {
        format!("{:.1} TiB", b / (1024.0 * GIB))
    } else if b >= GIB {
        format!("{:.2} GiB", b / GIB)
    } else {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    }
}

/// Refuses `what` when it needs more than the machine's memory (or more than
/// any allocation can hold), with both numbers and `advice`.
pub fn check_fits(what: &str, needed: f64, advice: &str) -> anyhow::Result<()> {
    let limit = machine_memory_bytes().unwrap_or(isize::MAX as f64);
    anyhow::ensure!(
        needed <= limit,
        "{what} needs at least {} of memory, more than this machine's {}; {advice}",
        format_bytes(needed),
        format_bytes(limit)
    );
    Ok(())
}

/// Weights of the encoder (and decoder, for pretraining).
fn parameter_bytes(cfg: &PixelConfig, with_decoder: bool) -> f64 {
    let decoder = if with_decoder {
        cfg.decoder_parameters()
    } else {
        0.0
    };
    (cfg.encoder_parameters() + decoder) * F32
}

/// Activations a stack of transformer blocks keeps for backward on `tokens`
/// tokens of width `d`, FFN width `f` (the block inputs, q, k, v, context,
/// FFN input and both FFN activations), plus one `tokens` x `tokens` score
/// matrix (the fused attention's scratch).
fn block_activation_bytes(batch: f64, tokens: f64, layers: usize, d: usize, f: usize) -> f64 {
    let per_token = 6.0 * d as f64 + 2.0 * f as f64;
    let kept = batch * tokens * per_token * layers as f64;
    let scores = if layers > 0 { tokens * tokens } else { 0.0 };
    (kept + scores) * F32
}

/// A lower bound on the memory of a training step on `batch` strips: weights,
/// gradients and the two AdamW moments, the pixels, and the activations of
/// the encoder (on the kept patches when pretraining, on all of them
/// otherwise) and of the decoder (pretraining).
pub fn training_bytes(cfg: &PixelConfig, batch: usize, pretraining: bool) -> f64 {
    let l = cfg.num_patches() as f64;
    let b = batch as f64;
    let weights = parameter_bytes(cfg, pretraining);
    let pixels = b * l * cfg.patch_dim() as f64 * F32;
    let encoder_tokens = if pretraining {
        1.0 + (l * (1.0 - cfg.mask_ratio)).floor()
    } else {
        1.0 + l
    };
    let encoder = block_activation_bytes(
        b,
        encoder_tokens,
        cfg.num_hidden_layers,
        cfg.hidden_size,
        cfg.intermediate_size,
    );
    let decoder = if pretraining {
        block_activation_bytes(
            b,
            1.0 + l,
            cfg.decoder_num_hidden_layers,
            cfg.decoder_hidden_size,
            cfg.decoder_intermediate_size,
        ) + pixels // the predicted patches
    } else {
        0.0
    };
    4.0 * weights + pixels + encoder + decoder
}

/// A lower bound on the memory of inference on `batch` strips: the weights,
/// the pixels, and one block's activations with one score matrix.
pub fn inference_bytes(cfg: &PixelConfig, batch: usize, with_decoder: bool) -> f64 {
    let l = cfg.num_patches() as f64;
    let b = batch as f64;
    let pixels = b * l * cfg.patch_dim() as f64 * F32;
    let one_block =
        block_activation_bytes(b, 1.0 + l, 1, cfg.hidden_size, cfg.intermediate_size) / 2.0;
    parameter_bytes(cfg, with_decoder) + pixels + one_block
}

/// Refuses a training run that cannot fit: `what` names it ("pretraining",
/// "finetuning"), the message gives the config's sizes, L and the batch.
pub fn check_training_fits(
    cfg: &PixelConfig,
    batch: usize,
    pretraining: bool,
    what: &str,
) -> anyhow::Result<()> {
    check_fits(
        &format!(
            "{what} (hidden {}, {} layers, ffn {}, L = --max-seq-length {}, --batch-size {batch})",
            cfg.hidden_size,
            cfg.num_hidden_layers,
            cfg.intermediate_size,
            cfg.num_patches()
        ),
        training_bytes(cfg, batch, pretraining),
        "lower --max-seq-length or --batch-size, or use a smaller config",
    )
}

/// Refuses loading and running a model that cannot fit (`what` names it).
pub fn check_inference_fits(
    cfg: &PixelConfig,
    batch: usize,
    with_decoder: bool,
    what: &str,
) -> anyhow::Result<()> {
    check_fits(
        &format!(
            "{what} (hidden {}, {} layers, ffn {}, L {}, batch {batch})",
            cfg.hidden_size,
            cfg.num_hidden_layers,
            cfg.intermediate_size,
            cfg.num_patches()
        ),
        inference_bytes(cfg, batch, with_decoder),
        "check the config's sizes and the strip length",
    )
}

/// Refuses rendering strips of `l` patches that cannot fit: the grayscale
/// canvas and the 3-channel f32 pixels of one strip.
pub fn check_strip_fits(l: usize, flag: &str) -> anyhow::Result<()> {
    let p = pixel_render::PATCH as f64;
    let bytes = p * p * l as f64 * (1.0 + 3.0 * F32);
    check_fits(
        &format!("a strip of {flag} {l} patches"),
        bytes,
        &format!("lower {flag}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_stay_below_what_the_default_runs_use() {
        // The default pretraining run peaks near 80 MiB of RSS.
        let tiny = training_bytes(&PixelConfig::tiny(32), 32, true);
        assert!(tiny < 40.0 * (1 << 20) as f64, "{}", format_bytes(tiny));
        // PIXEL-base pretraining at batch 32 needs well over 10 GiB.
        let base = training_bytes(&PixelConfig::base(529), 32, true);
        assert!(base > 10.0 * (1u64 << 30) as f64, "{}", format_bytes(base));
    }

    #[test]
    fn absurd_sizes_are_refused_with_the_numbers() {
        let err = check_training_fits(&PixelConfig::tiny(100_000), 32, true, "pretraining")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--max-seq-length 100000"), "{err}");
        assert!(err.contains("GiB of memory"), "{err}");
        assert!(check_training_fits(&PixelConfig::tiny(32), 32, true, "pretraining").is_ok());
        assert!(check_strip_fits(100_000_000_000, "--max-seq-length").is_err());
        assert!(check_strip_fits(529, "--max-seq-length").is_ok());
    }
}
