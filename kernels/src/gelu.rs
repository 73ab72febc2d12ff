//! Exact (erf) GELU, as HuggingFace's "gelu": `x * 0.5 * (1 + erf(x / sqrt(2)))`.

use rayon::prelude::*;

const CHUNK: usize = 16384;
const INV_SQRT2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi), for the Gaussian density in the derivative.
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// `out = gelu(inp)`, elementwise.
pub fn gelu_forward(out: &mut [f32], inp: &[f32]) {
    assert_eq!(out.len(), inp.len());
    out.par_chunks_mut(CHUNK)
        .zip(inp.par_chunks(CHUNK))
        .for_each(|(o, x)| gelu_forward_scalar(o, x));
}

/// Scalar reference of [`gelu_forward`].
pub fn gelu_forward_scalar(out: &mut [f32], inp: &[f32]) {
    for (o, &x) in out.iter_mut().zip(inp) {
        let x = x as f64;
        *o = (0.5 * x * (1.0 + libm::erf(x * INV_SQRT2))) as f32;
    }
}

/// `dinp = dout * gelu'(inp)` (overwrites `dinp`), where
/// `gelu'(x) = 0.5 (1 + erf(x / sqrt 2)) + x * phi(x)`.
pub fn gelu_backward(dinp: &mut [f32], dout: &[f32], inp: &[f32]) {
    assert!(dinp.len() == inp.len() && dout.len() == inp.len());
    dinp.par_chunks_mut(CHUNK)
        .zip(dout.par_chunks(CHUNK))
        .zip(inp.par_chunks(CHUNK))
        .for_each(|((dx, dy), x)| gelu_backward_scalar(dx, dy, x));
}

/// Scalar reference of [`gelu_backward`].
pub fn gelu_backward_scalar(dinp: &mut [f32], dout: &[f32], inp: &[f32]) {
    for ((dx, &dy), &x) in dinp.iter_mut().zip(dout).zip(inp) {
        let x = x as f64;
        let cdf = 0.5 * (1.0 + libm::erf(x * INV_SQRT2));
        let pdf = INV_SQRT_2PI * (-0.5 * x * x).exp();
        *dx = (dy as f64 * (cdf + x * pdf)) as f32;
    }
}
