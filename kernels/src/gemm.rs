//! Single-precision GEMM on row-major slices through `matrixmultiply`,
//! parallelised with rayon over row blocks (one big product) or over the batch
//! (many small products, e.g. attention heads).
//!
//! `C (m, n) = alpha * op(A) (m, k) @ op(B) (k, n) + beta * C`, where
//! `op(A) = A` is stored (m, k) and `op(A) = A^T` is stored (k, m); likewise
//! `op(B) = B` stored (k, n) and `op(B) = B^T` stored (n, k) (PyTorch `nn.Linear`
//! weight layout for `x @ W^T`). Operands are never copied or transposed in memory.

use rayon::prelude::*;

/// Layout of one GEMM: sizes and transpose flags.
#[derive(Clone, Copy, Debug)]
pub struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// A is stored (k, m) and used transposed.
    pub trans_a: bool,
    /// B is stored (n, k) and used transposed.
    pub trans_b: bool,
}

impl GemmShape {
    /// Floating-point operations of one product (2 m n k).
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64
    }
}

/// Minimum rows in a parallel block: below this, splitting costs more than it saves.
const MIN_ROWS_PER_TASK: usize = 64;

/// `C = alpha * op(A) @ op(B) + beta * C` for one product.
/// Large products are split into row blocks of C that run on the rayon pool.
pub fn sgemm(s: GemmShape, alpha: f32, a: &[f32], b: &[f32], beta: f32, c: &mut [f32]) {
    check_lengths(&s, a, b, c);
    if s.m == 0 || s.n == 0 {
        return;
    }
    let threads = rayon::current_num_threads().max(1);
    let work = s.flops();
    let tasks = if work < 4.0e6 || s.m < 2 * MIN_ROWS_PER_TASK {
        1
    } else {
        threads.min(s.m / MIN_ROWS_PER_TASK).max(1)
    };
    if tasks == 1 {
        sgemm_serial(s, alpha, a, b, beta, c);
        return;
    }
    // Split C (and the matching rows of op(A)) into `tasks` row blocks.
    let rows_per_task = s.m.div_ceil(tasks);
    c.par_chunks_mut(rows_per_task * s.n)
        .enumerate()
        .for_each(|(t, c_block)| {
            let row0 = t * rows_per_task;
            let rows = c_block.len() / s.n;
            sgemm_rows(s, alpha, a, b, beta, c_block, row0, rows);
        });
}

/// `batch` independent products; A, B and C advance by their strides per batch
/// item (a stride of 0 shares one operand across the batch, e.g. a weight).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched(
    s: GemmShape,
    batch: usize,
    alpha: f32,
    a: &[f32],
    a_stride: usize,
    b: &[f32],
    b_stride: usize,
    beta: f32,
    c: &mut [f32],
) {
    let c_stride = s.m * s.n;
    assert!(c.len() >= batch * c_stride, "sgemm_batched: C too short");
    if batch == 0 || c_stride == 0 {
        return;
    }
    if batch == 1 {
        sgemm(s, alpha, &a[..s.m * s.k], &b[..s.k * s.n], beta, &mut c[..c_stride]);
        return;
    }
    c[..batch * c_stride]
        .par_chunks_mut(c_stride)
        .enumerate()
        .for_each(|(i, c_i)| {
            let a_i = &a[i * a_stride..i * a_stride + s.m * s.k];
            let b_i = &b[i * b_stride..i * b_stride + s.k * s.n];
            sgemm_serial(s, alpha, a_i, b_i, beta, c_i);
        });
}

fn check_lengths(s: &GemmShape, a: &[f32], b: &[f32], c: &[f32]) {
    assert!(
        a.len() >= s.m * s.k && b.len() >= s.k * s.n && c.len() >= s.m * s.n,
        "sgemm: operand too short for {s:?}: |A|={} |B|={} |C|={}",
        a.len(),
        b.len(),
        c.len()
    );
}

/// One product on the calling thread.
pub fn sgemm_serial(s: GemmShape, alpha: f32, a: &[f32], b: &[f32], beta: f32, c: &mut [f32]) {
    check_lengths(&s, a, b, c);
    sgemm_rows(s, alpha, a, b, beta, c, 0, s.m);
}

/// Rows `[row0, row0 + rows)` of C into `c_block` (rows x n, row-major).
#[allow(clippy::too_many_arguments)]
fn sgemm_rows(
    s: GemmShape,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c_block: &mut [f32],
    row0: usize,
    rows: usize,
) {
    // Strides of op(A) (m, k) and op(B) (k, n) in elements.
    let (rsa, csa) = if s.trans_a { (1, s.m) } else { (s.k, 1) };
    let (rsb, csb) = if s.trans_b { (1, s.k) } else { (s.n, 1) };
    let a_off = row0 * rsa;
    assert!(c_block.len() >= rows * s.n);
    // SAFETY: the strides and sizes describe in-bounds views of `a`, `b` and
    // `c_block` (checked by `check_lengths` and the assert above); C does not alias.
    unsafe {
        matrixmultiply::sgemm(
            rows,
            s.k,
            s.n,
            alpha,
            a.as_ptr().add(a_off),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c_block.as_mut_ptr(),
            s.n as isize,
            1,
        );
    }
}

/// Naive triple loop in f64 accumulation: the reference the tests compare with.
pub fn sgemm_reference(s: GemmShape, alpha: f32, a: &[f32], b: &[f32], beta: f32, c: &mut [f32]) {
    for i in 0..s.m {
        for j in 0..s.n {
            let mut acc = 0.0f64;
            for p in 0..s.k {
                let av = if s.trans_a { a[p * s.m + i] } else { a[i * s.k + p] };
                let bv = if s.trans_b { b[j * s.k + p] } else { b[p * s.n + j] };
                acc += av as f64 * bv as f64;
            }
            let prev = if beta == 0.0 { 0.0 } else { beta * c[i * s.n + j] };
            c[i * s.n + j] = alpha * acc as f32 + prev;
        }
    }
}
