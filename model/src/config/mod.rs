//! `PixelConfig`: the Hugging Face `config.json` of a PIXEL model (SPEC 3.1).
//!
//! Field names and defaults are those of `PIXELConfig` / the pixel-base checkpoint.
//! Unknown fields are kept in `extra` so a config read and written back loses nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

mod presets;

/// LayerNorm eps of `decoder.decoder_norm`: PyTorch's default, not `layer_norm_eps` (SPEC 3.4).
pub const DECODER_NORM_EPS: f64 = 1e-5;

/// The most parameters a config may describe (4 TB of f32 weights): far beyond
/// any machine, and small enough that no size arithmetic overflows.
pub const MAX_PARAMETERS: f64 = 1e12;

/// Errors reading or validating a config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // Underlying errors are part of the message (not a `source`) so that error
    // chains do not print them twice.
    #[error("{file}: {error}")]
    Io { file: String, error: std::io::Error },
    /// Not JSON, a wrong type (`field` names it), or a missing required field
    /// (serde's message names it).
    #[error("{file}: invalid config{}: {error}", field.as_ref().map(|f| format!(" field `{f}`")).unwrap_or_default())]
    Parse {
        file: String,
        field: Option<String>,
        error: serde_json::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// Model hyper-parameters, serialised with the Hugging Face field names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PixelConfig {
    /// "pixel" or "vit_mae" (early pixel-base commits); both are the same architecture.
    #[serde(default = "default_model_type")]
    pub model_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,

    // Required: without these the model's shapes are unknown.
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    /// [height, width] in pixels; a single integer in the JSON means a square image.
    #[serde(deserialize_with = "image_size_from_json")]
    pub image_size: [usize; 2],
    pub patch_size: usize,

    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    #[serde(default = "default_initializer_range")]
    pub initializer_range: f64,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_num_channels")]
    pub num_channels: usize,
    #[serde(default = "default_true")]
    pub qkv_bias: bool,

    #[serde(default = "default_decoder_hidden_size")]
    pub decoder_hidden_size: usize,
    #[serde(default = "default_decoder_num_hidden_layers")]
    pub decoder_num_hidden_layers: usize,
    #[serde(default = "default_decoder_num_attention_heads")]
    pub decoder_num_attention_heads: usize,
    #[serde(default = "default_decoder_intermediate_size")]
    pub decoder_intermediate_size: usize,
    #[serde(default = "default_mask_ratio")]
    pub mask_ratio: f64,
    #[serde(default = "default_true")]
    pub norm_pix_loss: bool,

    // Finetuning extras (SPEC 3.1 / 4.2); absent in pretraining configs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_labels: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id2label: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label2id: Option<BTreeMap<String, i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpolate_pos_encoding: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_dtype: Option<String>,

    /// Every other field of the JSON, preserved for writing back.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn default_model_type() -> String {
    "pixel".into()
}
fn default_hidden_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_initializer_range() -> f64 {
    0.02
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_num_channels() -> usize {
    3
}
fn default_true() -> bool {
    true
}
fn default_decoder_hidden_size() -> usize {
    512
}
fn default_decoder_num_hidden_layers() -> usize {
    8
}
fn default_decoder_num_attention_heads() -> usize {
    16
}
fn default_decoder_intermediate_size() -> usize {
    2048
}
fn default_mask_ratio() -> f64 {
    0.25
}

/// `image_size` is `[h, w]` in PIXEL configs but a plain integer in square ViT configs.
fn image_size_from_json<'de, D: Deserializer<'de>>(d: D) -> Result<[usize; 2], D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ImageSize {
        Square(usize),
        Pair([usize; 2]),
    }
    match ImageSize::deserialize(d) {
        Ok(ImageSize::Square(n)) => Ok([n, n]),
        Ok(ImageSize::Pair(p)) => Ok(p),
        Err(_) => Err(serde::de::Error::custom(
            "image_size must be an integer or a [height, width] pair",
        )),
    }
}

impl PixelConfig {
    /// Same model on a one-patch-high strip of `num_patches` patches.
    pub fn with_num_patches(mut self, num_patches: usize) -> PixelConfig {
        self.image_size = [self.patch_size, self.patch_size * num_patches];
        self
    }

