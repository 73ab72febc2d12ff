//! `PIXELForPreTraining`: patch embedding, masked ViT encoder, MAE decoder and
//! the normalised-pixel loss (SPEC 3), on the engine's tape.

use pixel_engine::ops;
use pixel_engine::{Device, Rng, Tape, Tensor, Var};

use crate::blocks::{additive_key_mask, block_param_shapes, transformer_block, BlockSettings};
use crate::config::{PixelConfig, DECODER_NORM_EPS};
use crate::masking::PatchMasking;
use crate::params::{ParamStore, ParamVars};
use crate::pos_embed::{decoder_pos_embed, encoder_pos_embed};

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

/// How a forward pass runs: dropout on or off and the RNG that drives it.
pub struct ForwardMode<'r> {
    pub training: bool,
    pub rng: &'r mut Rng,
}

/// Names and shapes of every parameter, trainable flag included (SPEC 4.1).
pub fn pretraining_param_shapes(cfg: &PixelConfig) -> Vec<(String, Vec<usize>, bool)> {
    let (d, dd, l) = (cfg.hidden_size, cfg.decoder_hidden_size, cfg.num_patches());
    let (p, c) = (cfg.patch_size, cfg.num_channels);
    let mut v: Vec<(String, Vec<usize>, bool)> = vec![
        ("vit.embeddings.cls_token".into(), vec![1, 1, d], true),
        (
            "vit.embeddings.position_embeddings".into(),
            vec![1, l + 1, d],
            false,
        ),
        (
            "vit.embeddings.patch_embeddings.projection.weight".into(),
            vec![d, c, p, p],
            true,
        ),
        (
            "vit.embeddings.patch_embeddings.projection.bias".into(),
            vec![d],
            true,
        ),
    ];
    for i in 0..cfg.num_hidden_layers {
        let prefix = format!("vit.encoder.layer.{i}");
        v.extend(
            block_param_shapes(&prefix, d, cfg.intermediate_size, cfg.qkv_bias)
                .into_iter()
                .map(|(n, s)| (n, s, true)),
        );
    }
    v.push(("vit.layernorm.weight".into(), vec![d], true));
    v.push(("vit.layernorm.bias".into(), vec![d], true));
    v.push(("decoder.decoder_embed.weight".into(), vec![dd, d], true));
    v.push(("decoder.decoder_embed.bias".into(), vec![dd], true));
    v.push(("decoder.mask_token".into(), vec![1, 1, dd], true));
    v.push((
        "decoder.decoder_pos_embed".into(),
        vec![1, l + 1, dd],
        false,
    ));
    for j in 0..cfg.decoder_num_hidden_layers {
        let prefix = format!("decoder.decoder_layers.{j}");
        v.extend(
            block_param_shapes(&prefix, dd, cfg.decoder_intermediate_size, cfg.qkv_bias)
                .into_iter()
                .map(|(n, s)| (n, s, true)),
        );
    }
    v.push(("decoder.decoder_norm.weight".into(), vec![dd], true));
    v.push(("decoder.decoder_norm.bias".into(), vec![dd], true));
    v.push((
        "decoder.decoder_pred.weight".into(),
        vec![p * p * c, dd],
        true,
    ));
    v.push(("decoder.decoder_pred.bias".into(), vec![p * p * c], true));
    v
}

