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
use pixel_model::checkpoint::{read_safetensors, save_checkpoint, write_safetensors};
use pixel_model::train::Trainer;
use pixel_model::{PixelConfig, PixelForPreTraining};
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
    pub fn schedule(&self) -> LrSchedule {
        LrSchedule::WarmupCosineToMin {
            max_lr: self.max_lr,
            min_lr: self.min_lr,
            warmup: self.warmup_steps,
            total: self.total_steps,
        }
    }
}

/// Save model, optimizer and state into `dir` atomically.
pub fn save_training_checkpoint(
    dir: &Path,
    trainer: &Trainer,
    state: &TrainerState,
) -> anyhow::Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    let tmp = parent.join(format!(".{name}.tmp"));
    let old = parent.join(format!(".{name}.old"));
    remove_if_present(&tmp)?;
    save_checkpoint(
        &tmp,
        &trainer.model.config,
        &trainer.model.params.state_dict(),
    )?;
    write_safetensors(
        tmp.join("optimizer.safetensors"),
        &optimizer_state_dict(trainer),
    )?;
    std::fs::write(
        tmp.join("trainer_state.json"),
        serde_json::to_string_pretty(state)?,
    )?;
    // Swap directories: the old checkpoint stays valid until the new one is in place.
    remove_if_present(&old)?;
    if dir.exists() {
        std::fs::rename(dir, &old)
            .with_context(|| format!("cannot move old checkpoint {}", dir.display()))?;
    }
    std::fs::rename(&tmp, dir)
        .with_context(|| format!("cannot move checkpoint into {}", dir.display()))?;
    remove_if_present(&old)
}

/// Removes a directory left by an earlier save; absent is fine.
fn remove_if_present(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", dir.display()))
        }
        _ => Ok(()),
    }
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
        if want.to_json_string() != config.to_json_string() {
            let rendering = |c: &PixelConfig| {
                crate::rendering::config_rendering(c, "config")
                    .map_or_else(|e| e.to_string(), |r| r.to_string())
            };
            bail!(
                "checkpoint {} was trained with a different model config (hidden {}, {} layers, L {}, {} rendering) than requested (hidden {}, {} layers, L {}, {} rendering)",
                dir.display(),
                config.hidden_size,
                config.num_hidden_layers,
                config.num_patches(),
                rendering(&config),
                want.hidden_size,
                want.num_hidden_layers,
                want.num_patches(),
                rendering(want)
            );
        }
    }
    let mut model = PixelForPreTraining::new(config, &mut pixel_engine::Rng::new(0));
    let weights = read_safetensors(dir.join("model.safetensors"))?;
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
