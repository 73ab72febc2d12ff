//! Elementwise and broadcast kernels, sums over axes, and sums of squares:
//! the glue between the fused kernels. CPU slices first, then the
//! device-dispatched entry points ([`binary`], [`unary`], ...) on [`Buffer`]s.
//!
//! The loop bodies are `#[inline(always)]` helpers compiled three times:
//! plainly (the `*_scalar` references, SSE2 on x86_64) and inside
//! `#[target_feature]` wrappers for AVX2 and AVX-512, where the compiler
//! vectorises them 8 or 16 lanes wide. Rust never contracts `a * b + c` into an FMA,
//! so both builds give the same bits. `sum_squares` is written with intrinsics
//! (a f64 reduction does not auto-vectorise).

use crate::cpu::simd_dispatch;
use rayon::prelude::*;

const CHUNK: usize = 16384;

/// Defines `$scalar` as the plain build of `$body`, and `$avx2` / `$avx512`
/// as `$body` compiled for AVX2+FMA / AVX-512, all with the same arguments.
macro_rules! isa_builds {
    ($scalar:ident, $avx2:ident, $avx512:ident, $body:ident, ($($arg:ident: $ty:ty),*)) => {
        /// Scalar reference build of the loop (no AVX).
        pub fn $scalar($($arg: $ty),*) {
            $body($($arg),*)
        }

        /// The loop built for AVX2+FMA (the CPU must have both).
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $avx2($($arg: $ty),*) {
            $body($($arg),*)
        }

        /// The loop built for AVX-512 (the CPU must have F, DQ, BW, VL).
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")]
        unsafe fn $avx512($($arg: $ty),*) {
            $body($($arg),*)
        }
    };
}

/// Runs the build for the process's ISA ([`crate::cpu::isa`]).
macro_rules! dispatch {
    ($scalar:ident, $avx2:ident, $avx512:ident, ($($arg:expr),*)) => {
        simd_dispatch!(crate::cpu::isa(), $scalar, $avx2, $avx512, ($($arg),*))
    };
}

#[inline(always)]
fn add_assign_body(dst: &mut [f32], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
}
isa_builds!(
    add_assign_scalar,
    add_assign_avx2,
    add_assign_avx512, add_assign_body, (dst: &mut [f32], src: &[f32]));

/// `dst += src`.
pub fn add_assign(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "add_assign: length mismatch");
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| {
            dispatch!(
                add_assign_scalar,
                add_assign_avx2,
                add_assign_avx512,
                (d, s)
            )
        });
}

#[inline(always)]
fn axpy_body(dst: &mut [f32], alpha: f32, src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d += alpha * s);
}
isa_builds!(
    axpy_scalar,
    axpy_avx2,
    axpy_avx512, axpy_body, (dst: &mut [f32], alpha: f32, src: &[f32]));

/// `dst += alpha * src`.
pub fn axpy(dst: &mut [f32], alpha: f32, src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "axpy: length mismatch");
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| dispatch!(axpy_scalar, axpy_avx2, axpy_avx512, (d, alpha, s)));
}

#[inline(always)]
fn scale_body(dst: &mut [f32], alpha: f32) {
    dst.iter_mut().for_each(|d| *d *= alpha);
}
isa_builds!(
    scale_scalar,
    scale_avx2,
    scale_avx512, scale_body, (dst: &mut [f32], alpha: f32));

/// `dst *= alpha`.
pub fn scale(dst: &mut [f32], alpha: f32) {
    dst.par_chunks_mut(CHUNK)
        .for_each(|d| dispatch!(scale_scalar, scale_avx2, scale_avx512, (d, alpha)));
}

#[inline(always)]
fn add_row_broadcast_body(x: &mut [f32], row: &[f32]) {
    for r in x.chunks_exact_mut(row.len()) {
        r.iter_mut().zip(row).for_each(|(a, b)| *a += b);
    }
}
isa_builds!(
    add_row_broadcast_scalar,
    add_row_broadcast_avx2,
    add_row_broadcast_avx512,
    add_row_broadcast_body,
    (x: &mut [f32], row: &[f32])
);

