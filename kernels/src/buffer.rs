//! Device-tagged f32 buffers: what every kernel entry point takes.
//!
//! A kernel module (`layer_norm`, `softmax`, ...) exposes one function per
//! kernel that takes [`Buffer`]s and dispatches once, with a `match` on the
//! output's storage, to its CPU code (the same module) or its CUDA launcher
//! (`cuda.rs` beside it). The engine writes each op once against these
//! functions and never looks at the device itself.

use std::fmt;

/// Where a buffer lives. `Cuda(ordinal)` exists in every build; a buffer can
/// only be there with the `cuda` feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu,
    Cuda(usize),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// An f32 buffer on the host or on a GPU.
#[derive(Clone)]
pub enum Buffer {
    Cpu(Vec<f32>),
    /// Device memory (cloning copies on the device).
    #[cfg(feature = "cuda")]
    Cuda(crate::cuda::DeviceBuffer),
}

impl fmt::Debug for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Buffer({} floats on {})", self.len(), self.device())
    }
}

impl Buffer {
    /// `len` zeros on `device`. The device must already be open (every op
    /// allocates on the device its inputs live on); opening errors surface in
    /// [`Buffer::from_host`].
    #[track_caller]
    pub fn zeros(device: Device, len: usize) -> Buffer {
        match device {
            Device::Cpu => Buffer::Cpu(vec![0.0; len]),
            #[cfg(feature = "cuda")]
            Device::Cuda(i) => {
                let dev = crate::cuda::device(i).unwrap_or_else(|e| panic!("cuda:{i}: {e}"));
                Buffer::Cuda(crate::cuda::DeviceBuffer::zeros(&dev, len))
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(i) => panic!("cuda:{i}: this build has no CUDA support"),
        }
    }

    /// A copy of host data on `device`. Errors when the device cannot be
    /// opened (no driver, no such GPU, a build without the `cuda` feature).
    pub fn from_host(device: Device, data: &[f32]) -> Result<Buffer, String> {
        match device {
            Device::Cpu => Ok(Buffer::Cpu(data.to_vec())),
            #[cfg(feature = "cuda")]
            Device::Cuda(i) => {
                let dev = crate::cuda::device(i).map_err(|e| format!("cuda:{i}: {e}"))?;
                Ok(Buffer::Cuda(crate::cuda::DeviceBuffer::from_host(
                    &dev, data,
                )))
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(i) => Err(format!(
                "CUDA device {i} requested, but this build has no CUDA support (build with --features cuda)"
            )),
        }
    }

    pub fn device(&self) -> Device {
        match self {
            Buffer::Cpu(_) => Device::Cpu,
            #[cfg(feature = "cuda")]
            Buffer::Cuda(b) => Device::Cuda(b.ordinal()),
        }
    }

    /// Values held (a device buffer may hold one more than its tensor needs:
    /// empty tensors get a one-value allocation).
    pub fn len(&self) -> usize {
        match self {
            Buffer::Cpu(v) => v.len(),
            #[cfg(feature = "cuda")]
            Buffer::Cuda(b) => b.capacity(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first `len` values, copied to the host (waits for queued device work).
    pub fn to_vec(&self, len: usize) -> Vec<f32> {
        match self {
            Buffer::Cpu(v) => v[..len].to_vec(),
            #[cfg(feature = "cuda")]
            Buffer::Cuda(b) => b.to_host(len),
        }
    }

    /// The host values; panics naming `kernel` when the buffer is on a GPU
    /// (an input on another device than the kernel's output).
    #[track_caller]
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
    pub fn host(&self, kernel: &str) -> &[f32] {
        match self {
            Buffer::Cpu(v) => v,
            #[cfg(feature = "cuda")]
            Buffer::Cuda(b) => wrong_device(kernel, Device::Cuda(b.ordinal()), "CPU"),
        }
    }

    #[track_caller]
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
    pub fn host_mut(&mut self, kernel: &str) -> &mut [f32] {
        match self {
            Buffer::Cpu(v) => v,
            #[cfg(feature = "cuda")]
            Buffer::Cuda(b) => wrong_device(kernel, Device::Cuda(b.ordinal()), "CPU"),
        }
    }

    /// The device buffer; panics naming `kernel` when the buffer is on the host.
    #[cfg(feature = "cuda")]
    #[track_caller]
    pub fn cuda(&self, kernel: &str) -> &crate::cuda::DeviceBuffer {
        match self {
            Buffer::Cuda(b) => b,
            Buffer::Cpu(_) => wrong_device(kernel, Device::Cpu, "CUDA"),
        }
    }

    #[cfg(feature = "cuda")]
    #[track_caller]
    pub fn cuda_mut(&mut self, kernel: &str) -> &mut crate::cuda::DeviceBuffer {
        match self {
            Buffer::Cuda(b) => b,
            Buffer::Cpu(_) => wrong_device(kernel, Device::Cpu, "CUDA"),
        }
    }
}

/// The device every buffer is on; panics naming `op` when they differ
/// (nothing moves between devices implicitly).
#[track_caller]
pub fn same_device(op: &str, buffers: &[&Buffer]) -> Device {
    let first = buffers.first().map_or(Device::Cpu, |b| b.device());
    for b in buffers {
        assert!(
            b.device() == first,
            "{op}: inputs on different devices ({first} and {}); move them with to_device first",
            b.device()
        );
    }
    first
}

#[cfg(feature = "cuda")]
#[track_caller]
fn wrong_device(kernel: &str, found: Device, wanted: &str) -> ! {
    panic!("{kernel}: a buffer on {found} was passed to the {wanted} kernel; move it with to_device first")
}