/// The initial value of one parameter as the real pretraining run had it (SPEC 3.6).
pub(crate) fn init_param(cfg: &PixelConfig, name: &str, shape: &[usize], rng: &mut Rng) -> Tensor {
    let mut t = Tensor::zeros(shape);
    let std = cfg.initializer_range as f32;
    if name == "vit.embeddings.position_embeddings" {
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
        pv: &ParamVars<'_>,
        pixel_values: &Var,
        attention_mask: &[f32],
        masking: &PatchMasking,
        mode: ForwardMode<'_>,
    ) -> PretrainOutput {
        let cfg = &self.config;
        let (b, l) = check_inputs(cfg, pixel_values, attention_mask);
        assert!(
            masking.batch == b && masking.num_patches == l,
            "forward: masking is for (B, L) = ({}, {}), input is ({b}, {l})",
            masking.batch,
            masking.num_patches
        );
        let ForwardMode { training, rng } = mode;
        let (d, dd) = (cfg.hidden_size, cfg.decoder_hidden_size);
        let k = masking.len_keep;

        // Embeddings: patch projection + position table, keep unmasked patches, prepend CLS.
        t.set_scope("vit.embeddings");
        let x = patch_embed(t, pv, cfg, pixel_values); // (B, L, D)
        let pos = pv.get("vit.embeddings.position_embeddings"); // (1, L+1, D)
        let pos_patches = ops::narrow(t, pos, 1, 1, l);
        let x = ops::add(t, &x, &pos_patches);
        let x = ops::gather_rows(t, &x, &masking.keep, k); // (B, K, D)
        let cls = cls_with_position(t, pv, "vit.embeddings.cls_token", pos, b); // (B, 1, D)
        let mut x = ops::concat(t, &[&cls, &x], 1); // (B, 1+K, D)

        // Encoder over [CLS, kept patches] with their attention mask.
        let kept_mask = masking.gather_kept(attention_mask);
        let enc_mask = additive_key_mask(&with_cls(&kept_mask, b, k), b, k + 1);
        let enc_mask = on_device_of(enc_mask, pixel_values);
        let enc = encoder_settings(cfg, training);
        for i in 0..cfg.num_hidden_layers {
            x = transformer_block(
                t,
                pv,
                &format!("vit.encoder.layer.{i}"),
                &x,
                Some(&enc_mask),
                enc,
                rng,
            );
        }
        t.set_scope("vit.layernorm");
        let last_hidden_state = ops::layer_norm(
            t,
            &x,
            pv.get("vit.layernorm.weight"),
            pv.get("vit.layernorm.bias"),
            cfg.layer_norm_eps as f32,
        );

        // Decoder: embed, put mask tokens back in patch order, prepend CLS.
        t.set_scope("decoder.embed");
        let y = ops::linear(
            t,
            &last_hidden_state,
            pv.get("decoder.decoder_embed.weight"),
            Some(pv.get("decoder.decoder_embed.bias")),
        ); // (B, 1+K, Dd)
        let y_cls = ops::narrow(t, &y, 1, 0, 1);
        let y_kept = ops::narrow(t, &y, 1, 1, k);
        let mask_token = ops::expand_first(t, pv.get("decoder.mask_token"), b); // (B, 1, Dd)
        let pool = ops::concat(t, &[&y_kept, &mask_token], 1); // (B, K+1, Dd)
                                                               // Patch i takes its encoder row if kept, else the one mask token (row K).
        let restore: Vec<usize> = masking
            .ids_restore()
            .into_iter()
            .map(|r| r.min(k))
            .collect();
        let y_patches = ops::gather_rows(t, &pool, &restore, l); // (B, L, Dd)
        let y = ops::concat(t, &[&y_cls, &y_patches], 1); // (B, 1+L, Dd)
        let y = ops::add(t, &y, pv.get("decoder.decoder_pos_embed"));
        let dec_mask = additive_key_mask(&with_cls(attention_mask, b, l), b, l + 1);
        let dec_mask = on_device_of(dec_mask, pixel_values);
        let dec = BlockSettings {
            num_heads: cfg.decoder_num_attention_heads,
            ..enc
        };
        let mut y = y;
        for j in 0..cfg.decoder_num_hidden_layers {
            y = transformer_block(
                t,
                pv,
                &format!("decoder.decoder_layers.{j}"),
                &y,
                Some(&dec_mask),
                dec,
                rng,
            );
        }
        t.set_scope("decoder.norm+pred");
        let y = ops::layer_norm(
            t,
            &y,
            pv.get("decoder.decoder_norm.weight"),
            pv.get("decoder.decoder_norm.bias"),
            DECODER_NORM_EPS as f32,
        );
        let y = ops::linear(
            t,
            &y,
            pv.get("decoder.decoder_pred.weight"),
            Some(pv.get("decoder.decoder_pred.bias")),
        );
        let logits = ops::narrow(t, &y, 1, 1, l); // (B, L, P*P*C)
        let _ = (d, dd);

        // Loss over patches that are removed AND attended.
        t.set_scope("loss");
        let target = patch_target(t, cfg, pixel_values);
        let loss_mask: Vec<f32> = masking
            .mask
            .iter()
            .zip(attention_mask)
            .map(|(m, a)| m * a)
            .collect();
        let loss = ops::masked_mse(t, &logits, &target, &loss_mask);
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
        let pv = self.params.vars(&mut tape);
        let mut rng = Rng::new(0); // unused: no dropout in inference
        let mode = ForwardMode {
            training: false,
            rng: &mut rng,
        };
        let pixels = Var::constant(pixel_values.clone());
        let out = self.forward(&mut tape, &pv, &pixels, attention_mask, masking, mode);
        (out.loss.value().item(), out.logits.value().clone())
    }

    /// The encoder on every patch, no masking, no decoder (SPEC 3.8): the path
    /// finetuning heads and feature extraction use. Returns (B, 1+L, hidden).
    pub fn encode_unmasked(
        &self,
        t: &mut Tape,
        pv: &ParamVars<'_>,
        pixel_values: &Var,
        attention_mask: &[f32],
        mode: ForwardMode<'_>,
    ) -> Var {
        encode_all_patches(t, pv, &self.config, pixel_values, attention_mask, 0.0, mode)
    }
}

