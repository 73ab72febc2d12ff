//! Inverted dropout with a counter-based mask: element `i` is kept (and
//! scaled by 1 / (1 - p)) when a hash of (seed, i) is >= p. Nothing is
//! stored: backward, and attention's recomputation, regenerate the mask from
//! the seed. The CPU and CUDA kernels use the same hash, so a seed gives the
//! same mask on every device and for any number of threads.

use rayon::prelude::*;

use crate::buffer::Buffer;

#[cfg(feature = "cuda")]
pub(crate) mod cuda;

const CHUNK: usize = 16384;

/// Uniform in [0, 1) from (seed, i): SplitMix64's finaliser on
/// `seed + (i + 1) * golden`, top 24 bits (as `uniform_at` in dropout.cu).
#[inline]
pub fn uniform_at(seed: u64, i: u64) -> f32 {
    let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 40) as f32 * (1.0 / 16_777_216.0)
}

/// Whether element `i` survives dropout with probability `p` under `seed`.
#[inline]
pub fn keeps(seed: u64, p: f32, i: u64) -> bool {
    uniform_at(seed, i) >= p
}

/// `x[j] = keeps(start + j) ? x[j] / (1 - p) : 0` on the calling thread (one
/// block of a larger mask: an attention head's probabilities).
pub fn apply_slice(x: &mut [f32], seed: u64, p: f32, start: usize) {
    let keep_scale = 1.0 / (1.0 - p);
    for (j, v) in x.iter_mut().enumerate() {
        *v = if keeps(seed, p, (start + j) as u64) {
            *v * keep_scale
        } else {
            0.0
        };
    }
}

/// Inverted dropout in place on `x[..n]` (mask element i = position i).
pub fn apply_in_place(x: &mut Buffer, n: usize, seed: u64, p: f32) {
    match x {
        Buffer::Cpu(x) => x[..n]
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, xs)| apply_slice(xs, seed, p, c * CHUNK)),
        #[cfg(feature = "cuda")]
        Buffer::Cuda(x) => cuda::dropout_in_place(x, n, seed, p),
    }
}
