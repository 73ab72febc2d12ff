//! One pretraining step as the HF Trainer does it: forward, backward (with
//! optional gradient accumulation), global-norm clipping, AdamW with PIXEL's
//! weight-decay groups, learning rate from the schedule.

use std::sync::Arc;

use pixel_engine::optim::{sum_squares_each, AdamW, AdamWConfig, LrSchedule};
use pixel_engine::{Rng, Tape, Tensor};

use crate::masking::PatchMasking;
use crate::params::ParamStore;
use crate::pretraining::PixelForPreTraining;
use crate::ForwardMode;

/// One micro-batch of pretraining input.
#[derive(Clone)]
pub struct PretrainBatch {
    /// (B, C, P, P*L) in [0, 1].
    pub pixel_values: Tensor,
    /// (B*L) 0/1.
    pub attention_mask: Vec<f32>,
    pub masking: PatchMasking,
}

/// What one optimizer step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// Mean loss over the micro-batches, before the update.
    pub loss: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    pub clip_coef: f32,
    pub lr: f32,
}

/// Why a step was refused: the loss or a gradient stopped being finite.
#[derive(Debug, Clone, PartialEq)]
pub struct NonFiniteError {
    pub step: u64,
    pub what: String,
}

impl std::fmt::Display for NonFiniteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "non-finite value at step {}: {}", self.step, self.what)
    }
}

impl std::error::Error for NonFiniteError {}

/// Model, optimizer and schedule: everything a training run updates.
#[derive(Clone)]
pub struct Trainer {
    pub model: PixelForPreTraining,
    pub optimizer: AdamW,
    pub schedule: LrSchedule,
    pub max_grad_norm: f32,
}

impl Trainer {
    /// HF defaults (beta1 0.9, beta2 0.999, eps 1e-8) with the given decay.
    pub fn new(
        model: PixelForPreTraining,
        weight_decay: f32,
        schedule: LrSchedule,
        max_grad_norm: f32,
    ) -> Trainer {
        Trainer {
            model,
            optimizer: AdamW::new(AdamWConfig {
                weight_decay,
                ..Default::default()
            }),
            schedule,
            max_grad_norm,
        }
    }

    /// Updates taken so far.
    pub fn step(&self) -> u64 {
        self.optimizer.step
    }

    /// One optimizer step over `micro_batches` (gradient accumulation: the
    /// gradients are averaged). Nothing is updated if a loss or gradient is
    /// not finite.
    pub fn train_step(
        &mut self,
        micro_batches: &[PretrainBatch],
        training: bool,
        rng: &mut Rng,
    ) -> Result<StepStats, NonFiniteError> {
        assert!(!micro_batches.is_empty(), "train_step: no micro-batches");
        let n = micro_batches.len() as f32;
        let step = self.optimizer.step;
        let mut sum: Vec<Option<Tensor>> = vec![None; self.model.params.len()];
        let mut loss_total = 0.0f64;
        for batch in micro_batches {
            let mut tape = Tape::new();
            let pv = self.model.params.vars(&mut tape);
            let pixels = pixel_engine::Var::constant_arc(Arc::new(batch.pixel_values.clone()));
            let mode = ForwardMode { training, rng };
            let out = self.model.forward(
                &mut tape,
                &pv,
                &pixels,
                &batch.attention_mask,
                &batch.masking,
                mode,
            );
            let loss = out.loss.value().item();
            if !loss.is_finite() {
                return Err(NonFiniteError {
                    step,
                    what: format!("loss is {loss}"),
                });
            }
            loss_total += loss as f64;
            let mut grads = tape.backward(&out.loss);
            let grads = self.model.params.take_grads(&pv, &mut grads);
            accumulate_gradients(&mut sum, grads, n);
        }
        let lr = self.schedule.lr(step);
        let (grad_norm, clip_coef) = clip_and_update(
            &mut self.model.params,
            &mut self.optimizer,
            &mut sum,
            self.max_grad_norm,
            lr,
        )?;
        Ok(StepStats {
            loss: (loss_total / n as f64) as f32,
            grad_norm,
            clip_coef,
            lr,
        })
    }
}

/// Adds one micro-batch's gradients, scaled by 1 / `n`, into `sum` (gradient
/// accumulation averages over the `n` micro-batches of a step).
pub fn accumulate_gradients(sum: &mut [Option<Tensor>], grads: Vec<Option<Tensor>>, n: f32) {
    for (slot, g) in sum.iter_mut().zip(grads) {
        match (slot.as_mut(), g) {
            (None, Some(mut g)) => {
                if n > 1.0 {
                    g.scale_in_place(1.0 / n);
                }
                *slot = Some(g);
            }
            (Some(s), Some(g)) => s.axpy_in_place(1.0 / n, &g),
            _ => {}
        }
    }
}

/// Global-norm clipping (torch `clip_grad_norm_`) then one AdamW update at `lr`.
/// Returns (norm before clipping, clip coefficient). Nothing is updated when a
/// gradient is not finite.
pub fn clip_and_update(
    params: &mut ParamStore,
    optimizer: &mut AdamW,
    grads: &mut [Option<Tensor>],
    max_grad_norm: f32,
    lr: f32,
) -> Result<(f64, f32), NonFiniteError> {
    let step = optimizer.step;
    // Device gradients are reduced on the device and read back once.
    let present: Vec<(&str, &Tensor)> = params
        .iter()
        .zip(grads.iter())
        .filter_map(|(p, g)| g.as_ref().map(|g| (p.name.as_str(), g)))
        .collect();
    let squares = sum_squares_each(&present.iter().map(|(_, g)| *g).collect::<Vec<_>>());
    let mut norm_sq = 0.0f64;
    for (&(name, _), &s) in present.iter().zip(&squares) {
        if !s.is_finite() {
            return Err(NonFiniteError {
                step,
                what: format!("gradient of {name} ({})", param_group(name)),
            });
        }
        norm_sq += s;
    }
    let grad_norm = norm_sq.sqrt();
    let clip_coef = (max_grad_norm as f64 / (grad_norm + 1e-6)).min(1.0) as f32;
    if clip_coef < 1.0 {
        for g in grads.iter_mut().flatten() {
            g.scale_in_place(clip_coef);
        }
    }
    params.adamw_update(optimizer, grads, lr);
    Ok((grad_norm, clip_coef))
}

/// A readable name for the group a parameter belongs to (for error messages).
pub fn param_group(name: &str) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        ["vit", "encoder", "layer", i, ..] => format!("encoder layer {i}"),
        ["decoder", "decoder_layers", i, ..] => format!("decoder layer {i}"),
        ["vit", "embeddings", ..] => "embeddings".to_string(),
        _ => parts.iter().take(2).copied().collect::<Vec<_>>().join("."),
    }
}
