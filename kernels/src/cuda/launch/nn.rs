//! LayerNorm, target normalisation, softmax, GELU and dropout
//! (layer_norm.cu, softmax.cu, gelu.cu, dropout.cu).

use cudarc::driver::PushKernelArg;

use super::elementwise::fill;
use super::{check, column_chunks, grid, int, per_row, ptr, same_device};
use crate::cuda::context::DeviceBuffer;

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

/// `dx = y (dy - sum(dy y))` per row; in place on `dy_dx` (dy in, dx out).
pub fn softmax_backward_in_place(
    dy_dx: &mut DeviceBuffer,
    y: &DeviceBuffer,
    rows: usize,
    cols: usize,
) {
    check("softmax_backward", dy_dx, rows * cols);
    check("softmax_backward", y, rows * cols);
    let dev = same_device("softmax_backward", &[dy_dx, y]);
    let (pd, py) = (ptr(dy_dx, 0), ptr(y, 0));
    let (r_, c_) = (int("softmax", rows), int("softmax", cols));
    launch!(
        dev,
        "softmax_backward",
        per_row(rows, cols),
        [&pd, &pd, &py, &r_, &c_]
    );
}

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
