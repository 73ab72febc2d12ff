//! AVX2+FMA building blocks shared by the fused kernels: horizontal sums,
//! partial-vector loads for row tails, and vectorised `exp` and erf-based
//! Gaussian CDF (for exact GELU).
//!
//! Every function here is `#[target_feature(enable = "avx2,fma")]`: callers
//! must have checked [`crate::has_avx2_fma`] first. The polynomial
//! coefficients were fitted for this crate (weighted least squares, then
//! checked in f32 against f64 `erf`/`erfc`).

use std::arch::x86_64::*;

/// Lanes in one `__m256`.
pub(crate) const LANES: usize = 8;

/// Sum of the 8 lanes.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps::<1>(v);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Max of the 8 lanes.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn hmax(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps::<1>(v);
    let s = _mm_max_ps(lo, hi);
    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_max_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Mask selecting the first `n` lanes (`n <= 8`), for `maskload`/`maskstore`.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn tail_mask(n: usize) -> __m256i {
    let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), idx)
}

/// Load the first `len` (< 8) values of `p`; other lanes are 0.
/// SAFETY (caller): `p .. p + len` is readable.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn load_tail(p: *const f32, len: usize) -> __m256 {
    _mm256_maskload_ps(p, tail_mask(len))
}

/// Store the first `len` (< 8) lanes of `v` to `p`.
/// SAFETY (caller): `p .. p + len` is writable.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn store_tail(p: *mut f32, len: usize, v: __m256) {
    _mm256_maskstore_ps(p, tail_mask(len), v)
}

/// `e^x` per lane, about 1 ulp. Inputs below -87.3 give 0 (no denormals),
/// inputs above 88.3 are clamped (result ~2e38); NaN stays NaN.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn exp(x: __m256) -> __m256 {
    // e^x = 2^n * e^r with n = round(x / ln 2), |r| <= ln2 / 2.
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in a part exact in f32 and the rest, so n * LN2_HI is exact.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let underflow = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(-87.3));
    // min/max return their second operand when one is NaN: keep x second.
    let x = _mm256_min_ps(_mm256_set1_ps(88.3), x);
    let x = _mm256_max_ps(_mm256_set1_ps(-87.3), x);
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(LOG2E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    // Taylor series to r^7: truncation error < 6e-9 relative on |r| <= ln2/2.
    let mut p = _mm256_set1_ps(1.0 / 5040.0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0 / 720.0));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0 / 120.0));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0 / 24.0));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0 / 6.0));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0));
    // 2^n built in the exponent field: n is in [-126, 127] after the clamps.
    let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    )));
    _mm256_andnot_ps(underflow, _mm256_mul_ps(p, pow2n))
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
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn poly(x: __m256, coef: &[f32]) -> __m256 {
    let mut p = _mm256_set1_ps(coef[coef.len() - 1]);
    for &c in coef[..coef.len() - 1].iter().rev() {
        p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(c));
    }
    p
}

/// `Phi(x) = 0.5 * (1 + erf(x / sqrt 2))` per lane, the standard normal CDF,
/// with absolute error ~1e-7. Also returns `exp(-x^2 / 2)` (needed by the GELU
/// derivative) when `want_gauss` is set; otherwise that lane value is unspecified.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn normal_cdf(x: __m256, want_gauss: bool) -> (__m256, __m256) {
    let sign_bit = _mm256_set1_ps(-0.0);
    let z = _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
    let az = _mm256_andnot_ps(sign_bit, z);
    let z2 = _mm256_mul_ps(z, z);
    let small = _mm256_cmp_ps::<_CMP_LT_OQ>(az, _mm256_set1_ps(ERF_SPLIT));
    let all_small = _mm256_movemask_ps(small) == 0xff;
    // Small |z|: Phi = 0.5 + 0.5 * z * Q(z^2); no cancellation near 0.
    let half = _mm256_set1_ps(0.5);
    let cdf_small = _mm256_fmadd_ps(_mm256_mul_ps(half, z), poly(z2, &ERF_SMALL), half);
    if all_small && !want_gauss {
        return (cdf_small, _mm256_setzero_ps());
    }
    let gauss = exp(_mm256_sub_ps(_mm256_setzero_ps(), z2));
    if all_small {
        return (cdf_small, gauss);
    }
    // Large |z|: half_erfc = 0.5 * erfc(|z|); Phi = half_erfc for x < 0 and
    // 1 - half_erfc for x >= 0 (computed directly, so the x < 0 tail keeps
    // its relative accuracy).
    let t = _mm256_div_ps(
        _mm256_set1_ps(1.0),
        _mm256_fmadd_ps(az, half, _mm256_set1_ps(1.0)),
    );
    let half_erfc = _mm256_mul_ps(_mm256_mul_ps(half, gauss), poly(t, &ERFC_LARGE));
    let negative = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_setzero_ps());
    let cdf_large = _mm256_blendv_ps(
        _mm256_sub_ps(_mm256_set1_ps(1.0), half_erfc),
        half_erfc,
        negative,
    );
    (_mm256_blendv_ps(cdf_large, cdf_small, small), gauss)
}
