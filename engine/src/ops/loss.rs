//! Losses: PIXEL's masked per-patch MSE and cross-entropy with an ignore index.

use pixel_kernels::loss as kernel;
pub use pixel_kernels::loss::IGNORE_INDEX;

use super::device_of;
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
    let device = device_of("masked_mse", &[pred, target]);
    let w = Tensor::new(&[rows], weights.to_vec())
        .to_device(device)
        .expect("masked_mse: the inputs' device is open");
    let mut loss = Tensor::zeros_on(&[], device);
    let (p, y) = (pred.value().buffer(), target.value().buffer());
    kernel::masked_mse_forward(loss.buffer_mut(), p, y, w.buffer(), rows, c, wsum);
    if !t.needs_grad(&[pred, target]) {
        return Var::constant(loss);
    }
    let (pred_v, target_v) = (pred.arc(), target.arc());
    t.record(
        "masked_mse",
        loss,
        &[pred, target],
        Box::new(move |dy, needs| {
            let mut dp = Tensor::zeros_on(pred_v.shape(), device);
            let mut dt = needs[1].then(|| Tensor::zeros_on(target_v.shape(), device));
            kernel::masked_mse_backward(
                dp.buffer_mut(),
                dt.as_mut().map(|d| d.buffer_mut()),
                dy.buffer(),
                pred_v.buffer(),
                target_v.buffer(),
                w.buffer(),
                rows,
                c,
                wsum,
            );
            vec![needs[0].then_some(dp), dt]
        }),
    )
}

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
    let device = logits.value().device();
    let count = labels.iter().filter(|&&l| l != IGNORE_INDEX).count();
    if count == 0 {
        return Var::constant(Tensor::zeros_on(&[], device));
    }
    let mut loss = Tensor::zeros_on(&[], device);
    let mut probs = Tensor::zeros_on(logits.shape(), device);
    kernel::cross_entropy_forward(
        loss.buffer_mut(),
        probs.buffer_mut(),
        logits.value().buffer(),
        labels,
        k,
        count,
    );
    let labels = labels.to_vec();
    t.record(
        "cross_entropy",
        loss,
        &[logits],
        Box::new(move |dy, _| {
            let mut dlogits = Tensor::zeros_on(probs.shape(), device);
            kernel::cross_entropy_backward(
                dlogits.buffer_mut(),
                probs.buffer(),
                &labels,
                dy.buffer(),
                k,
                count,
            );
            vec![Some(dlogits)]
        }),
    )
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::randn;
    use crate::ops;
    use crate::test_support::{check, forward_backward, inputs, rng, test_device};

    #[test]
    fn gradcheck_masked_mse_both_inputs() {
        let mut r = rng();
        let p = randn(&[2, 3, 6], &mut r);
        let y = randn(&[2, 3, 6], &mut r);
        let w = vec![1.0, 0.0, 1.0, 1.0, 0.0, 0.0];
        check(vec![p, y], move |t, v| ops::masked_mse(t, &v[0], &v[1], &w));
    }

    #[test]
    fn gradcheck_cross_entropy_with_ignore_index() {
        let mut r = rng();
        let z = randn(&[5, 4], &mut r);
        let labels = vec![0, -100, 3, 2, -100];
        check(vec![z], move |t, v| ops::cross_entropy(t, &v[0], &labels));
    }

    test_device!(masked_mse_and_cross_entropy, 1e-5, |d| {
        let x = inputs(&[&[2, 3, 6], &[2, 3, 6]], 50);
        let weights = [1.0, 0.0, 1.0, 1.0, 0.0, 0.5];
        let mut out = forward_backward(d, &x, 51, move |t, v| {
            ops::masked_mse(t, &v[0], &v[1], &weights)
        });
        let logits = inputs(&[&[2, 3, 5]], 52);
        let labels = [2i64, ops::IGNORE_INDEX, 0, 4, 1, ops::IGNORE_INDEX];
        out.extend(forward_backward(d, &logits, 53, move |t, v| {
            ops::cross_entropy(t, &v[0], &labels)
        }));
        out
    });

    // Rows longer than a block (300 > 256 threads, not a multiple of 32:
    // several warps, a partial last warp, strided loops).
    test_device!(losses_on_long_rows, 1e-4, |d| {
        let p = inputs(&[&[70, 300], &[70, 300]], 65);
        let weights: Vec<f32> = (0..70).map(|i| (i % 3) as f32 * 0.5).collect();
        let mut out = forward_backward(d, &p, 66, move |t, v| {
            ops::masked_mse(t, &v[0], &v[1], &weights)
        });
        let labels: Vec<i64> = (0..70)
            .map(|i| {
                if i % 4 == 1 {
                    ops::IGNORE_INDEX
                } else {
                    (i * 37) % 300
                }
            })
            .collect();
        out.extend(forward_backward(d, &p[..1], 67, move |t, v| {
            ops::cross_entropy(t, &v[0], &labels)
        }));
        out
    });
}
