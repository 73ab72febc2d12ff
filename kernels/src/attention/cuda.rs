//! Attention on CUDA: batched cuBLAS products over every head, the masked
//! softmax and the dropout kernel. Holds one (B*H, N, N) buffer at a time.
//! The packed projections qkv (B, N, 3, H, D) are permuted to contiguous
//! heads (3, B, H, N, D) for the batched products, and the results back.

use super::AttentionShape;
use crate::cuda::context::DeviceBuffer;
use crate::gemm::cuda::sgemm_strided_batched;
use crate::gemm::GemmShape;

/// An operand: a buffer and the offset of its first item.
type Part<'a> = (&'a DeviceBuffer, usize);

/// A fresh (batch, m, n) product of contiguous per-item operands.
fn product(s: GemmShape, batch: usize, alpha: f32, a: Part<'_>, b: Part<'_>) -> DeviceBuffer {
    let mut c = DeviceBuffer::zeros(a.0.device(), batch * s.m * s.n);
    product_into(&mut c, 0, s, batch, alpha, a, b);
    c
}

/// `c[c_off..]` = the (batch, m, n) product of contiguous per-item operands.
fn product_into(
    c: &mut DeviceBuffer,
    c_off: usize,
    s: GemmShape,
    batch: usize,
    alpha: f32,
    a: Part<'_>,
    b: Part<'_>,
) {
    let (la, lb, lc) = (batch * s.m * s.k, batch * s.k * s.n, batch * s.m * s.n);
    let (av, bv) = (a.0.view(a.1..a.1 + la), b.0.view(b.1..b.1 + lb));
    let mut cv = c.view_mut(c_off..c_off + lc);
    sgemm_strided_batched(
        a.0.device(),
        s,
        batch,
        alpha,
        &av,
        s.m * s.k,
        &bv,
        s.k * s.n,
        0.0,
        &mut cv,
        s.m * s.n,
    );
}

/// softmax(q k^T * scale + key mask) per head: (B*H, N, N).
fn probs(q: Part<'_>, k: Part<'_>, mask: Option<&DeviceBuffer>, s: AttentionShape) -> DeviceBuffer {
    let (bh, n) = (s.batch * s.heads, s.seq);
    let mut p = product(GemmShape::nt(n, n, s.head_dim), bh, s.scale, q, k);
    crate::softmax::cuda::softmax_forward(&mut p, None, mask, bh * n, n, s.heads * n);
    p
}

fn dropout(x: &mut DeviceBuffer, n: usize, s: AttentionShape) {
    if let Some((seed, prob)) = s.dropout {
        crate::dropout::cuda::dropout_in_place(x, n, seed, prob);
    }
}

/// `x` (dims `shape`) permuted by `perm` into a fresh buffer.
fn permuted(x: &DeviceBuffer, shape: &[usize], perm: &[usize]) -> DeviceBuffer {
    let mut out = DeviceBuffer::zeros(x.device(), shape.iter().product());
    crate::layout::cuda::permute(&mut out, x, shape, perm);
    out
}

/// qkv (B, N, 3, H, D) -> (3, B, H, N, D): q, k, v as contiguous heads, at
/// offsets 0, B H N D and 2 B H N D.
fn split_heads(qkv: &DeviceBuffer, s: AttentionShape) -> DeviceBuffer {
    let (b, h, n, d) = (s.batch, s.heads, s.seq, s.head_dim);
    permuted(qkv, &[b, n, 3, h, d], &[2, 0, 3, 1, 4])
}

pub(super) fn forward(
    ctx: &mut DeviceBuffer,
    qkv: &DeviceBuffer,
    mask: Option<&DeviceBuffer>,
    s: AttentionShape,
) {
    let (b, h, n, d) = (s.batch, s.heads, s.seq, s.head_dim);
    let len = b * h * n * d;
    let heads = split_heads(qkv, s);
    let mut p = probs((&heads, 0), (&heads, len), mask, s);
    dropout(&mut p, b * h * n * n, s);
    let heads_ctx = product(
        GemmShape::nn(n, d, n),
        b * h,
        1.0,
        (&p, 0),
        (&heads, 2 * len),
    );
    // (B, H, N, D) -> (B, N, H, D)
    crate::layout::cuda::permute(ctx, &heads_ctx, &[b, h, n, d], &[0, 2, 1, 3]);
}

pub(super) fn backward(
    dqkv: &mut DeviceBuffer,
    ctx: Option<&mut DeviceBuffer>,
    dctx: &DeviceBuffer,
    qkv: &DeviceBuffer,
    mask: Option<&DeviceBuffer>,
    s: AttentionShape,
) {
    let (b, h, n, d) = (s.batch, s.heads, s.seq, s.head_dim);
    let (bh, len) = (b * h, b * h * n * d);
    let heads = split_heads(qkv, s);
    let (q, k, v) = ((&heads, 0), (&heads, len), (&heads, 2 * len));
    let dctx = permuted(dctx, &[b, n, h, d], &[0, 2, 1, 3]); // (B, H, N, D)
    let dctx = (&dctx, 0);
    // dq, dk, dv as (3, B, H, N, D).
    let mut grads = DeviceBuffer::zeros(heads.device(), 3 * len);
    let p = probs(q, k, mask, s);
    // dv = probs_used^T dctx (probs_used = probs after dropout).
    let pt_dc = GemmShape::tn(n, d, n);
    let mut used = p.clone();
    dropout(&mut used, bh * n * n, s);
    product_into(&mut grads, 2 * len, pt_dc, bh, 1.0, (&used, 0), dctx);
    if let Some(ctx) = ctx {
        // The forward's output again: probs_used v, (B, H, N, D) -> (B, N, H, D).
        let heads_ctx = product(GemmShape::nn(n, d, n), bh, 1.0, (&used, 0), v);
        crate::layout::cuda::permute(ctx, &heads_ctx, &[b, h, n, d], &[0, 2, 1, 3]);
    }
    drop(used);
    // dprobs = dctx v^T, through the dropout mask, then softmax backward.
    let mut ds = product(GemmShape::nt(n, n, d), bh, 1.0, dctx, v);
    dropout(&mut ds, bh * n * n, s);
    crate::softmax::cuda::softmax_backward(&mut ds, None, &p, bh * n, n);
    drop(p);
    // dq = dscores k * scale; dk = dscores^T q * scale.
    product_into(
        &mut grads,
        0,
        GemmShape::nn(n, d, n),
        bh,
        s.scale,
        (&ds, 0),
        k,
    );
    product_into(&mut grads, len, pt_dc, bh, s.scale, (&ds, 0), q);
    // (3, B, H, N, D) -> (B, N, 3, H, D)
    crate::layout::cuda::permute(dqkv, &grads, &[3, b, h, n, d], &[1, 3, 0, 2, 4]);
}
