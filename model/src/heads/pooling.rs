//! Sequence classification (GLUE, NLI; SPEC 5, `PoolingForSequenceClassificationHead`):
//! pool the patch states into one vector, then `classifier`. CE for two or
//! more labels, MSE for one (regression).

use pixel_engine::{ops, Tape, Tensor, Var};

use super::model::rows;
use super::{FinetuneOutput, Pooling, IGNORE_INDEX};
use crate::params::ParamVars;
use crate::ForwardMode;

/// LayerNorm eps of `pooler.ln` (fixed in the original, not the config's).
const POOLER_LN_EPS: f32 = 1e-12;
/// Value that padding patches take before max pooling.
const MAX_POOL_PADDING: f32 = -1e9;

#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolSettings {
    pub pooling: Pooling,
    /// Apply `pooler.ln` (config `pooler_add_layer_norm`, default true).
    pub add_layer_norm: bool,
    pub dropout: f32,
}

/// hidden_states (B, 1 + L, hidden); attention_mask (B * L); labels (B) or None.
/// Returns logits (B, num_labels).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    t: &mut Tape,
    params: &ParamVars<'_>,
    hidden_states: &Var,
    attention_mask: &[f32],
    labels: Option<&[f32]>,
    num_labels: usize,
    settings: PoolSettings,
    mode: ForwardMode<'_>,
) -> FinetuneOutput {
    let s = hidden_states.shape();
    let (b, l, d) = (s[0], s[1] - 1, s[2]);
    let pooled = match settings.pooling {
        Pooling::Cls => cls_pool(t, params, hidden_states),
        Pooling::Mean | Pooling::Max | Pooling::Pma(_) => {
            let patches = rows(t, hidden_states, 1, l); // (B, L, d)
            let x = transform(t, params, &patches, settings, mode); // (B, L, d)
            match settings.pooling {
                Pooling::Mean => mean_pool(t, &x, attention_mask),
                Pooling::Max => max_pool(t, &x, attention_mask),
                Pooling::Pma(heads) => pma_pool(t, params, &x, attention_mask, heads),
                Pooling::Cls => unreachable!(),
            }
        }
    }; // (B, d)
    debug_assert_eq!(pooled.shape(), &[b, d]);
    let logits = ops::linear(
        t,
        &pooled,
        params.get("classifier.weight"),
        Some(params.get("classifier.bias")),
    ); // (B, num_labels)
    let loss = labels.map(|labels| sequence_loss(t, &logits, labels, num_labels));
    FinetuneOutput {
        loss,
        logits,
        rel_logits: None,
    }
}

/// MSE (one label, regression) or CE with IGNORE_INDEX (two or more).
fn sequence_loss(t: &mut Tape, logits: &Var, labels: &[f32], num_labels: usize) -> Var {
    let b = logits.shape()[0];
    assert_eq!(
        labels.len(),
        b,
        "sequence labels: {} values for a batch of {b}",
        labels.len()
    );
    if num_labels == 1 {
        let target = Var::constant(Tensor::new(&[b, 1], labels.to_vec()));
        return ops::masked_mse(t, logits, &target, &vec![1.0; b]);
    }
    let classes: Vec<i64> = labels
        .iter()
        .map(|&y| {
            let c = y as i64;
            assert!(
                c as f32 == y && (c == IGNORE_INDEX || (0..num_labels as i64).contains(&c)),
                "sequence label {y} is not a class index below {num_labels}"
            );
            c
        })
        .collect();
    ops::cross_entropy(t, logits, &classes)
}

/// tanh(vit.pooler.dense(h_CLS)), passed through as is (no dropout, no LN).
fn cls_pool(t: &mut Tape, params: &ParamVars<'_>, hidden_states: &Var) -> Var {
    let b = hidden_states.shape()[0];
    let d = hidden_states.shape()[2];
    let cls = rows(t, hidden_states, 0, 1); // (B, 1, d)
    let cls = ops::reshape(t, &cls, &[b, d]);
    let pooled = ops::linear(
        t,
        &cls,
        params.get("vit.pooler.dense.weight"),
        Some(params.get("vit.pooler.dense.bias")),
    );
    ops::tanh(t, &pooled)
}

/// Linear-GELU (not for PMA), LayerNorm when enabled, dropout: (B, L, d) -> (B, L, d).
fn transform(
    t: &mut Tape,
    params: &ParamVars<'_>,
    patches: &Var,
    settings: PoolSettings,
    mode: ForwardMode<'_>,
) -> Var {
    let mut x = patches.clone();
    if !matches!(settings.pooling, Pooling::Pma(_)) {
        x = ops::linear(
            t,
            &x,
            params.get("pooler.linear.weight"),
            Some(params.get("pooler.linear.bias")),
        );
        x = ops::gelu(t, &x);
    }
    if settings.add_layer_norm {
        x = ops::layer_norm(
            t,
            &x,
            params.get("pooler.ln.weight"),
            params.get("pooler.ln.bias"),
            POOLER_LN_EPS,
        );
    }
    ops::dropout(t, &x, settings.dropout, mode.training, mode.rng)
}

