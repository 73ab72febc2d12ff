//! The CUDA path of every op (feature `cuda`). Each CPU op in `ops/*.rs`
//! checks its inputs' device first and, for device tensors, calls its twin
//! here: same shapes, same tape node, same backward rule, computed with the
//! kernels of `pixel_kernels::cuda`. Host inputs that are not tensors (index
//! lists, row weights, labels) are uploaded by the op.

pub mod arith;
pub mod attention;
pub mod linalg;
pub mod nn;
pub mod shape;

use std::sync::Arc;

use pixel_kernels::cuda::{DeviceBuffer, GpuDevice};

use crate::tape::Var;
use crate::tensor::{numel, Device, Tensor};

/// True when any input lives on a GPU (the op then runs on CUDA).
pub fn any_on_device(xs: &[&Var]) -> bool {
    xs.iter().any(|v| v.value().device() != Device::Cpu)
}

/// The GPU all of an op's inputs live on; panics naming the op and the
/// devices when they differ (inputs are never moved implicitly).
#[track_caller]
pub fn device_of(op: &str, xs: &[&Tensor]) -> Arc<GpuDevice> {
    let first = xs[0].device();
    for x in xs {
        assert!(
            x.device() == first,
            "{op}: inputs on different devices ({first:?} and {:?}); move them with to_device first",
            x.device()
        );
    }
    xs[0].cuda_buffer(op).device().clone()
}

/// The values of the vars, for [`device_of`].
pub fn values<'a>(xs: &[&'a Var]) -> Vec<&'a Tensor> {
    xs.iter().map(|v| v.value()).collect()
}

/// A zeroed device tensor.
pub fn zeros(dev: &Arc<GpuDevice>, shape: &[usize]) -> Tensor {
    Tensor::from_device(shape, DeviceBuffer::zeros(dev, numel(shape)))
}

/// The device buffer of a tensor in op `op`.
#[track_caller]
pub fn buf<'a>(op: &str, t: &'a Tensor) -> &'a DeviceBuffer {
    t.cuda_buffer(op)
}

/// A host constant (an attention mask) on `dev`: uploaded if it is on the
/// host, checked to be on `dev` otherwise.
pub fn constant_on(op: &str, t: &Tensor, dev: &Arc<GpuDevice>) -> Tensor {
    match t.device() {
        Device::Cpu => Tensor::from_device(t.shape(), DeviceBuffer::from_host(dev, t.data())),
        Device::Cuda(i) => {
            assert!(
                i == dev.ordinal,
                "{op}: constant on cuda:{i}, inputs on cuda:{}",
                dev.ordinal
            );
            t.clone()
        }
    }
}
