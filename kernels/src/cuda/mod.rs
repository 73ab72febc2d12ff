//! The CUDA backend's raw compute (feature `cuda`): device buffers, NVRTC-compiled
//! kernels from `kernels/cuda/*.cu`, and cuBLAS matmuls.
//!
//! Everything is loaded at run time (cudarc's dynamic loading): building needs
//! no CUDA toolkit, and a machine without a driver gets the error
//! "no CUDA driver found" from [`device`], never a panic.
//!
//! - [`context`]: driver probe, one [`GpuDevice`] (context, stream, cuBLAS
//!   handle, loaded kernels) per ordinal, and [`DeviceBuffer`].
//! - [`nvrtc`]: the kernel sources and their compilation to PTX (cached per process).
//! - [`blas`]: strided-batched SGEMM in the row-major convention of [`crate::gemm`].
//! - [`launch`]: one typed wrapper per kernel.

pub mod blas;
pub mod context;
pub mod launch;
pub mod nvrtc;

use std::fmt;

pub use blas::{
    gemm_timing_start, gemm_timing_take, set_tf32, sgemm_strided_batched, tf32_enabled,
};
pub use context::{device, driver_present, DeviceBuffer, GpuDevice};

/// A CUDA setup failure: no driver, no NVRTC, a kernel that does not compile,
/// a device that cannot be opened. (Failures after setup are bugs or a broken
/// device and panic with the kernel's name.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CudaError(pub String);

impl fmt::Display for CudaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CudaError {}
