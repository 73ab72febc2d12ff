//! The state-dict keys a model expects (SPEC 4.1), parameter counts (SPEC 3.7),
//! and a Hugging Face style report of missing, unexpected and mis-shaped keys.

use std::collections::BTreeMap;
use std::fmt;

use super::{CheckpointError, StateDict};
use crate::config::PixelConfig;

type KeyShapes = Vec<(String, Vec<usize>)>;

/// One pre-LN transformer block's keys under `prefix` (e.g. `vit.encoder.layer.3`).
fn block_keys(out: &mut KeyShapes, prefix: &str, hidden: usize, ffn: usize, qkv_bias: bool) {
    let mut add = |name: &str, shape: Vec<usize>| out.push((format!("{prefix}.{name}"), shape));
    for proj in ["query", "key", "value"] {
        add(
            &format!("attention.attention.{proj}.weight"),
            vec![hidden, hidden],
        );
        if qkv_bias {
            add(&format!("attention.attention.{proj}.bias"), vec![hidden]);
        }
    }
    add("attention.output.dense.weight", vec![hidden, hidden]);
    add("attention.output.dense.bias", vec![hidden]);
    add("intermediate.dense.weight", vec![ffn, hidden]);
    add("intermediate.dense.bias", vec![ffn]);
    add("output.dense.weight", vec![hidden, ffn]);
    add("output.dense.bias", vec![hidden]);
    for norm in ["layernorm_before", "layernorm_after"] {
        add(&format!("{norm}.weight"), vec![hidden]);
        add(&format!("{norm}.bias"), vec![hidden]);
    }
}

/// Keys of the encoder (`vit.*`) with their shapes, in state-dict order.
pub fn expected_encoder_keys(config: &PixelConfig) -> Vec<(String, Vec<usize>)> {
    let d = config.hidden_size;
    let l = config.num_patches();
    let p = config.patch_size;
    let mut out = vec![
        ("vit.embeddings.cls_token".to_string(), vec![1, 1, d]),
        (
            "vit.embeddings.position_embeddings".to_string(),
            vec![1, l + 1, d],
        ),
        (
            "vit.embeddings.patch_embeddings.projection.weight".to_string(),
            vec![d, config.num_channels, p, p],
        ),
        (
            "vit.embeddings.patch_embeddings.projection.bias".to_string(),
            vec![d],
        ),
    ];
    for i in 0..config.num_hidden_layers {
        let prefix = format!("vit.encoder.layer.{i}");
        block_keys(
            &mut out,
            &prefix,
            d,
            config.intermediate_size,
            config.qkv_bias,
        );
    }
    out.push(("vit.layernorm.weight".to_string(), vec![d]));
    out.push(("vit.layernorm.bias".to_string(), vec![d]));
    out
}

/// Keys of `PIXELForPreTraining` (encoder and decoder) with their shapes (SPEC 4.1).
pub fn expected_pretraining_keys(config: &PixelConfig) -> Vec<(String, Vec<usize>)> {
    let mut out = expected_encoder_keys(config);
    let d = config.hidden_size;
    let dd = config.decoder_hidden_size;
    let l = config.num_patches();
    out.push(("decoder.mask_token".to_string(), vec![1, 1, dd]));
    out.push(("decoder.decoder_pos_embed".to_string(), vec![1, l + 1, dd]));
    out.push(("decoder.decoder_embed.weight".to_string(), vec![dd, d]));
    out.push(("decoder.decoder_embed.bias".to_string(), vec![dd]));
    for j in 0..config.decoder_num_hidden_layers {
        let prefix = format!("decoder.decoder_layers.{j}");
        block_keys(
            &mut out,
            &prefix,
            dd,
            config.decoder_intermediate_size,
            config.qkv_bias,
        );
    }
    out.push(("decoder.decoder_norm.weight".to_string(), vec![dd]));
    out.push(("decoder.decoder_norm.bias".to_string(), vec![dd]));
    out.push((
        "decoder.decoder_pred.weight".to_string(),
        vec![config.patch_dim(), dd],
    ));
    out.push((
        "decoder.decoder_pred.bias".to_string(),
        vec![config.patch_dim()],
    ));
    out
}

