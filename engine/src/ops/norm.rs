//! Normalisation over the last axis: fused LayerNorm, and the per-patch
//! target normalisation of PIXEL's loss (unbiased variance, eps inside the sqrt).

use pixel_kernels::layer_norm as kernel;

use super::device_of;
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// LayerNorm over the last axis: x (..., C), weight (C), bias (C).
/// Saves only mean and rstd (plus the input it needs anyway).
pub fn layer_norm(t: &mut Tape, x: &Var, weight: &Var, bias: &Var, eps: f32) -> Var {
    let shape = x.shape().to_vec();
    let c = *shape.last().expect("layer_norm: input must have rank >= 1");
    assert!(
        weight.shape() == [c] && bias.shape() == [c],
        "layer_norm: input {shape:?} needs weight and bias of shape [{c}], got {:?} and {:?}",
        weight.shape(),
        bias.shape()
    );
    device_of("layer_norm", &[x, weight, bias]); // one device for all, or a panic naming the op
    let rows = x.value().numel() / c.max(1);
    let [out, mean, rstd] =
        layer_norm_values(x.value(), weight.value(), bias.value(), rows, c, eps);
    if !t.needs_grad(&[x, weight, bias]) {
        return Var::constant(out);
    }
    let (xv, wv) = (x.arc(), weight.arc());
    t.record(
        "layer_norm",
        out,
        &[x, weight, bias],
        Box::new(move |dy, _| {
            layer_norm_grads(&dy, &xv, &wv, &mean, &rstd, rows, c)
                .map(Some)
                .to_vec()
        }),
    )
}

/// LayerNorm of `x` (rows, c) into fresh tensors on x's device: (y, mean, rstd).
pub(crate) fn layer_norm_values(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    rows: usize,
    c: usize,
    eps: f32,
) -> [Tensor; 3] {
    let device = x.device();
    let mut out = Tensor::zeros_on(x.shape(), device);
    let mut mean = Tensor::zeros_on(&[rows], device);
    let mut rstd = Tensor::zeros_on(&[rows], device);
    kernel::forward(
        out.buffer_mut(),
        mean.buffer_mut(),
        rstd.buffer_mut(),
        x.buffer(),
        weight.buffer(),
        bias.buffer(),
        rows,
        c,
        eps,
    );
    [out, mean, rstd]
}

/// Gradients of LayerNorm from `dy`: (dx, dweight, dbias), given its input,
/// weight and the forward's per-row mean and rstd.
pub(crate) fn layer_norm_grads(
    dy: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    rows: usize,
    c: usize,
) -> [Tensor; 3] {
    let device = x.device();
    let mut dx = Tensor::zeros_on(x.shape(), device);
    let mut dw = Tensor::zeros_on(&[c], device);
    let mut db = Tensor::zeros_on(&[c], device);
    kernel::backward(
        dx.buffer_mut(),
        dw.buffer_mut(),
        db.buffer_mut(),
        dy.buffer(),
        x.buffer(),
        weight.buffer(),
        mean.buffer(),
        rstd.buffer(),
        rows,
        c,
    );
    [dx, dw, db]
}

/// Per-row standardisation `(x - mean) / sqrt(var + eps)` over the last axis,
/// with the unbiased variance (divide by C - 1), as PIXEL's norm_pix_loss target.
/// Differentiable (the reference's target gradient flows to pixel_values).
pub fn normalize_rows_unbiased(t: &mut Tape, x: &Var, eps: f32) -> Var {
    let shape = x.shape().to_vec();
    let c = *shape.last().expect("normalize_rows_unbiased: rank >= 1");
    assert!(
        c >= 2,
        "normalize_rows_unbiased: need at least 2 values per row, got {c}"
    );
    let device = x.value().device();
    let rows = x.value().numel() / c;
    let mut out = Tensor::zeros_on(&shape, device);
    let mut rstd = Tensor::zeros_on(&[rows], device);
    kernel::normalize_rows_forward(
        out.buffer_mut(),
        rstd.buffer_mut(),
        x.value().buffer(),
        rows,
        c,
        eps,
    );
    if !t.needs_grad(&[x]) {
        return Var::constant(out);
    }
    let xv = x.arc();
    t.record(
        "normalize_rows_unbiased",
        out,
        &[x],
        Box::new(move |dy, _| {
            let mut dx = Tensor::zeros_on(xv.shape(), device);
            kernel::normalize_rows_backward(
                dx.buffer_mut(),
                dy.buffer(),
                xv.buffer(),
                rstd.buffer(),
                rows,
                c,
            );
            vec![Some(dx)]
        }),
    )
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::randn;
    use crate::ops;
    use crate::test_support::{check, forward_backward, inputs, rng, test_device};

    #[test]
    fn gradcheck_layer_norm() {
        let mut r = rng();
        let x = randn(&[3, 4, 7], &mut r);
        let mut w = randn(&[7], &mut r);
        w.data_mut().iter_mut().for_each(|v| *v += 1.0);
        let b = randn(&[7], &mut r);
        check(vec![x, w, b], |t, v| {
            ops::layer_norm(t, &v[0], &v[1], &v[2], 1e-5)
        });
    }

    #[test]
    fn gradcheck_normalize_rows_unbiased() {
        let mut r = rng();
        let x = randn(&[4, 9], &mut r);
        check(vec![x], |t, v| ops::normalize_rows_unbiased(t, &v[0], 1e-6));
    }

    test_device!(layer_norm_and_target_normalisation, 1e-4, |d| {
        let mut x = inputs(&[&[3, 4, 10], &[10], &[10]], 47);
        x[0].data_mut().iter_mut().for_each(|v| *v = *v * 3.0 + 1.0);
        let mut out = forward_backward(d, &x, 48, |t, v| {
            ops::layer_norm(t, &v[0], &v[1], &v[2], 1e-5)
        });
        out.extend(forward_backward(d, &x[..1], 49, |t, v| {
            ops::normalize_rows_unbiased(t, &v[0], 1e-6)
        }));
        out
    });

    // The shapes above are tiny: every row fits one warp and every column sum
    // one row chunk. These rows are longer than a block (300 > 256 threads,
    // not a multiple of 32: several warps, partial last warp, strided loops)
    // and the weight/bias column sums span several row chunks (130 > 64 rows:
    // atomics across blocks).
    test_device!(layer_norm_on_long_rows_and_many_rows, 1e-4, |d| {
        let mut x = inputs(&[&[130, 300], &[300], &[300]], 60);
        x[0].data_mut().iter_mut().for_each(|v| *v = *v * 2.0 - 0.5);
        let mut out = forward_backward(d, &x, 61, |t, v| {
            ops::layer_norm(t, &v[0], &v[1], &v[2], 1e-5)
        });
        out.extend(forward_backward(d, &x[..1], 62, |t, v| {
            ops::normalize_rows_unbiased(t, &v[0], 1e-6)
        }));
        out
    });
}
