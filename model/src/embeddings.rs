//! The embeddings (SPEC 3.2; `PIXELEmbeddings` / `ViTEmbeddings`): each 16x16
//! patch projected to the hidden size, the fixed sin-cos position table added,
//! the CLS token (with position row 0) prepended.
//!
//! Position tables: patch i sits at grid column i % g, row i / g with
//! g = floor(sqrt(L)); for the pixel-base L = 529 this is the original 23x23
//! grid, and for other L it is the layout the fixtures use. Row 0 (CLS) is zero.
//! The first half of the columns encodes the grid column, the second half the
//! grid row; each half is [sin(pos w_k), cos(pos w_k)] with
//! w_k = 1 / 10000^(k / (D/4)) (ViT-MAE `get_2d_sincos_pos_embed`).

use pixel_engine::{ops, Tape, Tensor, Var};

use crate::config::PixelConfig;
use crate::masking::PatchMasking;
use crate::params::ParamVars;

/// The position table key (frozen in pretraining, trainable when finetuning).
pub const POSITION_TABLE: &str = "vit.embeddings.position_embeddings";
const CLS_TOKEN: &str = "vit.embeddings.cls_token";
const PROJECTION_WEIGHT: &str = "vit.embeddings.patch_embeddings.projection.weight";
const PROJECTION_BIAS: &str = "vit.embeddings.patch_embeddings.projection.bias";

/// Names, shapes and trainable flags of the embedding parameters (SPEC 4.1).
pub fn param_shapes(cfg: &PixelConfig) -> Vec<(String, Vec<usize>, bool)> {
    let (d, l) = (cfg.hidden_size, cfg.num_patches());
    let (p, c) = (cfg.patch_size, cfg.num_channels);
    vec![
        (CLS_TOKEN.into(), vec![1, 1, d], true),
        (POSITION_TABLE.into(), vec![1, l + 1, d], false),
        (PROJECTION_WEIGHT.into(), vec![d, c, p, p], true),
        (PROJECTION_BIAS.into(), vec![d], true),
    ]
}

/// The encoder's input sequence (B, 1 + K, D): CLS, then the embedded patches
/// (all L when `masking` is None, else the kept ones in ascending order).
/// `pixel_values` (B, C, P, P*L).
pub fn embed(
    t: &mut Tape,
    params: &ParamVars<'_>,
    cfg: &PixelConfig,
    pixel_values: &Var,
    masking: Option<&PatchMasking>,
) -> Var {
    let (b, l) = (
        pixel_values.shape()[0],
        pixel_values.shape()[3] / cfg.patch_size,
    );
    let x = patch_embed(t, params, cfg, pixel_values); // (B, L, D)
    let pos = params.get(POSITION_TABLE); // (1, rows, D)
    assert!(
        pos.shape()[1] > l,
        "embeddings: position table has {} rows, need {} (L + 1)",
        pos.shape()[1],
        l + 1
    );
    let pos_patches = ops::narrow(t, pos, 1, 1, l); // (1, L, D)
    let x = ops::add(t, &x, &pos_patches);
    let x = match masking {
        Some(m) => ops::gather_rows(t, &x, &m.keep, m.len_keep), // (B, K, D)
        None => x,
    };
    let cls = cls_with_position(t, params, pos, b); // (B, 1, D)
    ops::concat(t, &[&cls, &x], 1) // (B, 1 + K, D)
}

/// Conv2d(kernel = stride = P) as a matmul over flattened patches:
/// (B, C, P, P*L) -> patches (B, L, C*P*P) in (c, row, col) order -> (B, L, D).
fn patch_embed(t: &mut Tape, params: &ParamVars<'_>, cfg: &PixelConfig, pixel_values: &Var) -> Var {
    let s = pixel_values.shape().to_vec();
    let (b, c, p, l) = (s[0], s[1], s[2], s[3] / s[2]);
    let x = ops::reshape(t, pixel_values, &[b, c, p, l, p]);
    let x = ops::permute(t, &x, &[0, 3, 1, 2, 4]); // (B, L, C, P, P)
    let x = ops::reshape(t, &x, &[b, l, c * p * p]);
    let w = ops::reshape(
        t,
        params.get(PROJECTION_WEIGHT),
        &[cfg.hidden_size, c * p * p],
    );
    ops::linear(t, &x, &w, Some(params.get(PROJECTION_BIAS)))
}

