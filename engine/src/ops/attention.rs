//! Softmax with an additive mask, and fused multi-head self-attention
//! (QK^T, mask, softmax, dropout, PV as one tape node).

use pixel_kernels::gemm::{sgemm_batched, GemmShape};
use pixel_kernels::softmax::{softmax_backward, softmax_forward};

use super::activation::DropoutMask;
use super::shape::permute_data;
use crate::rng::Rng;
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// Softmax over the last axis of `x` (rows, cols) after adding `mask`
/// (G, cols), where every `rows / G` consecutive rows share one mask row.
/// The mask is a constant. Saves its output.
pub fn softmax(t: &mut Tape, x: &Var, mask: Option<&Tensor>) -> Var {
    let shape = x.shape().to_vec();
    let cols = *shape.last().expect("softmax: rank >= 1");
    let rows = x.value().numel() / cols;
    let rows_per_mask_row = match mask {
        Some(m) => {
            let g = m.numel() / cols.max(1);
            assert!(
                m.numel().is_multiple_of(cols) && g > 0 && rows.is_multiple_of(g),
                "softmax: mask shape {:?} does not broadcast over input {shape:?}",
                m.shape()
            );
            rows / g
        }
        None => 1,
    };
    let mut out = vec![0.0f32; rows * cols];
    softmax_forward(
        &mut out,
        x.data(),
        mask.map(|m| m.data()),
        rows_per_mask_row,
        cols,
    );
    let out = Tensor::new(&shape, out);
    if !t.needs_grad(&[x]) {
        return Var::constant(out);
    }
    let y = out.clone();
    t.record(
        "softmax",
        out,
        &[x],
        Box::new(move |dy, _| {
            let mut dx = vec![0.0f32; y.numel()];
            softmax_backward(&mut dx, dy.data(), y.data(), cols);
            vec![Some(Tensor::new(y.shape(), dx))]
        }),
    )
}

/// Settings of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttentionConfig {
    pub num_heads: usize,
    /// Dropout on the attention probabilities.
    pub dropout: f32,
    pub training: bool,
}

