//! CUDA launchers of the dropout kernels (dropout.cu).

use cudarc::driver::PushKernelArg;

use crate::cuda::context::DeviceBuffer;
use crate::cuda::launch::{check, grid, int, launch, ptr};
/// Inverted dropout in place on `x[..n]`: element i kept (and scaled by
/// 1 / (1 - p)) when the hash of (seed, i) is >= p. The same seed gives the same mask.
pub fn dropout_in_place(x: &mut DeviceBuffer, n: usize, seed: u64, p: f32) {
    check("dropout", x, n);
    let keep_scale = 1.0 / (1.0 - p);
    let (px, n_) = (ptr(x, 0), int("dropout", n));
    launch!(
        &x.device,
        "dropout_apply",
        grid(n),
        [&px, &px, &seed, &p, &keep_scale, &n_]
    );
}