/// Shared unmasked encoder (pretraining model and finetuning heads): CLS + all
/// L patches, the full position table, optional embedding dropout.
pub fn encode_all_patches(
    t: &mut Tape,
    pv: &ParamVars<'_>,
    cfg: &PixelConfig,
    pixel_values: &Var,
    attention_mask: &[f32],
    embedding_dropout: f32,
    mode: ForwardMode<'_>,
) -> Var {
    let (b, l) = check_inputs(cfg, pixel_values, attention_mask);
    let ForwardMode { training, rng } = mode;
    let x = patch_embed(t, pv, cfg, pixel_values);
    let pos = pv.get("vit.embeddings.position_embeddings");
    assert!(
        pos.shape()[1] > l,
        "encoder: position table has {} rows, need {} (L + 1)",
        pos.shape()[1],
        l + 1
    );
    let pos_patches = ops::narrow(t, pos, 1, 1, l);
    let x = ops::add(t, &x, &pos_patches);
    let cls = cls_with_position(t, pv, "vit.embeddings.cls_token", pos, b);
    let x = ops::concat(t, &[&cls, &x], 1);
    let mut x = ops::dropout(t, &x, embedding_dropout, training, rng);
    let mask = additive_key_mask(&with_cls(attention_mask, b, l), b, l + 1);
    let mask = on_device_of(mask, pixel_values);
    let s = encoder_settings(cfg, training);
    for i in 0..cfg.num_hidden_layers {
        x = transformer_block(
            t,
            pv,
            &format!("vit.encoder.layer.{i}"),
            &x,
            Some(&mask),
            s,
            rng,
        );
    }
    ops::layer_norm(
        t,
        &x,
        pv.get("vit.layernorm.weight"),
        pv.get("vit.layernorm.bias"),
        cfg.layer_norm_eps as f32,
    )
}

fn encoder_settings(cfg: &PixelConfig, training: bool) -> BlockSettings {
    BlockSettings {
        num_heads: cfg.num_attention_heads,
        qkv_bias: cfg.qkv_bias,
        layer_norm_eps: cfg.layer_norm_eps as f32,
        hidden_dropout: cfg.hidden_dropout_prob as f32,
        attention_dropout: cfg.attention_probs_dropout_prob as f32,
        training,
    }
}

