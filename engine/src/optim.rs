//! AdamW (HuggingFace `transformers.AdamW` semantics), global-norm gradient
//! clipping and learning-rate schedules.

use pixel_kernels::adamw::{self, AdamWStep};
use pixel_kernels::elementwise::sum_squares_each as sum_squares_buffers;

use crate::tensor::{same_device, Tensor};

/// AdamW hyper-parameters (HF defaults: beta1 0.9, beta2 0.999, eps 1e-8).
#[derive(Clone, Copy, Debug)]
pub struct AdamWConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// One parameter as the optimizer sees it: its value, its gradient and its
/// group (decayed or not: HF excludes biases and LayerNorm weights).
pub struct ParamUpdate<'a> {
    pub value: &'a mut Tensor,
    pub grad: &'a Tensor,
    pub decay: bool,
}

/// AdamW state: first and second moments, one tensor per parameter (in a
/// fixed order) on the parameter's device, and the number of updates taken.
#[derive(Clone, Debug, Default)]
pub struct AdamW {
    pub config: AdamWConfig,
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
    /// Updates taken so far (the next update uses t = step + 1).
    pub step: u64,
}

impl AdamW {
    pub fn new(config: AdamWConfig) -> AdamW {
        AdamW {
            config,
            m: Vec::new(),
            v: Vec::new(),
            step: 0,
        }
    }

    /// Apply one update with learning rate `lr` to every parameter (one
    /// kernel call for all of them: a fused launch on CUDA). The order of
    /// `params` must be the same at every call (it indexes the moments).
    pub fn update(&mut self, params: &mut [ParamUpdate<'_>], lr: f32) {
        if self.m.is_empty() {
            self.m = params
                .iter()
                .map(|p| Tensor::zeros_on(p.value.shape(), p.value.device()))
                .collect();
            self.v = self.m.clone();
        }
        assert_eq!(
            self.m.len(),
            params.len(),
            "AdamW::update: optimizer state has {} parameters, got {}",
            self.m.len(),
            params.len()
        );
        for (i, p) in params.iter().enumerate() {
            assert!(
                p.value.shape() == p.grad.shape() && self.m[i].shape() == p.value.shape(),
                "AdamW::update: parameter {i} has shape {:?}, gradient {:?}, state {:?}",
                p.value.shape(),
                p.grad.shape(),
                self.m[i].shape()
            );
            same_device("AdamW::update", &[p.value, p.grad, &self.m[i], &self.v[i]]);
        }
        self.step += 1;
        let h = AdamWStep {
            lr,
            beta1: self.config.beta1,
            beta2: self.config.beta2,
            eps: self.config.eps,
            weight_decay: 0.0, // per parameter below
            t: self.step,
        };
        let lens: Vec<usize> = params.iter().map(|p| p.value.numel()).collect();
        let decay: Vec<f32> = params
            .iter()
            .map(|p| {
                if p.decay {
                    self.config.weight_decay
                } else {
                    0.0
                }
            })
            .collect();
        let grads: Vec<_> = params.iter().map(|p| p.grad.buffer()).collect();
        let mut values: Vec<_> = params.iter_mut().map(|p| p.value.buffer_mut()).collect();
        let mut m: Vec<_> = self.m.iter_mut().map(|t| t.buffer_mut()).collect();
        let mut v: Vec<_> = self.v.iter_mut().map(|t| t.buffer_mut()).collect();
        adamw::update(&mut values, &grads, &mut m, &mut v, &lens, &decay, h);
    }
}

/// Sum of squares of each gradient, in f64 (device gradients: reduced on the
/// device, one read-back for all of them).
pub fn sum_squares_each(grads: &[&Tensor]) -> Vec<f64> {
    let buffers: Vec<_> = grads.iter().map(|g| (g.buffer(), g.numel())).collect();
    sum_squares_buffers(&buffers)
}

fn sum_squares_all(grads: &[&Tensor]) -> f64 {
    sum_squares_each(grads).iter().sum()
}

/// Global L2 norm of all gradients (accumulated in f64).
pub fn global_grad_norm(grads: &[&Tensor]) -> f64 {
    sum_squares_all(grads).sqrt()
}

/// Clip gradients to a global norm as `torch.nn.utils.clip_grad_norm_`:
/// `coef = min(1, max_norm / (norm + 1e-6))`. Returns (norm before clipping, coef).
pub fn clip_grad_norm(grads: &mut [&mut Tensor], max_norm: f32) -> (f64, f32) {
    let views: Vec<&Tensor> = grads.iter().map(|g| &**g).collect();
    let norm = sum_squares_all(&views).sqrt();
    let coef = (max_norm as f64 / (norm + 1e-6)).min(1.0) as f32;
    if coef < 1.0 {
        for g in grads.iter_mut() {
            g.scale_in_place(coef);
        }
    }
    (norm, coef)
}

/// Learning-rate schedules, evaluated at a 0-based update index.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    /// Linear warmup 0 -> max over `warmup` updates, then half-cosine down to
    /// `min_lr` at `total` (PIXEL pretraining, SPEC 6.1).
    WarmupCosineToMin {
        max_lr: f32,
        min_lr: f32,
        warmup: u64,
        total: u64,
    },
    /// Linear warmup, then linear decay to 0 at `total` (HF finetuning default).
    WarmupLinear {
        max_lr: f32,
        warmup: u64,
        total: u64,
    },
    Constant {
        lr: f32,
    },
}

