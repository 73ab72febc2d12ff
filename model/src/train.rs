//! The training step, written once: forward and backward of each micro-batch
//! through a loss closure, gradient accumulation (averaged), global-norm
//! clipping, one AdamW update at the schedule's learning rate, as the HF
//! Trainer does it. Pretraining, finetuning and `pixel bench --profile` all go
//! through [`Trainer::step`]; the run loop around it (log, progress bar,
//! Ctrl-C, evaluation and checkpoint cadence) is `src/train_loop.rs`.

use std::sync::Arc;
use std::time::Instant;

use pixel_engine::optim::{sum_squares_each, AdamW, AdamWConfig, LrSchedule};
use pixel_engine::profile::Profiler;
use pixel_engine::{Rng, Tape, Tensor, Var};

use crate::data_parallel::DataParallel;
use crate::heads::PixelForFinetuning;
use crate::masking::PatchMasking;
use crate::params::{ParamStore, ParamVars};
use crate::pretraining::PixelForPreTraining;
use crate::ForwardMode;

/// A model the step trains: it owns a [`ParamStore`].
pub trait HasParams {
    fn params(&self) -> &ParamStore;
    fn params_mut(&mut self) -> &mut ParamStore;
}

impl HasParams for PixelForPreTraining {
    fn params(&self) -> &ParamStore {
        &self.params
    }
    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.params
    }
}

impl HasParams for PixelForFinetuning {
    fn params(&self) -> &ParamStore {
        &self.params
    }
    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.params
    }
}

/// One micro-batch of pretraining input.
#[derive(Clone)]
pub struct PretrainBatch {
    /// (B, C, P, P*L) in [0, 1]; shared, so the step reads it without a copy.
    pub pixel_values: Arc<Tensor>,
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
    /// Wall seconds of the forward passes (parameter vars included), of the
    /// backward passes (gradients taken and accumulated), and of clipping plus
    /// the AdamW update.
    pub forward_s: f64,
    pub backward_s: f64,
    pub update_s: f64,
    /// Seconds inside the gradient all-reduce calls (0 on one process), of
    /// them those the step waited for after backward (the part overlap did
    /// not hide), and the bytes this rank sent to it.
    pub reduce_s: f64,
    pub reduce_exposed_s: f64,
    pub reduce_bytes: usize,
}

/// Why a step was refused: the loss or a gradient stopped being finite.
/// Nothing was updated, so the parameters are those of the last good step.
#[derive(Debug, Clone, PartialEq)]
pub struct NonFiniteError {
    /// The failing step, numbered from 1 as in log.csv (the parameters are
    /// those after step `step - 1`).
    pub step: u64,
    /// What was not finite, e.g. "the loss of micro-batch 1 of 2 is NaN" or
    /// "the gradient of vit.encoder.layer.1.output.dense.weight (group
    /// vit.encoder.layer.1) is not finite".
    pub what: String,
}

impl std::fmt::Display for NonFiniteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "step {}: {}", self.step, self.what)
    }
}

impl std::error::Error for NonFiniteError {}

/// A model with its optimizer, schedule and clip norm: everything a training
/// run updates. `M` is [`PixelForPreTraining`] (the default) or
/// [`PixelForFinetuning`]. `parallel` is the communicator the gradients are
/// averaged through (one process unless set).
#[derive(Clone)]
pub struct Trainer<M = PixelForPreTraining> {
    pub model: M,
    pub optimizer: AdamW,
    pub schedule: LrSchedule,
    pub max_grad_norm: f32,
    pub parallel: DataParallel,
}

impl<M: HasParams> Trainer<M> {
    /// HF defaults (beta1 0.9, beta2 0.999, eps 1e-8) with the given decay.
    pub fn new(
        model: M,
        weight_decay: f32,
        schedule: LrSchedule,
        max_grad_norm: f32,
    ) -> Trainer<M> {
        Trainer {
            model,
            optimizer: AdamW::new(AdamWConfig {
                weight_decay,
                ..Default::default()
            }),
            schedule,
            max_grad_norm,
            parallel: DataParallel::default(),
        }
    }

