//! CUDA launchers of the layer_norm kernels (layer_norm.cu).

use cudarc::driver::PushKernelArg;

use crate::cuda::context::DeviceBuffer;
use crate::cuda::launch::{check, column_chunks, int, launch, per_row, ptr, same_device};
use crate::elementwise::cuda::fill;
/// LayerNorm forward over rows of `cols`: out, mean (rows), rstd (rows).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_forward(
    out: &mut DeviceBuffer,
    mean: &mut DeviceBuffer,
    rstd: &mut DeviceBuffer,
    x: &DeviceBuffer,
    w: &DeviceBuffer,
    b: &DeviceBuffer,
    rows: usize,
    cols: usize,
    eps: f32,
) {
    for (buf, need) in [
        (&*out, rows * cols),
        (&*mean, rows),
        (&*rstd, rows),
        (x, rows * cols),
        (w, cols),
        (b, cols),
    ] {
        check("layer_norm_forward", buf, need);
    }
    let dev = same_device("layer_norm_forward", &[out, mean, rstd, x, w, b]);
    let (po, pm, pr, px, pw, pb) = (
        ptr(out, 0),
        ptr(mean, 0),
        ptr(rstd, 0),
        ptr(x, 0),
        ptr(w, 0),
        ptr(b, 0),
    );
    let (r_, c_) = (int("layer_norm", rows), int("layer_norm", cols));
    launch!(
        dev,
        "layer_norm_forward",
        per_row(rows, cols),
        [&po, &pm, &pr, &px, &pw, &pb, &r_, &c_, &eps]
    );
}

/// LayerNorm backward: dx (rows, cols), dw and db (cols, overwritten).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward(
    dx: &mut DeviceBuffer,
    dw: &mut DeviceBuffer,
    db: &mut DeviceBuffer,
    dy: &DeviceBuffer,
    x: &DeviceBuffer,
    w: &DeviceBuffer,
    mean: &DeviceBuffer,
    rstd: &DeviceBuffer,
    rows: usize,
    cols: usize,
) {
    for (buf, need) in [
        (&*dx, rows * cols),
        (&*dw, cols),
        (&*db, cols),
        (dy, rows * cols),
        (x, rows * cols),
        (w, cols),
        (mean, rows),
        (rstd, rows),
    ] {
        check("layer_norm_backward", buf, need);
    }
    let dev = same_device("layer_norm_backward", &[dx, dw, db, dy, x, w, mean, rstd]);
    let (pdx, pdy, px, pw, pm, pr) = (
        ptr(dx, 0),
        ptr(dy, 0),
        ptr(x, 0),
        ptr(w, 0),
        ptr(mean, 0),
        ptr(rstd, 0),
    );
    let (r_, c_) = (int("layer_norm", rows), int("layer_norm", cols));
    launch!(
        dev,
        "layer_norm_backward_dx",
        per_row(rows, cols),
        [&pdx, &pdy, &px, &pw, &pm, &pr, &r_, &c_]
    );
    fill(dw, cols, 0.0);
    fill(db, cols, 0.0);
    let (cfg, rpb) = column_chunks(rows, cols);
    let (pdw, pdb) = (ptr(dw, 0), ptr(db, 0));
    launch!(
        dev,
        "layer_norm_backward_dwdb",
        cfg,
        [&pdw, &pdb, &pdy, &px, &pm, &pr, &r_, &c_, &rpb]
    );
}

/// Per-row standardisation with the unbiased variance; saves rstd (rows).
pub fn normalize_rows_forward(
    out: &mut DeviceBuffer,
    rstd: &mut DeviceBuffer,
    x: &DeviceBuffer,
    rows: usize,
    cols: usize,
    eps: f32,
) {
    check("normalize_rows", out, rows * cols);
    check("normalize_rows", rstd, rows);
    check("normalize_rows", x, rows * cols);
    let dev = same_device("normalize_rows", &[out, rstd, x]);
    let (po, pr, px) = (ptr(out, 0), ptr(rstd, 0), ptr(x, 0));
    let (r_, c_) = (int("normalize_rows", rows), int("normalize_rows", cols));
    launch!(
        dev,
        "normalize_rows_forward",
        per_row(rows, cols),
        [&po, &pr, &px, &r_, &c_, &eps]
    );
}

/// Backward of [`normalize_rows_forward`].
pub fn normalize_rows_backward(
    dx: &mut DeviceBuffer,
    dy: &DeviceBuffer,
    x: &DeviceBuffer,
    rstd: &DeviceBuffer,
    rows: usize,
    cols: usize,
) {
    check("normalize_rows_backward", dx, rows * cols);
    check("normalize_rows_backward", dy, rows * cols);
    check("normalize_rows_backward", x, rows * cols);
    check("normalize_rows_backward", rstd, rows);
    let dev = same_device("normalize_rows_backward", &[dx, dy, x, rstd]);
    let (pdx, pdy, px, pr) = (ptr(dx, 0), ptr(dy, 0), ptr(x, 0), ptr(rstd, 0));
    let (r_, c_) = (int("normalize_rows", rows), int("normalize_rows", cols));
    launch!(
        dev,
        "normalize_rows_backward",
        per_row(rows, cols),
        [&pdx, &pdy, &px, &pr, &r_, &c_]
    );
}
