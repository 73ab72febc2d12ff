//! The model presets: pixel-base (SPEC 3.1), pixel-small (Team-PIXEL's 22M-parameter model of
//! Lotz et al. 2023) and two models sized for CPU runs.

use super::{default_hidden_act, default_model_type, PixelConfig};

impl PixelConfig {
    /// Names of the presets, smallest first (`--config NAME`).
    pub const PRESET_NAMES: [&'static str; 4] = ["tiny", "mini", "small", "base"];

    /// The preset called `name` at L = `num_patches`, if there is one.
    pub fn preset(name: &str, num_patches: usize) -> Option<PixelConfig> {
        match name {
            "tiny" => Some(PixelConfig::tiny(num_patches)),
            "mini" => Some(PixelConfig::mini(num_patches)),
            "small" => Some(PixelConfig::small(num_patches)),
            "base" => Some(PixelConfig::base(num_patches)),
            _ => None,
        }
    }

    /// pixel-base (SPEC 3.1) with a strip of `num_patches` patches (529 for pretraining).
    pub fn base(num_patches: usize) -> PixelConfig {
        PixelConfig {
            model_type: default_model_type(),
            architectures: Some(vec!["PIXELForPreTraining".into()]),
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            image_size: [16, 16 * num_patches],
            patch_size: 16,
            hidden_act: default_hidden_act(),
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            num_channels: 3,
            qkv_bias: true,
            decoder_hidden_size: 512,
            decoder_num_hidden_layers: 8,
            decoder_num_attention_heads: 16,
            decoder_intermediate_size: 2048,
            mask_ratio: 0.25,
            norm_pix_loss: true,
            pad_token_id: None,
            num_labels: None,
            id2label: None,
            label2id: None,
            interpolate_pos_encoding: None,
            torch_dtype: None,
            extra: serde_json::Map::new(),
        }
    }

    /// pixel-small (Team-PIXEL's pixel-small / pixel-small-bigrams, Lotz et al. 2023): hidden
    /// 384, 12 layers, 6 heads, MLP 1536; decoder 264 wide, 4 layers, 6 heads, MLP 1056.
    pub fn small(num_patches: usize) -> PixelConfig {
        PixelConfig {
            hidden_size: 384,
            num_hidden_layers: 12,
            num_attention_heads: 6,
            intermediate_size: 1536,
            decoder_hidden_size: 264,
            decoder_num_hidden_layers: 4,
            decoder_num_attention_heads: 6,
            decoder_intermediate_size: 1056,
            ..PixelConfig::base(num_patches)
        }
    }

    /// A CPU model the shape of BERT-Mini (hidden 256, 4 layers, 4 heads, MLP 1024; decoder
    /// 128, 2 layers, 4 heads, MLP 512).
    pub fn mini(num_patches: usize) -> PixelConfig {
        PixelConfig {
            hidden_size: 256,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            intermediate_size: 1024,
            decoder_hidden_size: 128,
            decoder_num_hidden_layers: 2,
            decoder_num_attention_heads: 4,
            decoder_intermediate_size: 512,
            ..PixelConfig::base(num_patches)
        }
    }

    /// The pixel-tiny fixture's model (hidden 64, 2 layers; decoder 32, 2 layers; no dropout).
    pub fn tiny(num_patches: usize) -> PixelConfig {
        PixelConfig {
            hidden_size: 64,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 128,
            decoder_hidden_size: 32,
            decoder_num_hidden_layers: 2,
            decoder_num_attention_heads: 4,
            decoder_intermediate_size: 64,
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            ..PixelConfig::base(num_patches)
        }
    }
}
