//! The pretraining loss (SPEC 3.5, `forward_loss`): mean squared error between
//! the predicted and the true pixels of each patch, the target normalised per
//! patch (norm_pix_loss), averaged over the patches that are removed AND
//! attended (padding never counts).

use pixel_engine::{ops, Tape, Var};

use crate::config::PixelConfig;
use crate::masking::PatchMasking;

/// Loss target: patches in (row, col, channel) order, normalised per patch
/// when norm_pix_loss (unbiased variance, eps 1e-6). (B, C, P, P*L) -> (B, L, P*P*C)
pub fn patch_target(t: &mut Tape, cfg: &PixelConfig, pixel_values: &Var) -> Var {
    let s = pixel_values.shape().to_vec();
    let (b, c, p, l) = (s[0], s[1], s[2], s[3] / s[2]);
    // Each step copies; the blocks free each copy once the next exists (this
    // runs at the end of the forward pass, the step's highest memory).
    let x = {
        let permuted = {
            let x = ops::reshape(t, pixel_values, &[b, c, p, l, p]);
            ops::permute(t, &x, &[0, 3, 2, 4, 1]) // (B, L, P, P, C)
        };
        ops::reshape(t, &permuted, &[b, l, p * p * c])
    };
    if cfg.norm_pix_loss {
        ops::normalize_rows_unbiased(t, &x, 1e-6)
    } else {
        x
    }
}

/// (scalar loss, loss mask (B * L): 1 where a patch counts) for `logits`
/// (B, L, P*P*C) against `pixel_values` (B, C, P, P*L); `attention_mask` (B * L).
pub fn reconstruction_loss(
    t: &mut Tape,
    cfg: &PixelConfig,
    logits: &Var,
    pixel_values: &Var,
    masking: &PatchMasking,
    attention_mask: &[f32],
) -> (Var, Vec<f32>) {
    t.set_scope("loss");
    let target = patch_target(t, cfg, pixel_values); // (B, L, P*P*C)
    let loss_mask: Vec<f32> = masking
        .mask
        .iter()
        .zip(attention_mask)
        .map(|(removed, attended)| removed * attended)
        .collect();
    let loss = ops::masked_mse(t, logits, &target, &loss_mask);
    (loss, loss_mask)
}
