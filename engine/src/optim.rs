//! AdamW (HuggingFace `transformers.AdamW` semantics), global-norm gradient
//! clipping and learning-rate schedules.

use pixel_kernels::adamw::{adamw_update, AdamWStep};
use pixel_kernels::elementwise::{scale, sum_squares};

#[cfg(feature = "cuda")]
use crate::tensor::Device;
use crate::tensor::Tensor;
#[cfg(feature = "cuda")]
use pixel_kernels::cuda::DeviceBuffer;

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

/// AdamW state: first and second moments per parameter (in a fixed order) and
/// the number of updates taken.
#[derive(Clone, Debug, Default)]
pub struct AdamW {
    pub config: AdamWConfig,
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
    /// Updates taken so far (the next update uses t = step + 1).
    pub step: u64,
    /// Moments of device parameters: (m, v), each one flat buffer over every
    /// parameter in order (the fused kernel updates them all in one launch).
    #[cfg(feature = "cuda")]
    pub device_moments: Option<(DeviceBuffer, DeviceBuffer)>,
}

impl AdamW {
    pub fn new(config: AdamWConfig) -> AdamW {
        AdamW {
            config,
            m: Vec::new(),
            v: Vec::new(),
            step: 0,
            #[cfg(feature = "cuda")]
            device_moments: None,
        }
    }

    /// Apply one update with learning rate `lr` to every parameter. The order
    /// of `params` must be the same at every call (it indexes the moments).
    pub fn update(&mut self, params: &mut [ParamUpdate<'_>], lr: f32) {
        #[cfg(feature = "cuda")]
        if params.iter().any(|p| p.value.device() != Device::Cpu) {
            return self.update_cuda(params, lr);
        }
        if self.m.is_empty() {
            self.m = params.iter().map(|p| vec![0.0; p.value.numel()]).collect();
            self.v = self.m.clone();
        }
        assert_eq!(
            self.m.len(),
            params.len(),
            "AdamW::update: optimizer state has {} parameters, got {}",
            self.m.len(),
            params.len()
        );
        self.step += 1;
        for (i, p) in params.iter_mut().enumerate() {
            assert!(
                p.value.shape() == p.grad.shape() && self.m[i].len() == p.value.numel(),
                "AdamW::update: parameter {i} has shape {:?}, gradient {:?}, state of {} values",
                p.value.shape(),
                p.grad.shape(),
                self.m[i].len()
            );
            let h = AdamWStep {
                lr,
                beta1: self.config.beta1,
                beta2: self.config.beta2,
                eps: self.config.eps,
                weight_decay: if p.decay {
                    self.config.weight_decay
                } else {
                    0.0
                },
                t: self.step,
            };
            adamw_update(
                p.value.data_mut(),
                p.grad.data(),
                &mut self.m[i],
                &mut self.v[i],
                h,
            );
        }
    }
}

#[cfg(feature = "cuda")]
impl AdamW {
    /// [`AdamW::update`] for device parameters: one fused kernel over all of them.
    fn update_cuda(&mut self, params: &mut [ParamUpdate<'_>], lr: f32) {
        use pixel_kernels::cuda::launch::{adamw_fused, FusedAdamW};
        let device = params[0].value.device();
        for (i, p) in params.iter().enumerate() {
            assert!(
                p.value.device() == device && p.grad.device() == device,
                "AdamW::update: parameter {i} on {:?} with gradient on {:?}, parameter 0 on {device:?}",
                p.value.device(),
                p.grad.device()
            );
            assert_eq!(
                p.value.shape(),
                p.grad.shape(),
                "AdamW::update: parameter {i} and its gradient differ in shape"
            );
        }
        assert!(
            self.m.is_empty(),
            "AdamW::update: host moments exist but the parameters are on {device:?}"
        );
        let lens: Vec<usize> = params.iter().map(|p| p.value.numel()).collect();
        let total: usize = lens.iter().sum();
        let (m, v) = self.device_moments.get_or_insert_with(|| {
            let dev = params[0].value.cuda_buffer("AdamW").device().clone();
            (
                DeviceBuffer::zeros(&dev, total),
                DeviceBuffer::zeros(&dev, total),
            )
        });
        assert!(
            m.capacity() >= total,
            "AdamW::update: device moments hold {} values, parameters {total}",
            m.capacity()
        );
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - (self.config.beta1 as f64).powi(t);
        let bc2 = 1.0 - (self.config.beta2 as f64).powi(t);
        let h = FusedAdamW {
            step_size: (lr as f64 * bc2.sqrt() / bc1) as f32,
            beta1: self.config.beta1,
            beta2: self.config.beta2,
            eps: self.config.eps,
        };
        let decay: Vec<f32> = params
            .iter()
            .map(|p| {
                if p.decay {
                    lr * self.config.weight_decay
                } else {
                    0.0
                }
            })
            .collect();
        let mut values = Vec::with_capacity(params.len());
        let mut grads = Vec::with_capacity(params.len());
        for p in params.iter_mut() {
            grads.push(p.grad.cuda_buffer("AdamW"));
            values.push(p.value.cuda_buffer_mut("AdamW"));
        }
        adamw_fused(&mut values, &grads, &lens, m, v, &decay, h);
    }
}

/// Sum of squares of every gradient (device gradients reduced on the device,
/// one read-back for all of them).
fn sum_squares_all(grads: &[&Tensor]) -> f64 {
    #[cfg(feature = "cuda")]
    if grads.iter().any(|g| g.device() != Device::Cpu) {
        let bufs: Vec<_> = grads
            .iter()
            .map(|g| (g.cuda_buffer("clip_grad_norm"), g.numel()))
            .collect();
        return pixel_kernels::cuda::launch::sum_squares(&bufs).iter().sum();
    }
    grads.iter().map(|g| sum_squares(g.data())).sum::<f64>()
}

/// Sum of squares of each gradient, in f64 (device gradients: one read-back for all).
pub fn sum_squares_each(grads: &[&Tensor]) -> Vec<f64> {
    #[cfg(feature = "cuda")]
    if grads.iter().any(|g| g.device() != Device::Cpu) {
        let bufs: Vec<_> = grads
            .iter()
            .map(|g| (g.cuda_buffer("sum_squares_each"), g.numel()))
            .collect();
        return pixel_kernels::cuda::launch::sum_squares(&bufs);
    }
    grads.iter().map(|g| sum_squares(g.data())).collect()
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
            if g.device() == crate::tensor::Device::Cpu {
                scale(g.data_mut(), coef);
            } else {
                g.scale_in_place(coef);
            }
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
}
