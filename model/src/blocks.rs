//! The pre-LN transformer block shared by the encoder and the decoder
//! (`PIXELLayer`: LN -> attention -> residual, LN -> MLP -> residual).

use pixel_engine::ops::{self, AttentionConfig};
use pixel_engine::{Rng, Tape, Tensor, Var};

use crate::params::ParamVars;

/// Per-stack settings of a block.
#[derive(Clone, Copy, Debug)]
pub struct BlockSettings {
    pub num_heads: usize,
    /// Biases on the query, key and value projections (config qkv_bias).
    pub qkv_bias: bool,
    pub layer_norm_eps: f32,
    pub hidden_dropout: f32,
    pub attention_dropout: f32,
    pub training: bool,
}

/// Additive key mask from a 0/1 attention mask: 0 where attended, -10000 where
/// not (transformers 4.17's `get_extended_attention_mask`, not -inf).
pub fn additive_key_mask(mask: &[f32], batch: usize, len: usize) -> Tensor {
    assert_eq!(mask.len(), batch * len, "additive_key_mask: mask length");
    Tensor::new(
        &[batch, len],
        mask.iter().map(|m| (1.0 - m) * -10000.0).collect(),
    )
}

/// One block on x (B, N, C). `prefix` is the state-dict prefix of the layer,
/// e.g. `vit.encoder.layer.3` or `decoder.decoder_layers.0`.
pub fn transformer_block(
    t: &mut Tape,
    pv: &ParamVars<'_>,
    prefix: &str,
    x: &Var,
    key_mask: Option<&Tensor>,
    s: BlockSettings,
    rng: &mut Rng,
) -> Var {
    let p = |name: &str| pv.get(&format!("{prefix}.{name}"));
    t.set_scope(prefix);
    // Attention half.
    let h = ops::layer_norm(
        t,
        x,
        p("layernorm_before.weight"),
        p("layernorm_before.bias"),
        s.layer_norm_eps,
    );
    let q = ops::linear(
        t,
        &h,
        p("attention.attention.query.weight"),
        s.qkv_bias.then(|| p("attention.attention.query.bias")),
    );
    let k = ops::linear(
        t,
        &h,
        p("attention.attention.key.weight"),
        s.qkv_bias.then(|| p("attention.attention.key.bias")),
    );
    let v = ops::linear(
        t,
        &h,
        p("attention.attention.value.weight"),
        s.qkv_bias.then(|| p("attention.attention.value.bias")),
    );
    drop(h);
    let cfg = AttentionConfig {
        num_heads: s.num_heads,
        dropout: s.attention_dropout,
        training: s.training,
    };
    let ctx = ops::attention(t, &q, &k, &v, key_mask, cfg, rng);
    let a = ops::linear(
        t,
        &ctx,
        p("attention.output.dense.weight"),
        Some(p("attention.output.dense.bias")),
    );
    let a = ops::dropout(t, &a, s.hidden_dropout, s.training, rng);
    let x1 = ops::add(t, x, &a);
    // MLP half.
    let h = ops::layer_norm(
        t,
        &x1,
        p("layernorm_after.weight"),
        p("layernorm_after.bias"),
        s.layer_norm_eps,
    );
    let h = ops::linear(
        t,
        &h,
        p("intermediate.dense.weight"),
        Some(p("intermediate.dense.bias")),
    );
    // GELU + output projection as one node: gelu(h) is recomputed in backward
    // rather than kept (the largest activation of the block).
    let y = ops::gelu_linear(t, &h, p("output.dense.weight"), p("output.dense.bias"));
    let y = ops::dropout(t, &y, s.hidden_dropout, s.training, rng);
    ops::add(t, &x1, &y)
}

/// Names and shapes of one block's parameters (for construction and init).
pub fn block_param_shapes(
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
