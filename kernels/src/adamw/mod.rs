//! HuggingFace `transformers.AdamW` update, fused over one parameter buffer.
//!
//! With t = step (1-based): `m = b1 m + (1-b1) g`, `v = b2 v + (1-b2) g^2`,
//! `p -= lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)`, then decoupled
//! decay on the updated value: `p -= lr * wd * p`. (eps sits outside the
//! bias correction, unlike `torch.optim.AdamW`.)

use crate::cpu::{simd_dispatch, Isa};
use rayon::prelude::*;

/// Hyper-parameters of one AdamW update.
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// 1-based step count used for bias correction.
    pub t: u64,
}

const CHUNK: usize = 16384;

/// Update `param` in place from `grad`, with moments `m` and `v` (all same length).
pub fn adamw_update(param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], h: AdamWStep) {
    let n = param.len();
    assert!(
        grad.len() == n && m.len() == n && v.len() == n,
        "adamw_update: length mismatch"
    );
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|((p, g), (m, v))| adamw_update_with(crate::cpu::isa(), p, g, m, v, h));
}

/// The update loop with the bias correction hoisted and the decay branch
/// outside the loop, so the compiler vectorises it (sqrt and div are exact
/// IEEE operations in any width: results equal the scalar reference's bits).
#[inline(always)]
fn adamw_update_body(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], h: AdamWStep) {
    let t = h.t as i32;
    let bc1 = 1.0 - (h.beta1 as f64).powi(t);
    let bc2 = 1.0 - (h.beta2 as f64).powi(t);
    let step_size = (h.lr as f64 * bc2.sqrt() / bc1) as f32;
    let decay = h.lr * h.weight_decay;
    let n = p.len().min(g.len()).min(m.len()).min(v.len());
    let (p, g, m, v) = (&mut p[..n], &g[..n], &mut m[..n], &mut v[..n]);
    for i in 0..n {
        m[i] = h.beta1 * m[i] + (1.0 - h.beta1) * g[i];
        v[i] = h.beta2 * v[i] + (1.0 - h.beta2) * g[i] * g[i];
        p[i] -= step_size * m[i] / (v[i].sqrt() + h.eps);
    }
    if decay != 0.0 {
        for x in p.iter_mut() {
            *x -= decay * *x;
        }
    }
}

/// [`adamw_update`] of one chunk on the calling thread with `isa`'s build
/// (all three give the same bits).
pub fn adamw_update_with(
    isa: Isa,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    h: AdamWStep,
) {
    simd_dispatch!(
        isa,
        adamw_update_scalar,
        adamw_update_avx2,
        adamw_update_avx512,
        (p, g, m, v, h)
    )
}

/// [`adamw_update_body`] compiled for AVX-512 (16 lanes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")]
unsafe fn adamw_update_avx512(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    h: AdamWStep,
) {
    adamw_update_body(p, g, m, v, h)
}

/// [`adamw_update_body`] compiled for AVX2+FMA (8 lanes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn adamw_update_avx2(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], h: AdamWStep) {
    adamw_update_body(p, g, m, v, h)
}

/// Scalar reference of [`adamw_update`] (bias correction in f64).
pub fn adamw_update_scalar(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], h: AdamWStep) {
    let t = h.t as i32;
    let bc1 = 1.0 - (h.beta1 as f64).powi(t);
    let bc2 = 1.0 - (h.beta2 as f64).powi(t);
    let step_size = (h.lr as f64 * bc2.sqrt() / bc1) as f32;
    let decay = h.lr * h.weight_decay;
    for i in 0..p.len() {
        m[i] = h.beta1 * m[i] + (1.0 - h.beta1) * g[i];
        v[i] = h.beta2 * v[i] + (1.0 - h.beta2) * g[i] * g[i];
        p[i] -= step_size * m[i] / (v[i].sqrt() + h.eps);
        if decay != 0.0 {
            p[i] -= decay * p[i];
        }
    }
}

// ---------------------------------------------------------------------------
// Device-dispatched entry point: every parameter of a model in one call.

use crate::buffer::Buffer;

#[cfg(feature = "cuda")]
pub(crate) mod cuda;

/// One AdamW update of every parameter: `params[i]`, `grads[i]`, `m[i]`,
/// `v[i]` hold `lens[i]` values on one device; `weight_decay[i]` is that
/// parameter's decay (0 for biases and LayerNorm weights). CPU: one pass per
/// parameter; CUDA: one fused launch over all of them.
#[allow(clippy::too_many_arguments)]
pub fn update(
    params: &mut [&mut Buffer],
    grads: &[&Buffer],
    m: &mut [&mut Buffer],
    v: &mut [&mut Buffer],
    lens: &[usize],
    weight_decay: &[f32],
    h: AdamWStep,
) {
    const K: &str = "adamw";
    let count = params.len();
    assert!(
        grads.len() == count
            && m.len() == count
            && v.len() == count
            && lens.len() == count
            && weight_decay.len() == count,
        "{K}: {count} parameters with {} gradients, {} + {} moments, {} lengths, {} decays",
        grads.len(),
        m.len(),
        v.len(),
        lens.len(),
        weight_decay.len()
    );
    let Some(first) = params.first() else {
        return;
    };
    match &**first {
        Buffer::Cpu(_) => {
            for i in 0..count {
                let n = lens[i];
                let step = AdamWStep {
                    weight_decay: weight_decay[i],
                    ..h
                };
                adamw_update(
                    &mut params[i].host_mut(K)[..n],
                    &grads[i].host(K)[..n],
                    &mut m[i].host_mut(K)[..n],
                    &mut v[i].host_mut(K)[..n],
                    step,
                );
            }
        }
        #[cfg(feature = "cuda")]
        Buffer::Cuda(_) => {
            let t = h.t as i32;
            let bc1 = 1.0 - (h.beta1 as f64).powi(t);
            let bc2 = 1.0 - (h.beta2 as f64).powi(t);
            let fused = cuda::FusedAdamW {
                step_size: (h.lr as f64 * bc2.sqrt() / bc1) as f32,
                beta1: h.beta1,
                beta2: h.beta2,
                eps: h.eps,
            };
            let decay: Vec<f32> = weight_decay.iter().map(|wd| h.lr * wd).collect();
            let mut p: Vec<_> = params.iter_mut().map(|b| b.cuda_mut(K)).collect();
            let g: Vec<_> = grads.iter().map(|b| b.cuda(K)).collect();
            let mut mm: Vec<_> = m.iter_mut().map(|b| b.cuda_mut(K)).collect();
            let mut vv: Vec<_> = v.iter_mut().map(|b| b.cuda_mut(K)).collect();
            cuda::adamw_fused(&mut p, &g, &mut mm, &mut vv, lens, &decay, fused);
        }
    }
}
