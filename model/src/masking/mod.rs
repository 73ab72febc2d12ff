//! Masking (SPEC 2): which patches the encoder sees, and which keys every
//! attention layer may attend to.
//!
//! * [`span`]: [`SpanMaskingGenerator`], the data-side span masking of
//!   pretraining, per example.
//! * [`patches`]: [`PatchMasking`], the model-side decision for a batch
//!   (controlled, random or explicit masking; keep-all for finetuning).
//! * [`attention`]: the additive key masks of the encoder and decoder layers,
//!   built from the 0/1 attention mask of the strips.

pub mod attention;
pub mod patches;
pub mod span;

pub use attention::{additive_key_mask, decoder_key_mask, encoder_key_mask};
pub use patches::{MaskingError, PatchMasking};
pub use span::{Spacing, SpanMaskingGenerator};

/// Patches kept by the encoder: int(L (1 - ratio)), in f64 like the reference.
pub fn num_kept_patches(num_patches: usize, mask_ratio: f64) -> usize {
    (num_patches as f64 * (1.0 - mask_ratio)) as usize
}
