//! The machine's measured ceilings: the FMA-loop peak of each ISA (one thread
//! and every thread of the rayon pool) and memory bandwidth (copy and triad
//! over a buffer far larger than the last-level cache). `pixel info` prints
//! them; `pixel bench --profile` divides by them instead of a constant.

use crate::cpu::{caches, Isa};
use rayon::prelude::*;
use std::time::{Duration, Instant};

/// Independent accumulators in the FMA loop: enough to cover FMA latency
/// (4 cycles) times FMA ports (2), and few enough to stay in registers with the
/// two constants (AVX-512 has 32 vector registers, AVX2 16).
const CHAINS: usize = 16;
const CHAINS_16_REGS: usize = 12;

/// Floating-point operations of one pass of [`fma_chains`]: the ISA's chain
/// count of FMAs of `lanes` values, 2 flops each, `iters` times.
fn loop_flops(isa: Isa, iters: usize) -> f64 {
    // Scalar keeps 16: its mul + add pairs (no FMA without target features)
    // need the longer chains more than it loses to spills.
    let chains = if isa == Isa::Avx2 {
        CHAINS_16_REGS
    } else {
        CHAINS
    };
    (iters * chains * isa.lanes() * 2) as f64
}

/// Runs `iters` rounds of `CHAINS` independent FMAs with `isa`; returns a value
/// that depends on every lane so the loop cannot be removed.
fn fma_chains(isa: Isa, iters: usize, seed: f32) -> f32 {
    match isa {
        Isa::Scalar => {
            let mut acc = [seed; CHAINS];
            let (m, a) = (std::hint::black_box(0.999_999f32), 1e-7f32);
            for _ in 0..iters {
                for v in acc.iter_mut() {
                    *v = *v * m + a; // mul + add: no FMA without target features
                }
            }
            acc.iter().sum()
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: callers only pass an ISA the CPU has (`Isa::is_available`).
        Isa::Avx2 => unsafe { x86::fma_chains_avx2(iters, seed) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx512 => unsafe { x86::fma_chains_avx512(iters, seed) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => fma_chains(Isa::Scalar, iters, seed),
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{CHAINS, CHAINS_16_REGS};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma_chains_avx2(iters: usize, seed: f32) -> f32 {
        let mut acc = [_mm256_set1_ps(seed); CHAINS_16_REGS];
        let m = _mm256_set1_ps(std::hint::black_box(0.999_999));
        let a = _mm256_set1_ps(1e-7);
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(*v, m, a);
            }
        }
        let mut out = [0.0f32; 8];
        let sum = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, &v| _mm256_add_ps(s, v));
        // SAFETY: `out` holds 8 values.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
        out.iter().sum()
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn fma_chains_avx512(iters: usize, seed: f32) -> f32 {
        let mut acc = [_mm512_set1_ps(seed); CHAINS];
        let m = _mm512_set1_ps(std::hint::black_box(0.999_999));
        let a = _mm512_set1_ps(1e-7);
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, m, a);
            }
        }
        let sum = acc
            .iter()
            .fold(_mm512_setzero_ps(), |s, &v| _mm512_add_ps(s, v));
        _mm512_reduce_add_ps(sum)
    }
}

/// GFLOP/s of the FMA loop with `isa` on `threads` threads (1, or the rayon
/// pool's size), best of a few timed passes lasting about `budget` in all.
pub fn fma_peak_gflops(isa: Isa, threads: usize, budget: Duration) -> f64 {
    assert!(isa.is_available(), "fma_peak_gflops: this CPU has no {isa}");
    let iters = 200_000;
    let pass = |t: usize| -> f64 {
        let start = Instant::now();
        let sink: f32 = (0..t)
            .into_par_iter()
            .map(|i| fma_chains(isa, iters, i as f32))
            .sum();
        std::hint::black_box(sink);
        loop_flops(isa, iters) * t as f64 / start.elapsed().as_secs_f64() / 1e9
    };
    best_of(
        budget,
        || {
            if threads <= 1 {
                pass(1)
            } else {
                pass(threads)
            }
        },
    )
}

/// Best (highest) result of `f` over repeated calls for about `budget` (at
/// least 3 calls; the first warms up clocks and caches).
fn best_of(budget: Duration, mut f: impl FnMut() -> f64) -> f64 {
    let start = Instant::now();
    let mut best = 0.0f64;
    let mut calls = 0;
    while calls < 3 || start.elapsed() < budget {
        best = best.max(f());
        calls += 1;
    }
    best
}

/// Memory bandwidth in GB/s on the rayon pool.
#[derive(Clone, Copy, Debug)]
pub struct Bandwidth {
    /// `b = a`: 8 bytes moved per value (read + write).
    pub copy: f64,
    /// `a = b + s c`: 12 bytes per value.
    pub triad: f64,
    /// Bytes in each buffer.
    pub buffer_bytes: usize,
}

/// Copy and triad bandwidth over buffers of 4x the last-level cache (at least
/// 64 MiB, at most 1 GiB each: a 260 MiB L3 gets 1 GiB buffers), best of
/// passes lasting about `budget`.
pub fn memory_bandwidth(budget: Duration) -> Bandwidth {
    let bytes = (caches().l3 * 4).clamp(64 << 20, 1 << 30);
    let n = bytes / 4;
    let chunk = 1 << 16;
    let mut a = vec![1.0f32; n];
    let mut b = vec![2.0f32; n];
    let c = vec![0.5f32; n];
    let copy = best_of(budget / 2, || {
        let t = Instant::now();
        b.par_chunks_mut(chunk)
            .zip(a.par_chunks(chunk))
            .for_each(|(b, a)| b.copy_from_slice(a));
        (8 * n) as f64 / t.elapsed().as_secs_f64() / 1e9
    });
    let triad = best_of(budget / 2, || {
        let t = Instant::now();
        a.par_chunks_mut(chunk)
            .zip(b.par_chunks(chunk).zip(c.par_chunks(chunk)))
            .for_each(|(a, (b, c))| {
                for ((a, &b), &c) in a.iter_mut().zip(b).zip(c) {
                    *a = b + 0.5 * c;
                }
            });
        (12 * n) as f64 / t.elapsed().as_secs_f64() / 1e9
    });
    std::hint::black_box((&a, &b));
    Bandwidth {
        copy,
        triad,
        buffer_bytes: bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fma_loop_of_every_isa_gives_a_positive_rate_and_a_finite_value() {
        for isa in Isa::available() {
            let g = fma_peak_gflops(isa, 1, Duration::from_millis(1));
            assert!(g.is_finite() && g > 0.1, "{isa}: {g}");
            assert!(fma_chains(isa, 10, 1.0).is_finite());
        }
    }

    #[test]
    fn loop_flops_counts_lanes() {
        assert_eq!(loop_flops(Isa::Avx512, 1), (CHAINS * 32) as f64);
        assert_eq!(loop_flops(Isa::Avx2, 1), (CHAINS_16_REGS * 16) as f64);
        assert_eq!(loop_flops(Isa::Scalar, 2), (CHAINS * 4) as f64);
    }
}
