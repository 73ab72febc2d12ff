//! `Tensor`: f32, contiguous, row-major, with a shape and a device.

use std::fmt;

/// Where a tensor's storage lives. Only `Cpu` is implemented; `Cuda` is kept in
/// the type so device code can be added without changing every signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(usize),
}

/// The buffer behind a tensor.
#[derive(Clone)]
pub enum Storage {
    Cpu(Vec<f32>),
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
        match self.storage {
            Storage::Cpu(_) => Device::Cpu,
        }
    }

    /// The host data. (Device tensors must be copied with `to_device(Cpu)` first.)
    pub fn data(&self) -> &[f32] {
        match &self.storage {
            Storage::Cpu(v) => v,
        }
    }

    pub fn data_mut(&mut self) -> &mut [f32] {
        match &mut self.storage {
            Storage::Cpu(v) => v,
        }
    }

    pub fn into_vec(self) -> Vec<f32> {
        match self.storage {
            Storage::Cpu(v) => v,
        }
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> f32 {
        assert_eq!(self.numel(), 1, "item: tensor has shape {:?}", self.shape);
        self.data()[0]
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

    /// Explicit copy to a device. Only the CPU exists in this build.
    pub fn to_device(&self, device: Device) -> Result<Tensor, String> {
        match device {
            Device::Cpu => Ok(self.clone()),
            Device::Cuda(i) => Err(format!(
                "to_device: CUDA device {i} requested, but this build has no CUDA support"
            )),
        }
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

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

/// Resolve a possibly negative axis against a rank.
pub fn normalize_axis(axis: isize, rank: usize) -> usize {
    let a = if axis < 0 { axis + rank as isize } else { axis };
    assert!(
        a >= 0 && (a as usize) < rank.max(1),
        "axis {axis} out of range for rank {rank}"
    );
    a as usize
}
