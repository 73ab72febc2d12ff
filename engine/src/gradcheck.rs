//! Finite-difference gradient checks for tape ops.
//!
//! The op under test maps input vars to an output; the scalar checked is
//! `sum(out * R)` for a fixed random `R`, so every output element carries a
//! different, non-trivial upstream gradient. Analytic gradients come from
//! [`Tape::backward_with`]; numeric ones from central differences on a
//! no-grad tape, with the sum accumulated in f64.

use std::sync::Arc;

use crate::rng::Rng;
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// Settings of one check.
#[derive(Clone, Copy, Debug)]
pub struct GradcheckConfig {
    /// Finite-difference step.
    pub eps: f32,
    /// Relative tolerance against the larger of the two gradients.
    pub rtol: f32,
    /// Absolute tolerance, as a fraction of the largest numeric gradient.
    pub atol_scale: f32,
    /// At most this many elements per input are perturbed (chosen at random).
    pub max_checks_per_input: usize,
    pub seed: u64,
}

impl Default for GradcheckConfig {
    fn default() -> Self {
        GradcheckConfig {
            eps: 1e-2,
            rtol: 2e-2,
            atol_scale: 2e-3,
            max_checks_per_input: 48,
            seed: 1234,
        }
    }
}

/// Random tensor with entries ~ N(0, 1) (for test inputs).
pub fn randn(shape: &[usize], rng: &mut Rng) -> Tensor {
    let mut t = Tensor::zeros(shape);
    rng.fill_normal(t.data_mut(), 0.0, 1.0);
    t
}

fn weighted_sum(out: &Tensor, r: &Tensor) -> f64 {
    out.data()
        .iter()
        .zip(r.data())
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum()
}

/// Check the gradients of `f` with respect to every input. `differentiable[i]`
/// false skips input i (e.g. index-like inputs). Returns the worst relative
/// error on success, a description of the first failure otherwise.
pub fn gradcheck(
    inputs: &[Tensor],
    differentiable: &[bool],
    cfg: GradcheckConfig,
    f: impl Fn(&mut Tape, &[Var]) -> Var,
) -> Result<f32, String> {
    assert_eq!(inputs.len(), differentiable.len());
    let mut rng = Rng::new(cfg.seed);
    // Analytic pass.
    let mut tape = Tape::new();
    let vars: Vec<Var> = inputs
        .iter()
        .zip(differentiable)
        .map(|(x, &d)| {
            if d {
                tape.leaf(Arc::new(x.clone()))
            } else {
                Var::constant(x.clone())
            }
        })
        .collect();
    let out = f(&mut tape, &vars);
    let r = randn(out.shape(), &mut rng);
    let grads = tape.backward_with(&out, r.clone());
    let mut worst = 0.0f32;
    for (i, x) in inputs.iter().enumerate() {
        if !differentiable[i] {
            continue;
        }
        let analytic = grads
            .get(&vars[i])
            .cloned()
            .unwrap_or_else(|| Tensor::zeros(x.shape()));
        if analytic.shape() != x.shape() {
            return Err(format!(
                "input {i}: gradient shape {:?} != input shape {:?}",
                analytic.shape(),
                x.shape()
            ));
        }
        let n = x.numel();
        let picks: Vec<usize> = if n <= cfg.max_checks_per_input {
            (0..n).collect()
        } else {
            (0..cfg.max_checks_per_input)
                .map(|_| rng.int_inclusive(0, n - 1))
                .collect()
        };
        let mut numeric = Vec::with_capacity(picks.len());
        for &j in &picks {
            let eval = |delta: f32| {
                let mut moved: Vec<Tensor> = inputs.to_vec();
                moved[i].data_mut()[j] += delta;
                let mut t = Tape::no_grad();
                let vs: Vec<Var> = moved.into_iter().map(Var::constant).collect();
                weighted_sum(f(&mut t, &vs).value(), &r)
            };
            numeric.push(((eval(cfg.eps) - eval(-cfg.eps)) / (2.0 * cfg.eps as f64)) as f32);
        }
        let scale = numeric.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
        for (&j, &num) in picks.iter().zip(&numeric) {
            let ana = analytic.data()[j];
            let err = (ana - num).abs();
            let bound = cfg.rtol * ana.abs().max(num.abs()) + cfg.atol_scale * scale;
            if err.is_nan() || err > bound {
                return Err(format!(
                    "input {i} element {j}: analytic {ana:.6e} vs numeric {num:.6e} (|diff| {err:.3e} > {bound:.3e})"
                ));
            }
            worst = worst.max(err / (ana.abs().max(num.abs()) + cfg.atol_scale * scale));
        }
    }
    Ok(worst)
}
