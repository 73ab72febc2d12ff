//! CUDA launchers of the softmax kernels (softmax.cu).

use cudarc::driver::PushKernelArg;

use crate::cuda::context::DeviceBuffer;
use crate::cuda::launch::{check, int, launch, per_row, ptr, same_device};
/// Row softmax of `x` (rows, cols) plus an optional additive mask (G, cols),
/// rows sharing mask row `r / rows_per_mask_row`, written to `y`. With
/// `x == None` the softmax runs in place on `y`.
pub fn softmax_forward(
    y: &mut DeviceBuffer,
    x: Option<&DeviceBuffer>,
    mask: Option<&DeviceBuffer>,
    rows: usize,
    cols: usize,
    rows_per_mask_row: usize,
) {
    check("softmax_forward", y, rows * cols);
    if let Some(x) = x {
        check("softmax_forward", x, rows * cols);
        same_device("softmax_forward", &[y, x]);
    }
    if let Some(m) = mask {
        check(
            "softmax_forward",
            m,
            rows.div_ceil(rows_per_mask_row.max(1)) * cols,
        );
        same_device("softmax_forward", &[y, m]);
    }
    let py = ptr(y, 0);
    let px = x.map_or(py, |x| ptr(x, 0));
    let (pm, has_mask) = mask.map_or((py, 0i32), |m| (ptr(m, 0), 1));
    let (r_, c_, g_) = (
        int("softmax", rows),
        int("softmax", cols),
        int("softmax", rows_per_mask_row.max(1)),
    );
    launch!(
        &y.device,
        "softmax_forward",
        per_row(rows, cols),
        [&py, &px, &pm, &has_mask, &r_, &c_, &g_]
    );
}

/// `dx = y (dy - sum(dy y))` per row (dx may be dy: in place).
pub fn softmax_backward(
    dx: &mut DeviceBuffer,
    dy: Option<&DeviceBuffer>,
    y: &DeviceBuffer,
    rows: usize,
    cols: usize,
) {
    check("softmax_backward", dx, rows * cols);
    check("softmax_backward", y, rows * cols);
    let dev = same_device("softmax_backward", &[dx, y]);
    let pdx = ptr(dx, 0);
    let (pd, py) = (dy.map_or(pdx, |d| ptr(d, 0)), ptr(y, 0));
    let (r_, c_) = (int("softmax", rows), int("softmax", cols));
    launch!(
        dev,
        "softmax_backward",
        per_row(rows, cols),
        [&pdx, &pd, &py, &r_, &c_]
    );
}