/// `x (rows, cols) += row (cols,)` for every row: bias and position-table adds.
pub fn add_row_broadcast(x: &mut [f32], row: &[f32]) {
    let cols = row.len();
    assert_eq!(x.len() % cols, 0, "add_row_broadcast: length mismatch");
    let chunk = crate::rows_per_task(cols) * cols;
    x.par_chunks_mut(chunk).for_each(|xs| {
        dispatch!(
            add_row_broadcast_scalar,
            add_row_broadcast_avx2,
            add_row_broadcast_avx512,
            (xs, row)
        )
    });
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
            dispatch!(
                add_rows_scalar,
                add_rows_avx2,
                add_rows_avx512,
                (&mut acc, xs)
            );
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
isa_builds!(
    add_rows_scalar,
    add_rows_avx2,
    add_rows_avx512, add_rows_body, (acc: &mut [f32], x: &[f32]));

#[inline(always)]
fn mul_body(out: &mut [f32], a: &[f32], b: &[f32]) {
    out.iter_mut()
        .zip(a.iter().zip(b))
        .for_each(|(o, (a, b))| *o = a * b);
}
isa_builds!(
    mul_scalar,
    mul_avx2,
    mul_avx512, mul_body, (out: &mut [f32], a: &[f32], b: &[f32]));

/// `out = a * b`.
pub fn mul(out: &mut [f32], a: &[f32], b: &[f32]) {
    assert!(
        out.len() == a.len() && a.len() == b.len(),
        "mul: length mismatch"
    );
    out.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(o, (a, b))| dispatch!(mul_scalar, mul_avx2, mul_avx512, (o, a, b)));
}

