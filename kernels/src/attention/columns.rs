//! The softmax of attention's transposed score blocks, down columns: keys are
//! rows, the queries of a block are columns (vector lanes), so the max, the
//! sum of exponentials and the backward's dot product are plain vector
//! operations with no horizontal reduction. A scalar reference and one body
//! generic over `V8`/`V16` (`crate::simd`), as every fused kernel here.

use crate::cpu::Isa;

/// Softmax down columns `0..w` of `x` (rows, stride), after adding `mask[r]`
/// to row r: column j becomes softmax over the keys of query j.
pub(crate) fn softmax_columns(
    isa: Isa,
    x: &mut [f32],
    stride: usize,
    rows: usize,
    w: usize,
    mask: Option<&[f32]>,
) {
    assert!(x.len() >= rows * stride && w <= stride && mask.is_none_or(|m| m.len() >= rows));
    crate::cpu::simd_dispatch!(
        isa,
        softmax_columns_scalar,
        vector::softmax_columns_avx2,
        vector::softmax_columns_avx512,
        (x, stride, rows, w, mask)
    )
}

/// Scalar reference of [`softmax_columns`] (the row softmax's arithmetic:
/// max, exp of the difference, times the reciprocal of the sum).
pub(crate) fn softmax_columns_scalar(
    x: &mut [f32],
    stride: usize,
    rows: usize,
    w: usize,
    mask: Option<&[f32]>,
) {
    for j in 0..w {
        let mut maxv = f32::NEG_INFINITY;
        for r in 0..rows {
            let v = x[r * stride + j] + mask.map_or(0.0, |m| m[r]);
            x[r * stride + j] = v;
            maxv = maxv.max(v);
        }
        let mut sum = 0.0f32;
        for r in 0..rows {
            let e = (x[r * stride + j] - maxv).exp();
            x[r * stride + j] = e;
            sum += e;
        }
        let inv = 1.0 / sum;
        for r in 0..rows {
            x[r * stride + j] *= inv;
        }
    }
}

/// Softmax backward down columns `0..w`: `ds = p (ds - sum_r(ds p))`, in place
/// on `ds` (the gradient of the probabilities on entry).
pub(crate) fn softmax_columns_backward(
    isa: Isa,
    ds: &mut [f32],
    p: &[f32],
    stride: usize,
    rows: usize,
    w: usize,
) {
    assert!(ds.len() >= rows * stride && p.len() >= rows * stride && w <= stride);
    crate::cpu::simd_dispatch!(
        isa,
        softmax_columns_backward_scalar,
        vector::softmax_columns_backward_avx2,
        vector::softmax_columns_backward_avx512,
        (ds, p, stride, rows, w)
    )
}

/// Scalar reference of [`softmax_columns_backward`].
pub(crate) fn softmax_columns_backward_scalar(
    ds: &mut [f32],
    p: &[f32],
    stride: usize,
    rows: usize,
    w: usize,
) {
    for j in 0..w {
        let mut dot = 0.0f32;
        for r in 0..rows {
            dot += ds[r * stride + j] * p[r * stride + j];
        }
        for r in 0..rows {
            let i = r * stride + j;
            ds[i] = p[i] * (ds[i] - dot);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vector {
    use crate::simd::{exp, simd_entry, Vector};

    simd_entry!(softmax_columns, softmax_columns_avx2, softmax_columns_avx512, (
        x: &mut [f32],
        stride: usize,
        rows: usize,
        w: usize,
        mask: Option<&[f32]>,
    ));

    simd_entry!(
        softmax_columns_backward,
        softmax_columns_backward_avx2,
        softmax_columns_backward_avx512,
        (ds: &mut [f32], p: &[f32], stride: usize, rows: usize, w: usize,)
    );

    /// `lanes` values at `p` (a whole vector, or a masked tail).
    ///
    /// # Safety
    /// V's features; `p` valid for `lanes <= LANES` values.
    #[inline(always)]
    unsafe fn load_columns<V: Vector>(p: *const f32, lanes: usize) -> V {
        // SAFETY: forwarded.
        unsafe {
            if lanes == V::LANES {
                V::load(p)
            } else {
                V::load_tail(p, lanes)
            }
        }
    }

    /// Stores the first `lanes` values of `v` at `p`.
    ///
    /// # Safety
    /// As [`load_columns`], for writes.
    #[inline(always)]
    unsafe fn store_columns<V: Vector>(v: V, p: *mut f32, lanes: usize) {
        // SAFETY: forwarded.
        unsafe {
            if lanes == V::LANES {
                v.store(p)
            } else {
                v.store_tail(p, lanes)
            }
        }
    }

    /// One vector of columns at a time (queries in lanes), three passes down
    /// the rows; the last vector loads and stores only its `w % LANES` columns.
    ///
    /// # Safety
    /// The CPU has V's features; `x` holds `rows * stride` values, w <= stride,
    /// the mask `rows` values (asserted by the caller).
    #[inline(always)]
    unsafe fn softmax_columns<V: Vector>(
        x: &mut [f32],
        stride: usize,
        rows: usize,
        w: usize,
        mask: Option<&[f32]>,
    ) {
        let xp = x.as_mut_ptr();
        for j in (0..w).step_by(V::LANES) {
            let lanes = V::LANES.min(w - j);
            // SAFETY: column vector j..j + lanes of row r is inside the row.
            unsafe {
                let load = |r: usize| load_columns::<V>(xp.add(r * stride + j), lanes);
                let store = |v: V, r: usize| store_columns(v, xp.add(r * stride + j), lanes);
                let mut maxv = V::splat(f32::NEG_INFINITY);
                for r in 0..rows {
                    let mut v = load(r);
                    if let Some(m) = mask {
                        v = v.add(V::splat(m[r]));
                        store(v, r);
                    }
                    maxv = maxv.max(v);
                }
                let mut sum = V::zero();
                for r in 0..rows {
                    let e = exp(load(r).sub(maxv));
                    store(e, r);
                    sum = sum.add(e);
                }
                // Lanes past `lanes` hold 0 / 0: never stored.
                let inv = V::splat(1.0).div(sum);
                for r in 0..rows {
                    store(load(r).mul(inv), r);
                }
            }
        }
    }

    /// # Safety
    /// As [`softmax_columns`], with `p` as long as `ds`.
    #[inline(always)]
    unsafe fn softmax_columns_backward<V: Vector>(
        ds: &mut [f32],
        p: &[f32],
        stride: usize,
        rows: usize,
        w: usize,
    ) {
        let (dp, pp) = (ds.as_mut_ptr(), p.as_ptr());
        for j in (0..w).step_by(V::LANES) {
            let lanes = V::LANES.min(w - j);
            // SAFETY: as in softmax_columns.
            unsafe {
                let at = |r: usize| r * stride + j;
                let load = |q: *const f32, r: usize| load_columns::<V>(q.add(at(r)), lanes);
                let mut dot = V::zero();
                for r in 0..rows {
                    dot = load(dp, r).mul_add(load(pp, r), dot);
                }
                for r in 0..rows {
                    let v = load(pp, r).mul(load(dp, r).sub(dot));
                    store_columns(v, dp.add(at(r)), lanes);
                }
            }
        }
    }
}
