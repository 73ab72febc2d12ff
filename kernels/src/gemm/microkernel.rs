//! GEMM micro-kernels: one `MR x NR` tile of C from packed slivers of A and B.
//!
//! `a` holds `kc` columns of an MR-row sliver of op(A), column by column
//! (`a[p * MR + i]`); `b` holds `kc` rows of an NR-column sliver of op(B), row
//! by row (`b[p * NR + j]`); both are zero-padded to whole slivers by the
//! packing, so the inner loop never branches. The tile is written back as
//! `C = (alpha * acc + beta * C) + bias` over its `rows x cols` valid part
//! (`beta == 0` never reads C, so NaN or garbage there is overwritten, as
//! BLAS does; `bias`, one value per column, is skipped when null).
//!
//! One kernel per ISA: AVX-512 12 x 32 (24 zmm accumulators), AVX2 6 x 16
//! (12 ymm accumulators), and a plain-Rust 4 x 8 reference.

use crate::cpu::Isa;

/// The signature every micro-kernel has (see [`MicroKernel::run`]).
pub(crate) type KernelFn =
    unsafe fn(usize, *const f32, *const f32, *mut f32, usize, usize, usize, f32, f32, *const f32);

/// A micro-kernel and its tile shape.
#[derive(Clone, Copy)]
pub(crate) struct MicroKernel {
    pub mr: usize,
    pub nr: usize,
    /// `(kc, a, b, c, rsc, rows, cols, alpha, beta, bias)`; `c` points at the
    /// tile's top-left value, rows `rsc` apart; `bias` at the tile's first
    /// column's bias, or null.
    pub run: KernelFn,
}

/// The micro-kernel for `isa` (which the CPU must have).
pub(crate) fn for_isa(isa: Isa) -> MicroKernel {
    match isa {
        Isa::Scalar => MicroKernel {
            mr: SCALAR_MR,
            nr: SCALAR_NR,
            run: kernel_scalar,
        },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => MicroKernel {
            mr: x86::AVX2_MR,
            nr: x86::AVX2_NR,
            run: x86::kernel_avx2,
        },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => MicroKernel {
            mr: x86::AVX512_MR,
            nr: x86::AVX512_NR,
            run: x86::kernel_avx512,
        },
        #[cfg(not(target_arch = "x86_64"))]
        _ => for_isa(Isa::Scalar),
    }
}

/// Writes the first `rows x cols` values of a row-major `MR x NR` tile `acc`
/// to C: the edge-tile path shared by every kernel.
///
/// # Safety
/// `c` must be valid for `rows` rows of `cols` values, rows `rsc` apart, and
/// `bias` null or valid for `cols` values.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn write_partial<const MR: usize, const NR: usize>(
    acc: &[[f32; NR]; MR],
    c: *mut f32,
    rsc: usize,
    rows: usize,
    cols: usize,
    alpha: f32,
    beta: f32,
    bias: *const f32,
) {
    for (i, acc_row) in acc.iter().enumerate().take(rows) {
        for (j, &v) in acc_row.iter().enumerate().take(cols) {
            // SAFETY: (i, j) is inside the valid part of the tile; a non-null
            // bias holds `cols` values.
            unsafe {
                let cij = &mut *c.add(i * rsc + j);
                let mut out = if beta == 0.0 {
                    alpha * v
                } else {
                    alpha * v + beta * *cij
                };
                if !bias.is_null() {
                    out += *bias.add(j);
                }
                *cij = out;
            }
        }
    }
}

const SCALAR_MR: usize = 4;
const SCALAR_NR: usize = 8;