/// Sum of squares in f64 (gradient norms).
pub fn sum_squares(x: &[f32]) -> f64 {
    x.par_chunks(CHUNK)
        .map(|c| {
            // The f64 reduction is memory-bound: AVX-512 runs the AVX2 code.
            let isa = crate::cpu::isa().min(crate::cpu::Isa::Avx2);
            simd_dispatch!(
                isa,
                sum_squares_scalar,
                sum_squares_avx2,
                sum_squares_avx2,
                (c)
            )
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

// ---------------------------------------------------------------------------
// Device-dispatched entry points: one `match` on the output's storage each.
// Every kernel overwrites its output (nothing accumulates into it).

use crate::buffer::Buffer;

#[cfg(feature = "cuda")]
pub(crate) mod cuda;

/// The op of [`binary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add = 0,
    Sub = 1,
    Mul = 2,
}

/// The op of [`unary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Tanh = 0,
    Relu = 1,
}

/// `x[..n] = value`.
pub fn fill(x: &mut Buffer, n: usize, value: f32) {
    match x {
        Buffer::Cpu(x) => x[..n].fill(value),
        #[cfg(feature = "cuda")]
        Buffer::Cuda(x) => cuda::fill(x, n, value),
    }
}

/// `x[..n] *= alpha`.
pub fn scale_buffer(x: &mut Buffer, n: usize, alpha: f32) {
    match x {
        Buffer::Cpu(x) => scale(&mut x[..n], alpha),
        #[cfg(feature = "cuda")]
        Buffer::Cuda(x) => cuda::scale(x, n, alpha),
    }
}

/// `y[..n] += alpha * x[..n]`.
pub fn axpy_buffer(y: &mut Buffer, alpha: f32, x: &Buffer, n: usize) {
    const K: &str = "axpy";
    match y {
        Buffer::Cpu(y) if alpha == 1.0 => add_assign(&mut y[..n], &x.host(K)[..n]),
        Buffer::Cpu(y) => axpy(&mut y[..n], alpha, &x.host(K)[..n]),
        #[cfg(feature = "cuda")]
        Buffer::Cuda(y) => cuda::axpy(y, alpha, x.cuda(K), n),
    }
}

/// `out (n) = a (n) op b (nb)`, b repeated over a's leading dims (nb divides n).
pub fn binary(out: &mut Buffer, a: &Buffer, b: &Buffer, op: BinaryOp, n: usize, nb: usize) {
    const K: &str = "binary_broadcast";
    assert!(
        nb > 0 && n.is_multiple_of(nb),
        "{K}: {nb} values do not broadcast over {n}"
    );
    match out {
        Buffer::Cpu(out) => {
            let (a, b) = (&a.host(K)[..n], &b.host(K)[..nb]);
            let rows = crate::rows_per_task(nb);
            out[..n]
                .par_chunks_mut(rows * nb)
                .zip(a.par_chunks(rows * nb))
                .for_each(|(o, a)| {
                    for (o, a) in o.chunks_mut(nb).zip(a.chunks(nb)) {
                        match op {
                            BinaryOp::Add => o
                                .iter_mut()
                                .zip(a.iter().zip(b))
                                .for_each(|(o, (x, y))| *o = x + y),
                            BinaryOp::Sub => o
                                .iter_mut()
                                .zip(a.iter().zip(b))
                                .for_each(|(o, (x, y))| *o = x - y),
                            BinaryOp::Mul => o
                                .iter_mut()
                                .zip(a.iter().zip(b))
                                .for_each(|(o, (x, y))| *o = x * y),
                        }
                    }
                });
        }
        #[cfg(feature = "cuda")]
        Buffer::Cuda(o) => cuda::binary_broadcast(o, a.cuda(K), b.cuda(K), op, n, nb),
    }
}

/// `x (n) += row (nb)` for every row of nb values (bias adds).
pub fn add_row(x: &mut Buffer, row: &Buffer, n: usize, nb: usize) {
    const K: &str = "add_row";
    match x {
        Buffer::Cpu(x) => add_row_broadcast(&mut x[..n], &row.host(K)[..nb]),
        #[cfg(feature = "cuda")]
        Buffer::Cuda(x) => cuda::add_broadcast_in_place(x, row.cuda(K), n, nb),
    }
}

/// `out = f(x)` over n values.
pub fn unary(out: &mut Buffer, x: &Buffer, op: UnaryOp, n: usize) {
    const K: &str = "unary";
    match out {
        Buffer::Cpu(out) => {
            let f = match op {
                UnaryOp::Tanh => f32::tanh,
                UnaryOp::Relu => |v: f32| v.max(0.0),
            };
            out[..n]
                .par_chunks_mut(CHUNK)
                .zip(x.host(K)[..n].par_chunks(CHUNK))
                .for_each(|(o, x)| o.iter_mut().zip(x).for_each(|(o, &v)| *o = f(v)));
        }
        #[cfg(feature = "cuda")]
        Buffer::Cuda(o) => cuda::unary(o, x.cuda(K), op, n),
    }
}

/// `dx = dy * f'(x)` from the output `y = f(x)`: tanh `1 - y^2`, relu `y > 0`.
pub fn unary_backward(dx: &mut Buffer, dy: &Buffer, y: &Buffer, op: UnaryOp, n: usize) {
    const K: &str = "unary_backward";
    match dx {
        Buffer::Cpu(dx) => {
            let (dy, y) = (&dy.host(K)[..n], &y.host(K)[..n]);
            dx[..n]
                .par_chunks_mut(CHUNK)
                .zip(dy.par_chunks(CHUNK).zip(y.par_chunks(CHUNK)))
                .for_each(|(d, (g, y))| {
                    for ((d, &g), &y) in d.iter_mut().zip(g).zip(y) {
                        *d = match op {
                            UnaryOp::Tanh => g * (1.0 - y * y),
                            UnaryOp::Relu if y <= 0.0 => 0.0,
                            UnaryOp::Relu => g,
                        };
                    }
                });
        }
        #[cfg(feature = "cuda")]
        Buffer::Cuda(d) => cuda::unary_backward(d, dy.cuda(K), y.cuda(K), op, n),
    }
}

/// `out (cols) = sum over rows of x (rows, cols)`: a broadcast add's gradient.
pub fn sum_rows(out: &mut Buffer, x: &Buffer, rows: usize, cols: usize) {
    const K: &str = "sum_rows";
    match out {
        Buffer::Cpu(out) => {
            out[..cols].fill(0.0);
            sum_rows_into(&mut out[..cols], &x.host(K)[..rows * cols]);
        }
        #[cfg(feature = "cuda")]
        Buffer::Cuda(o) => cuda::sum_rows(o, x.cuda(K), rows, cols),
    }
}

/// `out (outer, inner) = sum over the middle axis of x (outer, len, inner)`.
pub fn sum_axis(out: &mut Buffer, x: &Buffer, outer: usize, len: usize, inner: usize) {
    const K: &str = "sum_axis";
    match out {
        Buffer::Cpu(out) => {
            let x = x.host(K);
            out[..outer * inner].fill(0.0);
            for o in 0..outer {
                for l in 0..len {
                    let src = &x[(o * len + l) * inner..(o * len + l + 1) * inner];
                    out[o * inner..(o + 1) * inner]
                        .iter_mut()
                        .zip(src)
                        .for_each(|(d, s)| *d += s);
                }
            }
        }
        #[cfg(feature = "cuda")]
        Buffer::Cuda(o) => cuda::sum_axis(o, x.cuda(K), outer, len, inner),
    }
}

/// `dx (outer, len, inner) = dy (outer, inner)` repeated over the middle axis.
pub fn expand_axis(dx: &mut Buffer, dy: &Buffer, outer: usize, len: usize, inner: usize) {
    const K: &str = "expand_axis";
    match dx {
        Buffer::Cpu(dx) => {
            let d = dy.host(K);
            for o in 0..outer {
                for l in 0..len {
                    dx[(o * len + l) * inner..(o * len + l + 1) * inner]
                        .copy_from_slice(&d[o * inner..(o + 1) * inner]);
                }
            }
        }
        #[cfg(feature = "cuda")]
        Buffer::Cuda(d) => cuda::expand_axis(d, dy.cuda(K), outer, len, inner),
    }
}

/// `out[0] = scale * sum(x[..n])`, accumulated in f64.
pub fn sum_all(out: &mut Buffer, x: &Buffer, n: usize, scale: f32) {
    const K: &str = "sum_all";
    match out {
        Buffer::Cpu(out) => {
            let s: f64 = x.host(K)[..n].iter().map(|&v| v as f64).sum();
            out[0] = (s * scale as f64) as f32;
        }
        #[cfg(feature = "cuda")]
        Buffer::Cuda(o) => cuda::sum_to_scalar(o, x.cuda(K), n, scale),
    }
}

/// `x[..n] = alpha * src[0]` (src a one-value buffer on the same device).
pub fn fill_from_scalar(x: &mut Buffer, n: usize, src: &Buffer, alpha: f32) {
    const K: &str = "fill_from_scalar";
    match x {
        Buffer::Cpu(x) => x[..n].fill(alpha * src.host(K)[0]),
        #[cfg(feature = "cuda")]
        Buffer::Cuda(x) => cuda::fill_from_scalar(x, n, src.cuda(K), alpha),
    }
}

/// Sum of squares of each buffer's first `n` values, in f64 (device buffers:
/// reduced on the device, one read-back for the whole list).
pub fn sum_squares_each(bufs: &[(&Buffer, usize)]) -> Vec<f64> {
    const K: &str = "sum_squares";
    match bufs.first().map(|(b, _)| *b) {
        None => Vec::new(),
        Some(Buffer::Cpu(_)) => bufs
            .iter()
            .map(|(b, n)| sum_squares(&b.host(K)[..*n]))
            .collect(),
        #[cfg(feature = "cuda")]
        Some(Buffer::Cuda(_)) => {
            let list: Vec<_> = bufs.iter().map(|(b, n)| (b.cuda(K), *n)).collect();
            cuda::sum_squares(&list)
        }
    }
}