/// Multi-head self-attention on projected q, k, v, each (B, N, C) with
/// C = heads * D, heads interleaved as (B, N, H, D) like PyTorch's view.
/// `key_mask` (B, N) is additive (0 attended, -10000 masked) on keys.
/// Returns the merged context (B, N, C). Saves per-head q, k, v, the softmax
/// output and the dropout mask.
pub fn attention(
    t: &mut Tape,
    q: &Var,
    k: &Var,
    v: &Var,
    key_mask: Option<&Tensor>,
    cfg: AttentionConfig,
    rng: &mut Rng,
) -> Var {
    let shape = q.shape().to_vec();
    assert!(
        shape.len() == 3 && k.shape() == shape.as_slice() && v.shape() == shape.as_slice(),
        "attention: q, k, v must share one (B, N, C) shape, got {:?}, {:?}, {:?}",
        shape,
        k.shape(),
        v.shape()
    );
    let (b, n, c) = (shape[0], shape[1], shape[2]);
    let h = cfg.num_heads;
    assert!(
        h > 0 && c % h == 0,
        "attention: width {c} not divisible by {h} heads"
    );
    let d = c / h;
    if let Some(m) = key_mask {
        assert!(
            m.numel() == b * n,
            "attention: key mask shape {:?} does not match (B, N) = ({b}, {n})",
            m.shape()
        );
    }
    let split = [b, n, h, d];
    let to_heads = [0, 2, 1, 3]; // (B, N, H, D) -> (B, H, N, D)
    let (_, qh) = permute_data(q.data(), &split, &to_heads);
    let (_, kh) = permute_data(k.data(), &split, &to_heads);
    let (_, vh) = permute_data(v.data(), &split, &to_heads);
    let scale = 1.0 / (d as f32).sqrt();
    let bh = b * h;
    // scores (B*H, N, N) = q k^T / sqrt(D); then masked softmax in place.
    let mut probs = vec![0.0f32; bh * n * n];
    let qk = GemmShape {
        m: n,
        n,
        k: d,
        trans_a: false,
        trans_b: true,
    };
    sgemm_batched(qk, bh, scale, &qh, n * d, &kh, n * d, 0.0, &mut probs);
    let scores = std::mem::take(&mut probs);
    probs = vec![0.0f32; bh * n * n];
    softmax_forward(&mut probs, &scores, key_mask.map(|m| m.data()), h * n, n);
    drop(scores);
    let drop_mask = (cfg.training && cfg.dropout > 0.0)
        .then(|| DropoutMask::new(probs.len(), cfg.dropout, rng));
    let probs_dropped: Vec<f32> = match &drop_mask {
        Some(m) => m.apply(&probs),
        None => Vec::new(),
    };
    let pv_in: &[f32] = if drop_mask.is_some() {
        &probs_dropped
    } else {
        &probs
    };
    // context (B*H, N, D) = probs @ v, then merged back to (B, N, C).
    let mut ctx = vec![0.0f32; bh * n * d];
    let pv = GemmShape {
        m: n,
        n: d,
        k: n,
        trans_a: false,
        trans_b: false,
    };
    sgemm_batched(pv, bh, 1.0, pv_in, n * n, &vh, n * d, 0.0, &mut ctx);
    drop(probs_dropped);
    let (_, merged) = permute_data(&ctx, &[b, h, n, d], &to_heads);
    let out = Tensor::new(&shape, merged);
    if !t.needs_grad(&[q, k, v]) {
        return Var::constant(out);
    }
    t.add_flops(4.0 * (bh * n * n * d) as f64);
    t.record(
        "attention",
        out,
        &[q, k, v],
        Box::new(move |dout, needs| {
            let (_, dctx) = permute_data(dout.data(), &split, &to_heads); // (B*H, N, D)
            let probs_used: Vec<f32> = match &drop_mask {
                Some(m) => m.apply(&probs),
                None => Vec::new(),
            };
            let pu: &[f32] = if drop_mask.is_some() {
                &probs_used
            } else {
                &probs
            };
            // dv (B*H, N, D) = probs_used^T @ dctx
            let dvh = needs[2].then(|| {
                let mut dv = vec![0.0f32; bh * n * d];
                let s = GemmShape {
                    m: n,
                    n: d,
                    k: n,
                    trans_a: true,
                    trans_b: false,
                };
                sgemm_batched(s, bh, 1.0, pu, n * n, &dctx, n * d, 0.0, &mut dv);
                dv
            });
            // dprobs (B*H, N, N) = dctx @ v^T, through the dropout mask.
            let mut dprobs = vec![0.0f32; bh * n * n];
            let s = GemmShape {
                m: n,
                n,
                k: d,
                trans_a: false,
                trans_b: true,
            };
            sgemm_batched(s, bh, 1.0, &dctx, n * d, &vh, n * d, 0.0, &mut dprobs);
            if let Some(m) = &drop_mask {
                m.apply_in_place(&mut dprobs);
            }
            let mut dscores = vec![0.0f32; bh * n * n];
            softmax_backward(&mut dscores, &dprobs, &probs, n);
            drop(dprobs);
            // dq = dscores @ k * scale; dk = dscores^T @ q * scale.
            let dqh = needs[0].then(|| {
                let mut dq = vec![0.0f32; bh * n * d];
                let s = GemmShape {
                    m: n,
                    n: d,
                    k: n,
                    trans_a: false,
                    trans_b: false,
                };
                sgemm_batched(s, bh, scale, &dscores, n * n, &kh, n * d, 0.0, &mut dq);
                dq
            });
            let dkh = needs[1].then(|| {
                let mut dk = vec![0.0f32; bh * n * d];
                let s = GemmShape {
                    m: n,
                    n: d,
                    k: n,
                    trans_a: true,
                    trans_b: false,
                };
                sgemm_batched(s, bh, scale, &dscores, n * n, &qh, n * d, 0.0, &mut dk);
                dk
            });
            let merge = |g: Option<Vec<f32>>| {
                g.map(|g| Tensor::new(&[b, n, c], permute_data(&g, &[b, h, n, d], &to_heads).1))
            };
            vec![merge(dqh), merge(dkh), merge(dvh)]
        }),
    )
}
