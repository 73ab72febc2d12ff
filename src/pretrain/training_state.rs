//! Training checkpoints: `config.json` + `model.safetensors` (HF names, loadable
//! by `pixel reconstruct`/`inspect` and by HuggingFace tooling), plus
//! `optimizer.safetensors` (AdamW moments by parameter name) and
//! `trainer_state.json` (step, seed, schedule, data settings). Written to a
//! temporary directory and renamed into place, so a crash never leaves a
//! half-written checkpoint.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use pixel_engine::optim::{AdamW, LrSchedule};
use pixel_engine::{Device, Tensor};
use pixel_model::checkpoint::{check_finite, read_safetensors, save_checkpoint, write_safetensors};
use pixel_model::train::Trainer;
use pixel_model::{PixelConfig, PixelForPreTraining};

use crate::atomic_dir::write_dir_atomically;
use serde::{Deserialize, Serialize};

/// Everything besides tensors needed to continue a run exactly.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainerState {
    /// Optimizer updates taken.
    pub step: u64,
    pub seed: u64,
    pub total_steps: u64,
    pub max_lr: f32,
    pub min_lr: f32,
    pub warmup_steps: u64,
    pub weight_decay: f32,
    pub max_grad_norm: f32,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub layout: String,
    pub corpus: String,
}

impl TrainerState {
    /// The settings (everything but `step`) where `self` and `other` differ,
    /// one `field: ours vs theirs` text each.
    pub fn differences(&self, other: &TrainerState) -> Vec<String> {
        field_differences(self, other, &["step"])
    }

    pub fn schedule(&self) -> LrSchedule {
        LrSchedule::WarmupCosineToMin {
            max_lr: self.max_lr,
            min_lr: self.min_lr,
            warmup: self.warmup_steps,
            total: self.total_steps,
        }
    }
}

/// Save model, optimizer and state into `dir` atomically. Refuses, writing
/// nothing, when a weight or an optimizer moment is not finite (a checkpoint
/// nobody could continue from).
pub fn save_training_checkpoint(
    dir: &Path,
    trainer: &Trainer,
    state: &TrainerState,
) -> anyhow::Result<()> {
    let weights = trainer.model.params.state_dict();
    let moments = optimizer_state_dict(trainer);
    check_finite(
        &weights,
        &dir.join("model.safetensors").display().to_string(),
    )?;
    check_finite(
        &moments,
        &dir.join("optimizer.safetensors").display().to_string(),
    )?;
    write_dir_atomically(dir, |tmp| {
        save_checkpoint(tmp, &trainer.model.config, &weights)?;
        write_safetensors(tmp.join("optimizer.safetensors"), &moments)?;
        std::fs::write(
            tmp.join("trainer_state.json"),
            serde_json::to_string_pretty(state)?,
        )?;
        Ok(())
    })
}

/// The AdamW moments by parameter name, on the host.
fn optimizer_state_dict(trainer: &Trainer) -> BTreeMap<String, Tensor> {
    let mut out = BTreeMap::new();
    let trainable = trainer.model.params.iter().filter(|p| p.trainable);
    for (i, p) in trainable.enumerate() {
        if let (Some(m), Some(v)) = (trainer.optimizer.m.get(i), trainer.optimizer.v.get(i)) {
            out.insert(format!("exp_avg.{}", p.name), m.to_host());
            out.insert(format!("exp_avg_sq.{}", p.name), v.to_host());
        }
    }
    out
}

/// Move the optimizer moments to the parameters' device (a resumed device run).
fn moments_to_device(opt: &mut AdamW, device: Device) -> anyhow::Result<()> {
    for t in opt.m.iter_mut().chain(opt.v.iter_mut()) {
        *t = t
            .to_device(device)
            .map_err(|e| anyhow::anyhow!("optimizer moments to {device}: {e}"))?;
    }
    Ok(())
}

