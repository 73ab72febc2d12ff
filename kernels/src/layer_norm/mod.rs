//! Fused LayerNorm over the last axis: forward saves mean and rstd per row,
//! backward recomputes the normalised input from them.

use crate::cpu::{simd_dispatch, Isa};
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
            layer_norm_forward_rows(crate::cpu::isa(), o, m, r, x, weight, bias, cols, eps)
        });
}

/// [`layer_norm_forward`] of whole rows on the calling thread with `isa`'s
/// code (which the CPU must have): the scalar reference or the vector rows.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_forward_rows(
    isa: Isa,
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    cols: usize,
    eps: f32,
) {
    simd_dispatch!(
        isa,
        layer_norm_forward_scalar,
        vector::forward_rows_avx2,
        vector::forward_rows_avx512,
        (out, mean, rstd, inp, weight, bias, cols, eps)
    )
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
            layer_norm_backward_rows(
                crate::cpu::isa(),
                dx,
                &mut dw,
                &mut db,
                dy,
                x,
                weight,
                m,
                r,
                cols,
            );
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

/// [`layer_norm_backward`] of whole rows on the calling thread with `isa`'s
/// code; `dweight`, `dbias` (cols,) are overwritten with this block's sums.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward_rows(
    isa: Isa,
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
    simd_dispatch!(
        isa,
        layer_norm_backward_scalar,
        vector::backward_rows_avx2,
        vector::backward_rows_avx512,
        (dinp, dweight, dbias, dout, inp, weight, mean, rstd, cols)
    )
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

/// Vector row kernels (AVX2 and AVX-512 from one generic body): same maths as
/// the scalar references, statistics accumulated in f32 over the lanes (two
/// passes: mean, then variance).
#[cfg(target_arch = "x86_64")]
mod vector {
    use crate::simd::{simd_entry, Vector};

    simd_entry!(forward_rows, forward_rows_avx2, forward_rows_avx512, (
        out: &mut [f32],
        mean: &mut [f32],
        rstd: &mut [f32],
        inp: &[f32],
        weight: &[f32],
        bias: &[f32],
        cols: usize,
        eps: f32,
    ));

    simd_entry!(backward_rows, backward_rows_avx2, backward_rows_avx512, (
        dinp: &mut [f32],
        dweight: &mut [f32],
        dbias: &mut [f32],
        dout: &[f32],
        inp: &[f32],
        weight: &[f32],
        mean: &[f32],
        rstd: &[f32],
        cols: usize,
    ));

    /// Forward over whole rows: `out`, `inp` (rows, cols); `mean`, `rstd` (rows,).
    ///
    /// # Safety
    /// The CPU has V's features.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn forward_rows<V: Vector>(
        out: &mut [f32],
        mean: &mut [f32],
        rstd: &mut [f32],
        inp: &[f32],
        weight: &[f32],
        bias: &[f32],
        cols: usize,
        eps: f32,
    ) {
        let lanes = V::LANES;
        let body = cols - cols % lanes;
        let tail = cols - body;
        let (w, b) = (weight.as_ptr(), bias.as_ptr());
        for (row, (o, x)) in out
            .chunks_exact_mut(cols)
            .zip(inp.chunks_exact(cols))
            .enumerate()
        {
            let (xp, op) = (x.as_ptr(), o.as_mut_ptr());
            // SAFETY (all pointer reads/writes below): j + lanes <= body <= cols,
            // and tails touch exactly `tail` values past `body`, inside the row.
            let (mu, rs) = unsafe {
                let mut acc = V::zero();
                let mut j = 0;
                while j < body {
                    acc = acc.add(V::load(xp.add(j)));
                    j += lanes;
                }
                if tail > 0 {
                    acc = acc.add(V::load_tail(xp.add(body), tail));
                }
                let mu = acc.hsum() / cols as f32;
                let muv = V::splat(mu);
                // Second pass on the centred values: no cancellation in the variance.
                let mut acc = V::zero();
                let mut j = 0;
                while j < body {
                    let d = V::load(xp.add(j)).sub(muv);
                    acc = d.mul_add(d, acc);
                    j += lanes;
                }
                if tail > 0 {
                    // Zeroed tail lanes would add mu^2 each: set them back to 0.
                    let d = V::load_tail(xp.add(body), tail)
                        .sub(muv)
                        .first_or(tail, 0.0);
                    acc = d.mul_add(d, acc);
                }
                let var = acc.hsum() / cols as f32;
                let rs = 1.0 / (var + eps).sqrt();
                let rsv = V::splat(rs);
                let mut j = 0;
                while j < body {
                    let xhat = V::load(xp.add(j)).sub(muv).mul(rsv);
                    xhat.mul_add(V::load(w.add(j)), V::load(b.add(j)))
                        .store(op.add(j));
                    j += lanes;
                }
                if tail > 0 {
                    let xhat = V::load_tail(xp.add(body), tail).sub(muv).mul(rsv);
                    let y = xhat.mul_add(
                        V::load_tail(w.add(body), tail),
                        V::load_tail(b.add(body), tail),
                    );
                    y.store_tail(op.add(body), tail);
                }
                (mu, rs)
            };
            mean[row] = mu;
            rstd[row] = rs;
        }
    }

    /// Backward over whole rows; `dweight`, `dbias` (cols,) are overwritten
    /// with these rows' sums.
    ///
    /// # Safety
    /// The CPU has V's features.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn backward_rows<V: Vector>(
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
        let lanes = V::LANES;
        let body = cols - cols % lanes;
        let tail = cols - body;
        dweight.fill(0.0);
        dbias.fill(0.0);
        let (w, dw, db) = (weight.as_ptr(), dweight.as_mut_ptr(), dbias.as_mut_ptr());
        for (row, ((dx, dy), x)) in dinp
            .chunks_exact_mut(cols)
            .zip(dout.chunks_exact(cols))
            .zip(inp.chunks_exact(cols))
            .enumerate()
        {
            let (xp, dyp, dxp) = (x.as_ptr(), dy.as_ptr(), dx.as_mut_ptr());
            // SAFETY (all pointer reads/writes below): every row slice and the
            // (cols,) vectors hold `cols` values; j + lanes <= body, tails stay inside.
            unsafe {
                let muv = V::splat(mean[row]);
                let rsv = V::splat(rstd[row]);
                // Pass 1: sums of dnorm = dy * w and dnorm * xhat; dW, dB partials.
                let mut sum_dn = V::zero();
                let mut sum_dn_xhat = V::zero();
                let mut j = 0;
                while j < body {
                    let xhat = V::load(xp.add(j)).sub(muv).mul(rsv);
                    let g = V::load(dyp.add(j));
                    let dn = g.mul(V::load(w.add(j)));
                    sum_dn = sum_dn.add(dn);
                    sum_dn_xhat = dn.mul_add(xhat, sum_dn_xhat);
                    V::load(db.add(j)).add(g).store(db.add(j));
                    g.mul_add(xhat, V::load(dw.add(j))).store(dw.add(j));
                    j += lanes;
                }
                if tail > 0 {
                    // Zero tail lanes of dy make dn, and so every tail term, zero.
                    let xhat = V::load_tail(xp.add(body), tail).sub(muv).mul(rsv);
                    let g = V::load_tail(dyp.add(body), tail);
                    let dn = g.mul(V::load_tail(w.add(body), tail));
                    sum_dn = sum_dn.add(dn);
                    sum_dn_xhat = dn.mul_add(xhat, sum_dn_xhat);
                    let db_new = V::load_tail(db.add(body), tail).add(g);
                    db_new.store_tail(db.add(body), tail);
                    let dw_new = g.mul_add(xhat, V::load_tail(dw.add(body), tail));
                    dw_new.store_tail(dw.add(body), tail);
                }
                let mean_dn = V::splat(sum_dn.hsum() / cols as f32);
                let mean_dn_xhat = V::splat(sum_dn_xhat.hsum() / cols as f32);
                // Pass 2: dx = rstd * (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)).
                let dx_of = |xv: V, g: V, wv: V| {
                    let xhat = xv.sub(muv).mul(rsv);
                    let t = g.mul_sub(wv, mean_dn);
                    rsv.mul(xhat.neg_mul_add(mean_dn_xhat, t))
                };
                let mut j = 0;
                while j < body {
                    let v = dx_of(V::load(xp.add(j)), V::load(dyp.add(j)), V::load(w.add(j)));
                    v.store(dxp.add(j));
                    j += lanes;
                }
                if tail > 0 {
                    let v = dx_of(
                        V::load_tail(xp.add(body), tail),
                        V::load_tail(dyp.add(body), tail),
                        V::load_tail(w.add(body), tail),
                    );
                    v.store_tail(dxp.add(body), tail);
                }
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