    /// L: number of patches (row-major over the patch grid).
    pub fn num_patches(&self) -> usize {
        (self.image_size[0] / self.patch_size) * (self.image_size[1] / self.patch_size)
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    pub fn decoder_head_dim(&self) -> usize {
        self.decoder_hidden_size / self.decoder_num_attention_heads
    }

    /// Values in one patch: patch_size^2 * num_channels (768 for pixel-base).
    pub fn patch_dim(&self) -> usize {
        self.patch_size * self.patch_size * self.num_channels
    }

    /// Patches removed by masking: L - int(L (1 - mask_ratio)) (SPEC 2).
    pub fn num_masked_patches(&self) -> usize {
        self.num_patches() - crate::masking::num_kept_patches(self.num_patches(), self.mask_ratio)
    }

    /// Parameters of PIXELForPreTraining with this config (the frozen position
    /// tables included), computed in floating point so absurd sizes give a
    /// large number rather than an overflow.
    pub fn pretraining_parameters(&self) -> f64 {
        self.encoder_parameters() + self.decoder_parameters()
    }

    /// Parameters of the encoder (`vit.*`), position table included.
    pub fn encoder_parameters(&self) -> f64 {
        let (d, f) = (self.hidden_size as f64, self.intermediate_size as f64);
        self.patch_dim_f64() * d + d // patch projection
            + d // cls token
            + (self.num_patches_f64() + 1.0) * d // position table
            + self.num_hidden_layers as f64 * block_parameters(d, f)
            + 2.0 * d // final LayerNorm
    }

    /// Parameters of the pretraining decoder (`decoder.*`).
    pub fn decoder_parameters(&self) -> f64 {
        let d = self.hidden_size as f64;
        let (dd, fd) = (
            self.decoder_hidden_size as f64,
            self.decoder_intermediate_size as f64,
        );
        let patch_dim = self.patch_dim_f64();
        d * dd + dd // decoder_embed
            + dd // mask token
            + (self.num_patches_f64() + 1.0) * dd // position table
            + self.decoder_num_hidden_layers as f64 * block_parameters(dd, fd)
            + 2.0 * dd // decoder_norm
            + dd * patch_dim + patch_dim // decoder_pred
    }

    /// [`PixelConfig::num_patches`] without overflow (for size checks).
    fn num_patches_f64(&self) -> f64 {
        let [height, width] = self.image_size;
        let p = self.patch_size.max(1);
        (height / p) as f64 * (width / p) as f64
    }

    fn patch_dim_f64(&self) -> f64 {
        self.patch_size as f64 * self.patch_size as f64 * self.num_channels as f64
    }

    /// Checks everything the model relies on; the error says which field is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |msg: String| Err(ConfigError::Invalid(msg));
        if self.model_type != "pixel" && self.model_type != "vit_mae" {
            return bad(format!(
                "model_type is {:?}; expected \"pixel\" or \"vit_mae\"",
                self.model_type
            ));
        }
        for (name, value) in [
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("patch_size", self.patch_size),
            ("num_channels", self.num_channels),
            ("decoder_hidden_size", self.decoder_hidden_size),
            (
                "decoder_num_attention_heads",
                self.decoder_num_attention_heads,
            ),
            ("decoder_intermediate_size", self.decoder_intermediate_size),
        ] {
            if value == 0 {
                return bad(format!("{name} must be positive"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self
            .decoder_hidden_size
            .is_multiple_of(self.decoder_num_attention_heads)
        {
            return bad(format!(
                "decoder_hidden_size {} is not divisible by decoder_num_attention_heads {}",
                self.decoder_hidden_size, self.decoder_num_attention_heads
            ));
        }
        // The 2-D sin-cos table splits the width into four equal quarters (SPEC 3.2).
        for (name, value) in [
            ("hidden_size", self.hidden_size),
            ("decoder_hidden_size", self.decoder_hidden_size),
        ] {
            if !value.is_multiple_of(4) {
                return bad(format!(
                    "{name} {value} must be divisible by 4 for the 2-D sin-cos position table"
                ));
            }
        }
        let [height, width] = self.image_size;
        if height == 0 || width == 0 {
            return bad(format!("image_size {:?} must be positive", self.image_size));
        }
        if !height.is_multiple_of(self.patch_size) || !width.is_multiple_of(self.patch_size) {
            return bad(format!(
                "image_size {:?} is not divisible by patch_size {}",
                self.image_size, self.patch_size
            ));
        }
        // Far beyond any machine, and a guard against size arithmetic overflowing.
        let parameters = self.pretraining_parameters();
        if parameters > MAX_PARAMETERS {
            return bad(format!(
                "the sizes (hidden_size {}, intermediate_size {}, {} layers, decoder_hidden_size {}, \
                 decoder_intermediate_size {}, {} decoder layers, {} patches) make {parameters:.3e} \
                 parameters, more than the {MAX_PARAMETERS:.0e} this program handles",
                self.hidden_size,
                self.intermediate_size,
                self.num_hidden_layers,
                self.decoder_hidden_size,
                self.decoder_intermediate_size,
                self.decoder_num_hidden_layers,
                self.num_patches()
            ));
        }
        if self.hidden_act != "gelu" {
            return bad(format!(
                "hidden_act is {:?}; only \"gelu\" (exact erf GELU) is supported",
                self.hidden_act
            ));
        }
        for (name, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return bad(format!("{name} {p} must be in [0, 1)"));
            }
        }
        if !(0.0..1.0).contains(&self.mask_ratio) {
            return bad(format!("mask_ratio {} must be in [0, 1)", self.mask_ratio));
        }
        if !(self.initializer_range.is_finite() && self.initializer_range >= 0.0) {
            return bad(format!(
                "initializer_range {} must be a finite number >= 0",
                self.initializer_range
            ));
        }
        if self.num_labels == Some(0) {
            return bad("num_labels must be positive, got 0".into());
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return bad(format!(
                "layer_norm_eps {} must be positive",
                self.layer_norm_eps
            ));
        }
        Ok(())
    }

    /// Parses and validates a config from JSON text; `file` names it in errors.
    pub fn from_json_str(text: &str, file: &str) -> Result<PixelConfig, ConfigError> {
        let cfg: PixelConfig = serde_json::from_str(text).map_err(|error| ConfigError::Parse {
            file: file.to_string(),
            field: field_with_bad_value(text),
            error,
        })?;
        cfg.validate().map_err(|e| match e {
            ConfigError::Invalid(msg) => ConfigError::Invalid(format!("{file}: {msg}")),
            other => other,
        })?;
        Ok(cfg)
    }

    /// Reads `config.json` (or any path to one).
    pub fn from_file(path: impl AsRef<Path>) -> Result<PixelConfig, ConfigError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let io = |error| ConfigError::Io {
            file: file.clone(),
            error,
        };
        crate::files::regular_file_check(path).map_err(io)?;
        let text = std::fs::read_to_string(path).map_err(io)?;
        PixelConfig::from_json_str(&text, &file)
    }

    pub fn to_json_string(&self) -> String {
        serde_json::to_string_pretty(self).expect("PixelConfig always serialises")
    }

    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ConfigError> {
        let path = path.as_ref();
        std::fs::write(path, self.to_json_string() + "\n").map_err(|error| ConfigError::Io {
            file: path.display().to_string(),
            error,
        })
    }
}

/// Parameters of one transformer block of width `d`, FFN width `f`: q, k, v
/// and output projections (weights and biases), two LayerNorms, the FFN.
fn block_parameters(d: f64, f: f64) -> f64 {
    4.0 * (d * d + d) + 4.0 * d + 2.0 * d * f + f + d
}

/// Finds the field whose value fails to parse, by putting each field of `text` in turn
/// into a valid config (serde_json's own errors give only a line and column).
fn field_with_bad_value(text: &str) -> Option<String> {
    let serde_json::Value::Object(fields) = serde_json::from_str(text).ok()? else {
        return None;
    };
    let valid = serde_json::to_value(PixelConfig::base(1)).ok()?;
    fields.into_iter().find_map(|(key, value)| {
        let mut probe = valid.clone();
        probe[key.as_str()] = value;
        serde_json::from_value::<PixelConfig>(probe)
            .is_err()
            .then_some(key)
    })
}

impl fmt::Display for PixelConfig {
    /// A compact human summary (used by `pixel inspect`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "model_type {}  architectures {:?}",
            self.model_type,
            self.architectures.as_deref().unwrap_or(&[])
        )?;
        writeln!(
            f,
            "encoder: hidden {}, layers {}, heads {} (head dim {}), ffn {}",
            self.hidden_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.head_dim(),
            self.intermediate_size
        )?;
        writeln!(
            f,
            "decoder: hidden {}, layers {}, heads {}, ffn {}",
            self.decoder_hidden_size,
            self.decoder_num_hidden_layers,
            self.decoder_num_attention_heads,
            self.decoder_intermediate_size
        )?;
        writeln!(
            f,
            "image {}x{}, patch {}, channels {} -> {} patches",
            self.image_size[0],
            self.image_size[1],
            self.patch_size,
            self.num_channels,
            self.num_patches()
        )?;
        write!(
            f,
            "act {}, dropout {}/{}, layer_norm_eps {:e}, init range {}, mask_ratio {}, norm_pix_loss {}, qkv_bias {}",
            self.hidden_act,
            self.hidden_dropout_prob,
            self.attention_probs_dropout_prob,
            self.layer_norm_eps,
            self.initializer_range,
            self.mask_ratio,
            self.norm_pix_loss,
            self.qkv_bias
        )
    }
}