/// Validates pixel_values (B, C, P, P*L) and attention_mask (B*L); returns (B, L).
fn check_inputs(cfg: &PixelConfig, pixel_values: &Var, attention_mask: &[f32]) -> (usize, usize) {
    let s = pixel_values.shape();
    let (p, c) = (cfg.patch_size, cfg.num_channels);
    assert!(
        s.len() == 4 && s[1] == c && s[2] == p && s[3].is_multiple_of(p) && s[3] > 0,
        "pixel_values must be (B, {c}, {p}, {p}*L), got {s:?}"
    );
    let (b, l) = (s[0], s[3] / p);
    assert_eq!(
        attention_mask.len(),
        b * l,
        "attention_mask has {} values, pixel_values {s:?} needs B*L = {}",
        attention_mask.len(),
        b * l
    );
    (b, l)
}

/// A host constant (an attention mask) moved once to the device of `like`, so
/// the layers do not each upload it (no copy on the CPU).
fn on_device_of(t: Tensor, like: &Var) -> Tensor {
    match like.value().device() {
        Device::Cpu => t,
        device => t
            .to_device(device)
            .unwrap_or_else(|e| panic!("attention mask to {device:?}: {e}")),
    }
}

/// [1, mask...] per example: CLS is always attended.
fn with_cls(mask: &[f32], b: usize, len: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(b * (len + 1));
    for row in mask.chunks(len.max(1)).take(b) {
        out.push(1.0);
        out.extend_from_slice(row);
    }
    out
}

/// Conv2d(kernel = stride = P) as a matmul over flattened patches:
/// (B, C, P, P*L) -> patches (B, L, C*P*P) in (c, row, col) order -> (B, L, D).
fn patch_embed(t: &mut Tape, pv: &ParamVars<'_>, cfg: &PixelConfig, pixel_values: &Var) -> Var {
    let s = pixel_values.shape().to_vec();
    let (b, c, p, l) = (s[0], s[1], s[2], s[3] / s[2]);
    let x = ops::reshape(t, pixel_values, &[b, c, p, l, p]);
    let x = ops::permute(t, &x, &[0, 3, 1, 2, 4]); // (B, L, C, P, P)
    let x = ops::reshape(t, &x, &[b, l, c * p * p]);
    let w = pv.get("vit.embeddings.patch_embeddings.projection.weight");
    let w = ops::reshape(t, w, &[cfg.hidden_size, c * p * p]);
    ops::linear(
        t,
        &x,
        &w,
        Some(pv.get("vit.embeddings.patch_embeddings.projection.bias")),
    )
}

/// Loss target: patches in (row, col, channel) order, normalised per patch
/// when norm_pix_loss (unbiased variance, eps 1e-6). (B, L, P*P*C)
pub fn patch_target(t: &mut Tape, cfg: &PixelConfig, pixel_values: &Var) -> Var {
    let s = pixel_values.shape().to_vec();
    let (b, c, p, l) = (s[0], s[1], s[2], s[3] / s[2]);
    let x = ops::reshape(t, pixel_values, &[b, c, p, l, p]);
    let x = ops::permute(t, &x, &[0, 3, 2, 4, 1]); // (B, L, P, P, C)
    let x = ops::reshape(t, &x, &[b, l, p * p * c]);
    if cfg.norm_pix_loss {
        ops::normalize_rows_unbiased(t, &x, 1e-6)
    } else {
        x
    }
}

/// cls_token + pos[0], expanded to the batch: (B, 1, D).
fn cls_with_position(t: &mut Tape, pv: &ParamVars<'_>, name: &str, pos: &Var, b: usize) -> Var {
    let pos0 = ops::narrow(t, pos, 1, 0, 1);
    let cls = ops::add(t, pv.get(name), &pos0);
    ops::expand_first(t, &cls, b)
}
