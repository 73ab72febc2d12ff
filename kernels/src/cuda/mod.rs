//! The CUDA backend's shared machinery (feature `cuda`): device handles and
//! buffers, NVRTC compilation of every kernel module's `.cu` source, and the
//! launch helpers. The kernels themselves live with their op
//! (`src/layer_norm/{cuda.rs, layer_norm.cu}`, ...).
//!
//! Everything is loaded at run time (cudarc's dynamic loading): building needs
//! no CUDA toolkit, and a machine without a driver gets the error
//! "no CUDA driver found" from [`device`], never a panic.
//!
//! - [`context`]: driver probe, one [`GpuDevice`] (context, stream, cuBLAS
//!   handle, loaded kernels) per ordinal, and [`DeviceBuffer`].
//! - [`nvrtc`]: the kernel sources and their compilation to PTX (cached per process).
//! - [`launch`]: the `launch!` macro, launch configurations, buffer checks.

pub mod context;
pub(crate) mod launch;
pub mod nvrtc;

use std::fmt;

pub use crate::gemm::cuda::{gemm_timing_start, gemm_timing_take, set_tf32, tf32_enabled};
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
