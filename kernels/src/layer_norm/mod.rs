//! Fused LayerNorm over the last axis: forward saves mean and rstd per row,
//! backward recomputes the normalised input from them.

use rayon::prelude::*;

/// `out = (inp - mean) * rstd * weight + bias` per row of `cols` values.
/// `inp`, `out`: (rows, cols); `mean`, `rstd`: (rows,); `weight`, `bias`: (cols,).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_forward(
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    cols: usize,
    eps: f32,
) {
    let rows = inp.len() / cols;
    assert!(out.len() == inp.len() && mean.len() == rows && rstd.len() == rows);
    assert!(weight.len() == cols && bias.len() == cols);
    let chunk = crate::rows_per_task(cols);
    out.par_chunks_mut(chunk * cols)
        .zip(mean.par_chunks_mut(chunk))
        .zip(rstd.par_chunks_mut(chunk))
        .zip(inp.par_chunks(chunk * cols))
        .for_each(|(((o, m), r), x)| {
            #[cfg(target_arch = "x86_64")]
            if crate::has_avx2_fma() {
                // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                unsafe { avx2::forward_rows(o, m, r, x, weight, bias, cols, eps) };
                return;
            }
            layer_norm_forward_scalar(o, m, r, x, weight, bias, cols, eps)
        });
}

/// Scalar reference of [`layer_norm_forward`] (f64 statistics).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_forward_scalar(
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    cols: usize,
    eps: f32,
) {
    for (row, (o, x)) in out.chunks_mut(cols).zip(inp.chunks(cols)).enumerate() {
        let mu = x.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
        let var = x.iter().map(|&v| (v as f64 - mu).powi(2)).sum::<f64>() / cols as f64;
        let rs = 1.0 / (var + eps as f64).sqrt();
        for j in 0..cols {
            let xhat = ((x[j] as f64 - mu) * rs) as f32;
            o[j] = xhat * weight[j] + bias[j];
        }
        mean[row] = mu as f32;
        rstd[row] = rs as f32;
    }
}

/// Backward of [`layer_norm_forward`]. `dinp`, `dweight` and `dbias` (cols,)
/// are overwritten (as every kernel's outputs).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward(
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    mean: &[f32],
    rstd: &[f32],
    cols: usize,
) {
    let rows = inp.len() / cols;
    assert!(dinp.len() == inp.len() && dout.len() == inp.len() && mean.len() == rows);
    assert!(rstd.len() == rows && weight.len() == cols);
    assert!(dweight.len() == cols && dbias.len() == cols);
    let chunk = crate::rows_per_task(cols).max(rows.div_ceil(4 * rayon::current_num_threads()));
    // Each task accumulates its own dweight/dbias partial sums; summed after.
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dinp
        .par_chunks_mut(chunk * cols)
        .zip(dout.par_chunks(chunk * cols))
        .zip(inp.par_chunks(chunk * cols))
        .zip(mean.par_chunks(chunk).zip(rstd.par_chunks(chunk)))
        .map(|(((dx, dy), x), (m, r))| {
            let mut dw = vec![0.0f32; cols];
            let mut db = vec![0.0f32; cols];
            #[cfg(target_arch = "x86_64")]
            if crate::has_avx2_fma() {
                // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                unsafe { avx2::backward_rows(dx, &mut dw, &mut db, dy, x, weight, m, r, cols) };
                return (dw, db);
            }
            layer_norm_backward_scalar(dx, &mut dw, &mut db, dy, x, weight, m, r, cols);
            (dw, db)
        })
        .collect();
    dweight.fill(0.0);
    dbias.fill(0.0);
    for (dw, db) in partials {
        for j in 0..cols {
            dweight[j] += dw[j];
            dbias[j] += db[j];
        }
    }
}

/// Scalar reference of [`layer_norm_backward`].
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward_scalar(
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    mean: &[f32],
    rstd: &[f32],
    cols: usize,
) {
    dweight.fill(0.0);
    dbias.fill(0.0);
    for (row, ((dx, dy), x)) in dinp
        .chunks_mut(cols)
        .zip(dout.chunks(cols))
        .zip(inp.chunks(cols))
        .enumerate()
    {
        let (mu, rs) = (mean[row], rstd[row]);
        // dnorm = dy * w; dx = rs * (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat))
        let mut sum_dn = 0.0f32;
        let mut sum_dn_xhat = 0.0f32;
        for j in 0..cols {
            let xhat = (x[j] - mu) * rs;
            let dn = dy[j] * weight[j];
            sum_dn += dn;
            sum_dn_xhat += dn * xhat;
            dbias[j] += dy[j];
            dweight[j] += dy[j] * xhat;
        }
        let mean_dn = sum_dn / cols as f32;
        let mean_dn_xhat = sum_dn_xhat / cols as f32;
        for j in 0..cols {
            let xhat = (x[j] - mu) * rs;
            dx[j] = rs * (dy[j] * weight[j] - mean_dn - xhat * mean_dn_xhat);
        }
    }
}

