//! pixel-model: PIXEL (config, position tables, span masking, encoder, decoder,
//! loss, checkpoints) on pixel-engine.

pub mod blocks;
pub mod checkpoint;
pub mod config;
pub mod finetune;
pub mod flops;
pub mod masking;
pub mod params;
pub mod pos_embed;
pub mod pretraining;
pub mod train;

pub use config::PixelConfig;
pub use masking::PatchMasking;
pub use params::ParamStore;
pub use pretraining::{ForwardMode, PixelForPreTraining, PretrainOutput};
