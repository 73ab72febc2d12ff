//! The MAE decoder (SPEC 3.4, `PIXELDecoder`): project the encoder output to
//! the decoder width, put one shared mask token at every removed patch, add
//! the decoder's sin-cos position table, run the decoder layers, and predict
//! each patch's P*P*C pixels.

use pixel_engine::{ops, Tape, Var};

use crate::config::{PixelConfig, DECODER_NORM_EPS};
use crate::layer::{layer_param_shapes, transformer_layer, LayerSettings};
use crate::masking::{decoder_key_mask, PatchMasking};
use crate::params::ParamVars;
use crate::ForwardMode;

/// Names, shapes and trainable flags of the decoder's parameters (SPEC 4.1);
/// the position table is frozen.
pub fn param_shapes(cfg: &PixelConfig) -> Vec<(String, Vec<usize>, bool)> {
    let (d, dd, l) = (cfg.hidden_size, cfg.decoder_hidden_size, cfg.num_patches());
    let pixels = cfg.patch_size * cfg.patch_size * cfg.num_channels;
    let mut v: Vec<(String, Vec<usize>, bool)> = vec![
        ("decoder.decoder_embed.weight".into(), vec![dd, d], true),
        ("decoder.decoder_embed.bias".into(), vec![dd], true),
        ("decoder.mask_token".into(), vec![1, 1, dd], true),
        (
            "decoder.decoder_pos_embed".into(),
            vec![1, l + 1, dd],
            false,
        ),
    ];
    for j in 0..cfg.decoder_num_hidden_layers {
        let prefix = format!("decoder.decoder_layers.{j}");
        v.extend(
            layer_param_shapes(&prefix, dd, cfg.decoder_intermediate_size, cfg.qkv_bias)
                .into_iter()
                .map(|(n, s)| (n, s, true)),
        );
    }
    v.push(("decoder.decoder_norm.weight".into(), vec![dd], true));
    v.push(("decoder.decoder_norm.bias".into(), vec![dd], true));
    v.push(("decoder.decoder_pred.weight".into(), vec![pixels, dd], true));
    v.push(("decoder.decoder_pred.bias".into(), vec![pixels], true));
    v
}

/// Predicted pixels (B, L, P*P*C) in (row, column, channel) order, from the
/// encoder's `last_hidden_state` (B, 1 + K, hidden) under `masking`;
/// `attention_mask` (B * L).
pub fn decode(
    t: &mut Tape,
    params: &ParamVars<'_>,
    cfg: &PixelConfig,
    last_hidden_state: &Var,
    masking: &PatchMasking,
    attention_mask: &[f32],
    mode: ForwardMode<'_>,
) -> Var {
    let (b, l) = (masking.batch, masking.num_patches);
    let ForwardMode { training, rng } = mode;

    // Embed, put mask tokens back in patch order, prepend CLS. In a function
    // of its own, so its intermediates (none saved) are freed before the
    // layers run rather than held to the end of the decoder.
    let mut y = embed(t, params, last_hidden_state, masking); // (B, 1 + L, Dd)

    let key_mask = decoder_key_mask(attention_mask, b, last_hidden_state.value().device()); // (B, 1 + L)
    let settings = LayerSettings::decoder(cfg, training);
    for j in 0..cfg.decoder_num_hidden_layers {
        let prefix = format!("decoder.decoder_layers.{j}");
        y = transformer_layer(t, params, &prefix, &y, Some(&key_mask), settings, rng);
    }

    // CLS dropped first (its prediction is never used; norm and projection
    // are per row), then the norm and the projection as one node.
    t.set_scope("decoder.norm+pred");
    let patches = ops::narrow(t, &y, 1, 1, l); // (B, L, Dd)
    drop(y); // not saved: free it before the projection's output exists
    ops::layer_norm_linear(
        t,
        &patches,
        params.get("decoder.decoder_norm.weight"),
        params.get("decoder.decoder_norm.bias"),
        DECODER_NORM_EPS as f32,
        &[params.get("decoder.decoder_pred.weight")],
        Some(&[params.get("decoder.decoder_pred.bias")]),
    ) // (B, L, P*P*C)
}

/// The decoder's input (B, 1 + L, Dd) from the encoder's `last_hidden_state`
/// (B, 1 + K, hidden): `decoder_embed`, the mask token at every removed
/// patch (patch order restored), CLS in front, plus `decoder_pos_embed`.
fn embed(
    t: &mut Tape,
    params: &ParamVars<'_>,
    last_hidden_state: &Var,
    masking: &PatchMasking,
) -> Var {
    let (b, l, k) = (masking.batch, masking.num_patches, masking.len_keep);
    t.set_scope("decoder.embed");
    let y = ops::linear(
        t,
        last_hidden_state,
        params.get("decoder.decoder_embed.weight"),
        Some(params.get("decoder.decoder_embed.bias")),
    ); // (B, 1 + K, Dd)
    let y_cls = ops::narrow(t, &y, 1, 0, 1); // (B, 1, Dd)
    let y_kept = ops::narrow(t, &y, 1, 1, k); // (B, K, Dd)
    let mask_token = ops::expand_first(t, params.get("decoder.mask_token"), b); // (B, 1, Dd)
    let pool = ops::concat(t, &[&y_kept, &mask_token], 1); // (B, K + 1, Dd)
                                                           // Patch i takes its encoder row if kept, else the one mask token (row K).
    let restore: Vec<usize> = masking
        .ids_restore()
        .into_iter()
        .map(|r| r.min(k))
        .collect();
    let y_patches = ops::gather_rows(t, &pool, &restore, l); // (B, L, Dd)
    let y = ops::concat(t, &[&y_cls, &y_patches], 1); // (B, 1 + L, Dd)
    ops::add(t, &y, params.get("decoder.decoder_pos_embed"))
}
