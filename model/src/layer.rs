//! The pre-LN transformer layer both stacks are made of, the encoder's
//! `vit.encoder.layer.{i}` and the decoder's `decoder.decoder_layers.{j}`
//! (`PIXELLayer`: LN -> attention -> residual, LN -> MLP -> residual).

use std::sync::atomic::{AtomicU8, Ordering};

use pixel_engine::ops::{self, AttentionConfig};
use pixel_engine::{Rng, Tape, Tensor, Var};

use crate::config::PixelConfig;
use crate::params::ParamVars;

/// Per-stack settings of a layer.
#[derive(Clone, Copy, Debug)]
pub struct LayerSettings {
    pub num_heads: usize,
    /// Biases on the query, key and value projections (config qkv_bias).
    pub qkv_bias: bool,
    pub layer_norm_eps: f32,
    pub hidden_dropout: f32,
    pub attention_dropout: f32,
    pub training: bool,
    /// Recompute the MLP's hidden activation in backward instead of keeping
    /// it (see [`set_recompute_mlp`]).
    pub recompute_mlp: bool,
}

/// Which MLPs recompute their hidden activation in backward instead of
/// keeping it (activation checkpointing; see [`set_recompute_mlp`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecomputeMlp {
    /// Keep every MLP's (tokens, intermediate) activation (the default).
    #[default]
    None,
    /// Recompute the decoder's: it sees every patch, so its activations are
    /// about a third of the step's for about a quarter of its FLOPs.
    Decoder,
    /// Recompute every MLP's.
    All,
}

/// The process-wide [`RecomputeMlp`], as its discriminant.
static RECOMPUTE_MLP: AtomicU8 = AtomicU8::new(RecomputeMlp::None as u8);

/// Which MLPs of the layers built from now on recompute their hidden
/// activation from the MLP's input in backward (one more GEMM each) instead
/// of keeping it until then. The gradients are the same bits either way.
/// PIXEL-base, batch 8, L 529 (Zen 4): the step's peak memory 3.02 GiB;
/// `Decoder` 2.81 GiB for about 4% more time, `All` 2.37 GiB for about 9%.
/// `--recompute-mlp` on `pixel pretrain` and `pixel bench`.
pub fn set_recompute_mlp(which: RecomputeMlp) {
    RECOMPUTE_MLP.store(which as u8, Ordering::Relaxed);
}

fn recompute_mlp() -> RecomputeMlp {
    match RECOMPUTE_MLP.load(Ordering::Relaxed) {
        x if x == RecomputeMlp::Decoder as u8 => RecomputeMlp::Decoder,
        x if x == RecomputeMlp::All as u8 => RecomputeMlp::All,
        _ => RecomputeMlp::None,
    }
}

impl LayerSettings {
    /// The encoder's layers.
    pub fn encoder(cfg: &PixelConfig, training: bool) -> LayerSettings {
        LayerSettings {
            num_heads: cfg.num_attention_heads,
            qkv_bias: cfg.qkv_bias,
            layer_norm_eps: cfg.layer_norm_eps as f32,
            hidden_dropout: cfg.hidden_dropout_prob as f32,
            attention_dropout: cfg.attention_probs_dropout_prob as f32,
            training,
            recompute_mlp: recompute_mlp() == RecomputeMlp::All,
        }
    }

    /// The decoder's layers: the encoder's settings with the decoder's heads.
    pub fn decoder(cfg: &PixelConfig, training: bool) -> LayerSettings {
        LayerSettings {
            num_heads: cfg.decoder_num_attention_heads,
            recompute_mlp: recompute_mlp() != RecomputeMlp::None,
            ..LayerSettings::encoder(cfg, training)
        }
    }
}

