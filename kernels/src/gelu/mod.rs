//! Exact (erf) GELU, as HuggingFace's "gelu": `x * 0.5 * (1 + erf(x / sqrt(2)))`.
//!
//! The vector paths (AVX2, AVX-512) evaluate the normal CDF with [`crate::simd::normal_cdf`]
//! (absolute error ~1e-7); the scalar references use `libm::erf` in f64.

use crate::cpu::{simd_dispatch, Isa};
use rayon::prelude::*;

const CHUNK: usize = 16384;
const INV_SQRT2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi), for the Gaussian density in the derivative.
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// `out = gelu(inp)`, elementwise.
pub fn gelu_forward(out: &mut [f32], inp: &[f32]) {
    assert_eq!(
        out.len(),
        inp.len(),
        "gelu_forward: out and inp lengths differ"
    );
    out.par_chunks_mut(CHUNK)
        .zip(inp.par_chunks(CHUNK))
        .for_each(|(o, x)| gelu_forward_with(crate::cpu::isa(), o, x));
}

/// [`gelu_forward`] on the calling thread with `isa`'s code.
pub fn gelu_forward_with(isa: Isa, out: &mut [f32], inp: &[f32]) {
    simd_dispatch!(
        isa,
        gelu_forward_scalar,
        vector::forward_avx2,
        vector::forward_avx512,
        (out, inp)
    )
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
    assert!(
        dinp.len() == inp.len() && dout.len() == inp.len(),
        "gelu_backward: lengths differ: dinp {}, dout {}, inp {}",
        dinp.len(),
        dout.len(),
        inp.len()
    );
    dinp.par_chunks_mut(CHUNK)
        .zip(dout.par_chunks(CHUNK))
        .zip(inp.par_chunks(CHUNK))
        .for_each(|((dx, dy), x)| gelu_backward_with(crate::cpu::isa(), dx, dy, x));
}

/// [`gelu_backward`] on the calling thread with `isa`'s code.
pub fn gelu_backward_with(isa: Isa, dinp: &mut [f32], dout: &[f32], inp: &[f32]) {
    simd_dispatch!(
        isa,
        gelu_backward_scalar,
        vector::backward_avx2,
        vector::backward_avx512,
        (dinp, dout, inp)
    )
}

/// `x = gelu(x)` in place on the calling thread with `isa`'s code, in
/// blocks copied aside (in L1): the same values as [`gelu_forward_with`].
/// The packed GEMM runs it on packed operands ([`crate::gemm::GeluOperand`]).
pub fn gelu_in_place_with(isa: Isa, x: &mut [f32]) {
    let mut block = [0.0f32; 256];
    for part in x.chunks_mut(block.len()) {
        let copy = &mut block[..part.len()];
        copy.copy_from_slice(part);
        gelu_forward_with(isa, part, copy);
    }
}

