//! Tape ops: each written once for every device. An op checks shapes,
//! allocates its output on its inputs' device, calls the kernels of
//! `pixel_kernels` (which dispatch on the buffers' device), and records one
//! tape node with its backward beside it.

pub mod activation;
pub mod arith;
pub mod attention;
pub mod fused;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod reduce;
pub mod shape;

pub use activation::{dropout, gelu, relu, tanh};
pub use arith::{add, mean_all, mean_axis, mul, scale, sub, sum_all, sum_axis};
pub use attention::{attention, attention_linear, softmax, AttentionConfig};
pub use fused::{gelu_linear, layer_norm_linear, layer_norm_mlp};
pub use loss::{cross_entropy, masked_mse, IGNORE_INDEX};
pub use matmul::{linear, matmul};
pub use norm::{layer_norm, normalize_rows_unbiased};
pub use reduce::max_axis;
pub use shape::{
    concat, expand_first, gather_rows, narrow, permute, reshape, scatter_rows, transpose,
};

use crate::tape::Var;
use crate::tensor::{same_device, Device, Tensor};

/// The device every input of `op` lives on (panics naming the op when they differ).
#[track_caller]
pub(crate) fn device_of(op: &str, inputs: &[&Var]) -> Device {
    let values: Vec<&Tensor> = inputs.iter().map(|v| v.value()).collect();
    same_device(op, &values)
}

/// A host constant of an op (an attention mask, loss weights) on `device`.
pub(crate) fn constant_on(op: &str, t: &Tensor, device: Device) -> Tensor {
    t.to_device(device)
        .unwrap_or_else(|e| panic!("{op}: cannot move a constant to {device}: {e}"))
}
