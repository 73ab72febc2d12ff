//! Softmax with an additive mask, and fused multi-head self-attention
//! (QK^T, mask, softmax, dropout, PV as one tape node).

use pixel_kernels::attention::{self as attention_kernel, AttentionShape};
use pixel_kernels::layout;
use pixel_kernels::softmax as softmax_kernel;

use super::{constant_on, device_of};
use crate::rng::Rng;
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// Softmax over the last axis of `x` (rows, cols) after adding `mask`
/// (G, cols), where every `rows / G` consecutive rows share one mask row.
/// The mask is a constant (moved to x's device). Saves its output.
pub fn softmax(t: &mut Tape, x: &Var, mask: Option<&Tensor>) -> Var {
    let shape = x.shape().to_vec();
    let cols = *shape.last().expect("softmax: rank >= 1");
    let rows = x.value().numel() / cols.max(1);
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
    let device = x.value().device();
    let mask = mask.map(|m| constant_on("softmax", m, device));
    let mut out = Tensor::zeros_on(&shape, device);
    softmax_kernel::forward(
        out.buffer_mut(),
        x.value().buffer(),
        mask.as_ref().map(|m| m.buffer()),
        rows,
        cols,
        rows_per_mask_row,
    );
    if !t.needs_grad(&[x]) {
        return Var::constant(out);
    }
    let y = out.clone();
    t.record(
        "softmax",
        out,
        &[x],
        Box::new(move |dy, _| {
            let mut dx = Tensor::zeros_on(y.shape(), device);
            softmax_kernel::backward(dx.buffer_mut(), dy.buffer(), y.buffer(), rows, cols);
            vec![Some(dx)]
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

/// (B, N, H, D) -> (B, H, N, D) and back: the same permutation both ways.
const HEADS_FIRST: [usize; 4] = [0, 2, 1, 3];

/// `x` (viewed as `from`) with its two middle dims swapped.
fn swap_heads(x: &Tensor, from: [usize; 4]) -> Tensor {
    let mut out = Tensor::zeros_on(&[from[0], from[2], from[1], from[3]], x.device());
    layout::permute(out.buffer_mut(), x.buffer(), &from, &HEADS_FIRST);
    out
}

/// Multi-head self-attention on projected q, k, v, each (B, N, C) with
/// C = heads * D, heads interleaved as (B, N, H, D) like PyTorch's view.
/// `key_mask` (B, N) is additive (0 attended, -10000 masked) on keys.
/// Returns the merged context (B, N, C). Saves per-head q, k, v and the key
/// mask; the probabilities are recomputed in backward and the dropout mask
/// regenerated from its seed, so nothing of size N^2 is kept.
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
    let device = device_of("attention", &[q, k, v]);
    let mask = key_mask.map(|m| constant_on("attention", m, device)); // (B, N)
    let s = AttentionShape {
        batch: b,
        heads: h,
        seq: n,
        head_dim: d,
        scale: 1.0 / (d as f32).sqrt(),
        dropout: (cfg.training && cfg.dropout > 0.0).then(|| (rng.next_u64(), cfg.dropout)),
    };
    let split = [b, n, h, d];
    let merged = [b, h, n, d];
    // (B*H, N, D) each.
    let (qh, kh, vh) = (
        swap_heads(q.value(), split),
        swap_heads(k.value(), split),
        swap_heads(v.value(), split),
    );
    let mut ctx = Tensor::zeros_on(&merged, device); // (B, H, N, D)
    let mask_buf = mask.as_ref().map(|m| m.buffer());
    attention_kernel::forward(ctx.buffer_mut(), qh.buffer(), kh.buffer(), vh.buffer(), mask_buf, s);
    let out = swap_heads(&ctx, merged).reshape(&shape);
    drop(ctx);
    if !t.needs_grad(&[q, k, v]) {
        return Var::constant(out);
    }
    t.add_flops(4.0 * (b * h * n * n * d) as f64);
    t.record(
        "attention",
        out,
        &[q, k, v],
        Box::new(move |dout, _| {
            let dctx = swap_heads(&dout, split); // (B, H, N, D)
            let mut dq = Tensor::zeros_on(&merged, device);
            let mut dk = Tensor::zeros_on(&merged, device);
            let mut dv = Tensor::zeros_on(&merged, device);
            attention_kernel::backward(
                dq.buffer_mut(),
                dk.buffer_mut(),
                dv.buffer_mut(),
                dctx.buffer(),
                qh.buffer(),
                kh.buffer(),
                vh.buffer(),
                mask.as_ref().map(|m| m.buffer()),
                s,
            );
            let merge = |g: Tensor| Some(swap_heads(&g, merged).reshape(&[b, n, c]));
            vec![merge(dq), merge(dk), merge(dv)]
        }),
    )
}
