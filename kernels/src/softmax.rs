//! Softmax over the last axis with an optional additive mask, fused.
//!
//! Attention uses it on scores (B, H, Nq, Nk) with a key mask (B, Nk): row `r`
//! of the scores reads mask row `r / rows_per_mask_row` (= H * Nq rows share one
//! example's mask).

use rayon::prelude::*;

/// `out[r] = softmax(inp[r] + mask[r / rows_per_mask_row])` over rows of `cols`.
/// `inp`, `out`: (rows, cols); `mask`: (rows / rows_per_mask_row, cols) or None.
pub fn softmax_forward(
    out: &mut [f32],
    inp: &[f32],
    mask: Option<&[f32]>,
    rows_per_mask_row: usize,
    cols: usize,
) {
    assert_eq!(out.len(), inp.len());
    let chunk = crate::rows_per_task(cols);
    out.par_chunks_mut(chunk * cols)
        .zip(inp.par_chunks(chunk * cols))
        .enumerate()
        .for_each(|(t, (o, x))| {
            softmax_forward_scalar(o, x, mask, rows_per_mask_row, cols, t * chunk)
        });
}

/// Scalar reference of [`softmax_forward`]; `row0` is the global index of the
/// first row in `inp` (selects the mask rows).
pub fn softmax_forward_scalar(
    out: &mut [f32],
    inp: &[f32],
    mask: Option<&[f32]>,
    rows_per_mask_row: usize,
    cols: usize,
    row0: usize,
) {
    for (i, (o, x)) in out.chunks_mut(cols).zip(inp.chunks(cols)).enumerate() {
        let m = mask.map(|m| {
            let mr = (row0 + i) / rows_per_mask_row;
            &m[mr * cols..(mr + 1) * cols]
        });
        let mut maxv = f32::NEG_INFINITY;
        for j in 0..cols {
            let v = x[j] + m.map_or(0.0, |m| m[j]);
            o[j] = v;
            maxv = maxv.max(v);
        }
        let mut sum = 0.0f32;
        for v in o.iter_mut() {
            *v = (*v - maxv).exp();
            sum += *v;
        }
        let inv = 1.0 / sum;
        for v in o.iter_mut() {
            *v *= inv;
        }
    }
}

/// Backward of softmax: `dinp = out * (dout - sum(dout * out))`, per row.
/// `dinp` is overwritten. The additive mask has no gradient.
pub fn softmax_backward(dinp: &mut [f32], dout: &[f32], out: &[f32], cols: usize) {
    assert!(dinp.len() == out.len() && dout.len() == out.len());
    let chunk = crate::rows_per_task(cols);
    dinp.par_chunks_mut(chunk * cols)
        .zip(dout.par_chunks(chunk * cols))
        .zip(out.par_chunks(chunk * cols))
        .for_each(|((dx, dy), y)| softmax_backward_scalar(dx, dy, y, cols));
}

/// Scalar reference of [`softmax_backward`].
pub fn softmax_backward_scalar(dinp: &mut [f32], dout: &[f32], out: &[f32], cols: usize) {
    for ((dx, dy), y) in dinp
        .chunks_mut(cols)
        .zip(dout.chunks(cols))
        .zip(out.chunks(cols))
    {
        let dot: f32 = dy.iter().zip(y).map(|(a, b)| a * b).sum();
        for j in 0..cols {
            dx[j] = y[j] * (dy[j] - dot);
        }
    }
}
