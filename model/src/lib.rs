//! pixel-model: PIXEL (Rust et al. 2022) on pixel-engine, laid out as the paper
//! describes it; `README.md` beside this crate maps files to sections.
//!
//! * [`embeddings`]: patch embedding, CLS token, sin-cos position tables.
//! * [`masking`]: span masking, the encoder's patch selection, attention masks.
//! * [`layer`]: the pre-LN transformer layer both stacks are made of.
//! * [`encoder`]: embeddings -> layers -> final LayerNorm (pretraining and heads).
//! * [`decoder`]: the MAE decoder that reconstructs masked patches.
//! * [`loss`]: the normalised-pixel reconstruction loss.
//! * [`pretraining`]: [`PixelForPreTraining`], encoder + decoder + loss.
//! * [`heads`]: finetuning heads on the unmasked encoder.
//! * [`checkpoint`]: state-dict file formats (safetensors, `.npy`, PyTorch zip).

pub mod checkpoint;
pub mod config;
pub mod data_parallel;
pub mod decoder;
pub mod embeddings;
pub mod encoder;
pub mod files;
pub mod flops;
pub mod grad_buckets;
pub mod heads;
pub mod layer;
pub mod loss;
pub mod masking;
pub mod params;
pub mod pretraining;
pub mod train;

use pixel_engine::Rng;

pub use config::PixelConfig;
pub use masking::PatchMasking;
pub use params::ParamStore;
pub use pretraining::{PixelForPreTraining, PretrainOutput};

/// How a forward pass runs: dropout on or off and the RNG that drives it.
pub struct ForwardMode<'r> {
    pub training: bool,
    pub rng: &'r mut Rng,
}

impl ForwardMode<'_> {
    /// The same mode for one part of the pass (the encoder, then the decoder or
    /// a head), so that the parts draw from one RNG in order.
    pub fn reborrow(&mut self) -> ForwardMode<'_> {
        ForwardMode {
            training: self.training,
            rng: &mut *self.rng,
        }
    }
}
