//! Losses: PIXEL's weighted per-patch MSE and cross-entropy with an ignore
//! index. The CPU code accumulates in f64 row by row (the reference order);
//! the CUDA kernels write one value per row and sum them on the device.

use crate::buffer::Buffer;

#[cfg(feature = "cuda")]
pub(crate) mod cuda;

/// Label value skipped by the cross-entropy (PyTorch's default).
pub const IGNORE_INDEX: i64 = -100;

/// `loss[0] = sum_r w_r * mean_j (pred[r, j] - target[r, j])^2 / wsum` over rows
/// of `c` values (`wsum` = sum of the weights, > 0).
#[allow(clippy::too_many_arguments)]
pub fn masked_mse_forward(
    loss: &mut Buffer,
    pred: &Buffer,
    target: &Buffer,
    weights: &Buffer,
    rows: usize,
    c: usize,
    wsum: f64,
) {
    const K: &str = "masked_mse";
    match loss {
        Buffer::Cpu(loss) => {
            let (p, y, w) = (pred.host(K), target.host(K), weights.host(K));
            let mut total = 0.0f64;
            for ((p, y), &w) in p[..rows * c].chunks(c).zip(y.chunks(c)).zip(&w[..rows]) {
                if w != 0.0 {
                    let se: f64 = p.iter().zip(y).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
                    total += w as f64 * se / c as f64;
                }
            }
            loss[0] = (total / wsum) as f32;
        }
        #[cfg(feature = "cuda")]
        Buffer::Cuda(l) => {
            let mut row_loss = crate::cuda::DeviceBuffer::zeros(l.device(), rows);
            let (p, y, w) = (pred.cuda(K), target.cuda(K), weights.cuda(K));
            cuda::masked_mse_rows(&mut row_loss, p, y, w, rows, c);
            crate::elementwise::cuda::sum_to_scalar(l, &row_loss, rows, (1.0 / wsum) as f32);
        }
    }
}

/// Gradients of [`masked_mse_forward`] scaled by `dloss[0]`: `dpred`, and
/// `dtarget = -dpred` when asked for. Both overwritten.
#[allow(clippy::too_many_arguments)]
pub fn masked_mse_backward(
    dpred: &mut Buffer,
    dtarget: Option<&mut Buffer>,
    dloss: &Buffer,
    pred: &Buffer,
    target: &Buffer,
    weights: &Buffer,
    rows: usize,
    c: usize,
    wsum: f64,
) {
    const K: &str = "masked_mse_backward";
    match dpred {
        Buffer::Cpu(dp) => {
            let g = dloss.host(K)[0] as f64;
            let (p, y, w) = (pred.host(K), target.host(K), weights.host(K));
            for (((d, p), y), &w) in dp[..rows * c]
                .chunks_mut(c)
                .zip(p.chunks(c))
                .zip(y.chunks(c))
                .zip(&w[..rows])
            {
                if w == 0.0 {
                    d.fill(0.0);
                } else {
                    let k = (g * 2.0 * w as f64 / (c as f64 * wsum)) as f32;
                    d.iter_mut()
                        .zip(p.iter().zip(y))
                        .for_each(|(d, (p, y))| *d = k * (p - y));
                }
            }
            if let Some(dt) = dtarget {
                let dt = dt.host_mut(K);
                dt[..rows * c]
                    .iter_mut()
                    .zip(&dp[..rows * c])
                    .for_each(|(t, d)| *t = -d);
            }
        }
        #[cfg(feature = "cuda")]
        Buffer::Cuda(dp) => {
            let mut scratch;
            let dt = match dtarget {
                Some(dt) => dt.cuda_mut(K),
                None => {
                    scratch = crate::cuda::DeviceBuffer::zeros(dp.device(), rows * c);
                    &mut scratch
                }
            };
            let (p, y, w) = (pred.cuda(K), target.cuda(K), weights.cuda(K));
            let inv_wsum = (1.0 / wsum) as f32;
            cuda::masked_mse_backward(dp, dt, p, y, w, dloss.cuda(K), rows, c, inv_wsum);
        }
    }
}

/// Softmax of logits (rows, k) into `probs` and `loss[0]` = mean over the
/// `count` rows not labelled [`IGNORE_INDEX`] of `log(sum exp) - z[label]`.
pub fn cross_entropy_forward(
    loss: &mut Buffer,
    probs: &mut Buffer,
    logits: &Buffer,
    labels: &[i64],
    k: usize,
    count: usize,
) {
    const K: &str = "cross_entropy";
    let rows = labels.len();
    match loss {
        Buffer::Cpu(loss) => {
            let (probs, z) = (probs.host_mut(K), logits.host(K));
            let mut total = 0.0f64;
            for ((p, z), &l) in probs[..rows * k].chunks_mut(k).zip(z.chunks(k)).zip(labels) {
                let m = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let s: f64 = z.iter().map(|&v| ((v - m) as f64).exp()).sum();
                for (p, &v) in p.iter_mut().zip(z) {
                    *p = (((v - m) as f64).exp() / s) as f32;
                }
                if l != IGNORE_INDEX {
                    total += s.ln() - (z[l as usize] - m) as f64;
                }
            }
            loss[0] = (total / count as f64) as f32;
        }
        #[cfg(feature = "cuda")]
        Buffer::Cuda(l) => {
            let mut row_loss = crate::cuda::DeviceBuffer::zeros(l.device(), rows);
            cuda::cross_entropy_forward(
                probs.cuda_mut(K),
                &mut row_loss,
                logits.cuda(K),
                labels,
                k,
            );
            crate::elementwise::cuda::sum_to_scalar(l, &row_loss, rows, 1.0 / count as f32);
        }
    }
}

/// `dlogits = (probs - onehot(label)) * dloss[0] / count`, 0 for ignored rows.
pub fn cross_entropy_backward(
    dlogits: &mut Buffer,
    probs: &Buffer,
    labels: &[i64],
    dloss: &Buffer,
    k: usize,
    count: usize,
) {
    const K: &str = "cross_entropy_backward";
    let rows = labels.len();
    match dlogits {
        Buffer::Cpu(d) => {
            let g = dloss.host(K)[0] / count as f32;
            let p = probs.host(K);
            for ((d, p), &l) in d[..rows * k].chunks_mut(k).zip(p.chunks(k)).zip(labels) {
                if l == IGNORE_INDEX {
                    d.fill(0.0);
                } else {
                    d.copy_from_slice(p);
                    d[l as usize] -= 1.0;
                    d.iter_mut().for_each(|v| *v *= g);
                }
            }
        }
        #[cfg(feature = "cuda")]
        Buffer::Cuda(d) => cuda::cross_entropy_backward(
            d,
            probs.cuda(K),
            labels,
            dloss.cuda(K),
            k,
            1.0 / count as f32,
        ),
    }
}
