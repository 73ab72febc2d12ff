//! Raw compute for pixel, no autodiff: one module per kernel family, each
//! holding everything that computes it on every device.
//!
//! - `mod.rs`: the device-dispatched entry points on [`Buffer`]s (one `match`
//!   on the output's storage), the CPU code: a scalar reference (`*_scalar`)
//!   and the AVX2+FMA path chosen at run time (`is_x86_feature_detected!`).
//! - `cuda.rs` (feature `cuda`): the launch wrappers; `<module>.cu`: the CUDA
//!   kernels, compiled at run time by NVRTC.
//!
//! The engine owns shapes, the tape and the checks that name the op; a kernel
//! trusts the sizes it is given, except for buffer lengths.

pub mod buffer;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod peak;
#[cfg(target_arch = "x86_64")]
pub(crate) mod simd;

pub mod adamw;
pub mod attention;
pub mod dropout;
pub mod elementwise;
pub mod gelu;
pub mod gemm;
pub mod layer_norm;
pub mod layout;
pub mod loss;
pub mod reduce;
pub mod softmax;

pub use buffer::{same_device, Buffer, Device};
pub use cpu::Isa;

/// Rows per rayon task for row-parallel kernels: enough work per task to hide
/// the scheduling cost.
pub(crate) fn rows_per_task(cols: usize) -> usize {
    (16384 / cols.max(1)).max(1)
}

/// True when the kernels run AVX2+FMA code or wider: the process's ISA
/// ([`cpu::isa`]) is AVX2 or AVX-512.
#[inline]
pub fn has_avx2_fma() -> bool {
    cpu::isa() >= cpu::Isa::Avx2
}
