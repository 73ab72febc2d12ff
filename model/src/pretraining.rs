//! `PIXELForPreTraining` (SPEC 3): the encoder on the kept patches, the MAE
//! decoder on all of them, and the normalised-pixel loss, on the engine's tape.

use pixel_engine::{Rng, Tape, Tensor, Var};

use crate::config::PixelConfig;
use crate::embeddings::{decoder_pos_embed, encoder_pos_embed, POSITION_TABLE};
use crate::encoder::{encode, Patches};
use crate::loss::reconstruction_loss;
use crate::masking::PatchMasking;
use crate::params::{ParamStore, ParamVars};
use crate::{decoder, embeddings, encoder, ForwardMode};

/// PIXEL with its decoder: what pretraining trains.
#[derive(Clone)]
pub struct PixelForPreTraining {
    pub config: PixelConfig,
    pub params: ParamStore,
}

/// Everything one pretraining forward pass produces.
pub struct PretrainOutput {
    /// Scalar loss (mean over masked-and-attended patches of the batch).
    pub loss: Var,
    /// Decoder prediction (B, L, P*P*C) in (row, column, channel) order.
    pub logits: Var,
    /// Encoder output after the final LayerNorm (B, 1 + kept, hidden): CLS,
    /// then kept patches in ascending patch order.
    pub last_hidden_state: Var,
    /// (B * L) 1 where the loss counts a patch (removed AND attended).
    pub loss_mask: Vec<f32>,
}

/// Names and shapes of every parameter, trainable flag included (SPEC 4.1),
/// in store order: embeddings, encoder layers and LayerNorm, decoder.
pub fn pretraining_param_shapes(cfg: &PixelConfig) -> Vec<(String, Vec<usize>, bool)> {
    let mut v = embeddings::param_shapes(cfg);
    v.extend(encoder::param_shapes(cfg));
    v.extend(decoder::param_shapes(cfg));
    v
}

/// The initial value of one parameter as the real pretraining run had it (SPEC 3.6).
pub(crate) fn init_param(cfg: &PixelConfig, name: &str, shape: &[usize], rng: &mut Rng) -> Tensor {
    let mut t = Tensor::zeros(shape);
    let std = cfg.initializer_range as f32;
    if name == POSITION_TABLE {
        return encoder_pos_embed(cfg);
    } else if name == "decoder.decoder_pos_embed" {
        return decoder_pos_embed(cfg);
    } else if name == "vit.embeddings.patch_embeddings.projection.weight" {
        // Xavier-uniform on the weight viewed as [hidden, C*P*P].
        let fan_in = shape[1..].iter().product::<usize>();
        let bound = (6.0 / (shape[0] + fan_in) as f64).sqrt() as f32;
        rng.fill_uniform(t.data_mut(), -bound, bound);
    } else if name == "vit.embeddings.patch_embeddings.projection.bias" {
        // PyTorch's default Conv2d bias init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        let fan_in = cfg.num_channels * cfg.patch_size * cfg.patch_size;
        let bound = 1.0 / (fan_in as f32).sqrt();
        rng.fill_uniform(t.data_mut(), -bound, bound);
    } else if name.ends_with("cls_token") || name.ends_with("mask_token") {
        rng.fill_normal(t.data_mut(), 0.0, std);
    } else if name.contains("layernorm") || name.contains("decoder_norm") {
        if name.ends_with(".weight") {
            t.data_mut().iter_mut().for_each(|v| *v = 1.0);
        }
    } else if name.ends_with(".weight") {
        rng.fill_normal(t.data_mut(), 0.0, std);
    }
    t
}

impl PixelForPreTraining {
    /// A freshly initialised model (SPEC 3.6), drawn from `rng`.
    pub fn new(config: PixelConfig, rng: &mut Rng) -> PixelForPreTraining {
        let mut params = ParamStore::new();
        for (name, shape, trainable) in pretraining_param_shapes(&config) {
            let value = init_param(&config, &name, &shape, rng);
            params.insert(&name, value, trainable);
        }
        PixelForPreTraining { config, params }
    }

    /// Pretraining forward pass and loss.
    /// `pixel_values` (B, C, P, P*L) in [0, 1]; `attention_mask` (B*L) 0/1;
    /// `masking` decides which patches the encoder sees.
    pub fn forward(
        &self,
        t: &mut Tape,
        params: &ParamVars<'_>,
        pixel_values: &Var,
        attention_mask: &[f32],
        masking: &PatchMasking,
        mut mode: ForwardMode<'_>,
    ) -> PretrainOutput {
        let cfg = &self.config;
        let kept = Patches::Kept(masking);
        let last_hidden_state = encode(
            t,
            params,
            cfg,
            pixel_values,
            attention_mask,
            kept,
            mode.reborrow(),
        ); // (B, 1 + K, D)
        let logits = decoder::decode(
            t,
            params,
            cfg,
            &last_hidden_state,
            masking,
            attention_mask,
            mode,
        ); // (B, L, P*P*C)
        let (loss, loss_mask) =
            reconstruction_loss(t, cfg, &logits, pixel_values, masking, attention_mask);
        PretrainOutput {
            loss,
            logits,
            last_hidden_state,
            loss_mask,
        }
    }

    /// Inference (no tape, no dropout) on one masked batch: (loss, logits (B, L, P*P*C)).
    pub fn infer(
        &self,
        pixel_values: &Tensor,
        attention_mask: &[f32],
        masking: &PatchMasking,
    ) -> (f32, Tensor) {
        let mut tape = Tape::no_grad();
        let params = self.params.vars(&mut tape);
        let mut rng = Rng::new(0); // unused: no dropout in inference
        let mode = ForwardMode {
            training: false,
            rng: &mut rng,
        };
        let pixels = Var::constant(pixel_values.clone());
        let out = self.forward(&mut tape, &params, &pixels, attention_mask, masking, mode);
        (out.loss.value().item(), out.logits.value().clone())
    }

    /// The encoder on every patch, no masking, no decoder (SPEC 3.8): feature
    /// extraction. Returns (B, 1+L, hidden).
    pub fn encode_unmasked(
        &self,
        t: &mut Tape,
        params: &ParamVars<'_>,
        pixel_values: &Var,
        attention_mask: &[f32],
        mode: ForwardMode<'_>,
    ) -> Var {
        let all = Patches::All {
            embedding_dropout: 0.0,
        };
        encode(
            t,
            params,
            &self.config,
            pixel_values,
            attention_mask,
            all,
            mode,
        )
    }
}
