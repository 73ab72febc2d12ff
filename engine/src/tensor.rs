//! `Tensor`: f32, contiguous, row-major, with a shape and a device-tagged
//! buffer ([`Buffer`]: host memory or a GPU's).

use std::fmt;

use pixel_kernels::buffer::Buffer;
pub use pixel_kernels::buffer::Device;

/// A contiguous row-major f32 tensor.
#[derive(Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    buffer: Buffer,
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
            buffer: Buffer::Cpu(data),
        }
    }

    /// A tensor over a buffer holding at least `numel(shape)` values.
    #[track_caller]
    pub fn from_buffer(shape: &[usize], buffer: Buffer) -> Tensor {
        assert!(
            buffer.len() >= numel(shape),
            "Tensor::from_buffer: shape {shape:?} needs {} values, buffer holds {}",
            numel(shape),
            buffer.len()
        );
        Tensor {
            shape: shape.to_vec(),
            buffer,
        }
    }

    /// The buffer behind the tensor (what kernels take).
    pub fn buffer(&self) -> &Buffer {
        &self.buffer
    }

    pub fn buffer_mut(&mut self) -> &mut Buffer {
        &mut self.buffer
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
        self.buffer.device()
    }

    /// The host data. Panics on a device tensor: copy it with `to_host()` first.
    #[track_caller]
    pub fn data(&self) -> &[f32] {
        match &self.buffer {
            Buffer::Cpu(v) => v,
            #[cfg(feature = "cuda")]
            Buffer::Cuda(_) => self.not_on_host("Tensor::data"),
        }
    }

    #[track_caller]
    pub fn data_mut(&mut self) -> &mut [f32] {
        #[cfg(feature = "cuda")]
        if self.device() != Device::Cpu {
            self.not_on_host("Tensor::data_mut")
        }
        self.buffer.host_mut("Tensor::data_mut")
    }

    #[track_caller]
    pub fn into_vec(self) -> Vec<f32> {
        match self.buffer {
            Buffer::Cpu(v) => v,
            #[cfg(feature = "cuda")]
            Buffer::Cuda(_) => self.not_on_host("Tensor::into_vec"),
        }
    }

    /// The single value of a one-element tensor (a device tensor is read back:
    /// one synchronisation).
    pub fn item(&self) -> f32 {
        assert_eq!(self.numel(), 1, "item: tensor has shape {:?}", self.shape);
        self.buffer.to_vec(1)[0]
    }

    /// Zeros on a device (one already opened: where an op's inputs live).
    #[track_caller]
    pub fn zeros_on(shape: &[usize], device: Device) -> Tensor {
        Tensor::from_buffer(shape, Buffer::zeros(device, numel(shape)))
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

    /// Explicit copy to a device (the only way data moves between host and
    /// GPU). Errors when the device cannot be opened (no driver, no such GPU,
    /// a build without the `cuda` feature).
    pub fn to_device(&self, device: Device) -> Result<Tensor, String> {
        if device == self.device() {
            return Ok(self.clone());
        }
        let host = self.buffer.to_vec(self.numel());
        let buffer =
            Buffer::from_host(device, &host).map_err(|e| format!("to_device({device}): {e}"))?;
        Ok(Tensor::from_buffer(&self.shape, buffer))
    }

    /// A host copy (a clone for a host tensor; waits for queued device work).
    pub fn to_host(&self) -> Tensor {
        match &self.buffer {
            Buffer::Cpu(_) => self.clone(),
            #[cfg(feature = "cuda")]
            Buffer::Cuda(b) => Tensor::new(&self.shape, b.to_host(self.numel())),
        }
    }

    /// `self *= alpha` in place, on the tensor's device.
    pub fn scale_in_place(&mut self, alpha: f32) {
        let n = self.numel();
        pixel_kernels::elementwise::scale_buffer(&mut self.buffer, n, alpha);
    }

    /// `self += alpha * src` in place (same shape, same device).
    #[track_caller]
    pub fn axpy_in_place(&mut self, alpha: f32, src: &Tensor) {
        assert_eq!(self.shape, src.shape, "axpy_in_place: shapes differ");
        pixel_kernels::same_device("axpy_in_place", &[&self.buffer, &src.buffer]);
        let n = self.numel();
        pixel_kernels::elementwise::axpy_buffer(&mut self.buffer, alpha, &src.buffer, n);
    }

    /// Sum of squares in f64 (a device tensor is reduced on the device and the
    /// result read back).
    pub fn sum_squares(&self) -> f64 {
        pixel_kernels::elementwise::sum_squares_each(&[(&self.buffer, self.numel())])[0]
    }

    /// Largest absolute value (0 for an empty tensor).
    /// (A device tensor is copied to the host first.)
    pub fn max_abs(&self) -> f32 {
        self.on_host(|v| v.iter().fold(0.0f32, |m, v| m.max(v.abs())))
    }

    /// True when every value is finite (a device tensor is copied to the host first).
    pub fn all_finite(&self) -> bool {
        self.on_host(|v| v.iter().all(|v| v.is_finite()))
    }

    /// `f` of the values: in place on the host, a copy for a device tensor.
    fn on_host<R>(&self, f: impl FnOnce(&[f32]) -> R) -> R {
        match &self.buffer {
            Buffer::Cpu(v) => f(&v[..self.numel()]),
            #[cfg(feature = "cuda")]
            Buffer::Cuda(b) => f(&b.to_host(self.numel())),
        }
    }
}

#[cfg(feature = "cuda")]
impl Tensor {
    #[track_caller]
    fn not_on_host(&self, accessor: &str) -> ! {
        panic!(
            "{accessor}: the tensor of shape {:?} is on {}; copy it with to_host() first",
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

/// The device all `tensors` live on; panics naming `op` when they differ
/// (inputs are never moved implicitly).
#[track_caller]
pub fn same_device(op: &str, tensors: &[&Tensor]) -> Device {
    let buffers: Vec<&Buffer> = tensors.iter().map(|t| t.buffer()).collect();
    pixel_kernels::same_device(op, &buffers)
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
