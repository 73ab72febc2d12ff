//! Normalisation over the last axis: fused LayerNorm, and the per-patch
//! target normalisation of PIXEL's loss (unbiased variance, eps inside the sqrt).

use rayon::prelude::*;

use pixel_kernels::layer_norm::{layer_norm_backward, layer_norm_forward};

#[cfg(feature = "cuda")]
use super::cuda;
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
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[x, weight, bias]) {
        return cuda::nn::layer_norm(t, x, weight, bias, eps);
    }
    let rows = x.value().numel() / c;
    let mut out = vec![0.0f32; rows * c];
    let mut mean = vec![0.0f32; rows];
    let mut rstd = vec![0.0f32; rows];
    layer_norm_forward(
        &mut out,
        &mut mean,
        &mut rstd,
        x.data(),
        weight.data(),
        bias.data(),
        c,
        eps,
    );
    let out = Tensor::new(&shape, out);
    if !t.needs_grad(&[x, weight, bias]) {
        return Var::constant(out);
    }
    let (xv, wv) = (x.arc(), weight.arc());
    t.record(
        "layer_norm",
        out,
        &[x, weight, bias],
        Box::new(move |dy, _| {
            let mut dx = vec![0.0f32; rows * c];
            let mut dw = vec![0.0f32; c];
            let mut db = vec![0.0f32; c];
            layer_norm_backward(
                &mut dx,
                &mut dw,
                &mut db,
                dy.data(),
                xv.data(),
                wv.data(),
                &mean,
                &rstd,
                c,
            );
            vec![
                Some(Tensor::new(xv.shape(), dx)),
                Some(Tensor::new(&[c], dw)),
                Some(Tensor::new(&[c], db)),
            ]
        }),
    )
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
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[x]) {
        return cuda::nn::normalize_rows_unbiased(t, x, eps);
    }
    let rows = x.value().numel() / c;
    let mut out = vec![0.0f32; rows * c];
    let mut rstd = vec![0.0f32; rows];
    out.par_chunks_mut(c)
        .zip(rstd.par_iter_mut())
        .zip(x.data().par_chunks(c))
        .for_each(|((o, r), xs)| {
            let mu = xs.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
            let var = xs.iter().map(|&v| (v as f64 - mu).powi(2)).sum::<f64>() / (c - 1) as f64;
            let rs = 1.0 / (var + eps as f64).sqrt();
            for (o, &v) in o.iter_mut().zip(xs) {
                *o = ((v as f64 - mu) * rs) as f32;
            }
            *r = rs as f32;
        });
    let out = Tensor::new(&shape, out);
    if !t.needs_grad(&[x]) {
        return Var::constant(out);
    }
    let xv = x.arc();
    t.record(
        "normalize_rows_unbiased",
        out,
        &[x],
        Box::new(move |dy, _| {
            // dx = r (dy - mean(dy)) - r^3 (x - mu) sum(dy (x - mu)) / (C - 1)
            let mut dx = vec![0.0f32; rows * c];
            dx.par_chunks_mut(c)
                .zip(dy.data().par_chunks(c))
                .zip(xv.data().par_chunks(c))
                .zip(rstd.par_iter())
                .for_each(|(((dx, dy), xs), &r)| {
                    let r = r as f64;
                    let mu = xs.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
                    let mean_dy = dy.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
                    let dot: f64 = dy
                        .iter()
                        .zip(xs)
                        .map(|(&g, &v)| g as f64 * (v as f64 - mu))
                        .sum();
                    let k = r * r * r * dot / (c - 1) as f64;
                    for ((d, &g), &v) in dx.iter_mut().zip(dy).zip(xs) {
                        *d = (r * (g as f64 - mean_dy) - k * (v as f64 - mu)) as f32;
                    }
                });
            vec![Some(Tensor::new(xv.shape(), dx))]
        }),
    )
}