/// (name, shape) of every tensor in a state dict, sorted by name.
pub fn shapes_of(weights: &StateDict) -> Vec<(String, Vec<usize>)> {
    weights
        .iter()
        .map(|(k, t)| (k.clone(), t.shape().to_vec()))
        .collect()
}

/// A key whose tensor has the wrong shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeMismatch {
    pub key: String,
    pub expected: Vec<usize>,
    pub found: Vec<usize>,
}

/// How a checkpoint's keys compare with a model's (like Hugging Face's loading report).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyReport {
    /// Expected by the model, absent from the checkpoint (left at their initial values).
    pub missing: Vec<String>,
    /// In the checkpoint, not used by the model (e.g. a finetuned classifier).
    pub unexpected: Vec<String>,
    pub mismatched: Vec<ShapeMismatch>,
}

impl KeyReport {
    /// True when every expected key is present with its shape and nothing else is there.
    pub fn is_exact(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }

    /// Fails on the first shape mismatch (missing/unexpected keys are only reported).
    pub fn check_shapes(&self, file: &str) -> Result<(), CheckpointError> {
        match self.mismatched.first() {
            None => Ok(()),
            Some(m) => Err(CheckpointError::ShapeMismatch {
                file: file.to_string(),
                key: m.key.clone(),
                expected: m.expected.clone(),
                found: m.found.clone(),
            }),
        }
    }
}

impl fmt::Display for KeyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_exact() {
            return write!(f, "all keys matched");
        }
        if !self.missing.is_empty() {
            writeln!(
                f,
                "{} missing keys (newly initialised): {}",
                self.missing.len(),
                self.missing.join(", ")
            )?;
        }
        if !self.unexpected.is_empty() {
            writeln!(
                f,
                "{} unexpected keys (not used): {}",
                self.unexpected.len(),
                self.unexpected.join(", ")
            )?;
        }
        for m in &self.mismatched {
            writeln!(
                f,
                "shape mismatch: {} expected {:?}, found {:?}",
                m.key, m.expected, m.found
            )?;
        }
        Ok(())
    }
}

/// Compares a loaded state dict with the (name, shape) list a model expects.
pub fn compare_keys(loaded: &StateDict, expected: &[(String, Vec<usize>)]) -> KeyReport {
    let expected_map: BTreeMap<&str, &[usize]> = expected
        .iter()
        .map(|(k, s)| (k.as_str(), s.as_slice()))
        .collect();
    let mut report = KeyReport::default();
    for (key, shape) in expected {
        match loaded.get(key) {
            None => report.missing.push(key.clone()),
            Some(t) if t.shape() != shape.as_slice() => report.mismatched.push(ShapeMismatch {
                key: key.clone(),
                expected: shape.clone(),
                found: t.shape().to_vec(),
            }),
            Some(_) => {}
        }
    }
    report.unexpected = loaded
        .keys()
        .filter(|k| !expected_map.contains_key(k.as_str()))
        .cloned()
        .collect();
    report
}

/// Parameter counts by group (SPEC 3.7); position tables are frozen in pretraining.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParamCounts {
    /// `vit.embeddings.patch_embeddings.*`
    pub patch_embedding: usize,
    /// `vit.encoder.layer.*`
    pub encoder_blocks: usize,
    /// `vit.*`
    pub encoder_total: usize,
    /// `decoder.decoder_layers.*`
    pub decoder_blocks: usize,
    /// `decoder.*`
    pub decoder_total: usize,
    /// Everything else (finetuning heads, poolers).
    pub other: usize,
    pub total: usize,
    /// The fixed sin-cos position tables.
    pub frozen: usize,
    pub trainable: usize,
}

