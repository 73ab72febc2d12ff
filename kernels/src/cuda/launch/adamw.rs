//! One fused AdamW launch over every parameter (adamw.cu).

use cudarc::driver::{DevicePtr, PushKernelArg};

use super::{check, grid, ptr, same_device};
use crate::cuda::context::{upload, DeviceBuffer};

/// Hyper-parameters of one fused AdamW launch (see [`crate::adamw`]).
#[derive(Clone, Copy, Debug)]
pub struct FusedAdamW {
    /// lr * sqrt(1 - beta2^t) / (1 - beta1^t)
    pub step_size: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

/// One AdamW update of every parameter in one launch. `params[i]` and
/// `grads[i]` hold `lens[i]` values; `m` and `v` are flat (sum of lens);
/// `decay[i]` = lr * weight_decay (0 for undecayed parameters).
pub fn adamw_fused(
    params: &mut [&mut DeviceBuffer],
    grads: &[&DeviceBuffer],
    lens: &[usize],
    m: &mut DeviceBuffer,
    v: &mut DeviceBuffer,
    decay: &[f32],
    h: FusedAdamW,
) {
    let count = params.len();
    assert!(
        grads.len() == count && lens.len() == count && decay.len() == count,
        "adamw_fused: {count} parameters, {} gradients, {} lengths, {} decays",
        grads.len(),
        lens.len(),
        decay.len()
    );
    if count == 0 {
        return;
    }
    let total: usize = lens.iter().sum();
    check("adamw_fused", m, total);
    check("adamw_fused", v, total);
    let dev = m.device.clone();
    let mut offsets = Vec::with_capacity(count);
    let mut at = 0i64;
    for i in 0..count {
        check("adamw_fused", params[i], lens[i]);
        check("adamw_fused", grads[i], lens[i]);
        same_device("adamw_fused", &[params[i], grads[i], m]);
        offsets.push(at);
        at += lens[i] as i64;
    }
    let p_table: Vec<u64> = params.iter().map(|p| ptr(p, 0)).collect();
    let g_table: Vec<u64> = grads.iter().map(|g| ptr(g, 0)).collect();
    let (d_p, d_g, d_off, d_decay) = (
        upload(&dev, &p_table),
        upload(&dev, &g_table),
        upload(&dev, &offsets),
        upload(&dev, decay),
    );
    let pp = d_p.device_ptr(&dev.stream).0;
    let pg = d_g.device_ptr(&dev.stream).0;
    let po = d_off.device_ptr(&dev.stream).0;
    let pd = d_decay.device_ptr(&dev.stream).0;
    let (pm, pv) = (ptr(m, 0), ptr(v, 0));
    let (count_, total_) = (count as i32, total as i64);
    launch!(
        &dev,
        "adamw_fused",
        grid(total),
        [
            &pp,
            &pg,
            &pm,
            &pv,
            &po,
            &pd,
            &count_,
            &total_,
            &h.step_size,
            &h.beta1,
            &h.beta2,
            &h.eps
        ]
    );
}
