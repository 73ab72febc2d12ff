//! Matmul FLOP counts of PIXEL passes, for GFLOP/s figures. Elementwise work
//! (LayerNorm, softmax, GELU) is a few percent and not counted.

use crate::config::PixelConfig;

/// FLOPs of `tokens` tokens through one transformer block of width `d`,
/// FFN width `ffn`, attending over `tokens` keys (forward only).
pub fn block_forward_flops(tokens: usize, d: usize, ffn: usize) -> f64 {
    let (n, d, f) = (tokens as f64, d as f64, ffn as f64);
    let projections = 2.0 * n * d * d * 4.0; // q, k, v, output
    let mlp = 2.0 * n * d * f * 2.0;
    let attention = 2.0 * n * n * d * 2.0; // QK^T and PV over all heads
    projections + mlp + attention
}

/// Forward FLOPs of the encoder on `tokens` tokens (CLS included), plus the
/// patch projection of `patches` patches, for `batch` examples.
pub fn encoder_forward_flops(
    cfg: &PixelConfig,
    batch: usize,
    patches: usize,
    tokens: usize,
) -> f64 {
    let embed = 2.0 * patches as f64 * cfg.patch_dim() as f64 * cfg.hidden_size as f64;
    let blocks = cfg.num_hidden_layers as f64
        * block_forward_flops(tokens, cfg.hidden_size, cfg.intermediate_size);
    batch as f64 * (embed + blocks)
}

/// Forward FLOPs of the masked pretraining pass (encoder on 1 + kept tokens,
/// decoder on 1 + L tokens, embed and prediction projections).
pub fn pretraining_forward_flops(cfg: &PixelConfig, batch: usize) -> f64 {
    let l = cfg.num_patches();
    let kept = l - cfg.num_masked_patches();
    let enc = encoder_forward_flops(cfg, 1, l, kept + 1);
    let (d, dd) = (cfg.hidden_size as f64, cfg.decoder_hidden_size as f64);
    let dec_embed = 2.0 * (kept + 1) as f64 * d * dd;
    let dec_blocks = cfg.decoder_num_hidden_layers as f64
        * block_forward_flops(
            l + 1,
            cfg.decoder_hidden_size,
            cfg.decoder_intermediate_size,
        );
    let pred = 2.0 * (l + 1) as f64 * dd * cfg.patch_dim() as f64;
    batch as f64 * (enc + dec_embed + dec_blocks + pred)
}

/// FLOPs of a training step: forward plus a backward of twice the forward
/// (input and weight gradients).
pub fn pretraining_step_flops(cfg: &PixelConfig, batch: usize) -> f64 {
    3.0 * pretraining_forward_flops(cfg, batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_step_is_about_2500_gflop_at_batch_8() {
        // torch_cpu_numbers.md: the step is 2,536 GFLOP of matmuls at batch 8.
        let cfg = PixelConfig::base(529);
        let g = pretraining_step_flops(&cfg, 8) / 1e9;
        assert!((g - 2536.0).abs() / 2536.0 < 0.03, "{g} GFLOP");
    }
}
