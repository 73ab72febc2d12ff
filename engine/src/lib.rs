//! pixel-engine: f32 tensors, a tape for reverse-mode autodiff, ops with their
//! backward passes side by side, and the AdamW optimizer.

pub mod gradcheck;
pub mod ops;
pub mod optim;
pub mod profile;
pub mod rng;
pub mod tape;
pub mod tensor;
#[cfg(test)]
pub(crate) mod test_support;

/// The raw kernels the ops call, for code that works on gradient buffers directly.
pub use pixel_kernels as kernels;
pub use rng::Rng;
pub use tape::{Gradients, Tape, Var};
pub use tensor::{Device, Tensor};
