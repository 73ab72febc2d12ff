//! Losses: PIXEL's masked per-patch MSE and cross-entropy with an ignore index.

#[cfg(feature = "cuda")]
use super::cuda;
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// Weighted mean over rows of the per-row mean squared error:
/// `sum_r w_r * mean_j (pred[r, j] - target[r, j])^2 / sum_r w_r`.
/// pred, target (..., C); weights: one per row (a constant 0/1 mask in PIXEL:
/// masked AND attended patches). Gradients flow to both pred and target.
/// Panics if the weights sum to zero (the loss would be NaN).
pub fn masked_mse(t: &mut Tape, pred: &Var, target: &Var, weights: &[f32]) -> Var {
    assert_eq!(
        pred.shape(),
        target.shape(),
        "masked_mse: pred {:?} and target {:?} differ",
        pred.shape(),
        target.shape()
    );
    let c = *pred.shape().last().expect("masked_mse: rank >= 1");
    let rows = pred.value().numel() / c;
    assert_eq!(
        weights.len(),
        rows,
        "masked_mse: {} weights for {rows} rows",
        weights.len()
    );
    let wsum: f64 = weights.iter().map(|&w| w as f64).sum();
    assert!(wsum > 0.0, "masked_mse: all row weights are zero");
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[pred, target]) {
        return cuda::nn::masked_mse(t, pred, target, weights, wsum);
    }
    let mut total = 0.0f64;
    for ((p, y), &w) in pred
        .data()
        .chunks(c)
        .zip(target.data().chunks(c))
        .zip(weights)
    {
        if w != 0.0 {
            let se: f64 = p.iter().zip(y).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
            total += w as f64 * se / c as f64;
        }
    }
    let loss = Tensor::scalar((total / wsum) as f32);
    if !t.needs_grad(&[pred, target]) {
        return Var::constant(loss);
    }
    let (pv, yv) = (pred.arc(), target.arc());
    let weights = weights.to_vec();
    t.record(
        "masked_mse",
        loss,
        &[pred, target],
        Box::new(move |dy, needs| {
            let g = dy.item() as f64;
            let mut dp = vec![0.0f32; rows * c];
            for (((d, p), y), &w) in dp
                .chunks_mut(c)
                .zip(pv.data().chunks(c))
                .zip(yv.data().chunks(c))
                .zip(&weights)
            {
                if w != 0.0 {
                    let k = (g * 2.0 * w as f64 / (c as f64 * wsum)) as f32;
                    d.iter_mut()
                        .zip(p.iter().zip(y))
                        .for_each(|(d, (p, y))| *d = k * (p - y));
                }
            }
            let dt = needs[1].then(|| Tensor::new(yv.shape(), dp.iter().map(|v| -v).collect()));
            vec![needs[0].then(|| Tensor::new(pv.shape(), dp)), dt]
        }),
    )
}

/// Label value that is skipped by [`cross_entropy`] (PyTorch's default).
pub const IGNORE_INDEX: i64 = -100;

/// Mean cross-entropy of logits (..., K) against integer labels (one per row),
/// skipping rows labelled [`IGNORE_INDEX`]. Returns 0 with no gradient when
/// every row is ignored. Saves the softmax of the logits.
pub fn cross_entropy(t: &mut Tape, logits: &Var, labels: &[i64]) -> Var {
    let k = *logits.shape().last().expect("cross_entropy: rank >= 1");
    let rows = logits.value().numel() / k;
    assert_eq!(
        labels.len(),
        rows,
        "cross_entropy: {} labels for {rows} rows",
        labels.len()
    );
    for &l in labels {
        assert!(
            l == IGNORE_INDEX || (0..k as i64).contains(&l),
            "cross_entropy: label {l} out of range for {k} classes"
        );
    }
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[logits]) {
        let count = labels.iter().filter(|&&l| l != IGNORE_INDEX).count();
        if count == 0 {
            let zero = Tensor::scalar(0.0).to_device(logits.value().device());
            return Var::constant(zero.expect("cross_entropy: device already open"));
        }
        return cuda::nn::cross_entropy(t, logits, labels, count);
    }
    let mut probs = vec![0.0f32; rows * k];
    let mut total = 0.0f64;
    let mut count = 0usize;
    for ((p, z), &l) in probs.chunks_mut(k).zip(logits.data().chunks(k)).zip(labels) {
        let m = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let s: f64 = z.iter().map(|&v| ((v - m) as f64).exp()).sum();
        for (p, &v) in p.iter_mut().zip(z) {
            *p = (((v - m) as f64).exp() / s) as f32;
        }
        if l != IGNORE_INDEX {
            total += s.ln() - (z[l as usize] - m) as f64;
            count += 1;
        }
    }
    if count == 0 {
        return Var::constant(Tensor::scalar(0.0));
    }
    let loss = Tensor::scalar((total / count as f64) as f32);
    let shape = logits.shape().to_vec();
    let labels = labels.to_vec();
    t.record(
        "cross_entropy",
        loss,
        &[logits],
        Box::new(move |dy, _| {
            let g = dy.item() / count as f32;
            for (p, &l) in probs.chunks_mut(k).zip(&labels) {
                if l == IGNORE_INDEX {
                    p.iter_mut().for_each(|v| *v = 0.0);
                } else {
                    p[l as usize] -= 1.0;
                    p.iter_mut().for_each(|v| *v *= g);
                }
            }
            vec![Some(Tensor::new(&shape, probs))]
        }),
    )
}
