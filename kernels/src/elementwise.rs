//! Elementwise and broadcast helpers: the glue between the fused kernels.

use rayon::prelude::*;

const CHUNK: usize = 16384;

/// `dst += src`.
pub fn add_assign(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "add_assign: length mismatch");
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, s)| *d += s));
}

/// `dst += alpha * src`.
pub fn axpy(dst: &mut [f32], alpha: f32, src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "axpy: length mismatch");
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, s)| *d += alpha * s));
}

/// `dst *= alpha`.
pub fn scale(dst: &mut [f32], alpha: f32) {
    dst.par_chunks_mut(CHUNK)
        .for_each(|d| d.iter_mut().for_each(|d| *d *= alpha));
}

/// `x (rows, cols) += row (cols,)` for every row: bias and position-table adds.
pub fn add_row_broadcast(x: &mut [f32], row: &[f32]) {
    let cols = row.len();
    assert_eq!(x.len() % cols, 0, "add_row_broadcast: length mismatch");
    let chunk = crate::rows_per_task(cols) * cols;
    x.par_chunks_mut(chunk).for_each(|xs| {
        for r in xs.chunks_mut(cols) {
            r.iter_mut().zip(row).for_each(|(a, b)| *a += b);
        }
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
            let mut acc = vec![0.0f32; cols];
            for r in xs.chunks(cols) {
                acc.iter_mut().zip(r).for_each(|(a, b)| *a += b);
            }
            acc
        })
        .collect();
    for p in partials {
        out.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
    }
}

/// `out = a * b`.
pub fn mul(out: &mut [f32], a: &[f32], b: &[f32]) {
    assert!(out.len() == a.len() && a.len() == b.len(), "mul: length mismatch");
    out.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(o, (a, b))| {
            o.iter_mut()
                .zip(a.iter().zip(b))
                .for_each(|(o, (a, b))| *o = a * b)
        });
}

/// Sum of squares in f64 (gradient norms).
pub fn sum_squares(x: &[f32]) -> f64 {
    x.par_chunks(CHUNK)
        .map(|c| c.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>())
        .sum()
}
