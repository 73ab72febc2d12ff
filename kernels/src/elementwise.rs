//! Elementwise and broadcast helpers: the glue between the fused kernels.
//!
//! The loop bodies are `#[inline(always)]` helpers compiled twice: plainly
//! (the `*_scalar` references, SSE2 on x86_64) and inside an
//! `#[target_feature(enable = "avx2,fma")]` wrapper, where the compiler
//! vectorises them 8 lanes wide. Rust never contracts `a * b + c` into an FMA,
//! so both builds give the same bits. `sum_squares` is written with intrinsics
//! (a f64 reduction does not auto-vectorise).

use rayon::prelude::*;

const CHUNK: usize = 16384;

/// Defines `$avx2` as `$body` compiled for AVX2+FMA, and `$scalar` as the plain
/// build, with the same arguments.
macro_rules! avx2_twin {
    ($scalar:ident, $avx2:ident, $body:ident, ($($arg:ident: $ty:ty),*)) => {
        /// Scalar reference build of the loop (no AVX2).
        pub fn $scalar($($arg: $ty),*) {
            $body($($arg),*)
        }

        /// The loop built for AVX2+FMA (the CPU must have both).
        #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
        unsafe fn $avx2($($arg: $ty),*) {
            $body($($arg),*)
        }
    };
}

/// Runs the AVX2 build when the CPU has it, else the scalar one.
macro_rules! dispatch {
    ($scalar:ident, $avx2:ident, ($($arg:expr),*)) => {
        if crate::has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            unsafe { $avx2($($arg),*) }
        } else {
            $scalar($($arg),*)
        }
    };
}

#[inline(always)]
fn add_assign_body(dst: &mut [f32], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
}
avx2_twin!(add_assign_scalar, add_assign_avx2, add_assign_body, (dst: &mut [f32], src: &[f32]));

/// `dst += src`.
pub fn add_assign(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "add_assign: length mismatch");
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| dispatch!(add_assign_scalar, add_assign_avx2, (d, s)));
}

#[inline(always)]
fn axpy_body(dst: &mut [f32], alpha: f32, src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d += alpha * s);
}
avx2_twin!(axpy_scalar, axpy_avx2, axpy_body, (dst: &mut [f32], alpha: f32, src: &[f32]));

/// `dst += alpha * src`.
pub fn axpy(dst: &mut [f32], alpha: f32, src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "axpy: length mismatch");
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| dispatch!(axpy_scalar, axpy_avx2, (d, alpha, s)));
}

#[inline(always)]
fn scale_body(dst: &mut [f32], alpha: f32) {
    dst.iter_mut().for_each(|d| *d *= alpha);
}
avx2_twin!(scale_scalar, scale_avx2, scale_body, (dst: &mut [f32], alpha: f32));

/// `dst *= alpha`.
pub fn scale(dst: &mut [f32], alpha: f32) {
    dst.par_chunks_mut(CHUNK)
        .for_each(|d| dispatch!(scale_scalar, scale_avx2, (d, alpha)));
}

#[inline(always)]
fn add_row_broadcast_body(x: &mut [f32], row: &[f32]) {
    for r in x.chunks_exact_mut(row.len()) {
        r.iter_mut().zip(row).for_each(|(a, b)| *a += b);
    }
}
avx2_twin!(
    add_row_broadcast_scalar,
    add_row_broadcast_avx2,
    add_row_broadcast_body,
    (x: &mut [f32], row: &[f32])
);

/// `x (rows, cols) += row (cols,)` for every row: bias and position-table adds.
pub fn add_row_broadcast(x: &mut [f32], row: &[f32]) {
    let cols = row.len();
    assert_eq!(x.len() % cols, 0, "add_row_broadcast: length mismatch");
    let chunk = crate::rows_per_task(cols) * cols;
    x.par_chunks_mut(chunk)
        .for_each(|xs| dispatch!(add_row_broadcast_scalar, add_row_broadcast_avx2, (xs, row)));
}

/// `out (cols,) += sum over rows of x (rows, cols)`: the gradient of a broadcast row add.
pub fn sum_rows_into(out: &mut [f32], x: &[f32]) {
    let cols = out.len();
    assert_eq!(x.len() % cols, 0, "sum_rows_into: length mismatch");
    let rows = x.len() / cols;
    let tasks = rayon::current_num_threads().max(1) * 4;
    let chunk_rows = rows.div_ceil(tasks).max(crate::rows_per_task(cols));
    let partials: Vec<Vec<f32>> = x
        .par_chunks(chunk_rows * cols)
        .map(|xs| {
            // (cols,) partial sum of this task's rows.
            let mut acc = vec![0.0f32; cols];
            dispatch!(add_rows_scalar, add_rows_avx2, (&mut acc, xs));
            acc
        })
        .collect();
    for p in partials {
        out.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
    }
}

#[inline(always)]
fn add_rows_body(acc: &mut [f32], x: &[f32]) {
    for r in x.chunks_exact(acc.len()) {
        acc.iter_mut().zip(r).for_each(|(a, b)| *a += b);
    }
}
avx2_twin!(add_rows_scalar, add_rows_avx2, add_rows_body, (acc: &mut [f32], x: &[f32]));

#[inline(always)]
fn mul_body(out: &mut [f32], a: &[f32], b: &[f32]) {
    out.iter_mut()
        .zip(a.iter().zip(b))
        .for_each(|(o, (a, b))| *o = a * b);
}
avx2_twin!(mul_scalar, mul_avx2, mul_body, (out: &mut [f32], a: &[f32], b: &[f32]));

/// `out = a * b`.
pub fn mul(out: &mut [f32], a: &[f32], b: &[f32]) {
    assert!(
        out.len() == a.len() && a.len() == b.len(),
        "mul: length mismatch"
    );
    out.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(o, (a, b))| dispatch!(mul_scalar, mul_avx2, (o, a, b)));
}

/// Sum of squares in f64 (gradient norms).
pub fn sum_squares(x: &[f32]) -> f64 {
    x.par_chunks(CHUNK)
        .map(|c| {
            #[cfg(target_arch = "x86_64")]
            if crate::has_avx2_fma() {
                // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                return unsafe { sum_squares_avx2(c) };
            }
            sum_squares_scalar(c)
        })
        .sum()
}

/// Scalar reference of [`sum_squares`] (sequential f64 sum).
pub fn sum_squares_scalar(x: &[f32]) -> f64 {
    x.iter().map(|&v| (v as f64) * (v as f64)).sum()
}

/// Squares summed in 4 f64 lanes x 2 accumulators (widened from f32 first).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sum_squares_avx2(x: &[f32]) -> f64 {
    use std::arch::x86_64::*;
    let body = x.len() - x.len() % 8;
    let p = x.as_ptr();
    let (mut acc0, mut acc1) = (_mm256_setzero_pd(), _mm256_setzero_pd());
    let mut i = 0;
    while i < body {
        // SAFETY: i + 8 <= body <= x.len().
        let v = _mm256_loadu_ps(p.add(i));
        let lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        let hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v));
        acc0 = _mm256_fmadd_pd(lo, lo, acc0);
        acc1 = _mm256_fmadd_pd(hi, hi, acc1);
        i += 8;
    }
    let mut lanes = [0.0f64; 4];
    // SAFETY: `lanes` holds 4 f64.
    _mm256_storeu_pd(lanes.as_mut_ptr(), _mm256_add_pd(acc0, acc1));
    lanes.iter().sum::<f64>() + sum_squares_scalar(&x[body..])
}