/// The reference kernel: plain loops, no target features.
///
/// # Safety
/// As [`MicroKernel::run`]: `a`/`b` hold `kc` packed steps, `c` covers the tile.
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_scalar(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    rsc: usize,
    rows: usize,
    cols: usize,
    alpha: f32,
    beta: f32,
    bias: *const f32,
) {
    let mut acc = [[0.0f32; SCALAR_NR]; SCALAR_MR];
    // SAFETY: the packing wrote kc * MR values at `a` and kc * NR at `b`.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(a, kc * SCALAR_MR),
            std::slice::from_raw_parts(b, kc * SCALAR_NR),
        )
    };
    for (ap, bp) in a.chunks_exact(SCALAR_MR).zip(b.chunks_exact(SCALAR_NR)) {
        for (acc_row, &ai) in acc.iter_mut().zip(ap) {
            for (acc_ij, &bj) in acc_row.iter_mut().zip(bp) {
                *acc_ij += ai * bj;
            }
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { write_partial(&acc, c, rsc, rows, cols, alpha, beta, bias) };
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::write_partial;
    use std::arch::x86_64::*;

    pub const AVX2_MR: usize = 6;
    pub const AVX2_NR: usize = 16;

    /// AVX2+FMA 6 x 16: 12 accumulators, 2 B loads and 6 broadcasts per step.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; otherwise as [`super::MicroKernel::run`].
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn kernel_avx2(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        rsc: usize,
        rows: usize,
        cols: usize,
        alpha: f32,
        beta: f32,
        bias: *const f32,
    ) {
        const MR: usize = AVX2_MR;
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        // SAFETY: the packing wrote kc * MR values at `a` and kc * 16 at `b`;
        // C covers the tile (caller); prefetches never fault.
        unsafe {
            // C rows are far apart: fetch them before the k loop (see AVX-512).
            for i in 0..rows {
                let row = c.add(i * rsc) as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(row);
                _mm_prefetch::<_MM_HINT_T0>(row.add(63));
            }
            let (mut a, mut b) = (a, b);
            for _ in 0..kc {
                let b0 = _mm256_loadu_ps(b);
                let b1 = _mm256_loadu_ps(b.add(8));
                for (i, acc_i) in acc.iter_mut().enumerate() {
                    let ai = _mm256_broadcast_ss(&*a.add(i));
                    acc_i[0] = _mm256_fmadd_ps(ai, b0, acc_i[0]);
                    acc_i[1] = _mm256_fmadd_ps(ai, b1, acc_i[1]);
                }
                a = a.add(MR);
                b = b.add(AVX2_NR);
            }
            let (va, vb) = (_mm256_set1_ps(alpha), _mm256_set1_ps(beta));
            if rows == MR && cols == AVX2_NR {
                let bias_v =
                    [0, 8].map(|h| (!bias.is_null()).then(|| _mm256_loadu_ps(bias.add(h))));
                for (i, acc_i) in acc.iter().enumerate() {
                    for (h, &v) in acc_i.iter().enumerate() {
                        let p = c.add(i * rsc + 8 * h);
                        let mut out = _mm256_mul_ps(va, v);
                        if beta != 0.0 {
                            out = _mm256_fmadd_ps(vb, _mm256_loadu_ps(p), out);
                        }
                        if let Some(bv) = bias_v[h] {
                            out = _mm256_add_ps(out, bv);
                        }
                        _mm256_storeu_ps(p, out);
                    }
                }
            } else {
                let mut tile = [[0.0f32; AVX2_NR]; MR];
                for (row, acc_i) in tile.iter_mut().zip(&acc) {
                    _mm256_storeu_ps(row.as_mut_ptr(), acc_i[0]);
                    _mm256_storeu_ps(row.as_mut_ptr().add(8), acc_i[1]);
                }
                write_partial(&tile, c, rsc, rows, cols, alpha, beta, bias);
            }
        }
    }

    pub const AVX512_MR: usize = 12;
    pub const AVX512_NR: usize = 32;

    /// AVX-512 12 x 32: 24 accumulators, 2 B loads and 12 broadcasts per step;
    /// edge tiles are written with lane masks.
    ///
    /// # Safety
    /// The CPU has AVX-512 F; otherwise as [`super::MicroKernel::run`].
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn kernel_avx512(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        rsc: usize,
        rows: usize,
        cols: usize,
        alpha: f32,
        beta: f32,
        bias: *const f32,
    ) {
        const MR: usize = AVX512_MR;
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        // SAFETY: the packing wrote kc * MR values at `a` and kc * 32 at `b`;
        // C covers the tile's valid part (caller), and masked lanes are not
        // touched; prefetches never fault.
        unsafe {
            // C rows are far apart (another page each): fetch them now, so the
            // write-back after the k loop does not wait on memory.
            for i in 0..rows {
                let row = c.add(i * rsc) as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(row);
                _mm_prefetch::<_MM_HINT_T0>(row.add(64));
                _mm_prefetch::<_MM_HINT_T0>(row.add(127));
            }
            let (mut a, mut b) = (a, b);
            // One k step: 2 B vectors, 12 broadcasts of A, 24 FMAs.
            let mut step = |a: *const f32, b: *const f32| {
                let b0 = _mm512_loadu_ps(b);
                let b1 = _mm512_loadu_ps(b.add(16));
                for (i, acc_i) in acc.iter_mut().enumerate() {
                    let ai = _mm512_set1_ps(*a.add(i));
                    acc_i[0] = _mm512_fmadd_ps(ai, b0, acc_i[0]);
                    acc_i[1] = _mm512_fmadd_ps(ai, b1, acc_i[1]);
                }
            };
            // Unrolled by 4, A prefetched 8 steps ahead (it streams from L2).
            for _ in 0..kc / 4 {
                _mm_prefetch::<_MM_HINT_T0>(a.add(8 * MR) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(a.add(8 * MR + 16) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(a.add(8 * MR + 32) as *const i8);
                for u in 0..4 {
                    step(a.add(u * MR), b.add(u * AVX512_NR));
                }
                a = a.add(4 * MR);
                b = b.add(4 * AVX512_NR);
            }
            for _ in 0..kc % 4 {
                step(a, b);
                a = a.add(MR);
                b = b.add(AVX512_NR);
            }
            let (va, vb) = (_mm512_set1_ps(alpha), _mm512_set1_ps(beta));
            // Lane masks of the two 16-wide halves for `cols` valid columns.
            let lane_mask = |h: usize| -> __mmask16 {
                let valid = cols.saturating_sub(16 * h).min(16);
                ((1u32 << valid) - 1) as __mmask16
            };
            let masks = [lane_mask(0), lane_mask(1)];
            let bias_v = [0, 1].map(|h| {
                (!bias.is_null()).then(|| _mm512_maskz_loadu_ps(masks[h], bias.add(16 * h)))
            });
            for (i, acc_i) in acc.iter().enumerate().take(rows) {
                for (h, &v) in acc_i.iter().enumerate() {
                    if masks[h] == 0 {
                        continue;
                    }
                    let p = c.add(i * rsc + 16 * h);
                    let mut out = _mm512_mul_ps(va, v);
                    if beta != 0.0 {
                        out = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(masks[h], p), out);
                    }
                    if let Some(bv) = bias_v[h] {
                        out = _mm512_add_ps(out, bv);
                    }
                    _mm512_mask_storeu_ps(p, masks[h], out);
                }
            }
        }
    }
}
