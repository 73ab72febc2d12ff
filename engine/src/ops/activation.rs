//! Pointwise nonlinearities and dropout.

use pixel_kernels::gelu::{gelu_backward, gelu_forward};

use crate::rng::Rng;
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// Exact (erf) GELU. Saves its input.
pub fn gelu(t: &mut Tape, x: &Var) -> Var {
    let mut out = vec![0.0f32; x.value().numel()];
    gelu_forward(&mut out, x.data());
    let out = Tensor::new(x.shape(), out);
    if !t.needs_grad(&[x]) {
        return Var::constant(out);
    }
    let xv = x.arc();
    t.record(
        "gelu",
        out,
        &[x],
        Box::new(move |dy, _| {
            let mut dx = vec![0.0f32; xv.numel()];
            gelu_backward(&mut dx, dy.data(), xv.data());
            vec![Some(Tensor::new(xv.shape(), dx))]
        }),
    )
}

/// tanh. Saves its output (d tanh = 1 - y^2).
pub fn tanh(t: &mut Tape, x: &Var) -> Var {
    let out = Tensor::new(x.shape(), x.data().iter().map(|v| v.tanh()).collect());
    if !t.needs_grad(&[x]) {
        return Var::constant(out);
    }
    let y = out.clone();
    t.record(
        "tanh",
        out,
        &[x],
        Box::new(move |mut dy, _| {
            dy.data_mut()
                .iter_mut()
                .zip(y.data())
                .for_each(|(g, y)| *g *= 1.0 - y * y);
            vec![Some(dy)]
        }),
    )
}

/// ReLU. Saves its output (the sign pattern).
pub fn relu(t: &mut Tape, x: &Var) -> Var {
    let out = Tensor::new(x.shape(), x.data().iter().map(|v| v.max(0.0)).collect());
    if !t.needs_grad(&[x]) {
        return Var::constant(out);
    }
    let y = out.clone();
    t.record(
        "relu",
        out,
        &[x],
        Box::new(move |mut dy, _| {
            dy.data_mut().iter_mut().zip(y.data()).for_each(|(g, y)| {
                if *y <= 0.0 {
                    *g = 0.0
                }
            });
            vec![Some(dy)]
        }),
    )
}

/// Keep-mask of inverted dropout: 1/(1-p) where kept, 0 where dropped.
pub fn dropout_mask(n: usize, p: f32, rng: &mut Rng) -> Vec<f32> {
    let keep_scale = 1.0 / (1.0 - p);
    (0..n)
        .map(|_| {
            if rng.uniform() < p as f64 {
                0.0
            } else {
                keep_scale
            }
        })
        .collect()
}

/// Inverted dropout with probability `p` (identity when `p == 0` or not training).
/// Saves its mask.
pub fn dropout(t: &mut Tape, x: &Var, p: f32, training: bool, rng: &mut Rng) -> Var {
    assert!(
        (0.0..1.0).contains(&p),
        "dropout: p must be in [0, 1), got {p}"
    );
    if !training || p == 0.0 {
        return x.clone();
    }
    let mask = dropout_mask(x.value().numel(), p, rng);
    let out = Tensor::new(
        x.shape(),
        x.data().iter().zip(&mask).map(|(v, m)| v * m).collect(),
    );
    t.record(
        "dropout",
        out,
        &[x],
        Box::new(move |mut dy, _| {
            dy.data_mut()
                .iter_mut()
                .zip(&mask)
                .for_each(|(g, m)| *g *= m);
            vec![Some(dy)]
        }),
    )
}
