//! The ViT encoder (SPEC 3.3, `PIXELModel`): embeddings -> transformer layers
//! -> final LayerNorm. One function for both uses: pretraining encodes only the
//! patches the masking keeps; finetuning heads and feature extraction encode
//! every patch (SPEC 3.8).

use pixel_engine::{ops, Tape, Var};

use crate::config::PixelConfig;
use crate::embeddings;
use crate::layer::{layer_param_shapes, transformer_layer, LayerSettings};
use crate::masking::{encoder_key_mask, PatchMasking};
use crate::params::ParamVars;
use crate::ForwardMode;

/// Which patches the encoder reads.
#[derive(Clone, Copy, Debug)]
pub enum Patches<'m> {
    /// Pretraining: only the patches `masking` keeps, no embedding dropout
    /// (`PIXELEmbeddings` has none).
    Kept(&'m PatchMasking),
    /// Heads and feature extraction: all L patches, dropout of this
    /// probability on the embeddings when training (`ViTEmbeddings`).
    All { embedding_dropout: f32 },
}

/// Names, shapes and trainable flags of the encoder's parameters after the
/// embeddings: the layers, then the final LayerNorm (SPEC 4.1).
pub fn param_shapes(cfg: &PixelConfig) -> Vec<(String, Vec<usize>, bool)> {
    let d = cfg.hidden_size;
    let mut v: Vec<(String, Vec<usize>, bool)> = Vec::new();
    for i in 0..cfg.num_hidden_layers {
        let prefix = format!("vit.encoder.layer.{i}");
        v.extend(
            layer_param_shapes(&prefix, d, cfg.intermediate_size, cfg.qkv_bias)
                .into_iter()
                .map(|(n, s)| (n, s, true)),
        );
    }
    v.push(("vit.layernorm.weight".into(), vec![d], true));
    v.push(("vit.layernorm.bias".into(), vec![d], true));
    v
}

/// `last_hidden_state` (B, 1 + K, hidden): CLS, then the encoded patches (K = L
/// for [`Patches::All`], else the kept ones in ascending patch order).
/// `pixel_values` (B, C, P, P*L) in [0, 1]; `attention_mask` (B * L) 0/1.
pub fn encode(
    t: &mut Tape,
    params: &ParamVars<'_>,
    cfg: &PixelConfig,
    pixel_values: &Var,
    attention_mask: &[f32],
    patches: Patches<'_>,
    mode: ForwardMode<'_>,
) -> Var {
    let (b, l) = check_inputs(cfg, pixel_values, attention_mask);
    let ForwardMode { training, rng } = mode;
    let (masking, embedding_dropout) = match patches {
        Patches::Kept(m) => {
            assert!(
                m.batch == b && m.num_patches == l,
                "encoder: masking is for (B, L) = ({}, {}), input is ({b}, {l})",
                m.batch,
                m.num_patches
            );
            (Some(m), 0.0)
        }
        Patches::All { embedding_dropout } => (None, embedding_dropout),
    };

    t.set_scope("vit.embeddings");
    let embedded = embeddings::embed(t, params, cfg, pixel_values, masking); // (B, 1 + K, D)
    let mut x = ops::dropout(t, &embedded, embedding_dropout, training, rng);
    drop(embedded); // not saved by dropout: not held through the layers

    let key_mask = encoder_key_mask(attention_mask, masking, b, pixel_values.value().device()); // (B, 1 + K)
    let settings = LayerSettings::encoder(cfg, training);
    for i in 0..cfg.num_hidden_layers {
        let prefix = format!("vit.encoder.layer.{i}");
        x = transformer_layer(t, params, &prefix, &x, Some(&key_mask), settings, rng);
    }
    t.set_scope("vit.layernorm");
    ops::layer_norm(
        t,
        &x,
        params.get("vit.layernorm.weight"),
        params.get("vit.layernorm.bias"),
        cfg.layer_norm_eps as f32,
    )
}

/// Validates pixel_values (B, C, P, P*L) and attention_mask (B*L); returns (B, L).
pub(crate) fn check_inputs(
    cfg: &PixelConfig,
    pixel_values: &Var,
    attention_mask: &[f32],
) -> (usize, usize) {
    let s = pixel_values.shape();
    let (p, c) = (cfg.patch_size, cfg.num_channels);
    assert!(
        s.len() == 4 && s[1] == c && s[2] == p && s[3].is_multiple_of(p) && s[3] > 0,
        "pixel_values must be (B, {c}, {p}, {p}*L), got {s:?}"
    );
    let (b, l) = (s[0], s[3] / p);
    assert_eq!(
        attention_mask.len(),
        b * l,
        "attention_mask has {} values, pixel_values {s:?} needs B*L = {}",
        attention_mask.len(),
        b * l
    );
    (b, l)
}
