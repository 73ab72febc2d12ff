//! The vector building blocks of the fused kernels, written once for every
//! x86 vector width: a [`Vector`] trait with an AVX2+FMA impl ([`V8`], 8
//! lanes) and an AVX-512 impl ([`V16`], 16 lanes), and on top of it the
//! partial-vector loads for row tails, a vectorised `exp` and the erf-based
//! Gaussian CDF (for exact GELU).
//!
//! A kernel is an `#[inline(always)]` function generic over `V: Vector`; the
//! [`simd_entry!`] macro makes one `#[target_feature]` entry point per ISA
//! from it, inside which every trait method (all `#[inline(always)]`) inlines
//! to the bare instructions. Callers must have checked the ISA
//! ([`crate::cpu::isa`]). The polynomial coefficients were fitted for this
//! crate (weighted least squares, then checked in f32 against f64
//! `erf`/`erfc`).

use std::arch::x86_64::*;

/// One vector of f32 lanes and the operations the kernels use.
///
/// # Safety
/// Every method needs the CPU feature of its impl (AVX2+FMA for [`V8`],
/// AVX-512 F/DQ for [`V16`]); pointer methods need the pointed-to values.
#[allow(clippy::missing_safety_doc)]
pub(crate) trait Vector: Copy {
    const LANES: usize;
    /// A per-lane condition.
    type Mask: Copy;
    unsafe fn splat(x: f32) -> Self;
    unsafe fn zero() -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    /// The first `n` (< LANES) values at `p`; the other lanes are 0.
    unsafe fn load_tail(p: *const f32, n: usize) -> Self;
    /// Stores the first `n` (< LANES) lanes to `p`.
    unsafe fn store_tail(self, p: *mut f32, n: usize);
    /// Lanes from `n` on replaced by `fill`.
    unsafe fn first_or(self, n: usize, fill: f32) -> Self;
    unsafe fn add(self, o: Self) -> Self;
    unsafe fn sub(self, o: Self) -> Self;
    unsafe fn mul(self, o: Self) -> Self;
    unsafe fn div(self, o: Self) -> Self;
    unsafe fn max(self, o: Self) -> Self;
    unsafe fn min(self, o: Self) -> Self;
    /// `self * b + c` (one rounding).
    unsafe fn mul_add(self, b: Self, c: Self) -> Self;
    /// `self * b - c`.
    unsafe fn mul_sub(self, b: Self, c: Self) -> Self;
    /// `c - self * b`.
    unsafe fn neg_mul_add(self, b: Self, c: Self) -> Self;
    unsafe fn abs(self) -> Self;
    /// Rounded to the nearest integer (ties to even).
    unsafe fn round(self) -> Self;
    /// `2^self` for integral lanes in [-126, 127], built in the exponent field.
    unsafe fn pow2i(self) -> Self;
    unsafe fn hsum(self) -> f32;
    unsafe fn hmax(self) -> f32;
    /// `self < o` (false where either is NaN).
    unsafe fn lt(self, o: Self) -> Self::Mask;
    /// Lane-wise `if m { t } else { f }`.
    unsafe fn select(m: Self::Mask, t: Self, f: Self) -> Self;
    unsafe fn all(m: Self::Mask) -> bool;
}

/// 8 lanes of AVX2+FMA.
#[derive(Clone, Copy)]
pub(crate) struct V8(__m256);

/// 16 lanes of AVX-512.
#[derive(Clone, Copy)]
pub(crate) struct V16(__m512);

#[inline(always)]
unsafe fn tail_mask8(n: usize) -> __m256i {
    let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), idx)
}

#[inline(always)]
fn tail_mask16(n: usize) -> __mmask16 {
    ((1u32 << n.min(16)) - 1) as __mmask16
}

