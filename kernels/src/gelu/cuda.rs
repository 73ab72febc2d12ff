//! CUDA launchers of the gelu kernels (gelu.cu).

use cudarc::driver::PushKernelArg;

use crate::cuda::context::DeviceBuffer;
use crate::cuda::launch::{check, grid, int, launch, ptr, same_device};
/// Exact GELU of `x[..n]` into `out`.
pub fn gelu_forward(out: &mut DeviceBuffer, x: &DeviceBuffer, n: usize) {
    check("gelu_forward", out, n);
    check("gelu_forward", x, n);
    let dev = same_device("gelu_forward", &[out, x]);
    let (po, px, n_) = (ptr(out, 0), ptr(x, 0), int("gelu", n));
    launch!(dev, "gelu_forward", grid(n), [&po, &px, &n_]);
}

/// `dx = dy * gelu'(x)`.
pub fn gelu_backward(dx: &mut DeviceBuffer, dy: &DeviceBuffer, x: &DeviceBuffer, n: usize) {
    check("gelu_backward", dx, n);
    check("gelu_backward", dy, n);
    check("gelu_backward", x, n);
    let dev = same_device("gelu_backward", &[dx, dy, x]);
    let (pdx, pdy, px, n_) = (ptr(dx, 0), ptr(dy, 0), ptr(x, 0), int("gelu", n));
    launch!(dev, "gelu_backward", grid(n), [&pdx, &pdy, &px, &n_]);
}
