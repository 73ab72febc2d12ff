//! pixel: PIXEL (Pixel-based Encoder of Language) on a small explicit compute engine.
//!
//! This library re-exports the workspace crates so examples, tests and benches
//! can use one path.

pub use pixel_engine as engine;
pub use pixel_kernels as kernels;
pub use pixel_model as model;
pub use pixel_render as render;

pub mod figures;
pub mod pretrain;
