//! A checkpoint's encoder on every patch (SPEC 3.8, feature extraction): loading any PIXEL
//! checkpoint as the pretraining model (the decoder when present) and running the unmasked
//! encoder. Used by `pixel encode`, `pixel reconstruct` and the Python package.

use std::path::Path;

use anyhow::{bail, Context};
use pixel_engine::{Rng, Tape, Tensor, Var};
use pixel_model::checkpoint::{infer_config, load_checkpoint};
use pixel_model::encoder::{encode, Patches};
use pixel_model::pretraining::pretraining_param_shapes;
use pixel_model::{ForwardMode, ParamStore, PixelConfig, PixelForPreTraining};

/// A checkpoint as [`PixelForPreTraining`].
pub struct PretrainedModel {
    pub model: PixelForPreTraining,
    /// Every decoder weight was in the checkpoint (a pretraining checkpoint, not an encoder
    /// or a finetuned model): the model can reconstruct.
    pub has_decoder: bool,
}

/// Loads a checkpoint directory or weights file; the config comes from config.json or, without
/// one, from the weight shapes. Every encoder weight must be there; the decoder may be missing.
pub fn load_pretrained(path: &Path) -> anyhow::Result<PretrainedModel> {
    load_pretrained_allowing(path, false)
}

/// [`load_pretrained`]; `allow_non_finite` loads weights with NaN or infinity
/// (refused otherwise, naming the tensor) for inspection.
pub fn load_pretrained_allowing(
    path: &Path,
    allow_non_finite: bool,
) -> anyhow::Result<PretrainedModel> {
    let ckpt = load_checkpoint(path)
        .with_context(|| format!("cannot load checkpoint {}", path.display()))?;
    if !allow_non_finite {
        ckpt.check_finite()
            .context("refusing non-finite weights (--allow-non-finite runs anyway)")?;
    }
    let config = match ckpt.config {
        Some(c) => c,
        None => infer_config(&ckpt.weights).with_context(|| {
            format!(
                "{}: no config.json and the weights do not name a PIXEL model",
                path.display()
            )
        })?,
    };
    config
        .validate()
        .with_context(|| format!("{}: config", path.display()))?;
    let mut model = PixelForPreTraining::new(config.clone(), &mut Rng::new(0));
    let report = model
        .params
        .load_state_dict(&ckpt.weights)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("loading {}", path.display()))?;
    let missing = |prefix: &str| -> Vec<String> {
        pretraining_param_shapes(&config)
            .into_iter()
            .filter(|(name, _, trainable)| *trainable && name.starts_with(prefix))
            .map(|(name, _, _)| name)
            .filter(|name| report.missing.contains(name))
            .collect()
    };
    let encoder_missing = missing("vit.");
    if let Some(first) = encoder_missing.first() {
        bail!(
            "{}: the checkpoint lacks {} encoder weights, e.g. {first}",
            path.display(),
            encoder_missing.len()
        );
    }
    let has_decoder = missing("decoder.").is_empty();
    Ok(PretrainedModel { model, has_decoder })
}

/// Checks model inputs against `cfg`: `pixel_values` (B, C, P, P * L) with the model's L
/// and an attention mask of B * L zeros and ones. Returns B.
pub fn check_model_input(
    cfg: &PixelConfig,
    pixel_shape: &[usize],
    attention_mask: &[f32],
) -> anyhow::Result<usize> {
    let (c, p, l) = (cfg.num_channels, cfg.patch_size, cfg.num_patches());
    if pixel_shape.len() != 4 || pixel_shape[1..] != [c, p, p * l] || pixel_shape[0] == 0 {
        bail!(
            "pixel_values must be (B, {c}, {p}, {}) for this model (L = {l}), got {pixel_shape:?}",
            p * l
        );
    }
    let b = pixel_shape[0];
    if attention_mask.len() != b * l {
        bail!(
            "attention_mask has {} values, pixel_values {pixel_shape:?} need B * L = {}",
            attention_mask.len(),
            b * l
        );
    }
    if let Some(v) = attention_mask.iter().find(|&&v| v != 0.0 && v != 1.0) {
        bail!("attention_mask must be 0 or 1, found {v}");
    }
    Ok(b)
}

/// The encoder on every patch, no masking, no dropout: (B, 1 + L, hidden), CLS first.
/// `pixel_values` (B, C, P, P * L) and `attention_mask` (B * L) as [`check_model_input`]
/// accepts them.
pub fn last_hidden_state(
    params: &ParamStore,
    cfg: &PixelConfig,
    pixel_values: Tensor,
    attention_mask: &[f32],
) -> Tensor {
    let mut tape = Tape::no_grad();
    let vars = params.vars(&mut tape);
    let mut rng = Rng::new(0); // unused: no dropout
    let mode = ForwardMode {
        training: false,
        rng: &mut rng,
    };
    let all = Patches::All {
        embedding_dropout: 0.0,
    };
    let x = Var::constant(pixel_values);
    let hidden = encode(&mut tape, &vars, cfg, &x, attention_mask, all, mode); // (B, 1 + L, D)
    hidden.value().to_host()
}
