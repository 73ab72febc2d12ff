//! CUDA launchers of the max-over-an-axis kernels (reduce.cu).

use cudarc::driver::PushKernelArg;

use crate::cuda::context::DeviceBuffer;
use crate::cuda::launch::{check, grid, int, launch, ptr, same_device};

pub fn max_axis_forward(
    out: &mut DeviceBuffer,
    x: &DeviceBuffer,
    outer: usize,
    len: usize,
    inner: usize,
) {
    check("max_axis_forward", out, outer * inner);
    check("max_axis_forward", x, outer * len * inner);
    let dev = same_device("max_axis_forward", &[out, x]);
    let (po, px) = (ptr(out, 0), ptr(x, 0));
    let (o, l, i) = (
        int("max_axis", outer),
        int("max_axis", len),
        int("max_axis", inner),
    );
    launch!(
        dev,
        "max_axis_forward",
        grid(outer * inner),
        [&po, &px, &o, &l, &i]
    );
}

#[allow(clippy::too_many_arguments)]
pub fn max_axis_backward(
    dx: &mut DeviceBuffer,
    dy: &DeviceBuffer,
    x: &DeviceBuffer,
    outer: usize,
    len: usize,
    inner: usize,
) {
    check("max_axis_backward", dx, outer * len * inner);
    check("max_axis_backward", dy, outer * inner);
    check("max_axis_backward", x, outer * len * inner);
    let dev = same_device("max_axis_backward", &[dx, dy, x]);
    let (pdx, pdy, px) = (ptr(dx, 0), ptr(dy, 0), ptr(x, 0));
    let (o, l, i) = (
        int("max_axis", outer),
        int("max_axis", len),
        int("max_axis", inner),
    );
    launch!(
        dev,
        "max_axis_backward",
        grid(outer * inner),
        [&pdx, &pdy, &px, &o, &l, &i]
    );
}
