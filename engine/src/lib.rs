//! pixel-engine: f32 tensors, a tape for reverse-mode autodiff, ops with their
//! backward passes side by side, and the AdamW optimizer.

pub mod rng;
pub mod tensor;

pub use rng::Rng;
pub use tensor::{Device, Tensor};