    /// Updates taken so far.
    pub fn step(&self) -> u64 {
        self.optimizer.step
    }

    /// One optimizer step over `micro_batches`: for each, a fresh tape, the
    /// parameters' vars and `loss(model, tape, params, batch)`, then backward;
    /// the gradients are averaged over the micro-batches (and, with several
    /// ranks, over every rank's micro-batches: a bucketed all-reduce during
    /// or after the last backward), clipped to the global norm `max_grad_norm` and applied by
    /// AdamW at `schedule.lr(step)`. Nothing is updated if a loss or a
    /// gradient is not finite (on any rank).
    pub fn train_on<B>(
        &mut self,
        micro_batches: &[B],
        loss: impl FnMut(&M, &mut Tape, &ParamVars<'_>, &B) -> Var,
    ) -> Result<StepStats, NonFiniteError> {
        self.run_step(micro_batches, None, loss)
    }

    /// [`Trainer::train_on`] with every op of every micro-batch timed into
    /// `profiler` (`pixel bench --profile`).
    pub fn train_on_profiled<B>(
        &mut self,
        micro_batches: &[B],
        profiler: &mut Profiler,
        loss: impl FnMut(&M, &mut Tape, &ParamVars<'_>, &B) -> Var,
    ) -> Result<StepStats, NonFiniteError> {
        self.run_step(micro_batches, Some(profiler), loss)
    }

    fn run_step<B>(
        &mut self,
        micro_batches: &[B],
        mut profiler: Option<&mut Profiler>,
        mut loss: impl FnMut(&M, &mut Tape, &ParamVars<'_>, &B) -> Var,
    ) -> Result<StepStats, NonFiniteError> {
        assert!(!micro_batches.is_empty(), "train step: no micro-batches");
        let n = micro_batches.len();
        let step = self.optimizer.step;
        let params = self.model.params();
        let mut sum: Vec<Option<Tensor>> = vec![None; params.len()];
        let mut loss_total = 0.0f64;
        let (mut forward_s, mut backward_s) = (0.0, 0.0);
        let mut failure: Option<NonFiniteError> = None;
        // With several ranks, the last micro-batch's backward hands each
        // gradient to the bucketed all-reduce as soon as it is final.
        let mut reduction = self.parallel.start_reduction(params);
        for (i, batch) in micro_batches.iter().enumerate() {
            let started = Instant::now();
            let mut tape = Tape::new();
            let param_vars = params.vars(&mut tape);
            if let Some(p) = profiler.as_deref_mut() {
                p.restart_clock();
                tape.profiler = Some(std::mem::take(p));
            }
            let loss_var = loss(&self.model, &mut tape, &param_vars, batch);
            let value = loss_var.value().item();
            forward_s += started.elapsed().as_secs_f64();
            if !value.is_finite() {
                let cause = match first_non_finite_parameter(params) {
                    Some(name) => format!(
                        "the parameter {name} (group {}) is not finite",
                        param_group(name)
                    ),
                    None => "every parameter is finite: the forward pass overflowed".into(),
                };
                failure = Some(NonFiniteError {
                    step: step + 1,
                    what: format!(
                        "the loss of micro-batch {} of {n} is {value} ({cause})",
                        i + 1
                    ),
                });
                // The other ranks still wait for this rank's all-reduce.
                break;
            }
            loss_total += value as f64;
            let started = Instant::now();
            match reduction.as_mut().filter(|_| i + 1 == n) {
                Some(reduction) => {
                    tape.backward_reporting(&loss_var, param_vars.vars(), &mut |p, g| {
                        accumulate_gradient(&mut sum[p], g, n as f32);
                        reduction.gradient_final(p, &sum);
                    });
                }
                None => {
                    let mut grads = tape.backward(&loss_var);
                    let grads = params.take_grads(&param_vars, &mut grads);
                    accumulate_gradients(&mut sum, grads, n as f32);
                }
            }
            if let (Some(p), Some(taped)) = (profiler.as_deref_mut(), tape.profiler.take()) {
                *p = taped;
            }
            backward_s += started.elapsed().as_secs_f64();
        }
        let reduced = self
            .parallel
            .finish_reduction(
                reduction,
                &mut sum,
                loss_total / n as f64,
                failure.is_some(),
            )
            .map_err(|e| NonFiniteError {
                step: step + 1,
                what: format!("gradient all-reduce failed: {e}"),
            })?;
        if let Some(e) = failure {
            return Err(e);
        }
        if reduced.failed_ranks > 0 {
            return Err(NonFiniteError {
                step: step + 1,
                what: format!(
                    "{} other rank(s) got a non-finite loss (their messages say which micro-batch)",
                    reduced.failed_ranks
                ),
            });
        }
        let started = Instant::now();
        let lr = self.schedule.lr(step);
        let (grad_norm, clip_coef) = clip_and_update(
            self.model.params_mut(),
            &mut self.optimizer,
            &mut sum,
            self.max_grad_norm,
            lr,
        )?;
        Ok(StepStats {
            loss: reduced.loss as f32,
            grad_norm,
            clip_coef,
            lr,
            forward_s,
            backward_s,
            update_s: started.elapsed().as_secs_f64(),
            reduce_s: reduced.reduce_s,
            reduce_exposed_s: reduced.exposed_s,
            reduce_bytes: reduced.bytes,
        })
    }
}

impl Trainer<PixelForPreTraining> {
    /// One pretraining step (the masked-reconstruction loss of
    /// [`pretraining_loss`]); dropout when `training`, drawn from `rng`.
    pub fn train_step(
        &mut self,
        micro_batches: &[PretrainBatch],
        training: bool,
        rng: &mut Rng,
    ) -> Result<StepStats, NonFiniteError> {
        self.train_on(micro_batches, |model, tape, params, batch| {
            pretraining_loss(model, tape, params, batch, training, rng)
        })
    }
}

/// The pretraining loss of one micro-batch (the loss closure of pretraining).
pub fn pretraining_loss(
    model: &PixelForPreTraining,
    tape: &mut Tape,
    params: &ParamVars<'_>,
    batch: &PretrainBatch,
    training: bool,
    rng: &mut Rng,
) -> Var {
    let pixels = Var::constant_arc(batch.pixel_values.clone());
    let mode = ForwardMode { training, rng };
    model
        .forward(
            tape,
            params,
            &pixels,
            &batch.attention_mask,
            &batch.masking,
            mode,
        )
        .loss
}

/// The name of the first parameter holding a NaN or an infinity, if any.
fn first_non_finite_parameter(params: &ParamStore) -> Option<&str> {
    let values: Vec<&Tensor> = params.iter().map(|p| &*p.value).collect();
    let squares = sum_squares_each(&values);
    params
        .iter()
        .zip(squares)
        .find(|(_, s)| !s.is_finite())
        .map(|(p, _)| p.name.as_str())
}

/// Adds one micro-batch's gradients, scaled by 1 / `n`, into `sum` (gradient
/// accumulation averages over the `n` micro-batches of a step).
pub fn accumulate_gradients(sum: &mut [Option<Tensor>], grads: Vec<Option<Tensor>>, n: f32) {
    for (slot, g) in sum.iter_mut().zip(grads) {
        accumulate_gradient(slot, g, n);
    }
}

/// [`accumulate_gradients`] for one parameter's slot.
pub fn accumulate_gradient(slot: &mut Option<Tensor>, g: Option<Tensor>, n: f32) {
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

/// Global-norm clipping (torch `clip_grad_norm_`) then one AdamW update at `lr`.
/// Returns (norm before clipping, clip coefficient). Nothing is updated when a
/// gradient is not finite; the error names the first such parameter and its
/// group.
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
                step: step + 1,
                what: format!(
                    "the gradient of {name} (group {}) is not finite (sum of squares {s})",
                    param_group(name)
                ),
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

/// The group a parameter belongs to, for error messages: its name up to the
/// layer index (`vit.encoder.layer.3`, `decoder.decoder_layers.1`), else the
/// part of the model (`vit.embeddings`, `vit.layernorm`, `decoder`,
/// `classifier`, `pooler`, ...).
pub fn param_group(name: &str) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    if let Some(i) = parts.iter().position(|p| p.parse::<usize>().is_ok()) {
        return parts[..=i].join(".");
    }
    let keep = if parts[0] == "vit" { 2 } else { 1 };
    parts[..keep.min(parts.len())].join(".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PixelConfig;

    #[test]
    fn parameter_groups_stop_at_the_layer_index() {
        let cases = [
            (
                "vit.encoder.layer.3.attention.output.dense.weight",
                "vit.encoder.layer.3",
            ),
            (
                "decoder.decoder_layers.1.output.dense.bias",
                "decoder.decoder_layers.1",
            ),
            ("decoder.decoder_embed.weight", "decoder"),
            ("vit.embeddings.cls_token", "vit.embeddings"),
            ("classifier.weight", "classifier"),
            ("pooler.pooling.pooler.mab.fc_q.weight", "pooler"),
        ];
        for (name, group) in cases {
            assert_eq!(param_group(name), group, "{name}");
        }
    }

    /// A closure that poisons the loss: the step refuses, names the step and
    /// leaves every parameter untouched.
    #[test]
    fn a_non_finite_loss_updates_nothing_and_names_the_step() {
        let model = PixelForPreTraining::new(PixelConfig::tiny(8), &mut Rng::new(1));
        let before = model.params.state_dict();
        let mut trainer = Trainer::new(model, 0.0, LrSchedule::Constant { lr: 1e-3 }, 1.0);
        let err = trainer
            .train_on(&[()], |_, tape, params, _| {
                let w = params.get("vit.embeddings.cls_token");
                let s = pixel_engine::ops::sum_all(tape, w);
                pixel_engine::ops::scale(tape, &s, f32::NAN)
            })
            .unwrap_err();
        assert_eq!(err.step, 1);
        assert!(
            err.to_string().starts_with(
                "step 1: the loss of micro-batch 1 of 1 is NaN (every parameter is finite"
            ),
            "{err}"
        );
        assert_eq!(trainer.step(), 0);
        for (name, t) in trainer.model.params.state_dict() {
            assert_eq!(t.data(), before[&name].data(), "{name} moved");
        }
    }

    /// A loss that is finite (0) but whose gradient overflows: the step
    /// refuses and names the parameter and its group.
    #[test]
    fn a_non_finite_gradient_names_the_parameter_and_its_group() {
        use pixel_engine::ops;
        let model = PixelForPreTraining::new(PixelConfig::tiny(8), &mut Rng::new(1));
        let mut trainer = Trainer::new(model, 0.0, LrSchedule::Constant { lr: 1e-3 }, 1.0);
        let name = "vit.encoder.layer.1.attention.output.dense.weight";
        let err = trainer
            .train_on(&[(), ()], |_, tape, params, _| {
                let w = params.get(name);
                let diff = ops::sub(tape, w, w);
                let zero = ops::sum_all(tape, &diff);
                let huge = ops::scale(tape, &zero, 1e30);
                ops::scale(tape, &huge, 1e30)
            })
            .unwrap_err();
        assert_eq!(err.step, 1);
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "step 1: the gradient of {name} (group vit.encoder.layer.1)"
            )),
            "{text}"
        );
        assert_eq!(trainer.step(), 0);
    }
}
