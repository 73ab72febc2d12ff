//! Raw compute for pixel: plain functions on `f32` slices, no shapes beyond the
//! arguments, no autodiff. The engine owns shapes, the tape and dispatch.
//!
//! Every SIMD kernel has a scalar reference (`*_scalar`) that the tests use as
//! ground truth; the public entry point picks AVX2+FMA at run time when the CPU
//! has it (`is_x86_feature_detected!`) and falls back to the scalar path.

pub mod adamw;
pub mod elementwise;
pub mod gelu;
pub mod gemm;
pub mod layer_norm;
#[cfg(target_arch = "x86_64")]
pub(crate) mod simd;
pub mod softmax;

/// Rows per rayon task for row-parallel kernels: enough work per task to hide
/// the scheduling cost.
pub(crate) fn rows_per_task(cols: usize) -> usize {
    (16384 / cols.max(1)).max(1)
}

/// True when the AVX2+FMA paths may be used (checked once, cached by std).
#[inline]
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The CUDA backend (feature `cuda`): NVRTC-compiled kernels and cuBLAS.
#[cfg(feature = "cuda")]
pub mod cuda;
