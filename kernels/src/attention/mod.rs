//! Fused multi-head self-attention on q, k, v as the projections write them,
//! (B, N, H * D) with the heads side by side in each row: per head, scores =
//! q k^T * scale, additive key mask, softmax, dropout, context = P v, written
//! back into the same (B, N, H * D) layout.
//! The probabilities (B*H, N, N) are not kept: backward recomputes them from
//! q and k (2 N^2 D extra FLOPs per head instead of B H N^2 floats alive from
//! forward to backward), and the dropout mask is regenerated from its seed.
//!
//! CPU (`cpu.rs`): one rayon task per (batch, head) reading its head in place,
//! in blocks of queries on the GEMM micro-kernels, with per-thread scratch; no
//! N x N buffer at all. CUDA (`cuda.rs`): heads permuted contiguous, batched
//! cuBLAS products over all heads plus the softmax and dropout kernels.

use crate::buffer::Buffer;

mod cpu;
#[cfg(test)]
mod tests;

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

/// `ctx = dropout(softmax(q k^T * scale + mask)) v` per head, all (B, N, H * D);
/// `key_mask` (B, N) additive (0 attended, -10000 masked) or None.
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
            let mask = key_mask.map(|m| m.host(K));
            cpu::forward(
                crate::cpu::isa(),
                ctx,
                q.host(K),
                k.host(K),
                v.host(K),
                mask,
                s,
            )
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

/// Gradients of [`forward`] w.r.t. q, k, v from `dctx` (all (B, N, H * D)).
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
            cpu::backward(crate::cpu::isa(), dq, dk, dv, dctx, q, k, v, mask, s)
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
