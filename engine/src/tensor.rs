//! `Tensor`: f32, contiguous, row-major, with a shape and a device.

use std::fmt;

/// Where a tensor's storage lives. `Cuda(ordinal)` needs the `cuda` feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(usize),
}

/// The buffer behind a tensor.
#[derive(Clone)]
pub enum Storage {
    Cpu(Vec<f32>),
    /// Device memory (cloning copies on the device).
    #[cfg(feature = "cuda")]
    Cuda(pixel_kernels::cuda::DeviceBuffer),
}

/// A contiguous row-major f32 tensor.
#[derive(Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Storage,
}

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// A tensor from a host vector; panics if the length does not match the shape.
    pub fn new(shape: &[usize], data: Vec<f32>) -> Tensor {
        assert_eq!(
            numel(shape),
            data.len(),
            "Tensor::new: shape {shape:?} needs {} values, got {}",
            numel(shape),
            data.len()
        );
        Tensor {
            shape: shape.to_vec(),
            storage: Storage::Cpu(data),
        }
    }

    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 0.0)
    }

    pub fn full(shape: &[usize], value: f32) -> Tensor {
        Tensor::new(shape, vec![value; numel(shape)])
    }

    /// A 0-d tensor holding one value.
    pub fn scalar(value: f32) -> Tensor {
        Tensor::new(&[], vec![value])
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Size of dimension `axis` (negative counts from the end).
    pub fn dim(&self, axis: isize) -> usize {
        self.shape[normalize_axis(axis, self.shape.len())]
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    pub fn device(&self) -> Device {
        match &self.storage {
            Storage::Cpu(_) => Device::Cpu,
            #[cfg(feature = "cuda")]
            Storage::Cuda(b) => Device::Cuda(b.ordinal()),
        }
    }

    /// The host data. Panics on a device tensor: copy it with `to_host()` first.
    #[track_caller]
    pub fn data(&self) -> &[f32] {
        match &self.storage {
            Storage::Cpu(v) => v,
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => self.not_on_host("Tensor::data"),
        }
    }

    #[track_caller]
    pub fn data_mut(&mut self) -> &mut [f32] {
        #[cfg(feature = "cuda")]
        if self.device() != Device::Cpu {
            self.not_on_host("Tensor::data_mut")
        }
        match &mut self.storage {
            Storage::Cpu(v) => v,
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => unreachable!(),
        }
    }

    #[track_caller]
    pub fn into_vec(self) -> Vec<f32> {
        match self.storage {
            Storage::Cpu(v) => v,
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => self.not_on_host("Tensor::into_vec"),
        }
    }

    /// The single value of a one-element tensor (a device tensor is read back:
    /// one synchronisation).
    pub fn item(&self) -> f32 {
        assert_eq!(self.numel(), 1, "item: tensor has shape {:?}", self.shape);
        match &self.storage {
            Storage::Cpu(v) => v[0],
            #[cfg(feature = "cuda")]
            Storage::Cuda(b) => b.to_host(1)[0],
        }
    }

    /// Zeros on a device.
    pub fn zeros_on(shape: &[usize], device: Device) -> Tensor {
        match device {
            Device::Cpu => Tensor::zeros(shape),
            #[cfg(feature = "cuda")]
            Device::Cuda(i) => {
                let dev = pixel_kernels::cuda::device(i)
                    .unwrap_or_else(|e| panic!("Tensor::zeros_on(cuda:{i}): {e}"));
                Tensor::from_device(
                    shape,
                    pixel_kernels::cuda::DeviceBuffer::zeros(&dev, numel(shape)),
                )
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(i) => panic!("Tensor::zeros_on: cuda:{i} needs the `cuda` feature"),
        }
    }

    /// Same data, new shape (no copy). Panics if the element count differs.
    pub fn reshape(mut self, shape: &[usize]) -> Tensor {
        assert_eq!(
            numel(shape),
            self.numel(),
            "reshape: cannot view shape {:?} as {shape:?}",
            self.shape
        );
        self.shape = shape.to_vec();
        self
    }

    /// Explicit copy to a device (the only way data moves between host and GPU).
    #[cfg(not(feature = "cuda"))]
    pub fn to_device(&self, device: Device) -> Result<Tensor, String> {
        match device {
            Device::Cpu => Ok(self.clone()),
            Device::Cuda(i) => Err(format!(
                "to_device: CUDA device {i} requested, but this build has no CUDA support (build with --features cuda)"
            )),
        }
    }

    /// Explicit copy to a device (the only way data moves between host and GPU).
    /// Errors when the device cannot be opened (no driver, no such GPU).
    #[cfg(feature = "cuda")]
    pub fn to_device(&self, device: Device) -> Result<Tensor, String> {
        use pixel_kernels::cuda::{self, DeviceBuffer};
        match (&self.storage, device) {
            (Storage::Cpu(_), Device::Cpu) => Ok(self.clone()),
            (Storage::Cuda(_), Device::Cpu) => Ok(self.to_host()),
            (Storage::Cuda(b), Device::Cuda(i)) if b.ordinal() == i => Ok(self.clone()),
            (Storage::Cpu(v), Device::Cuda(i)) => {
                let dev = cuda::device(i).map_err(|e| format!("to_device(cuda:{i}): {e}"))?;
                Ok(Tensor::from_device(
                    &self.shape,
                    DeviceBuffer::from_host(&dev, v),
                ))
            }
            (Storage::Cuda(_), Device::Cuda(i)) => {
                // Between GPUs through the host (explicit, and rare).
                self.to_host().to_device(Device::Cuda(i))
            }
        }
    }

    /// A host copy (a clone for a host tensor; waits for queued device work).
    pub fn to_host(&self) -> Tensor {
        match &self.storage {
            Storage::Cpu(_) => self.clone(),
            #[cfg(feature = "cuda")]
            Storage::Cuda(b) => Tensor::new(&self.shape, b.to_host(self.numel())),
        }
    }

    /// `self *= alpha` in place, on the tensor's device.
    pub fn scale_in_place(&mut self, alpha: f32) {
        #[cfg(feature = "cuda")]
        if let Storage::Cuda(b) = &mut self.storage {
            let n = numel(&self.shape);
            return pixel_kernels::cuda::launch::scale(b, n, alpha);
        }
        pixel_kernels::elementwise::scale(self.data_mut(), alpha);
    }

    /// `self += alpha * src` in place (same shape, same device).
    #[track_caller]
    pub fn axpy_in_place(&mut self, alpha: f32, src: &Tensor) {
        assert_eq!(self.shape, src.shape, "axpy_in_place: shapes differ");
        #[cfg(feature = "cuda")]
        if let Storage::Cuda(b) = &mut self.storage {
            let n = numel(&self.shape);
            return pixel_kernels::cuda::launch::axpy(
                b,
                alpha,
                src.cuda_buffer("axpy_in_place"),
                n,
            );
        }
        if alpha == 1.0 {
            pixel_kernels::elementwise::add_assign(self.data_mut(), src.data());
        } else {
            pixel_kernels::elementwise::axpy(self.data_mut(), alpha, src.data());
        }
    }

    /// Sum of squares in f64 (a device tensor is reduced on the device and the
    /// result read back).
    pub fn sum_squares(&self) -> f64 {
        #[cfg(feature = "cuda")]
        if let Storage::Cuda(b) = &self.storage {
            return pixel_kernels::cuda::launch::sum_squares(&[(b, self.numel())])[0];
        }
        pixel_kernels::elementwise::sum_squares(self.data())
    }

    /// Largest absolute value (0 for an empty tensor).
    pub fn max_abs(&self) -> f32 {
        self.data().iter().fold(0.0f32, |m, v| m.max(v.abs()))
    }

    /// True when every value is finite.
    pub fn all_finite(&self) -> bool {
        self.data().iter().all(|v| v.is_finite())
    }
}

#[cfg(feature = "cuda")]
impl Tensor {
    /// A tensor over a device buffer of at least `numel(shape)` values.
    pub fn from_device(shape: &[usize], buf: pixel_kernels::cuda::DeviceBuffer) -> Tensor {
        assert!(
            buf.capacity() >= numel(shape),
            "Tensor::from_device: shape {shape:?} needs {} values, buffer holds {}",
            numel(shape),
            buf.capacity()
        );
        Tensor {
            shape: shape.to_vec(),
            storage: Storage::Cuda(buf),
        }
    }

    /// The device buffer; panics naming `op` on a host tensor (a CUDA op was
    /// handed a host tensor: move it with `to_device` first).
    #[track_caller]
    pub fn cuda_buffer(&self, op: &str) -> &pixel_kernels::cuda::DeviceBuffer {
        match &self.storage {
            Storage::Cuda(b) => b,
            Storage::Cpu(_) => panic!(
                "{op}: a tensor of shape {:?} is on the CPU while the op runs on CUDA; move it with to_device first",
                self.shape
            ),
        }
    }

    #[track_caller]
    pub fn cuda_buffer_mut(&mut self, op: &str) -> &mut pixel_kernels::cuda::DeviceBuffer {
        let shape = self.shape.clone();
        match &mut self.storage {
            Storage::Cuda(b) => b,
            Storage::Cpu(_) => panic!(
                "{op}: a tensor of shape {shape:?} is on the CPU while the op runs on CUDA; move it with to_device first"
            ),
        }
    }

    #[track_caller]
    fn not_on_host(&self, accessor: &str) -> ! {
        panic!(
            "{accessor}: the tensor of shape {:?} is on {:?}; copy it with to_host() first",
            self.shape,
            self.device()
        )
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.device() != Device::Cpu {
            return write!(f, "Tensor{:?} on {:?}", self.shape, self.device());
        }
        let d = self.data();
        let head: Vec<f32> = d.iter().take(6).copied().collect();
        write!(
            f,
            "Tensor{:?}{:?}{}",
            self.shape,
            head,
            if d.len() > 6 { "..." } else { "" }
        )
    }
}

/// Wait until all work queued on `device` has finished (timing; a no-op on the CPU).
pub fn synchronize(device: Device) {
    match device {
        Device::Cpu => {}
        #[cfg(feature = "cuda")]
        Device::Cuda(i) => pixel_kernels::cuda::device(i)
            .unwrap_or_else(|e| panic!("synchronize(cuda:{i}): {e}"))
            .synchronize(),
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(i) => panic!("synchronize: cuda:{i} needs the `cuda` feature"),
    }
}

/// Resolve a possibly negative axis against a rank.
pub fn normalize_axis(axis: isize, rank: usize) -> usize {
    let a = if axis < 0 { axis + rank as isize } else { axis };
    assert!(
        a >= 0 && (a as usize) < rank.max(1),
        "axis {axis} out of range for rank {rank}"
    );
    a as usize
}