/// Masked mean over patches: sum(x * mask) / max(sum(mask), 1e-9) -> (B, d).
fn mean_pool(t: &mut Tape, x: &Var, attention_mask: &[f32]) -> Var {
    let s = x.shape();
    let (b, l, d) = (s[0], s[1], s[2]);
    // Row b of the (B, 1, L) weights is mask / count, so weights @ x is the masked mean.
    let mut weights = Vec::with_capacity(b * l);
    for row in attention_mask.chunks(l) {
        let count: f32 = row.iter().sum::<f32>().max(1e-9);
        weights.extend(row.iter().map(|m| m / count));
    }
    let weights = Var::constant(Tensor::new(&[b, 1, l], weights));
    let pooled = ops::matmul(t, &weights, x, false, false); // (B, 1, d)
    ops::reshape(t, &pooled, &[b, d])
}

/// Max over patches with padding set to -1e9 (no gradient to padding) -> (B, d).
fn max_pool(t: &mut Tape, x: &Var, attention_mask: &[f32]) -> Var {
    let s = x.shape();
    let (d, n) = (s[2], x.value().numel());
    let mut keep = Vec::with_capacity(n);
    let mut fill = Vec::with_capacity(n);
    for &m in attention_mask {
        let attended = m != 0.0;
        keep.extend(std::iter::repeat_n(if attended { 1.0 } else { 0.0 }, d));
        fill.extend(std::iter::repeat_n(
            if attended { 0.0 } else { MAX_POOL_PADDING },
            d,
        ));
    }
    let keep = Var::constant(Tensor::new(s, keep));
    let fill = Var::constant(Tensor::new(s, fill));
    let x = ops::mul(t, x, &keep);
    let x = ops::add(t, &x, &fill);
    ops::max_axis(t, &x, 1)
}

/// Set-Transformer PMA with one learned seed S (SPEC 5): Q = fc_q(S),
/// K = fc_k(X) * mask, V = fc_v(X) (not masked); per head
/// A = softmax(Q K^T / sqrt(d)) (sqrt of the full width, as the original);
/// O = Q + A V; O = O + ReLU(fc_o(O)). -> (B, d).
fn pma_pool(
    t: &mut Tape,
    params: &ParamVars<'_>,
    x: &Var,
    attention_mask: &[f32],
    heads: usize,
) -> Var {
    let s = x.shape().to_vec();
    let (b, l, d) = (s[0], s[1], s[2]);
    let dh = d / heads;
    let fc = |t: &mut Tape, name: &str, input: &Var| {
        let prefix = format!("pooler.pooling.pooler.mab.{name}");
        ops::linear(
            t,
            input,
            params.get(&format!("{prefix}.weight")),
            Some(params.get(&format!("{prefix}.bias"))),
        )
    };
    let q = fc(t, "fc_q", params.get("pooler.pooling.pooler.S")); // (1, 1, d)
    let q = ops::expand_first(t, &q, b); // (B, 1, d)
    let k = fc(t, "fc_k", x); // (B, L, d)
    let v = fc(t, "fc_v", x); // (B, L, d)
                              // Padding keys become zero vectors (score 0, not -inf), as the original.
    let mask: Vec<f32> = attention_mask
        .iter()
        .flat_map(|&m| std::iter::repeat_n(m, d))
        .collect();
    let k = ops::mul(t, &k, &Var::constant(Tensor::new(&s, mask)));

    // Heads: dims [h*dh, (h+1)*dh) of every row -> (B * heads, N, dh).
    let split = |t: &mut Tape, y: &Var, n: usize| {
        let y = ops::reshape(t, y, &[b, n, heads, dh]);
        let y = ops::permute(t, &y, &[0, 2, 1, 3]);
        ops::reshape(t, &y, &[b * heads, n, dh])
    };
    let qh = split(t, &q, 1); // (B*H, 1, dh)
    let kh = split(t, &k, l); // (B*H, L, dh)
    let vh = split(t, &v, l); // (B*H, L, dh)
    let scores = ops::matmul(t, &qh, &kh, false, true); // (B*H, 1, L)
    let scores = ops::scale(t, &scores, 1.0 / (d as f32).sqrt());
    let attn = ops::softmax(t, &scores, None);
    let ctx = ops::matmul(t, &attn, &vh, false, false); // (B*H, 1, dh)
    let o = ops::add(t, &qh, &ctx);
    // Merge heads back: (B*H, 1, dh) -> (B, 1, H, dh) -> (B, d).
    let o = ops::reshape(t, &o, &[b, heads, 1, dh]);
    let o = ops::permute(t, &o, &[0, 2, 1, 3]);
    let o = ops::reshape(t, &o, &[b, d]);
    let f = fc(t, "fc_o", &o);
    let f = ops::relu(t, &f);
    ops::add(t, &o, &f)
}
