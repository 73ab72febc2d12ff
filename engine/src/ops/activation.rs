//! Pointwise nonlinearities and dropout.

use pixel_kernels::gelu::{gelu_backward, gelu_forward};

#[cfg(feature = "cuda")]
use super::cuda;
use crate::rng::Rng;
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// Exact (erf) GELU. Saves its input.
pub fn gelu(t: &mut Tape, x: &Var) -> Var {
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[x]) {
        return cuda::nn::gelu(t, x);
    }
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
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[x]) {
        return cuda::nn::unary(t, "tanh", x, pixel_kernels::cuda::launch::UnaryOp::Tanh);
    }
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
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[x]) {
        return cuda::nn::unary(t, "relu", x, pixel_kernels::cuda::launch::UnaryOp::Relu);
    }
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

/// Keep-mask of inverted dropout, one bit per element (32x smaller than an
/// f32 mask: attention dropout masks are as large as the attention maps).
#[derive(Clone, Debug)]
pub struct DropoutMask {
    bits: Vec<u64>,
    len: usize,
    /// 1 / (1 - p), applied to kept elements.
    keep_scale: f32,
}

impl DropoutMask {
    /// Draw a mask: each element is dropped with probability `p`.
    pub fn new(len: usize, p: f32, rng: &mut Rng) -> DropoutMask {
        let mut bits = vec![0u64; len.div_ceil(64)];
        for i in 0..len {
            if rng.uniform() >= p as f64 {
                bits[i / 64] |= 1 << (i % 64);
            }
        }
        DropoutMask {
            bits,
            len,
            keep_scale: 1.0 / (1.0 - p),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether element `i` is kept.
    pub fn keeps(&self, i: usize) -> bool {
        self.bits[i / 64] >> (i % 64) & 1 == 1
    }

    /// `x[i] *= keep_scale` where kept, 0 where dropped.
    pub fn apply_in_place(&self, x: &mut [f32]) {
        assert_eq!(
            x.len(),
            self.len,
            "dropout mask of {} for {} values",
            self.len,
            x.len()
        );
        for (chunk, &word) in x.chunks_mut(64).zip(&self.bits) {
            for (j, v) in chunk.iter_mut().enumerate() {
                *v = if word >> j & 1 == 1 {
                    *v * self.keep_scale
                } else {
                    0.0
                };
            }
        }
    }

    /// `x[j] *= keep_scale` or 0 for elements `start + j` of the mask.
    pub fn apply_range_in_place(&self, start: usize, x: &mut [f32]) {
        assert!(
            start + x.len() <= self.len,
            "dropout mask range out of bounds"
        );
        for (j, v) in x.iter_mut().enumerate() {
            *v = if self.keeps(start + j) {
                *v * self.keep_scale
            } else {
                0.0
            };
        }
    }

    /// A masked copy of `x`.
    pub fn apply(&self, x: &[f32]) -> Vec<f32> {
        let mut out = x.to_vec();
        self.apply_in_place(&mut out);
        out
    }
}

/// Inverted dropout with probability `p` (identity when `p == 0` or not training).
/// Saves its mask (one bit per element).
pub fn dropout(t: &mut Tape, x: &Var, p: f32, training: bool, rng: &mut Rng) -> Var {
    assert!(
        (0.0..1.0).contains(&p),
        "dropout: p must be in [0, 1), got {p}"
    );
    if !training || p == 0.0 {
        return x.clone();
    }
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[x]) {
        return cuda::nn::dropout(t, x, p, rng);
    }
    let mask = DropoutMask::new(x.value().numel(), p, rng);
    let out = Tensor::new(x.shape(), mask.apply(x.data()));
    t.record(
        "dropout",
        out,
        &[x],
        Box::new(move |mut dy, _| {
            mask.apply_in_place(dy.data_mut());
            vec![Some(dy)]
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropout_mask_drops_about_p_and_scales_the_rest() {
        let mut rng = Rng::new(5);
        let n = 100_003; // not a multiple of 64
        let m = DropoutMask::new(n, 0.3, &mut rng);
        let y = m.apply(&vec![1.0; n]);
        let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
        assert!((dropped - 0.3).abs() < 0.01, "dropped fraction {dropped}");
        assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6));
        assert!((0..n).all(|i| m.keeps(i) == (y[i] != 0.0)));
    }
}