impl ParamCounts {
    pub fn from_shapes<'a>(entries: impl IntoIterator<Item = (&'a str, &'a [usize])>) -> Self {
        let mut c = ParamCounts::default();
        for (name, shape) in entries {
            let n: usize = shape.iter().product();
            c.total += n;
            if name.starts_with("vit.") {
                c.encoder_total += n;
                if name.starts_with("vit.embeddings.patch_embeddings.") {
                    c.patch_embedding += n;
                } else if name.starts_with("vit.encoder.layer.") {
                    c.encoder_blocks += n;
                }
            } else if name.starts_with("decoder.") {
                c.decoder_total += n;
                if name.starts_with("decoder.decoder_layers.") {
                    c.decoder_blocks += n;
                }
            } else {
                c.other += n;
            }
            if name == "vit.embeddings.position_embeddings" || name == "decoder.decoder_pos_embed" {
                c.frozen += n;
            }
        }
        c.trainable = c.total - c.frozen;
        c
    }

    pub fn of_state_dict(weights: &StateDict) -> ParamCounts {
        ParamCounts::from_shapes(weights.iter().map(|(k, t)| (k.as_str(), t.shape())))
    }

    pub fn of_keys(keys: &[(String, Vec<usize>)]) -> ParamCounts {
        ParamCounts::from_shapes(keys.iter().map(|(k, s)| (k.as_str(), s.as_slice())))
    }
}

/// Number of blocks `prefix.N.*` present (max N + 1).
fn count_layers(weights: &StateDict, prefix: &str) -> usize {
    weights
        .keys()
        .filter_map(|k| k.strip_prefix(prefix))
        .filter_map(|rest| rest.split('.').next()?.parse::<usize>().ok())
        .map(|i| i + 1)
        .max()
        .unwrap_or(0)
}

/// Guesses a config from weight shapes, for checkpoints without `config.json`.
/// Head counts cannot be seen in the weights: they assume head dim 64 (encoder) and
/// 32 (decoder), as in pixel-base.
pub fn infer_config(weights: &StateDict) -> Option<PixelConfig> {
    let shape = |k: &str| weights.get(k).map(|t| t.shape().to_vec());
    let proj = shape("vit.embeddings.patch_embeddings.projection.weight")?;
    let [hidden, channels, patch, _] = proj[..] else {
        return None;
    };
    let num_patches = shape("vit.embeddings.position_embeddings")
        .and_then(|s| s.get(1).copied())
        .map_or(529, |n| n.saturating_sub(1));
    let mut cfg = PixelConfig::base(num_patches);
    cfg.hidden_size = hidden;
    cfg.num_channels = channels;
    cfg.patch_size = patch;
    cfg = cfg.with_num_patches(num_patches);
    cfg.num_hidden_layers = count_layers(weights, "vit.encoder.layer.");
    cfg.num_attention_heads = (hidden / 64).max(1);
    cfg.qkv_bias = weights.contains_key("vit.encoder.layer.0.attention.attention.query.bias");
    if let Some(s) = shape("vit.encoder.layer.0.intermediate.dense.weight") {
        cfg.intermediate_size = s[0];
    }
    if let Some(s) = shape("decoder.decoder_embed.weight") {
        cfg.decoder_hidden_size = s[0];
        cfg.decoder_num_attention_heads = (s[0] / 32).max(1);
    }
    cfg.decoder_num_hidden_layers = count_layers(weights, "decoder.decoder_layers.");
    if let Some(s) = shape("decoder.decoder_layers.0.intermediate.dense.weight") {
        cfg.decoder_intermediate_size = s[0];
    }
    cfg.architectures = None;
    Some(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_base_counts_match_spec_3_7() {
        let cfg = PixelConfig::base(529);
        let keys = expected_pretraining_keys(&cfg);
        let c = ParamCounts::of_keys(&keys);
        assert_eq!(c.patch_embedding, 590_592);
        assert_eq!(c.encoder_blocks, 85_054_464);
        assert_eq!(c.encoder_total, 86_054_400);
        assert_eq!(c.encoder_total - 407_040, 85_647_360);
        assert_eq!(c.decoder_blocks, 25_219_072);
        assert_eq!(c.decoder_total, 26_279_680);
        assert_eq!(c.total, 112_334_080);
        assert_eq!(c.trainable, 111_655_680);
        assert_eq!(c.other, 0);
        // 4 embedding keys + 16 per block + 2 final LN; decoder 4 + 16 per block + 4.
        assert_eq!(keys.len(), 4 + 16 * 12 + 2 + 4 + 16 * 8 + 4);
    }
}
