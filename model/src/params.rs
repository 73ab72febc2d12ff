//! Named parameters (HuggingFace state-dict names) and their per-step tape vars.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use pixel_engine::optim::{AdamW, ParamUpdate};
use pixel_engine::{Device, Gradients, Tape, Tensor, Var};

/// One named parameter. Frozen ones (the sin-cos tables) get no gradient.
#[derive(Clone)]
pub struct Param {
    pub name: String,
    pub value: Arc<Tensor>,
    pub trainable: bool,
}

/// All parameters of a model, in a fixed order (the optimizer state follows it).
#[derive(Clone, Default)]
pub struct ParamStore {
    params: Vec<Param>,
    index: HashMap<String, usize>,
}

/// What loading a state dict found, in HuggingFace's terms.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LoadReport {
    /// Keys the model has but the state dict lacks (left at their current value).
    pub missing: Vec<String>,
    /// Keys the state dict has but the model does not use.
    pub unexpected: Vec<String>,
}

/// HF weight-decay grouping: no decay for biases and LayerNorm parameters.
pub fn is_decayed(name: &str) -> bool {
    let layer_norm =
        name.contains("layernorm") || name.contains("decoder_norm") || name.contains(".ln.");
    !(name.ends_with(".bias") || layer_norm)
}

impl ParamStore {
    pub fn new() -> ParamStore {
        ParamStore::default()
    }

    /// Add a parameter; panics on a duplicate name (a model-construction bug).
    pub fn insert(&mut self, name: &str, value: Tensor, trainable: bool) {
        assert!(!self.index.contains_key(name), "duplicate parameter {name}");
        self.index.insert(name.to_string(), self.params.len());
        self.params.push(Param {
            name: name.to_string(),
            value: Arc::new(value),
            trainable,
        });
    }

