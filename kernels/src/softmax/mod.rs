//! Softmax over the last axis with an optional additive mask, fused.
//!
//! Attention uses it on scores (B, H, Nq, Nk) with a key mask (B, Nk): row `r`
//! of the scores reads mask row `r / rows_per_mask_row` (= H * Nq rows share one
//! example's mask).

use crate::cpu::{simd_dispatch, Isa};
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
    assert_eq!(
        out.len(),
        inp.len(),
        "softmax_forward: out and inp lengths differ"
    );
    assert_eq!(
        inp.len() % cols,
        0,
        "softmax_forward: length not a multiple of cols"
    );
    if let Some(m) = mask {
        let rows = inp.len() / cols;
        assert!(
            rows_per_mask_row > 0 && m.len() >= rows.div_ceil(rows_per_mask_row) * cols,
            "softmax_forward: mask too short"
        );
    }
    let chunk = crate::rows_per_task(cols);
    out.par_chunks_mut(chunk * cols)
        .zip(inp.par_chunks(chunk * cols))
        .enumerate()
        .for_each(|(t, (o, x))| {
            softmax_forward_serial(o, x, mask, rows_per_mask_row, cols, t * chunk)
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
        .for_each(|((dx, dy), y)| softmax_backward_serial(dx, dy, y, cols));
}

/// [`softmax_forward`] on the calling thread (for callers that already run in
/// parallel, e.g. one attention head per task). `row0` selects the mask rows.
pub fn softmax_forward_serial(
    out: &mut [f32],
    inp: &[f32],
    mask: Option<&[f32]>,
    rows_per_mask_row: usize,
    cols: usize,
    row0: usize,
) {
    assert_eq!(
        out.len(),
        inp.len(),
        "softmax_forward_serial: lengths differ"
    );
    softmax_forward_with(
        crate::cpu::isa(),
        out,
        inp,
        mask,
        rows_per_mask_row,
        cols,
        row0,
    )
}

/// [`softmax_forward_serial`] with `isa`'s code (the scalar reference or the
/// vector rows).
pub fn softmax_forward_with(
    isa: Isa,
    out: &mut [f32],
    inp: &[f32],
    mask: Option<&[f32]>,
    rows_per_mask_row: usize,
    cols: usize,
    row0: usize,
) {
    simd_dispatch!(
        isa,
        softmax_forward_scalar,
        vector::forward_rows_avx2,
        vector::forward_rows_avx512,
        (out, inp, mask, rows_per_mask_row, cols, row0)
    )
}

/// [`softmax_backward`] on the calling thread.
pub fn softmax_backward_serial(dinp: &mut [f32], dout: &[f32], out: &[f32], cols: usize) {
    assert!(dinp.len() == out.len() && dout.len() == out.len());
    softmax_backward_with(crate::cpu::isa(), dinp, dout, out, cols)
}

/// [`softmax_backward_serial`] with `isa`'s code.
pub fn softmax_backward_with(isa: Isa, dinp: &mut [f32], dout: &[f32], out: &[f32], cols: usize) {
    simd_dispatch!(
        isa,
        softmax_backward_scalar,
        vector::backward_rows_avx2,
        vector::backward_rows_avx512,
        (dinp, dout, out, cols)
    )
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

/// Vector row kernels (AVX2 and AVX-512 from one generic body). Tail lanes
/// past `cols` are loaded as 0 and then kept out of the max (set to -inf) and
/// the sums (exp(-inf) = 0, 0 * y = 0).
#[cfg(target_arch = "x86_64")]
mod vector {
    use crate::simd::{exp, simd_entry, Vector};

    simd_entry!(forward_rows, forward_rows_avx2, forward_rows_avx512, (
        out: &mut [f32],
        inp: &[f32],
        mask: Option<&[f32]>,
        rows_per_mask_row: usize,
        cols: usize,
        row0: usize,
    ));

    simd_entry!(backward_rows, backward_rows_avx2, backward_rows_avx512, (
        dinp: &mut [f32],
        dout: &[f32],
        out: &[f32],
        cols: usize,
    ));

    /// Forward over whole rows; `row0` is the global index of the first row.
    ///
    /// # Safety
    /// The CPU has V's features.
    #[inline(always)]
    unsafe fn forward_rows<V: Vector>(
        out: &mut [f32],
        inp: &[f32],
        mask: Option<&[f32]>,
        rows_per_mask_row: usize,
        cols: usize,
        row0: usize,
    ) {
        let lanes = V::LANES;
        let body = cols - cols % lanes;
        let tail = cols - body;
        for (i, (o, x)) in out
            .chunks_exact_mut(cols)
            .zip(inp.chunks_exact(cols))
            .enumerate()
        {
            let (xp, op) = (x.as_ptr(), o.as_mut_ptr());
            let mp = mask.map(|m| {
                let mr = (row0 + i) / rows_per_mask_row;
                m[mr * cols..(mr + 1) * cols].as_ptr()
            });
            // SAFETY (all pointer reads/writes below): the row of out, inp and
            // the mask row each hold `cols` values; j + lanes <= body, and the
            // tail touches `tail` values past `body`.
            unsafe {
                // Pass 1: v = x + mask into out, running max.
                let mut maxv = V::splat(f32::NEG_INFINITY);
                let mut j = 0;
                while j < body {
                    let mut v = V::load(xp.add(j));
                    if let Some(mp) = mp {
                        v = v.add(V::load(mp.add(j)));
                    }
                    v.store(op.add(j));
                    maxv = maxv.max(v);
                    j += lanes;
                }
                if tail > 0 {
                    let mut v = V::load_tail(xp.add(body), tail);
                    if let Some(mp) = mp {
                        v = v.add(V::load_tail(mp.add(body), tail));
                    }
                    v.store_tail(op.add(body), tail);
                    maxv = maxv.max(v.first_or(tail, f32::NEG_INFINITY));
                }
                let maxv = V::splat(maxv.hmax());
                // Pass 2: e = exp(v - max), running sum.
                let mut sum = V::zero();
                let mut j = 0;
                while j < body {
                    let e = exp(V::load(op.add(j)).sub(maxv));
                    e.store(op.add(j));
                    sum = sum.add(e);
                    j += lanes;
                }
                if tail > 0 {
                    let e = exp(V::load_tail(op.add(body), tail).sub(maxv)).first_or(tail, 0.0);
                    e.store_tail(op.add(body), tail);
                    sum = sum.add(e);
                }
                // Pass 3: normalise.
                let inv = V::splat(1.0 / sum.hsum());
                let mut j = 0;
                while j < body {
                    V::load(op.add(j)).mul(inv).store(op.add(j));
                    j += lanes;
                }
                if tail > 0 {
                    let v = V::load_tail(op.add(body), tail).mul(inv);
                    v.store_tail(op.add(body), tail);
                }
            }
        }
    }

    /// Backward over whole rows: `dinp = out * (dout - sum(dout * out))`.
    ///
    /// # Safety
    /// The CPU has V's features.
    #[inline(always)]
    unsafe fn backward_rows<V: Vector>(dinp: &mut [f32], dout: &[f32], out: &[f32], cols: usize) {
        let lanes = V::LANES;
        let body = cols - cols % lanes;
        let tail = cols - body;
        for ((dx, dy), y) in dinp
            .chunks_exact_mut(cols)
            .zip(dout.chunks_exact(cols))
            .zip(out.chunks_exact(cols))
        {
            let (dxp, dyp, yp) = (dx.as_mut_ptr(), dy.as_ptr(), y.as_ptr());
            // SAFETY (all pointer reads/writes below): each row holds `cols`
            // values; j + lanes <= body, and the tail stays inside the row.
            unsafe {
                let mut dot = V::zero();
                let mut j = 0;
                while j < body {
                    dot = V::load(dyp.add(j)).mul_add(V::load(yp.add(j)), dot);
                    j += lanes;
                }
                if tail > 0 {
                    let (g, yv) = (
                        V::load_tail(dyp.add(body), tail),
                        V::load_tail(yp.add(body), tail),
                    );
                    dot = g.mul_add(yv, dot);
                }
                let dot = V::splat(dot.hsum());
                let mut j = 0;
                while j < body {
                    let g = V::load(dyp.add(j)).sub(dot);
                    V::load(yp.add(j)).mul(g).store(dxp.add(j));
                    j += lanes;
                }
                if tail > 0 {
                    let g = V::load_tail(dyp.add(body), tail).sub(dot);
                    let v = V::load_tail(yp.add(body), tail).mul(g);
                    v.store_tail(dxp.add(body), tail);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Device-dispatched entry points.

use crate::buffer::Buffer;

#[cfg(feature = "cuda")]
pub(crate) mod cuda;

/// `y[r] = softmax(x[r] + mask[r / rows_per_mask_row])` over rows of `cols`;
/// mask (rows / rows_per_mask_row, cols) additive, or None.
pub fn forward(
    y: &mut Buffer,
    x: &Buffer,
    mask: Option<&Buffer>,
    rows: usize,
    cols: usize,
    rows_per_mask_row: usize,
) {
    const K: &str = "softmax_forward";
    match y {
        Buffer::Cpu(y) => softmax_forward(
            &mut y[..rows * cols],
            &x.host(K)[..rows * cols],
            mask.map(|m| m.host(K)),
            rows_per_mask_row,
            cols,
        ),
        #[cfg(feature = "cuda")]
        Buffer::Cuda(y) => cuda::softmax_forward(
            y,
            Some(x.cuda(K)),
            mask.map(|m| m.cuda(K)),
            rows,
            cols,
            rows_per_mask_row,
        ),
    }
}

/// `dx = y (dy - sum(dy y))` per row of `cols`.
pub fn backward(dx: &mut Buffer, dy: &Buffer, y: &Buffer, rows: usize, cols: usize) {
    const K: &str = "softmax_backward";
    match dx {
        Buffer::Cpu(d) => softmax_backward(
            &mut d[..rows * cols],
            &dy.host(K)[..rows * cols],
            &y.host(K)[..rows * cols],
            cols,
        ),
        #[cfg(feature = "cuda")]
        Buffer::Cuda(d) => cuda::softmax_backward(d, Some(dy.cuda(K)), y.cuda(K), rows, cols),
    }
}
