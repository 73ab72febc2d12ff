//! Fused multi-head self-attention on the packed projections qkv (B, N, 3 C),
//! as one linear layer writes them (each row: query, key, value, each H heads
//! of D): per head, scores = q k^T * scale, additive key mask, softmax,
//! dropout, context = P v, written into (B, N, C) with the heads side by side.
//! The probabilities (B*H, N, N) are not kept: backward recomputes them from
//! q and k (2 N^2 D extra FLOPs per head instead of B H N^2 floats alive from
//! forward to backward), and the dropout mask is regenerated from its seed.
//!
//! CPU (`cpu.rs`): one rayon task per (batch, head) reading its head in place,
//! in blocks of queries on the GEMM micro-kernels, with per-thread scratch; no
//! N x N buffer at all. CUDA (`cuda.rs`): heads permuted contiguous, batched
//! cuBLAS products over all heads plus the softmax and dropout kernels.

use crate::buffer::Buffer;

mod columns;
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

/// `ctx (B, N, C) = dropout(softmax(q k^T * scale + mask)) v` per head, where
/// `qkv (B, N, 3 C)` holds each token's query, key and value projections side
/// by side (heads of D inside each, C = H D); `key_mask` (B, N) additive (0
/// attended, -10000 masked) or None.
pub fn forward(ctx: &mut Buffer, qkv: &Buffer, key_mask: Option<&Buffer>, s: AttentionShape) {
    const K: &str = "attention_forward";
    match ctx {
        Buffer::Cpu(ctx) => {
            let mask = key_mask.map(|m| m.host(K));
            cpu::forward(crate::cpu::isa(), ctx, qkv.host(K), mask, s)
        }
        #[cfg(feature = "cuda")]
        Buffer::Cuda(c) => cuda::forward(c, qkv.cuda(K), key_mask.map(|m| m.cuda(K)), s),
    }
}

/// `dqkv (B, N, 3 C)`, the gradient of [`forward`] w.r.t. qkv, from `dctx (B,
/// N, C)`. With `ctx`, also writes [`forward`]'s output there again, from
/// the probabilities backward recomputes anyway (one more product per head
/// instead of keeping ctx alive from forward to backward): the same bits on
/// the CPU.
pub fn backward(
    dqkv: &mut Buffer,
    ctx: Option<&mut Buffer>,
    dctx: &Buffer,
    qkv: &Buffer,
    key_mask: Option<&Buffer>,
    s: AttentionShape,
) {
    const K: &str = "attention_backward";
    match dqkv {
        Buffer::Cpu(dqkv) => {
            let mask = key_mask.map(|m| m.host(K));
            let ctx = ctx.map(|c| c.host_mut(K));
            cpu::backward(
                crate::cpu::isa(),
                dqkv,
                ctx,
                dctx.host(K),
                qkv.host(K),
                mask,
                s,
            )
        }
        #[cfg(feature = "cuda")]
        Buffer::Cuda(d) => {
            let ctx = ctx.map(|c| c.cuda_mut(K));
            cuda::backward(
                d,
                ctx,
                dctx.cuda(K),
                qkv.cuda(K),
                key_mask.map(|m| m.cuda(K)),
                s,
            )
        }
    }
}
