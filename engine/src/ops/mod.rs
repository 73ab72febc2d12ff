//! Tape ops: each a forward and its backward side by side.

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
pub use attention::{attention, softmax, AttentionConfig};
pub use fused::gelu_linear;
pub use loss::{cross_entropy, masked_mse, IGNORE_INDEX};
pub use matmul::{linear, matmul};
pub use norm::{layer_norm, normalize_rows_unbiased};
pub use reduce::max_axis;
pub use shape::{
    concat, expand_first, gather_rows, narrow, permute, reshape, scatter_rows, transpose,
};

/// The CUDA path of the ops above (feature `cuda`).
#[cfg(feature = "cuda")]
pub mod cuda;