/// `d = d * gelu'(x)` in place on the calling thread with `isa`'s code, in
/// blocks of `d` copied aside (in L1): the same values as
/// [`gelu_backward_with`].
pub fn gelu_backward_in_place_with(isa: Isa, d: &mut [f32], x: &[f32]) {
    let mut block = [0.0f32; 256];
    for (part, x) in d.chunks_mut(block.len()).zip(x.chunks(block.len())) {
        let dy = &mut block[..part.len()];
        dy.copy_from_slice(part);
        gelu_backward_with(isa, part, dy, x);
    }
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

/// Vector kernels (AVX2 and AVX-512 from one generic body).
#[cfg(target_arch = "x86_64")]
mod vector {
    use crate::simd::{normal_cdf, simd_entry, Vector};

    simd_entry!(forward, forward_avx2, forward_avx512, (out: &mut [f32], inp: &[f32]));
    simd_entry!(backward, backward_avx2, backward_avx512, (
        dinp: &mut [f32],
        dout: &[f32],
        inp: &[f32],
    ));

    /// `out = x * Phi(x)`; `out`, `inp` same length.
    ///
    /// # Safety
    /// The CPU has V's features.
    #[inline(always)]
    unsafe fn forward<V: Vector>(out: &mut [f32], inp: &[f32]) {
        let n = inp.len().min(out.len());
        let body = n - n % V::LANES;
        let (xp, op) = (inp.as_ptr(), out.as_mut_ptr());
        // SAFETY (pointer reads/writes below): i + LANES <= body <= n, and
        // the tail covers exactly [body, n).
        unsafe {
            let mut i = 0;
            while i < body {
                let x = V::load(xp.add(i));
                let (cdf, _) = normal_cdf(x, false);
                x.mul(cdf).store(op.add(i));
                i += V::LANES;
            }
            if n > body {
                let x = V::load_tail(xp.add(body), n - body);
                let (cdf, _) = normal_cdf(x, false);
                x.mul(cdf).store_tail(op.add(body), n - body);
            }
        }
    }

    /// `dy * gelu'(x)` for one vector. A function, not a closure: a closure
    /// inside a `#[target_feature]` function is compiled without the features,
    /// so every vector op in it became a call (44x slower, seen in objdump).
    ///
    /// # Safety
    /// The CPU has V's features.
    #[inline(always)]
    unsafe fn grad<V: Vector>(x: V, dy: V) -> V {
        unsafe {
            // gauss = exp(-x^2 / 2); pdf = gauss / sqrt(2 pi).
            let (cdf, gauss) = normal_cdf(x, true);
            let pdf = gauss.mul(V::splat(super::INV_SQRT_2PI as f32));
            dy.mul(x.mul_add(pdf, cdf))
        }
    }

    /// `dinp = dout * (Phi(x) + x * phi(x))`; all three the same length.
    ///
    /// # Safety
    /// The CPU has V's features.
    #[inline(always)]
    unsafe fn backward<V: Vector>(dinp: &mut [f32], dout: &[f32], inp: &[f32]) {
        let n = inp.len().min(dout.len()).min(dinp.len());
        let body = n - n % V::LANES;
        let (xp, dyp, dxp) = (inp.as_ptr(), dout.as_ptr(), dinp.as_mut_ptr());
        // SAFETY (pointer reads/writes below): i + LANES <= body <= n, and
        // the tail covers exactly [body, n).
        unsafe {
            let mut i = 0;
            while i < body {
                grad(V::load(xp.add(i)), V::load(dyp.add(i))).store(dxp.add(i));
                i += V::LANES;
            }
            if n > body {
                let g = grad(
                    V::load_tail(xp.add(body), n - body),
                    V::load_tail(dyp.add(body), n - body),
                );
                g.store_tail(dxp.add(body), n - body);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Device-dispatched entry points.

use crate::buffer::Buffer;

#[cfg(feature = "cuda")]
pub(crate) mod cuda;

/// `out = gelu(x)` over n values.
pub fn forward(out: &mut Buffer, x: &Buffer, n: usize) {
    const K: &str = "gelu_forward";
    match out {
        Buffer::Cpu(o) => gelu_forward(&mut o[..n], &x.host(K)[..n]),
        #[cfg(feature = "cuda")]
        Buffer::Cuda(o) => cuda::gelu_forward(o, x.cuda(K), n),
    }
}

/// `dx = dy * gelu'(x)` over n values.
pub fn backward(dx: &mut Buffer, dy: &Buffer, x: &Buffer, n: usize) {
    const K: &str = "gelu_backward";
    match dx {
        Buffer::Cpu(d) => gelu_backward(&mut d[..n], &dy.host(K)[..n], &x.host(K)[..n]),
        #[cfg(feature = "cuda")]
        Buffer::Cuda(d) => cuda::gelu_backward(d, dy.cuda(K), x.cuda(K), n),
    }
}

/// `d = d * gelu'(x)` over n values, in place: the gradient through GELU
/// without a second buffer of its size (on the CPU
/// [`gelu_backward_in_place_with`] per chunk; the same values).
pub fn backward_in_place(d: &mut Buffer, x: &Buffer, n: usize) {
    const K: &str = "gelu_backward_in_place";
    match d {
        Buffer::Cpu(dv) => {
            let x = &x.host(K)[..n];
            dv[..n]
                .par_chunks_mut(CHUNK)
                .zip(x.par_chunks(CHUNK))
                .for_each(|(d, x)| gelu_backward_in_place_with(crate::cpu::isa(), d, x));
        }
        #[cfg(feature = "cuda")]
        Buffer::Cuda(dv) => {
            let dy = dv.clone();
            cuda::gelu_backward(dv, &dy, x.cuda(K), n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32 ^ seed).wrapping_mul(2_654_435_761);
                (h >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
            })
            .collect()
    }

    #[test]
    fn backward_in_place_matches_gelu_backward() {
        let n = 3 * CHUNK + 5; // several blocks and a ragged one
        let (x, dy) = (values(n, 4), values(n, 5));
        let mut want = vec![0.0; n];
        gelu_backward(&mut want, &dy, &x);
        let mut d = Buffer::Cpu(dy);
        backward_in_place(&mut d, &Buffer::Cpu(x), n);
        let got = d.host("test");
        assert!(got
            .iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
