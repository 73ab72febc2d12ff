//! Softmax with an additive mask, and fused multi-head self-attention
//! (QK^T, mask, softmax, dropout, PV as one tape node).

use rayon::prelude::*;

use pixel_kernels::gemm::{sgemm_serial, GemmShape};
use pixel_kernels::softmax::{
    softmax_backward, softmax_backward_serial, softmax_forward, softmax_forward_serial,
};

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
    let drop_mask =
        (cfg.training && cfg.dropout > 0.0).then(|| DropoutMask::new(bh * n * n, cfg.dropout, rng));
    let mask_data = key_mask.map(|m| m.data());
    // One task per (batch, head): scores = q k^T / sqrt(D) in a scratch buffer,
    // masked softmax into the saved probabilities, dropout, context = probs v.
    let mut probs = vec![0.0f32; bh * n * n]; // (B*H, N, N)
    let mut ctx = vec![0.0f32; bh * n * d]; // (B*H, N, D)
    let qk = GemmShape {
        m: n,
        n,
        k: d,
        trans_a: false,
        trans_b: true,
    };
    let pv = GemmShape {
        m: n,
        n: d,
        k: n,
        trans_a: false,
        trans_b: false,
    };
    probs
        .par_chunks_mut(n * n)
        .zip(ctx.par_chunks_mut(n * d))
        .enumerate()
        .for_each(|(i, (p, out))| {
            let head = i * n * d..(i + 1) * n * d;
            let mut scores = vec![0.0f32; n * n];
            sgemm_serial(
                qk,
                scale,
                &qh[head.clone()],
                &kh[head.clone()],
                0.0,
                &mut scores,
            );
            let mask_row = mask_data.map(|m| &m[(i / h) * n..(i / h + 1) * n]);
            softmax_forward_serial(p, &scores, mask_row, n, n, 0);
            match &drop_mask {
                Some(m) => {
                    scores.copy_from_slice(p);
                    m.apply_range_in_place(i * n * n, &mut scores);
                    sgemm_serial(pv, 1.0, &scores, &vh[head], 0.0, out);
                }
                None => sgemm_serial(pv, 1.0, p, &vh[head], 0.0, out),
            }
        });
    let (_, merged) = permute_data(&ctx, &[b, h, n, d], &to_heads);
    drop(ctx);
    let out = Tensor::new(&shape, merged);
    if !t.needs_grad(&[q, k, v]) {
        return Var::constant(out);
    }
    t.add_flops(4.0 * (bh * n * n * d) as f64);
    t.record(
        "attention",
        out,
        &[q, k, v],
        Box::new(move |dout, _| {
            let (_, dctx) = permute_data(dout.data(), &split, &to_heads); // (B*H, N, D)
            let mut dqh = vec![0.0f32; bh * n * d];
            let mut dkh = vec![0.0f32; bh * n * d];
            let mut dvh = vec![0.0f32; bh * n * d];
            let nn_t = GemmShape {
                m: n,
                n: d,
                k: n,
                trans_a: true,
                trans_b: false,
            };
            let nd_t = GemmShape {
                m: n,
                n,
                k: d,
                trans_a: false,
                trans_b: true,
            };
            let nn = GemmShape {
                m: n,
                n: d,
                k: n,
                trans_a: false,
                trans_b: false,
            };
            dqh.par_chunks_mut(n * d)
                .zip(dkh.par_chunks_mut(n * d))
                .zip(dvh.par_chunks_mut(n * d))
                .enumerate()
                .for_each(|(i, ((dq, dk), dv))| {
                    let head = i * n * d..(i + 1) * n * d;
                    let p = &probs[i * n * n..(i + 1) * n * n];
                    let dc = &dctx[head.clone()];
                    let mut dprobs = vec![0.0f32; n * n];
                    // dv = probs_used^T dctx (probs_used = probs after dropout).
                    match &drop_mask {
                        Some(m) => {
                            dprobs.copy_from_slice(p);
                            m.apply_range_in_place(i * n * n, &mut dprobs);
                            sgemm_serial(nn_t, 1.0, &dprobs, dc, 0.0, dv);
                        }
                        None => sgemm_serial(nn_t, 1.0, p, dc, 0.0, dv),
                    }
                    // dprobs = dctx v^T, through the dropout mask, then softmax backward.
                    sgemm_serial(nd_t, 1.0, dc, &vh[head.clone()], 0.0, &mut dprobs);
                    if let Some(m) = &drop_mask {
                        m.apply_range_in_place(i * n * n, &mut dprobs);
                    }
                    let mut dscores = vec![0.0f32; n * n];
                    softmax_backward_serial(&mut dscores, &dprobs, p, n);
                    // dq = dscores k / sqrt(D); dk = dscores^T q / sqrt(D).
                    sgemm_serial(nn, scale, &dscores, &kh[head.clone()], 0.0, dq);
                    sgemm_serial(nn_t, scale, &dscores, &qh[head], 0.0, dk);
                });
            let merge = |g: Vec<f32>| {
                Some(Tensor::new(
                    &[b, n, c],
                    permute_data(&g, &[b, h, n, d], &to_heads).1,
                ))
            };
            vec![merge(dqh), merge(dkh), merge(dvh)]
        }),
    )
}