/// AVX2+FMA row kernels: same maths as the scalar references, statistics
/// accumulated in f32 over 8 lanes x 2 (two passes: mean, then variance).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use crate::simd::{hsum, load_tail, store_tail, LANES};
    use std::arch::x86_64::*;

    /// Forward over whole rows: `out`, `inp` (rows, cols); `mean`, `rstd` (rows,).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn forward_rows(
        out: &mut [f32],
        mean: &mut [f32],
        rstd: &mut [f32],
        inp: &[f32],
        weight: &[f32],
        bias: &[f32],
        cols: usize,
        eps: f32,
    ) {
        let body = cols - cols % LANES;
        let tail = cols - body;
        let (w, b) = (weight.as_ptr(), bias.as_ptr());
        for (row, (o, x)) in out
            .chunks_exact_mut(cols)
            .zip(inp.chunks_exact(cols))
            .enumerate()
        {
            let (xp, op) = (x.as_ptr(), o.as_mut_ptr());
            // SAFETY (all pointer reads/writes below): j + LANES <= body <= cols,
            // and tails touch exactly `tail` values past `body`, inside the row.
            let mut acc = _mm256_setzero_ps();
            let mut j = 0;
            while j < body {
                acc = _mm256_add_ps(acc, _mm256_loadu_ps(xp.add(j)));
                j += LANES;
            }
            if tail > 0 {
                acc = _mm256_add_ps(acc, load_tail(xp.add(body), tail));
            }
            let mu = hsum(acc) / cols as f32;
            let muv = _mm256_set1_ps(mu);
            // Second pass on the centred values: no cancellation in the variance.
            let mut acc = _mm256_setzero_ps();
            let mut j = 0;
            while j < body {
                let d = _mm256_sub_ps(_mm256_loadu_ps(xp.add(j)), muv);
                acc = _mm256_fmadd_ps(d, d, acc);
                j += LANES;
            }
            if tail > 0 {
                // Zeroed tail lanes would add mu^2 each: mask them back to 0.
                let d = _mm256_sub_ps(load_tail(xp.add(body), tail), muv);
                let d = _mm256_and_ps(d, _mm256_castsi256_ps(crate::simd::tail_mask(tail)));
                acc = _mm256_fmadd_ps(d, d, acc);
            }
            let var = hsum(acc) / cols as f32;
            let rs = 1.0 / (var + eps).sqrt();
            let rsv = _mm256_set1_ps(rs);
            let mut j = 0;
            while j < body {
                let xhat = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xp.add(j)), muv), rsv);
                let y = _mm256_fmadd_ps(xhat, _mm256_loadu_ps(w.add(j)), _mm256_loadu_ps(b.add(j)));
                _mm256_storeu_ps(op.add(j), y);
                j += LANES;
            }
            if tail > 0 {
                let xhat = _mm256_mul_ps(_mm256_sub_ps(load_tail(xp.add(body), tail), muv), rsv);
                let y = _mm256_fmadd_ps(
                    xhat,
                    load_tail(w.add(body), tail),
                    load_tail(b.add(body), tail),
                );
                store_tail(op.add(body), tail, y);
            }
            mean[row] = mu;
            rstd[row] = rs;
        }
    }

    /// Backward over whole rows; `dweight`, `dbias` (cols,) are accumulated into.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn backward_rows(
        dinp: &mut [f32],
        dweight: &mut [f32],
        dbias: &mut [f32],
        dout: &[f32],
        inp: &[f32],
        weight: &[f32],
        mean: &[f32],
        rstd: &[f32],
        cols: usize,
    ) {
        let body = cols - cols % LANES;
        let tail = cols - body;
        let (w, dw, db) = (weight.as_ptr(), dweight.as_mut_ptr(), dbias.as_mut_ptr());
        for (row, ((dx, dy), x)) in dinp
            .chunks_exact_mut(cols)
            .zip(dout.chunks_exact(cols))
            .zip(inp.chunks_exact(cols))
            .enumerate()
        {
            let (xp, dyp, dxp) = (x.as_ptr(), dy.as_ptr(), dx.as_mut_ptr());
            let muv = _mm256_set1_ps(mean[row]);
            let rsv = _mm256_set1_ps(rstd[row]);
            // SAFETY (all pointer reads/writes below): every row slice and the
            // (cols,) vectors hold `cols` values; j + LANES <= body, tails stay inside.
            // Pass 1: sums of dnorm = dy * w and dnorm * xhat; dW, dB partials.
            let mut sum_dn = _mm256_setzero_ps();
            let mut sum_dn_xhat = _mm256_setzero_ps();
            let mut j = 0;
            while j < body {
                let xhat = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xp.add(j)), muv), rsv);
                let g = _mm256_loadu_ps(dyp.add(j));
                let dn = _mm256_mul_ps(g, _mm256_loadu_ps(w.add(j)));
                sum_dn = _mm256_add_ps(sum_dn, dn);
                sum_dn_xhat = _mm256_fmadd_ps(dn, xhat, sum_dn_xhat);
                _mm256_storeu_ps(db.add(j), _mm256_add_ps(_mm256_loadu_ps(db.add(j)), g));
                _mm256_storeu_ps(
                    dw.add(j),
                    _mm256_fmadd_ps(g, xhat, _mm256_loadu_ps(dw.add(j))),
                );
                j += LANES;
            }
            if tail > 0 {
                // Zero tail lanes of dy make dn, and so every tail term, zero.
                let xhat = _mm256_mul_ps(_mm256_sub_ps(load_tail(xp.add(body), tail), muv), rsv);
                let g = load_tail(dyp.add(body), tail);
                let dn = _mm256_mul_ps(g, load_tail(w.add(body), tail));
                sum_dn = _mm256_add_ps(sum_dn, dn);
                sum_dn_xhat = _mm256_fmadd_ps(dn, xhat, sum_dn_xhat);
                store_tail(
                    db.add(body),
                    tail,
                    _mm256_add_ps(load_tail(db.add(body), tail), g),
                );
                let dw_new = _mm256_fmadd_ps(g, xhat, load_tail(dw.add(body), tail));
                store_tail(dw.add(body), tail, dw_new);
            }
            let mean_dn = _mm256_set1_ps(hsum(sum_dn) / cols as f32);
            let mean_dn_xhat = _mm256_set1_ps(hsum(sum_dn_xhat) / cols as f32);
            // Pass 2: dx = rstd * (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)).
            let dx_of = |xv: __m256, g: __m256, wv: __m256| {
                let xhat = _mm256_mul_ps(_mm256_sub_ps(xv, muv), rsv);
                let t = _mm256_fmsub_ps(g, wv, mean_dn);
                _mm256_mul_ps(rsv, _mm256_fnmadd_ps(xhat, mean_dn_xhat, t))
            };
            let mut j = 0;
            while j < body {
                let v = dx_of(
                    _mm256_loadu_ps(xp.add(j)),
                    _mm256_loadu_ps(dyp.add(j)),
                    _mm256_loadu_ps(w.add(j)),
                );
                _mm256_storeu_ps(dxp.add(j), v);
                j += LANES;
            }
            if tail > 0 {
                let v = dx_of(
                    load_tail(xp.add(body), tail),
                    load_tail(dyp.add(body), tail),
                    load_tail(w.add(body), tail),
                );
                store_tail(dxp.add(body), tail, v);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The per-patch target normalisation of PIXEL's loss: (x - mean) / sqrt(var +
// eps) per row, with the unbiased variance (divide by C - 1), f64 statistics.

/// `out` = rows of `x` standardised; `rstd` (rows,) saved for backward.
pub fn normalize_rows_forward_slice(
    out: &mut [f32],
    rstd: &mut [f32],
    x: &[f32],
    cols: usize,
    eps: f32,
) {
    out.par_chunks_mut(cols)
        .zip(rstd.par_iter_mut())
        .zip(x.par_chunks(cols))
        .for_each(|((o, r), xs)| {
            let mu = xs.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
            let var = xs.iter().map(|&v| (v as f64 - mu).powi(2)).sum::<f64>() / (cols - 1) as f64;
            let rs = 1.0 / (var + eps as f64).sqrt();
            for (o, &v) in o.iter_mut().zip(xs) {
                *o = ((v as f64 - mu) * rs) as f32;
            }
            *r = rs as f32;
        });
}

/// Backward of [`normalize_rows_forward_slice`]:
/// `dx = r (dy - mean(dy)) - r^3 (x - mu) sum(dy (x - mu)) / (C - 1)`.
pub fn normalize_rows_backward_slice(
    dx: &mut [f32],
    dy: &[f32],
    x: &[f32],
    rstd: &[f32],
    cols: usize,
) {
    dx.par_chunks_mut(cols)
        .zip(dy.par_chunks(cols))
        .zip(x.par_chunks(cols))
        .zip(rstd.par_iter())
        .for_each(|(((dx, dy), xs), &r)| {
            let r = r as f64;
            let mu = xs.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
            let mean_dy = dy.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
            let dot: f64 = dy
                .iter()
                .zip(xs)
                .map(|(&g, &v)| g as f64 * (v as f64 - mu))
                .sum();
            let k = r * r * r * dot / (cols - 1) as f64;
            for ((d, &g), &v) in dx.iter_mut().zip(dy).zip(xs) {
                *d = (r * (g as f64 - mean_dy) - k * (v as f64 - mu)) as f32;
            }
        });
}

// ---------------------------------------------------------------------------
// Device-dispatched entry points.

use crate::buffer::Buffer;

#[cfg(feature = "cuda")]
pub(crate) mod cuda;

/// LayerNorm over rows of `cols`: out (rows, cols), mean and rstd (rows).
#[allow(clippy::too_many_arguments)]
pub fn forward(
    out: &mut Buffer,
    mean: &mut Buffer,
    rstd: &mut Buffer,
    x: &Buffer,
    weight: &Buffer,
    bias: &Buffer,
    rows: usize,
    cols: usize,
    eps: f32,
) {
    const K: &str = "layer_norm_forward";
    match out {
        Buffer::Cpu(o) => layer_norm_forward(
            &mut o[..rows * cols],
            &mut mean.host_mut(K)[..rows],
            &mut rstd.host_mut(K)[..rows],
            &x.host(K)[..rows * cols],
            &weight.host(K)[..cols],
            &bias.host(K)[..cols],
            cols,
            eps,
        ),
        #[cfg(feature = "cuda")]
        Buffer::Cuda(o) => cuda::layer_norm_forward(
            o,
            mean.cuda_mut(K),
            rstd.cuda_mut(K),
            x.cuda(K),
            weight.cuda(K),
            bias.cuda(K),
            rows,
            cols,
            eps,
        ),
    }
}

/// LayerNorm backward: dx (rows, cols), dweight and dbias (cols), all overwritten.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dx: &mut Buffer,
    dweight: &mut Buffer,
    dbias: &mut Buffer,
    dy: &Buffer,
    x: &Buffer,
    weight: &Buffer,
    mean: &Buffer,
    rstd: &Buffer,
    rows: usize,
    cols: usize,
) {
    const K: &str = "layer_norm_backward";
    match dx {
        Buffer::Cpu(d) => layer_norm_backward(
            &mut d[..rows * cols],
            &mut dweight.host_mut(K)[..cols],
            &mut dbias.host_mut(K)[..cols],
            &dy.host(K)[..rows * cols],
            &x.host(K)[..rows * cols],
            &weight.host(K)[..cols],
            &mean.host(K)[..rows],
            &rstd.host(K)[..rows],
            cols,
        ),
        #[cfg(feature = "cuda")]
        Buffer::Cuda(d) => cuda::layer_norm_backward(
            d,
            dweight.cuda_mut(K),
            dbias.cuda_mut(K),
            dy.cuda(K),
            x.cuda(K),
            weight.cuda(K),
            mean.cuda(K),
            rstd.cuda(K),
            rows,
            cols,
        ),
    }
}