    /// Marks every parameter whose name satisfies `frozen` as not trainable:
    /// it enters the tape as a constant and the optimizer skips it. Call before
    /// the first optimizer step (the optimizer state follows the trainable set).
    pub fn freeze(&mut self, frozen: impl Fn(&str) -> bool) {
        for p in &mut self.params {
            if frozen(&p.name) {
                p.trainable = false;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.params.len()
    }

    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Param> {
        self.params.iter()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The value of a parameter; panics with the name if it does not exist.
    pub fn get(&self, name: &str) -> &Tensor {
        match self.index.get(name) {
            Some(&i) => &self.params[i].value,
            None => panic!("no parameter named {name}"),
        }
    }

    /// Replace a parameter's value (same shape required).
    pub fn set(&mut self, name: &str, value: Tensor) -> Result<(), String> {
        let &i = self
            .index
            .get(name)
            .ok_or_else(|| format!("no parameter named {name}"))?;
        let p = &mut self.params[i];
        if p.value.shape() != value.shape() {
            return Err(format!(
                "{name}: expected shape {:?}, found {:?}",
                p.value.shape(),
                value.shape()
            ));
        }
        p.value = Arc::new(value);
        Ok(())
    }

    /// Move every parameter to `device` (an explicit copy; a no-op for
    /// parameters already there). Errors when the device cannot be opened.
    pub fn to_device(&mut self, device: Device) -> Result<(), String> {
        for p in &mut self.params {
            if p.value.device() != device {
                p.value = Arc::new(p.value.to_device(device)?);
            }
        }
        Ok(())
    }

    /// The device of the parameters (the first one's; CPU when empty).
    pub fn device(&self) -> Device {
        self.params
            .first()
            .map_or(Device::Cpu, |p| p.value.device())
    }

    /// Number of values (all, and trainable only).
    pub fn count(&self) -> (usize, usize) {
        let all = self.params.iter().map(|p| p.value.numel()).sum();
        let trainable = self
            .params
            .iter()
            .filter(|p| p.trainable)
            .map(|p| p.value.numel())
            .sum();
        (all, trainable)
    }

    /// Tape vars for one forward pass: leaves for trainable parameters,
    /// constants for frozen ones (and for everything on a no-grad tape).
    pub fn vars(&self, tape: &mut Tape) -> ParamVars<'_> {
        let vars = self
            .params
            .iter()
            .map(|p| {
                if p.trainable {
                    tape.leaf(p.value.clone())
                } else {
                    Var::constant_arc(p.value.clone())
                }
            })
            .collect();
        ParamVars { store: self, vars }
    }

    /// Tape vars supplied by the caller, one per parameter in store order
    /// (gradient checks perturb parameter values through these).
    pub fn vars_from(&self, vars: Vec<Var>) -> ParamVars<'_> {
        assert_eq!(
            vars.len(),
            self.params.len(),
            "vars_from: {} vars for {} parameters",
            vars.len(),
            self.params.len()
        );
        ParamVars { store: self, vars }
    }

    /// A copy of every parameter by name, on the host (device parameters are
    /// read back), ready to be written.
    pub fn state_dict(&self) -> BTreeMap<String, Tensor> {
        self.params
            .iter()
            .map(|p| (p.name.clone(), p.value.to_host()))
            .collect()
    }

    /// Load values by name. Shape mismatches are errors naming the key and both
    /// shapes; missing and unexpected keys are reported, not fatal.
    pub fn load_state_dict(&mut self, sd: &BTreeMap<String, Tensor>) -> Result<LoadReport, String> {
        for (name, t) in sd {
            if let Some(&i) = self.index.get(name) {
                let want = self.params[i].value.shape();
                if want != t.shape() {
                    return Err(format!(
                        "checkpoint key {name}: expected shape {want:?}, found {:?}",
                        t.shape()
                    ));
                }
            }
        }
        let mut report = LoadReport::default();
        for p in &mut self.params {
            match sd.get(&p.name) {
                Some(t) => p.value = Arc::new(t.clone()),
                None => report.missing.push(p.name.clone()),
            }
        }
        report.unexpected = sd
            .keys()
            .filter(|k| !self.index.contains_key(*k))
            .cloned()
            .collect();
        Ok(report)
    }

    /// Gradients of the trainable parameters, in store order (None: no gradient
    /// reached it, or frozen).
    pub fn take_grads(
        &self,
        param_vars: &ParamVars<'_>,
        grads: &mut Gradients,
    ) -> Vec<Option<Tensor>> {
        param_vars.vars.iter().map(|v| grads.take(v)).collect()
    }

    /// One AdamW update of every trainable parameter that has a gradient.
    /// Parameters without a gradient get a zero gradient and no weight decay, so
    /// one that never had a gradient does not move (PyTorch skips it).
    pub fn adamw_update(&mut self, opt: &mut AdamW, grads: &[Option<Tensor>], lr: f32) {
        assert_eq!(
            grads.len(),
            self.params.len(),
            "adamw_update: one gradient slot per parameter"
        );
        let zeros: Vec<Option<Tensor>> = self
            .params
            .iter()
            .zip(grads)
            .map(|(p, g)| {
                (p.trainable && g.is_none())
                    .then(|| Tensor::zeros_on(p.value.shape(), p.value.device()))
            })
            .collect();
        let mut updates: Vec<ParamUpdate<'_>> = Vec::new();
        for ((p, g), z) in self.params.iter_mut().zip(grads).zip(&zeros) {
            if !p.trainable {
                continue;
            }
            let grad = g.as_ref().or(z.as_ref()).expect("gradient or zero");
            updates.push(ParamUpdate {
                // No gradient, no decay: a weight the loss never reaches (a head's
                // unused classifier) stays put, as PyTorch skips it.
                decay: is_decayed(&p.name) && g.is_some(),
                value: Arc::make_mut(&mut p.value),
                grad,
            });
        }
        opt.update(&mut updates, lr);
    }
}

/// The tape vars of a [`ParamStore`] for one forward pass, looked up by name.
pub struct ParamVars<'a> {
    store: &'a ParamStore,
    vars: Vec<Var>,
}

impl ParamVars<'_> {
    /// The var of a parameter; panics with the name if the model has no such key.
    pub fn get(&self, name: &str) -> &Var {
        match self.store.index.get(name) {
            Some(&i) => &self.vars[i],
            None => panic!("model has no parameter named {name}"),
        }
    }

    pub fn vars(&self) -> &[Var] {
        &self.vars
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pixel_engine::optim::AdamWConfig;

    #[test]
    fn adamw_leaves_weights_without_a_gradient_untouched() {
        let mut store = ParamStore::new();
        store.insert("used.weight", Tensor::full(&[2], 1.0), true);
        store.insert("unused.weight", Tensor::full(&[2], 1.0), true);
        let mut opt = AdamW::new(AdamWConfig {
            weight_decay: 0.1,
            ..Default::default()
        });
        let grads = vec![Some(Tensor::full(&[2], 0.5)), None];
        for _ in 0..3 {
            store.adamw_update(&mut opt, &grads, 0.01);
        }
        assert_eq!(store.get("unused.weight").data(), &[1.0, 1.0]);
        assert!(store.get("used.weight").data()[0] < 0.99);
    }
}