#[allow(clippy::undocumented_unsafe_blocks)]
impl Vector for V8 {
    const LANES: usize = 8;
    type Mask = __m256;
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        V8(_mm256_set1_ps(x))
    }
    #[inline(always)]
    unsafe fn zero() -> Self {
        V8(_mm256_setzero_ps())
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        V8(unsafe { _mm256_loadu_ps(p) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { _mm256_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn load_tail(p: *const f32, n: usize) -> Self {
        V8(unsafe { _mm256_maskload_ps(p, tail_mask8(n)) })
    }
    #[inline(always)]
    unsafe fn store_tail(self, p: *mut f32, n: usize) {
        unsafe { _mm256_maskstore_ps(p, tail_mask8(n), self.0) }
    }
    #[inline(always)]
    unsafe fn first_or(self, n: usize, fill: f32) -> Self {
        let keep = _mm256_castsi256_ps(unsafe { tail_mask8(n) });
        V8(_mm256_blendv_ps(_mm256_set1_ps(fill), self.0, keep))
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        V8(_mm256_add_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        V8(_mm256_sub_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        V8(_mm256_mul_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        V8(_mm256_div_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        V8(_mm256_max_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn min(self, o: Self) -> Self {
        V8(_mm256_min_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        V8(_mm256_fmadd_ps(self.0, b.0, c.0))
    }
    #[inline(always)]
    unsafe fn mul_sub(self, b: Self, c: Self) -> Self {
        V8(_mm256_fmsub_ps(self.0, b.0, c.0))
    }
    #[inline(always)]
    unsafe fn neg_mul_add(self, b: Self, c: Self) -> Self {
        V8(_mm256_fnmadd_ps(self.0, b.0, c.0))
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        V8(_mm256_andnot_ps(_mm256_set1_ps(-0.0), self.0))
    }
    #[inline(always)]
    unsafe fn round(self) -> Self {
        V8(_mm256_round_ps::<
            { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
        >(self.0))
    }
    #[inline(always)]
    unsafe fn pow2i(self) -> Self {
        let bits = _mm256_add_epi32(_mm256_cvtps_epi32(self.0), _mm256_set1_epi32(127));
        V8(_mm256_castsi256_ps(_mm256_slli_epi32::<23>(bits)))
    }
    #[inline(always)]
    unsafe fn hsum(self) -> f32 {
        let lo = _mm256_castps256_ps128(self.0);
        let hi = _mm256_extractf128_ps::<1>(self.0);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
    #[inline(always)]
    unsafe fn hmax(self) -> f32 {
        let lo = _mm256_castps256_ps128(self.0);
        let hi = _mm256_extractf128_ps::<1>(self.0);
        let s = _mm_max_ps(lo, hi);
        let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_max_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
    #[inline(always)]
    unsafe fn lt(self, o: Self) -> __m256 {
        _mm256_cmp_ps::<_CMP_LT_OQ>(self.0, o.0)
    }
    #[inline(always)]
    unsafe fn select(m: __m256, t: Self, f: Self) -> Self {
        V8(_mm256_blendv_ps(f.0, t.0, m))
    }
    #[inline(always)]
    unsafe fn all(m: __m256) -> bool {
        _mm256_movemask_ps(m) == 0xff
    }
}

#[allow(clippy::undocumented_unsafe_blocks)]
impl Vector for V16 {
    const LANES: usize = 16;
    type Mask = __mmask16;
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        V16(_mm512_set1_ps(x))
    }
    #[inline(always)]
    unsafe fn zero() -> Self {
        V16(_mm512_setzero_ps())
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        V16(unsafe { _mm512_loadu_ps(p) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { _mm512_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn load_tail(p: *const f32, n: usize) -> Self {
        V16(unsafe { _mm512_maskz_loadu_ps(tail_mask16(n), p) })
    }
    #[inline(always)]
    unsafe fn store_tail(self, p: *mut f32, n: usize) {
        unsafe { _mm512_mask_storeu_ps(p, tail_mask16(n), self.0) }
    }
    #[inline(always)]
    unsafe fn first_or(self, n: usize, fill: f32) -> Self {
        V16(_mm512_mask_blend_ps(
            tail_mask16(n),
            _mm512_set1_ps(fill),
            self.0,
        ))
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        V16(_mm512_add_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        V16(_mm512_sub_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        V16(_mm512_mul_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        V16(_mm512_div_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        V16(_mm512_max_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn min(self, o: Self) -> Self {
        V16(_mm512_min_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        V16(_mm512_fmadd_ps(self.0, b.0, c.0))
    }
    #[inline(always)]
    unsafe fn mul_sub(self, b: Self, c: Self) -> Self {
        V16(_mm512_fmsub_ps(self.0, b.0, c.0))
    }
    #[inline(always)]
    unsafe fn neg_mul_add(self, b: Self, c: Self) -> Self {
        V16(_mm512_fnmadd_ps(self.0, b.0, c.0))
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        V16(_mm512_abs_ps(self.0))
    }
    #[inline(always)]
    unsafe fn round(self) -> Self {
        V16(_mm512_roundscale_ps::<
            { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
        >(self.0))
    }
    #[inline(always)]
    unsafe fn pow2i(self) -> Self {
        let bits = _mm512_add_epi32(_mm512_cvtps_epi32(self.0), _mm512_set1_epi32(127));
        V16(_mm512_castsi512_ps(_mm512_slli_epi32::<23>(bits)))
    }
    #[inline(always)]
    unsafe fn hsum(self) -> f32 {
        // Halves first, then the 8-lane sum of V8: the same pairing at every width.
        let lo = _mm512_castps512_ps256(self.0);
        let hi = _mm512_extractf32x8_ps::<1>(self.0);
        unsafe { V8(_mm256_add_ps(lo, hi)).hsum() }
    }
    #[inline(always)]
    unsafe fn hmax(self) -> f32 {
        let lo = _mm512_castps512_ps256(self.0);
        let hi = _mm512_extractf32x8_ps::<1>(self.0);
        unsafe { V8(_mm256_max_ps(lo, hi)).hmax() }
    }
    #[inline(always)]
    unsafe fn lt(self, o: Self) -> __mmask16 {
        _mm512_cmp_ps_mask::<_CMP_LT_OQ>(self.0, o.0)
    }
    #[inline(always)]
    unsafe fn select(m: __mmask16, t: Self, f: Self) -> Self {
        V16(_mm512_mask_blend_ps(m, f.0, t.0))
    }
    #[inline(always)]
    unsafe fn all(m: __mmask16) -> bool {
        m == 0xffff
    }
}

/// Makes `$avx2` and `$avx512`: `#[target_feature]` entry points that run the
/// generic `$body::<V8>` / `$body::<V16>` with the same arguments.
macro_rules! simd_entry {
    ($body:ident, $avx2:ident, $avx512:ident, ($($arg:ident: $ty:ty),* $(,)?)) => {
        /// The generic body built for AVX2+FMA (the CPU must have both).
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn $avx2($($arg: $ty),*) {
            // SAFETY: forwarded; this function's features are V8's.
            unsafe { $body::<crate::simd::V8>($($arg),*) }
        }

        /// The generic body built for AVX-512 (the CPU must have F, DQ, BW, VL).
        #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn $avx512($($arg: $ty),*) {
            // SAFETY: forwarded; this function's features are V16's.
            unsafe { $body::<crate::simd::V16>($($arg),*) }
        }
    };
}
pub(crate) use simd_entry;

/// `e^x` per lane, about 1 ulp. Inputs below -87.3 give 0 (no denormals),
/// inputs above 88.3 are clamped (result ~2e38); NaN stays NaN.
#[inline(always)]
pub(crate) unsafe fn exp<V: Vector>(x: V) -> V {
    // e^x = 2^n * e^r with n = round(x / ln 2), |r| <= ln2 / 2.
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in a part exact in f32 and the rest, so n * LN2_HI is exact.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    unsafe {
        let underflow = x.lt(V::splat(-87.3));
        // min/max return their second operand when one is NaN: keep x second.
        let x = V::splat(88.3).min(x);
        let x = V::splat(-87.3).max(x);
        let n = x.mul(V::splat(LOG2E)).round();
        let r = n.neg_mul_add(V::splat(LN2_HI), x);
        let r = n.neg_mul_add(V::splat(LN2_LO), r);
        // Taylor series to r^7: truncation error < 6e-9 relative on |r| <= ln2/2.
        let mut p = V::splat(1.0 / 5040.0);
        for c in [
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ] {
            p = p.mul_add(r, V::splat(c));
        }
        // n is in [-126, 127] after the clamps.
        V::select(underflow, V::zero(), p.mul(n.pow2i()))
    }
}

/// Below this |z|, erf(z) uses the odd series `z * Q(z^2)`; above it,
/// erfc(z) = exp(-z^2) * P(1 / (1 + z / 2)).
const ERF_SPLIT: f32 = 1.0;

/// `Q(s)`, s = z^2 in [0, 1]: erf(z) / z, relative error ~1e-9.
const ERF_SMALL: [f32; 7] = [
    std::f32::consts::FRAC_2_SQRT_PI, // the fit lands on 2 / sqrt(pi)
    -0.376_126_26,
    0.112_835_85,
    -0.026_853_812,
    0.005_188_327_4,
    -0.000_801_019_1,
    7.853_853e-5,
];

/// `P(t)`, t = 1 / (1 + z / 2) for z in [1, 10]: erfc(z) * exp(z^2),
/// relative error ~6e-9.
const ERFC_LARGE: [f32; 9] = [
    -4.103_273_6e-6,
    0.282_199_4,
    0.280_990_8,
    0.252_967_2,
    0.158_041_96,
    0.105_341_34,
    0.025_062_04,
    -0.185_041_96,
    0.080_891_59,
];

/// Horner evaluation of `coef[0] + coef[1] x + ...`.
#[inline(always)]
unsafe fn poly<V: Vector>(x: V, coef: &[f32]) -> V {
    unsafe {
        let mut p = V::splat(coef[coef.len() - 1]);
        for &c in coef[..coef.len() - 1].iter().rev() {
            p = p.mul_add(x, V::splat(c));
        }
        p
    }
}

/// `Phi(x) = 0.5 * (1 + erf(x / sqrt 2))` per lane, the standard normal CDF,
/// with absolute error ~1e-7. Also returns `exp(-x^2 / 2)` (needed by the GELU
/// derivative) when `want_gauss` is set; otherwise that lane value is unspecified.
#[inline(always)]
pub(crate) unsafe fn normal_cdf<V: Vector>(x: V, want_gauss: bool) -> (V, V) {
    unsafe {
        let z = x.mul(V::splat(std::f32::consts::FRAC_1_SQRT_2));
        let az = z.abs();
        let z2 = z.mul(z);
        let small = az.lt(V::splat(ERF_SPLIT));
        let all_small = V::all(small);
        // Small |z|: Phi = 0.5 + 0.5 * z * Q(z^2); no cancellation near 0.
        let half = V::splat(0.5);
        let cdf_small = half.mul(z).mul_add(poly(z2, &ERF_SMALL), half);
        if all_small && !want_gauss {
            return (cdf_small, V::zero());
        }
        let gauss = exp(V::zero().sub(z2));
        if all_small {
            return (cdf_small, gauss);
        }
        // Large |z|: half_erfc = 0.5 * erfc(|z|); Phi = half_erfc for x < 0 and
        // 1 - half_erfc for x >= 0 (computed directly, so the x < 0 tail keeps
        // its relative accuracy).
        let t = V::splat(1.0).div(az.mul_add(half, V::splat(1.0)));
        let half_erfc = half.mul(gauss).mul(poly(t, &ERFC_LARGE));
        let negative = x.lt(V::zero());
        let cdf_large = V::select(negative, half_erfc, V::splat(1.0).sub(half_erfc));
        (V::select(small, cdf_small, cdf_large), gauss)
    }
}
