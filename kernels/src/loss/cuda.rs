//! CUDA launchers of the loss kernels (loss.cu).

use cudarc::driver::{DevicePtr, PushKernelArg};

use crate::cuda::context::{upload, DeviceBuffer};
use crate::cuda::launch::{check, grid, int, launch, per_row, ptr, same_device};

/// `row_loss[r] = w[r] * mean_j (p - y)^2` for rows of `c` values.
pub fn masked_mse_rows(
    row_loss: &mut DeviceBuffer,
    p: &DeviceBuffer,
    y: &DeviceBuffer,
    w: &DeviceBuffer,
    rows: usize,
    c: usize,
) {
    check("masked_mse", row_loss, rows);
    check("masked_mse", p, rows * c);
    check("masked_mse", y, rows * c);
    check("masked_mse", w, rows);
    let dev = same_device("masked_mse", &[row_loss, p, y, w]);
    let (pl, pp, py, pw) = (ptr(row_loss, 0), ptr(p, 0), ptr(y, 0), ptr(w, 0));
    let (r_, c_) = (int("masked_mse", rows), int("masked_mse", c));
    launch!(
        dev,
        "masked_mse_rows",
        per_row(rows, c),
        [&pl, &pp, &py, &pw, &r_, &c_]
    );
}

/// Gradients of the masked MSE: dp and dt = -dp, scaled by the device scalar `dloss`.
#[allow(clippy::too_many_arguments)]
pub fn masked_mse_backward(
    dp: &mut DeviceBuffer,
    dt: &mut DeviceBuffer,
    p: &DeviceBuffer,
    y: &DeviceBuffer,
    w: &DeviceBuffer,
    dloss: &DeviceBuffer,
    rows: usize,
    c: usize,
    inv_wsum: f32,
) {
    for (b, need) in [
        (&*dp, rows * c),
        (&*dt, rows * c),
        (p, rows * c),
        (y, rows * c),
        (w, rows),
        (dloss, 1),
    ] {
        check("masked_mse_backward", b, need);
    }
    let dev = same_device("masked_mse_backward", &[dp, dt, p, y, w, dloss]);
    let (pdp, pdt, pp, py, pw, pg) = (
        ptr(dp, 0),
        ptr(dt, 0),
        ptr(p, 0),
        ptr(y, 0),
        ptr(w, 0),
        ptr(dloss, 0),
    );
    let (r_, c_) = (int("masked_mse", rows), int("masked_mse", c));
    launch!(
        dev,
        "masked_mse_backward",
        grid(rows * c),
        [&pdp, &pdt, &pp, &py, &pw, &pg, &r_, &c_, &inv_wsum]
    );
}

/// Softmax of logits (rows, k) into `probs` and each row's loss (0 when the
/// label is -100).
pub fn cross_entropy_forward(
    probs: &mut DeviceBuffer,
    row_loss: &mut DeviceBuffer,
    logits: &DeviceBuffer,
    labels: &[i64],
    k: usize,
) {
    let rows = labels.len();
    check("cross_entropy", probs, rows * k);
    check("cross_entropy", row_loss, rows);
    check("cross_entropy", logits, rows * k);
    let dev = same_device("cross_entropy", &[probs, row_loss, logits]);
    let l32: Vec<i32> = labels.iter().map(|&l| l as i32).collect();
    let d_labels = upload(&dev, &l32);
    let pl = d_labels.device_ptr(&dev.stream).0;
    let (pp, pr, pz) = (ptr(probs, 0), ptr(row_loss, 0), ptr(logits, 0));
    let (r_, k_) = (int("cross_entropy", rows), int("cross_entropy", k));
    launch!(
        dev,
        "cross_entropy_forward",
        per_row(rows, k),
        [&pp, &pr, &pz, &pl, &r_, &k_]
    );
}

/// `dlogits = (probs - onehot) * dloss / count` (0 for rows labelled -100).
pub fn cross_entropy_backward(
    dlogits: &mut DeviceBuffer,
    probs: &DeviceBuffer,
    labels: &[i64],
    dloss: &DeviceBuffer,
    k: usize,
    inv_count: f32,
) {
    let rows = labels.len();
    check("cross_entropy_backward", dlogits, rows * k);
    check("cross_entropy_backward", probs, rows * k);
    let dev = same_device("cross_entropy_backward", &[dlogits, probs, dloss]);
    let l32: Vec<i32> = labels.iter().map(|&l| l as i32).collect();
    let d_labels = upload(&dev, &l32);
    let pl = d_labels.device_ptr(&dev.stream).0;
    let (pd, pp, pg) = (ptr(dlogits, 0), ptr(probs, 0), ptr(dloss, 0));
    let (r_, k_) = (int("cross_entropy", rows), int("cross_entropy", k));
    launch!(
        dev,
        "cross_entropy_backward",
        grid(rows * k),
        [&pd, &pp, &pl, &pg, &r_, &k_, &inv_count]
    );
}