/// Load a training checkpoint written by [`save_training_checkpoint`], with
/// the model and optimizer state on `device`. The model's config must equal
/// `expected` when given (a clear error otherwise).
pub fn load_training_checkpoint(
    dir: &Path,
    expected: Option<&PixelConfig>,
    device: Device,
) -> anyhow::Result<(Trainer, TrainerState)> {
    let state_path = dir.join("trainer_state.json");
    let text = std::fs::read_to_string(&state_path).with_context(|| {
        format!(
            "{} is not a training checkpoint (no trainer_state.json)",
            dir.display()
        )
    })?;
    let state: TrainerState = serde_json::from_str(&text)
        .with_context(|| format!("malformed {}", state_path.display()))?;
    let config =
        PixelConfig::from_file(dir.join("config.json")).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(want) = expected {
        let differences = config_differences(&config, want);
        if !differences.is_empty() {
            let rendering = |c: &PixelConfig| {
                crate::rendering::config_rendering(c, "config")
                    .map_or_else(|e| e.to_string(), |r| r.to_string())
            };
            bail!(
                "checkpoint {} was trained with a different model config (checkpoint vs requested): {}; {} rendering vs {} rendering",
                dir.display(),
                differences.join(", "),
                rendering(&config),
                rendering(want)
            );
        }
    }
    let mut model = PixelForPreTraining::new(config, &mut pixel_engine::Rng::new(0));
    let weights = read_safetensors(dir.join("model.safetensors"))?;
    check_finite(
        &weights,
        &dir.join("model.safetensors").display().to_string(),
    )?;
    let report = model
        .params
        .load_state_dict(&weights)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if !report.missing.is_empty() {
        bail!(
            "checkpoint {} lacks weights: {:?}",
            dir.display(),
            report.missing
        );
    }
    let mut trainer = Trainer::new(
        model,
        state.weight_decay,
        state.schedule(),
        state.max_grad_norm,
    );
    let opt = read_safetensors(dir.join("optimizer.safetensors"))?;
    check_finite(
        &opt,
        &dir.join("optimizer.safetensors").display().to_string(),
    )?;
    trainer.optimizer = restore_optimizer(&trainer, &opt, state.step)
        .with_context(|| format!("optimizer state in {}", dir.display()))?;
    trainer
        .model
        .params
        .to_device(device)
        .map_err(|e| anyhow::anyhow!("moving the model to {device:?}: {e}"))?;
    moments_to_device(&mut trainer.optimizer, device)?;
    Ok((trainer, state))
}

/// The config.json fields where `a` and `b` differ: `field: a vs b` each.
fn config_differences(a: &PixelConfig, b: &PixelConfig) -> Vec<String> {
    field_differences(a, b, &[])
}

/// The JSON fields (but `skip`) where `a` and `b` differ, sorted by name:
/// `field: a vs b` each, the values as JSON.
fn field_differences<T: Serialize>(a: &T, b: &T, skip: &[&str]) -> Vec<String> {
    let as_fields = |x: &T| match serde_json::to_value(x) {
        Ok(serde_json::Value::Object(fields)) => fields,
        _ => serde_json::Map::new(),
    };
    let (a, b) = (as_fields(a), as_fields(b));
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    let null = serde_json::Value::Null;
    names
        .into_iter()
        .filter(|name| !skip.contains(&name.as_str()))
        .filter_map(|name| {
            let (x, y) = (a.get(name).unwrap_or(&null), b.get(name).unwrap_or(&null));
            (x != y).then(|| format!("{name}: {} vs {}", shown(x), shown(y)))
        })
        .collect()
}

/// A JSON value for a message: fractions at f32 precision (the settings are
/// f32, so 0.003 rather than 0.003000000026077032).
fn shown(v: &serde_json::Value) -> String {
    match v.as_f64() {
        Some(x) if !v.is_i64() && !v.is_u64() => format!("{}", x as f32),
        _ => v.to_string(),
    }
}

fn restore_optimizer(
    trainer: &Trainer,
    sd: &BTreeMap<String, Tensor>,
    step: u64,
) -> anyhow::Result<AdamW> {
    let mut opt = AdamW::new(trainer.optimizer.config);
    opt.step = step;
    if step == 0 {
        return Ok(opt);
    }
    for p in trainer.model.params.iter().filter(|p| p.trainable) {
        let get = |prefix: &str| -> anyhow::Result<Tensor> {
            let key = format!("{prefix}.{}", p.name);
            let t = sd.get(&key).with_context(|| format!("missing {key}"))?;
            if t.shape() != p.value.shape() {
                bail!(
                    "{key}: expected shape {:?}, found {:?}",
                    p.value.shape(),
                    t.shape()
                );
            }
            t.to_device(p.value.device()).map_err(anyhow::Error::msg)
        };
        opt.m.push(get("exp_avg")?);
        opt.v.push(get("exp_avg_sq")?);
    }
    Ok(opt)
}