/// Unbiased per-row standardisation: out (rows, cols), rstd (rows).
pub fn normalize_rows_forward(
    out: &mut Buffer,
    rstd: &mut Buffer,
    x: &Buffer,
    rows: usize,
    cols: usize,
    eps: f32,
) {
    const K: &str = "normalize_rows_forward";
    match out {
        Buffer::Cpu(o) => normalize_rows_forward_slice(
            &mut o[..rows * cols],
            &mut rstd.host_mut(K)[..rows],
            &x.host(K)[..rows * cols],
            cols,
            eps,
        ),
        #[cfg(feature = "cuda")]
        Buffer::Cuda(o) => {
            cuda::normalize_rows_forward(o, rstd.cuda_mut(K), x.cuda(K), rows, cols, eps)
        }
    }
}

/// Backward of [`normalize_rows_forward`]: dx (rows, cols), overwritten.
pub fn normalize_rows_backward(
    dx: &mut Buffer,
    dy: &Buffer,
    x: &Buffer,
    rstd: &Buffer,
    rows: usize,
    cols: usize,
) {
    const K: &str = "normalize_rows_backward";
    match dx {
        Buffer::Cpu(d) => normalize_rows_backward_slice(
            &mut d[..rows * cols],
            &dy.host(K)[..rows * cols],
            &x.host(K)[..rows * cols],
            &rstd.host(K)[..rows],
            cols,
        ),
        #[cfg(feature = "cuda")]
        Buffer::Cuda(d) => {
            cuda::normalize_rows_backward(d, dy.cuda(K), x.cuda(K), rstd.cuda(K), rows, cols)
        }
    }
}