/// One layer on x (B, N, C). `prefix` is the state-dict prefix of the layer,
/// e.g. `vit.encoder.layer.3` or `decoder.decoder_layers.0`; `key_mask`
/// (B, N) additive (see [`crate::masking::additive_key_mask`]).
pub fn transformer_layer(
    t: &mut Tape,
    params: &ParamVars<'_>,
    prefix: &str,
    x: &Var,
    key_mask: Option<&Tensor>,
    s: LayerSettings,
    rng: &mut Rng,
) -> Var {
    let p = |name: &str| params.get(&format!("{prefix}.{name}"));
    t.set_scope(prefix);
    // Attention half: the norm and the three projections as one node (one
    // GEMM against the stacked [q; k; v] weights, the normalised activation
    // recomputed in backward rather than kept), then attention on the packed
    // (B, N, 3 C) result.
    let proj = |name: &str| p(&format!("attention.attention.{name}"));
    let names = ["query", "key", "value"];
    let w_qkv = names.map(|n| proj(&format!("{n}.weight")));
    let b_qkv = s
        .qkv_bias
        .then(|| names.map(|n| proj(&format!("{n}.bias"))));
    let qkv = ops::layer_norm_linear(
        t,
        x,
        p("layernorm_before.weight"),
        p("layernorm_before.bias"),
        s.layer_norm_eps,
        &w_qkv,
        b_qkv.as_ref().map(|b| &b[..]),
    );
    let cfg = AttentionConfig {
        num_heads: s.num_heads,
        dropout: s.attention_dropout,
        training: s.training,
    };
    // Attention and its output projection as one node: the context is
    // recomputed in backward (from the probabilities the attention backward
    // recomputes anyway) rather than kept.
    let (w_o, b_o) = (
        p("attention.output.dense.weight"),
        p("attention.output.dense.bias"),
    );
    let a = ops::attention_linear(t, &qkv, key_mask, cfg, w_o, b_o, rng);
    drop(qkv);
    let a = ops::dropout(t, &a, s.hidden_dropout, s.training, rng);
    let x1 = ops::add(t, x, &a);
    // MLP half: the norm again fused with the projection after it, then
    // GELU and the output projection as one node (gelu(h) is never stored:
    // the GEMM applies GELU as it packs h, in forward and backward); or,
    // recomputing, all of it as one node that keeps only its input.
    let (ln_w, ln_b) = (p("layernorm_after.weight"), p("layernorm_after.bias"));
    let (w1, b1) = (p("intermediate.dense.weight"), p("intermediate.dense.bias"));
    let (w2, b2) = (p("output.dense.weight"), p("output.dense.bias"));
    let y = if s.recompute_mlp {
        ops::layer_norm_mlp(t, &x1, ln_w, ln_b, s.layer_norm_eps, w1, b1, w2, b2)
    } else {
        let h = ops::layer_norm_linear(t, &x1, ln_w, ln_b, s.layer_norm_eps, &[w1], Some(&[b1]));
        ops::gelu_linear(t, &h, w2, b2)
    };
    let y = ops::dropout(t, &y, s.hidden_dropout, s.training, rng);
    ops::add(t, &x1, &y)
}

/// Names and shapes of one layer's parameters (for construction and init).
pub fn layer_param_shapes(
    prefix: &str,
    hidden: usize,
    intermediate: usize,
    qkv_bias: bool,
) -> Vec<(String, Vec<usize>)> {
    let mut v = Vec::new();
    for proj in ["query", "key", "value"] {
        v.push((
            format!("{prefix}.attention.attention.{proj}.weight"),
            vec![hidden, hidden],
        ));
        if !qkv_bias {
            continue;
        }
        v.push((
            format!("{prefix}.attention.attention.{proj}.bias"),
            vec![hidden],
        ));
    }
    v.push((
        format!("{prefix}.attention.output.dense.weight"),
        vec![hidden, hidden],
    ));
    v.push((
        format!("{prefix}.attention.output.dense.bias"),
        vec![hidden],
    ));
    v.push((
        format!("{prefix}.intermediate.dense.weight"),
        vec![intermediate, hidden],
    ));
    v.push((
        format!("{prefix}.intermediate.dense.bias"),
        vec![intermediate],
    ));
    v.push((
        format!("{prefix}.output.dense.weight"),
        vec![hidden, intermediate],
    ));
    v.push((format!("{prefix}.output.dense.bias"), vec![hidden]));
    for ln in ["layernorm_before", "layernorm_after"] {
        v.push((format!("{prefix}.{ln}.weight"), vec![hidden]));
        v.push((format!("{prefix}.{ln}.bias"), vec![hidden]));
    }
    v
}
