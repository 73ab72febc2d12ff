//! CUDA launcher of the fused AdamW kernel (adamw.cu): one launch for every parameter.

use cudarc::driver::{DevicePtr, PushKernelArg};

use crate::cuda::context::{upload, DeviceBuffer};
use crate::cuda::launch::{check, grid, launch, ptr, same_device};

/// Hyper-parameters of one fused AdamW launch (see [`crate::adamw`]).
#[derive(Clone, Copy, Debug)]
pub struct FusedAdamW {
    /// lr * sqrt(1 - beta2^t) / (1 - beta1^t)
    pub step_size: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

/// One AdamW update of every parameter in one launch. `params[i]`,
/// `grads[i]`, `m[i]` and `v[i]` hold `lens[i]` values; `decay[i]` = lr *
/// weight_decay (0 for undecayed parameters).
#[allow(clippy::too_many_arguments)]
pub fn adamw_fused(
    params: &mut [&mut DeviceBuffer],
    grads: &[&DeviceBuffer],
    m: &mut [&mut DeviceBuffer],
    v: &mut [&mut DeviceBuffer],
    lens: &[usize],
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
    assert!(
        m.len() == count && v.len() == count,
        "adamw_fused: moments of {} and {} parameters for {count}",
        m.len(),
        v.len()
    );
    let total: usize = lens.iter().sum();
    let dev = grads[0].device.clone();
    let mut offsets = Vec::with_capacity(count);
    let mut at = 0i64;
    for i in 0..count {
        for b in [&*params[i], grads[i], &*m[i], &*v[i]] {
            check("adamw_fused", b, lens[i]);
        }
        same_device("adamw_fused", &[params[i], grads[i], m[i], v[i], grads[0]]);
        offsets.push(at);
        at += lens[i] as i64;
    }
    let table = |bufs: Vec<&DeviceBuffer>| -> Vec<u64> { bufs.iter().map(|b| ptr(b, 0)).collect() };
    let d_p = upload(&dev, &table(params.iter().map(|b| &**b).collect()));
    let d_g = upload(&dev, &table(grads.to_vec()));
    let d_m = upload(&dev, &table(m.iter().map(|b| &**b).collect()));
    let d_v = upload(&dev, &table(v.iter().map(|b| &**b).collect()));
    let (d_off, d_decay) = (upload(&dev, &offsets), upload(&dev, decay));
    let pp = d_p.device_ptr(&dev.stream).0;
    let pg = d_g.device_ptr(&dev.stream).0;
    let pm = d_m.device_ptr(&dev.stream).0;
    let p_v = d_v.device_ptr(&dev.stream).0;
    let po = d_off.device_ptr(&dev.stream).0;
    let pd = d_decay.device_ptr(&dev.stream).0;
    let (count_, total_) = (count as i32, total as i64);
    launch!(
        &dev,
        "adamw_fused",
        grid(total),
        [
            &pp,
            &pg,
            &pm,
            &p_v,
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
