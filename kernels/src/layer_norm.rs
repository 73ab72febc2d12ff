//! Fused LayerNorm over the last axis: forward saves mean and rstd per row,
//! backward recomputes the normalised input from them.

use rayon::prelude::*;

/// `out = (inp - mean) * rstd * weight + bias` per row of `cols` values.
/// `inp`, `out`: (rows, cols); `mean`, `rstd`: (rows,); `weight`, `bias`: (cols,).
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

/// Backward of [`layer_norm_forward`]. `dinp` is overwritten; `dweight` and
/// `dbias` (cols,) are accumulated into (`+=`).
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
            layer_norm_backward_scalar(dx, &mut dw, &mut db, dy, x, weight, m, r, cols);
            (dw, db)
        })
        .collect();
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
