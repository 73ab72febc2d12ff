//! Softmax with an additive mask, and fused multi-head self-attention
//! (QK^T, mask, softmax, dropout, PV as one tape node).

use rayon::prelude::*;

use pixel_kernels::gemm::{sgemm_serial, GemmShape};
use pixel_kernels::softmax::{
    softmax_backward, softmax_backward_serial, softmax_forward, softmax_forward_serial,
};

use super::activation::DropoutMask;
#[cfg(feature = "cuda")]
use super::cuda;
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
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[x]) {
        return cuda::nn::softmax(t, x, mask, rows_per_mask_row);
    }
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
/// Returns the merged context (B, N, C). Saves per-head q, k, v, the key mask
/// and the dropout mask (bits); the softmax is recomputed in backward.
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
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[q, k, v]) {
        return cuda::attention::attention(t, q, k, v, key_mask, cfg, rng);
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
    let mask_data: Option<Vec<f32>> = key_mask.map(|m| m.data().to_vec()); // (B, N)
                                                                           // One task per (batch, head): scores = q k^T / sqrt(D), masked softmax,
                                                                           // dropout, context = probs v, all in per-task scratch buffers. The
                                                                           // probabilities are not kept: backward recomputes them from q and k
                                                                           // (2 N^2 D extra FLOPs per head instead of B H N^2 floats of memory).
    let mut ctx = vec![0.0f32; bh * n * d]; // (B*H, N, D)
    let pv = GemmShape {
        m: n,
        n: d,
        k: n,
        trans_a: false,
        trans_b: false,
    };
    ctx.par_chunks_mut(n * d).enumerate().for_each(|(i, out)| {
        let head = i * n * d..(i + 1) * n * d;
        let mut p = head_probs(
            &qh[head.clone()],
            &kh[head.clone()],
            mask_data.as_deref(),
            i / h,
            n,
            d,
            scale,
        );
        if let Some(m) = &drop_mask {
            m.apply_range_in_place(i * n * n, &mut p);
        }
        sgemm_serial(pv, 1.0, &p, &vh[head], 0.0, out);
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
                    let probs = head_probs(
                        &qh[head.clone()],
                        &kh[head.clone()],
                        mask_data.as_deref(),
                        i / h,
                        n,
                        d,
                        scale,
                    );
                    let p = &probs[..];
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

/// Softmax probabilities of one head: softmax(q k^T * scale + mask row `b`).
/// q, k (N, D); mask (B, N) additive or None. Returns (N, N).
fn head_probs(
    q: &[f32],
    k: &[f32],
    mask: Option<&[f32]>,
    b: usize,
    n: usize,
    d: usize,
    scale: f32,
) -> Vec<f32> {
    let mut scores = vec![0.0f32; n * n];
    let qk = GemmShape {
        m: n,
        n,
        k: d,
        trans_a: false,
        trans_b: true,
    };
    sgemm_serial(qk, scale, q, k, 0.0, &mut scores);
    let mut p = vec![0.0f32; n * n];
    let mask_row = mask.map(|m| &m[b * n..(b + 1) * n]);
    softmax_forward_serial(&mut p, &scores, mask_row, n, n, 0);
    p
}
