//! Fused multi-head self-attention on per-head q, k, v (B*H, N, D):
//! scores = q k^T * scale, additive key mask, softmax, dropout, context = P v.
//! The probabilities (B*H, N, N) are not kept: backward recomputes them from
//! q and k (2 N^2 D extra FLOPs per head instead of B H N^2 floats alive from
//! forward to backward), and the dropout mask is regenerated from its seed.
//!
//! CPU: one rayon task per (batch, head), everything in per-task scratch, so
//! at most `threads` N x N buffers exist at once. CUDA (`cuda.rs`): batched
//! cuBLAS products over all heads plus the softmax and dropout kernels.

use rayon::prelude::*;

use crate::buffer::Buffer;
use crate::gemm::{sgemm_serial, GemmShape};
use crate::softmax::{softmax_backward_serial, softmax_forward_serial};

#[cfg(feature = "cuda")]
pub(crate) mod cuda;

/// Sizes of one attention call and what it applies.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub batch: usize,
    pub heads: usize,
    /// Sequence length N (queries = keys).
    pub seq: usize,
    pub head_dim: usize,
    /// 1 / sqrt(head_dim).
    pub scale: f32,
    /// Dropout on the probabilities: (seed, p), or None.
    pub dropout: Option<(u64, f32)>,
}

/// `ctx (B*H, N, D) = dropout(softmax(q k^T * scale + mask)) v`; `key_mask`
/// (B, N) additive (0 attended, -10000 masked) or None.
pub fn forward(
    ctx: &mut Buffer,
    q: &Buffer,
    k: &Buffer,
    v: &Buffer,
    key_mask: Option<&Buffer>,
    s: AttentionShape,
) {
    const K: &str = "attention_forward";
    match ctx {
        Buffer::Cpu(ctx) => {
            let (q, k, v) = (q.host(K), k.host(K), v.host(K));
            let mask = key_mask.map(|m| m.host(K));
            let (n, d) = (s.seq, s.head_dim);
            let probs_v = GemmShape::nn(n, d, n);
            ctx[..s.batch * s.heads * n * d]
                .par_chunks_mut(n * d)
                .enumerate()
                .for_each(|(i, out)| {
                    let head = i * n * d..(i + 1) * n * d;
                    let mut p = head_probs(&q[head.clone()], &k[head.clone()], mask, i, s);
                    if let Some((seed, prob)) = s.dropout {
                        crate::dropout::apply_slice(&mut p, seed, prob, i * n * n);
                    }
                    sgemm_serial(probs_v, 1.0, &p, &v[head], 0.0, out);
                });
        }
        #[cfg(feature = "cuda")]
        Buffer::Cuda(c) => cuda::forward(
            c,
            q.cuda(K),
            k.cuda(K),
            v.cuda(K),
            key_mask.map(|m| m.cuda(K)),
            s,
        ),
    }
}

/// Gradients of [`forward`] w.r.t. per-head q, k, v from `dctx` (all (B*H, N, D)).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dq: &mut Buffer,
    dk: &mut Buffer,
    dv: &mut Buffer,
    dctx: &Buffer,
    q: &Buffer,
    k: &Buffer,
    v: &Buffer,
    key_mask: Option<&Buffer>,
    s: AttentionShape,
) {
    const K: &str = "attention_backward";
    match dq {
        Buffer::Cpu(dq) => {
            let (dk, dv) = (dk.host_mut(K), dv.host_mut(K));
            let (dctx, q, k, v) = (dctx.host(K), q.host(K), k.host(K), v.host(K));
            let mask = key_mask.map(|m| m.host(K));
            let (n, d) = (s.seq, s.head_dim);
            let len = s.batch * s.heads * n * d;
            let (pt_dc, dc_vt, ds_k) = (
                GemmShape::tn(n, d, n),
                GemmShape::nt(n, n, d),
                GemmShape::nn(n, d, n),
            );
            dq[..len]
                .par_chunks_mut(n * d)
                .zip(dk[..len].par_chunks_mut(n * d))
                .zip(dv[..len].par_chunks_mut(n * d))
                .enumerate()
                .for_each(|(i, ((dq, dk), dv))| {
                    let head = i * n * d..(i + 1) * n * d;
                    let p = head_probs(&q[head.clone()], &k[head.clone()], mask, i, s);
                    let dc = &dctx[head.clone()];
                    let mut dprobs = vec![0.0f32; n * n];
                    // dv = probs_used^T dctx (probs_used = probs after dropout).
                    match s.dropout {
                        Some((seed, prob)) => {
                            dprobs.copy_from_slice(&p);
                            crate::dropout::apply_slice(&mut dprobs, seed, prob, i * n * n);
                            sgemm_serial(pt_dc, 1.0, &dprobs, dc, 0.0, dv);
                        }
                        None => sgemm_serial(pt_dc, 1.0, &p, dc, 0.0, dv),
                    }
                    // dprobs = dctx v^T, through the dropout mask, then softmax backward.
                    sgemm_serial(dc_vt, 1.0, dc, &v[head.clone()], 0.0, &mut dprobs);
                    if let Some((seed, prob)) = s.dropout {
                        crate::dropout::apply_slice(&mut dprobs, seed, prob, i * n * n);
                    }
                    let mut dscores = vec![0.0f32; n * n];
                    softmax_backward_serial(&mut dscores, &dprobs, &p, n);
                    // dq = dscores k * scale; dk = dscores^T q * scale.
                    sgemm_serial(ds_k, s.scale, &dscores, &k[head.clone()], 0.0, dq);
                    sgemm_serial(pt_dc, s.scale, &dscores, &q[head], 0.0, dk);
                });
        }
        #[cfg(feature = "cuda")]
        Buffer::Cuda(dq) => cuda::backward(
            dq,
            dk.cuda_mut(K),
            dv.cuda_mut(K),
            dctx.cuda(K),
            q.cuda(K),
            k.cuda(K),
            v.cuda(K),
            key_mask.map(|m| m.cuda(K)),
            s,
        ),
    }
}

/// Softmax probabilities of head `i` (of B*H): softmax(q k^T * scale + mask
/// row `i / heads`). q, k (N, D); mask (B, N) or None. Returns (N, N).
fn head_probs(q: &[f32], k: &[f32], mask: Option<&[f32]>, i: usize, s: AttentionShape) -> Vec<f32> {
    let n = s.seq;
    let mut scores = vec![0.0f32; n * n];
    sgemm_serial(
        GemmShape::nt(n, n, s.head_dim),
        s.scale,
        q,
        k,
        0.0,
        &mut scores,
    );
    let mut p = vec![0.0f32; n * n];
    let b = i / s.heads;
    let mask_row = mask.map(|m| &m[b * n..(b + 1) * n]);
    softmax_forward_serial(&mut p, &scores, mask_row, n, n, 0);
    p
}