/// cls_token + pos[0], expanded to the batch: (B, 1, D).
fn cls_with_position(t: &mut Tape, params: &ParamVars<'_>, pos: &Var, b: usize) -> Var {
    let pos0 = ops::narrow(t, pos, 1, 0, 1);
    let cls = ops::add(t, params.get(CLS_TOKEN), &pos0);
    ops::expand_first(t, &cls, b)
}

// Position tables (SPEC 3.2).

/// Side of the square grid the patches are laid on: floor(sqrt(L)), exactly.
pub fn grid_size(num_patches: usize) -> usize {
    let mut g = (num_patches as f64).sqrt() as usize;
    // Correct the float estimate so that g^2 <= L < (g+1)^2 holds exactly.
    while g * g > num_patches {
        g -= 1;
    }
    while (g + 1) * (g + 1) <= num_patches {
        g += 1;
    }
    g
}

/// Frequencies w_k = 1 / 10000^(k / q), k = 0..q, computed as numpy does
/// (`1.0 / 10000**(arange(q) / q)`) so the f64 values round the same way.
fn frequencies(quarter: usize) -> Vec<f64> {
    (0..quarter)
        .map(|k| 1.0 / 10000f64.powf(k as f64 / quarter as f64))
        .collect()
}

/// The table as rows of f32, shape [L + 1, dim], row 0 zero.
///
/// Panics if `dim` is not divisible by 4 (the config validation rules that out).
pub fn sincos_table(num_patches: usize, dim: usize) -> Vec<f32> {
    assert!(
        dim.is_multiple_of(4),
        "sin-cos position table: width {dim} is not divisible by 4"
    );
    let quarter = dim / 4;
    let omega = frequencies(quarter);
    let g = grid_size(num_patches).max(1);
    let mut table = vec![0f32; (num_patches + 1) * dim];
    for patch in 0..num_patches {
        let column = (patch % g) as f64;
        let row = (patch / g) as f64;
        let out = &mut table[(patch + 1) * dim..(patch + 2) * dim];
        for (k, &w) in omega.iter().enumerate() {
            out[k] = (column * w).sin() as f32;
            out[quarter + k] = (column * w).cos() as f32;
            out[2 * quarter + k] = (row * w).sin() as f32;
            out[3 * quarter + k] = (row * w).cos() as f32;
        }
    }
    table
}

/// The table as a tensor of shape [L + 1, dim].
pub fn sincos_pos_embed(num_patches: usize, dim: usize) -> Tensor {
    Tensor::new(&[num_patches + 1, dim], sincos_table(num_patches, dim))
}

/// `vit.embeddings.position_embeddings` in its state-dict shape [1, L + 1, hidden].
pub fn encoder_pos_embed(config: &PixelConfig) -> Tensor {
    let l = config.num_patches();
    Tensor::new(
        &[1, l + 1, config.hidden_size],
        sincos_table(l, config.hidden_size),
    )
}

/// `decoder.decoder_pos_embed` in its state-dict shape [1, L + 1, decoder_hidden].
pub fn decoder_pos_embed(config: &PixelConfig) -> Tensor {
    let l = config.num_patches();
    Tensor::new(
        &[1, l + 1, config.decoder_hidden_size],
        sincos_table(l, config.decoder_hidden_size),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_size_is_exact_floor_sqrt() {
        for l in 0..3000usize {
            let g = grid_size(l);
            assert!(g * g <= l && (g + 1) * (g + 1) > l, "L {l} g {g}");
        }
        assert_eq!(grid_size(529), 23);
        assert_eq!(grid_size(24), 4);
    }

    #[test]
    fn layout_of_a_small_table() {
        // L = 5, g = 2: patch 3 is at column 1, row 1; patch 4 at column 0, row 2.
        let d = 8;
        let t = sincos_table(5, d);
        assert!(t[..d].iter().all(|&v| v == 0.0), "CLS row is zero");
        let row = |p: usize| &t[(p + 1) * d..(p + 2) * d];
        // Patch 0: position (0, 0) gives sin 0 = 0 and cos 0 = 1 in both halves.
        assert_eq!(row(0), &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]);
        // Patch 3, w_0 = 1 and w_1 = 1 / 100.
        let p3 = row(3);
        assert_eq!(p3[0], 1f64.sin() as f32);
        assert_eq!(p3[1], (0.01f64).sin() as f32);
        assert_eq!(p3[4], 1f64.sin() as f32);
        // Patch 4: column 0, row 2.
        let p4 = row(4);
        assert_eq!(p4[0], 0.0);
        assert_eq!(p4[4], 2f64.sin() as f32);
        assert_eq!(p4[7], (0.02f64).cos() as f32);
    }
}
