//! Attention on CUDA: batched cuBLAS products over every head, the masked
//! softmax and the dropout kernel. Holds one (B*H, N, N) buffer at a time.
//! The operands arrive as (B, N, H * D), as the projections write them, and
//! are permuted to contiguous heads (B, H, N, D) for the batched products.

use super::AttentionShape;
use crate::cuda::context::DeviceBuffer;
use crate::gemm::cuda::sgemm_strided_batched;
use crate::gemm::GemmShape;

/// A fresh (batch, m, n) product of contiguous per-item operands.
fn product(
    s: GemmShape,
    batch: usize,
    alpha: f32,
    a: &DeviceBuffer,
    b: &DeviceBuffer,
) -> DeviceBuffer {
    let mut c = DeviceBuffer::zeros(a.device(), batch * s.m * s.n);
    product_into(&mut c, s, batch, alpha, a, b);
    c
}

/// `c` = the (batch, m, n) product of contiguous per-item operands.
fn product_into(
    c: &mut DeviceBuffer,
    s: GemmShape,
    batch: usize,
    alpha: f32,
    a: &DeviceBuffer,
    b: &DeviceBuffer,
) {
    let (la, lb, lc) = (batch * s.m * s.k, batch * s.k * s.n, batch * s.m * s.n);
    let (av, bv) = (a.view(0..la), b.view(0..lb));
    let mut cv = c.view_mut(0..lc);
    sgemm_strided_batched(
        a.device(),
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
fn probs(
    q: &DeviceBuffer,
    k: &DeviceBuffer,
    mask: Option<&DeviceBuffer>,
    s: AttentionShape,
) -> DeviceBuffer {
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

/// (B, N, H, D) <-> (B, H, N, D): swaps the two middle dims of `x`, whose
/// dims are `from`.
fn swap_middle(x: &DeviceBuffer, from: [usize; 4]) -> DeviceBuffer {
    let mut out = DeviceBuffer::zeros(x.device(), from.iter().product());
    crate::layout::cuda::permute(&mut out, x, &from, &[0, 2, 1, 3]);
    out
}

/// (B, N, H, D) and (B, H, N, D) of this call.
fn layouts(s: AttentionShape) -> ([usize; 4], [usize; 4]) {
    let (b, h, n, d) = (s.batch, s.heads, s.seq, s.head_dim);
    ([b, n, h, d], [b, h, n, d])
}

pub(super) fn forward(
    ctx: &mut DeviceBuffer,
    q: &DeviceBuffer,
    k: &DeviceBuffer,
    v: &DeviceBuffer,
    mask: Option<&DeviceBuffer>,
    s: AttentionShape,
) {
    let (bh, n, d) = (s.batch * s.heads, s.seq, s.head_dim);
    let (tokens, heads) = layouts(s);
    let (q, k, v) = (
        swap_middle(q, tokens),
        swap_middle(k, tokens),
        swap_middle(v, tokens),
    );
    let mut p = probs(&q, &k, mask, s);
    dropout(&mut p, bh * n * n, s);
    let heads_ctx = product(GemmShape::nn(n, d, n), bh, 1.0, &p, &v);
    crate::layout::cuda::permute(ctx, &heads_ctx, &heads, &[0, 2, 1, 3]);
}

#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    dq: &mut DeviceBuffer,
    dk: &mut DeviceBuffer,
    dv: &mut DeviceBuffer,
    dctx: &DeviceBuffer,
    q: &DeviceBuffer,
    k: &DeviceBuffer,
    v: &DeviceBuffer,
    mask: Option<&DeviceBuffer>,
    s: AttentionShape,
) {
    let (bh, n, d) = (s.batch * s.heads, s.seq, s.head_dim);
    let (tokens, heads) = layouts(s);
    let (q, k, v) = (
        swap_middle(q, tokens),
        swap_middle(k, tokens),
        swap_middle(v, tokens),
    );
    let dctx = swap_middle(dctx, tokens);
    let (q, k, v, dctx) = (&q, &k, &v, &dctx);
    let p = probs(q, k, mask, s);
    // dv = probs_used^T dctx (probs_used = probs after dropout).
    let pt_dc = GemmShape::tn(n, d, n);
    let mut used = p.clone();
    dropout(&mut used, bh * n * n, s);
    let heads_dv = product(pt_dc, bh, 1.0, &used, dctx);
    drop(used);
    // dprobs = dctx v^T, through the dropout mask, then softmax backward.
    let mut ds = product(GemmShape::nt(n, n, d), bh, 1.0, dctx, v);
    dropout(&mut ds, bh * n * n, s);
    crate::softmax::cuda::softmax_backward(&mut ds, None, &p, bh * n, n);
    drop(p);
    // dq = dscores k * scale; dk = dscores^T q * scale.
    let heads_dq = product(GemmShape::nn(n, d, n), bh, s.scale, &ds, k);
    let heads_dk = product(pt_dc, bh, s.scale, &ds, q);
    for (out, g) in [(dq, heads_dq), (dk, heads_dk), (dv, heads_dv)] {
        crate::layout::cuda::permute(out, &g, &heads, &[0, 2, 1, 3]);
    }
}