impl LrSchedule {
    pub fn lr(&self, step: u64) -> f32 {
        match *self {
            LrSchedule::WarmupCosineToMin {
                max_lr,
                min_lr,
                warmup,
                total,
            } => {
                if step < warmup {
                    return max_lr * step as f32 / warmup as f32;
                }
                // Clamped at 1 so steps past `total` stay at the floor (the reference
                // never steps past `total`).
                let progress = ((step - warmup) as f64
                    / (total.saturating_sub(warmup)).max(1) as f64)
                    .min(1.0);
                let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                let lr = min_lr as f64 + (max_lr - min_lr) as f64 * cos;
                lr.max(min_lr as f64) as f32
            }
            LrSchedule::WarmupLinear {
                max_lr,
                warmup,
                total,
            } => {
                if step < warmup {
                    return max_lr * step as f32 / warmup.max(1) as f32;
                }
                let rest =
                    total.saturating_sub(step) as f32 / total.saturating_sub(warmup).max(1) as f32;
                max_lr * rest.max(0.0)
            }
            LrSchedule::Constant { lr } => lr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{inputs, on, test_device};

    #[test]
    fn cosine_schedule_warms_up_then_decays_to_floor() {
        let s = LrSchedule::WarmupCosineToMin {
            max_lr: 1e-3,
            min_lr: 1e-5,
            warmup: 10,
            total: 110,
        };
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(5) - 5e-4).abs() < 1e-9);
        assert!((s.lr(10) - 1e-3).abs() < 1e-9);
        assert!((s.lr(60) - (1e-5 + (1e-3 - 1e-5) * 0.5)).abs() < 1e-7);
        assert!((s.lr(110) - 1e-5).abs() < 1e-9);
        assert!((s.lr(500) - 1e-5).abs() < 1e-6);
    }

    #[test]
    fn linear_schedule_reaches_zero() {
        let s = LrSchedule::WarmupLinear {
            max_lr: 1.0,
            warmup: 4,
            total: 12,
        };
        assert_eq!(s.lr(2), 0.5);
        assert_eq!(s.lr(4), 1.0);
        assert_eq!(s.lr(8), 0.5);
        assert_eq!(s.lr(12), 0.0);
    }

    #[test]
    fn clipping_scales_to_max_norm() {
        let mut a = Tensor::new(&[2], vec![3.0, 0.0]);
        let mut b = Tensor::new(&[1], vec![4.0]);
        let (norm, coef) = clip_grad_norm(&mut [&mut a, &mut b], 1.0);
        assert!((norm - 5.0).abs() < 1e-9);
        assert!((coef - 0.2).abs() < 1e-6);
        let after = global_grad_norm(&[&a, &b]);
        assert!((after - 1.0).abs() < 1e-5);
    }

    #[test]
    fn adamw_first_step_matches_hand_computation() {
        // t = 1: m = 0.1 g, v = 0.001 g^2, step = lr * sqrt(0.001) / 0.1 * m / (sqrt(v) + eps)
        let mut opt = AdamW::new(AdamWConfig {
            weight_decay: 0.5,
            ..Default::default()
        });
        let mut p = Tensor::new(&[2], vec![1.0, -2.0]);
        let g = Tensor::new(&[2], vec![0.5, -0.25]);
        opt.update(
            &mut [ParamUpdate {
                value: &mut p,
                grad: &g,
                decay: true,
            }],
            0.1,
        );
        for (i, (&p0, &g0)) in [1.0f64, -2.0].iter().zip(&[0.5f64, -0.25]).enumerate() {
            let m = 0.1 * g0;
            let v = 0.001 * g0 * g0;
            let mut expect = p0 - 0.1 * 0.001f64.sqrt() / 0.1 * m / (v.sqrt() + 1e-8);
            expect -= 0.1 * 0.5 * expect;
            assert!(
                (p.data()[i] as f64 - expect).abs() < 1e-6,
                "{i}: {} vs {expect}",
                p.data()[i]
            );
        }
    }

    test_device!(adamw_steps_and_clipping, 1e-5, |d| {
        let x = inputs(&[&[4, 3], &[5], &[4, 3], &[5]], 56);
        let mut p0 = on(d, &x[0]);
        let mut p1 = on(d, &x[1]);
        let mut opt = AdamW::new(AdamWConfig {
            weight_decay: 0.1,
            ..Default::default()
        });
        let mut norms = Vec::new();
        for step in 0..3 {
            let mut g0 = on(d, &x[2]);
            let mut g1 = on(d, &x[3]);
            g0.scale_in_place(1.0 + step as f32);
            let (norm, coef) = clip_grad_norm(&mut [&mut g0, &mut g1], 1.5);
            norms.extend([norm as f32, coef]);
            opt.update(
                &mut [
                    ParamUpdate {
                        value: &mut p0,
                        grad: &g0,
                        decay: true,
                    },
                    ParamUpdate {
                        value: &mut p1,
                        grad: &g1,
                        decay: false,
                    },
                ],
                1e-2,
            );
        }
        vec![
            p0.to_host(),
            p1.to_host(),
            Tensor::new(&[norms.len()], norms),
        ]
    });
}
