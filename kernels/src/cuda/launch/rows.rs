//! Row gather and scatter by index (rows.cu).

use cudarc::driver::{DevicePtr, PushKernelArg};

use super::elementwise::fill;
use super::{check, grid, int, ptr, same_device};
use crate::cuda::context::{upload, DeviceBuffer, GpuDevice};

/// Upload a row index list as i32 (checked against `n`).
fn upload_indices(dev: &GpuDevice, idx: &[usize], n: usize) -> cudarc::driver::CudaSlice<i32> {
    let v: Vec<i32> = idx
        .iter()
        .map(|&i| {
            assert!(i < n, "row index {i} out of range for {n} rows");
            i as i32
        })
        .collect();
    upload(dev, &v)
}

/// `out (B, K, C)` row r = `x (B, N, C)` row `(r / k) * n + idx[r]`.
pub fn gather_rows(
    out: &mut DeviceBuffer,
    x: &DeviceBuffer,
    idx: &[usize],
    k: usize,
    n: usize,
    c: usize,
) {
    let rows = idx.len();
    check("gather_rows", out, rows * c);
    check("gather_rows", x, (rows / k.max(1)) * n * c);
    let dev = same_device("gather_rows", &[out, x]);
    let d_idx = upload_indices(&dev, idx, n);
    let pi = d_idx.device_ptr(&dev.stream).0;
    let (po, px) = (ptr(out, 0), ptr(x, 0));
    let (r_, k_, n_, c_) = (
        int("gather_rows", rows),
        int("gather_rows", k),
        int("gather_rows", n),
        int("gather_rows", c),
    );
    launch!(
        dev,
        "gather_rows",
        grid(rows * c),
        [&po, &px, &pi, &r_, &k_, &n_, &c_]
    );
}

/// `out (B, N, C)` = zeros, then row `(r / k) * n + idx[r]` += `x (B, K, C)` row r.
pub fn scatter_rows_add(
    out: &mut DeviceBuffer,
    x: &DeviceBuffer,
    idx: &[usize],
    k: usize,
    n: usize,
    c: usize,
) {
    let rows = idx.len();
    let out_len = (rows / k.max(1)) * n * c;
    check("scatter_rows", out, out_len);
    check("scatter_rows", x, rows * c);
    let dev = same_device("scatter_rows", &[out, x]);
    fill(out, out_len, 0.0);
    let d_idx = upload_indices(&dev, idx, n);
    let pi = d_idx.device_ptr(&dev.stream).0;
    let (po, px) = (ptr(out, 0), ptr(x, 0));
    let (r_, k_, n_, c_) = (
        int("scatter_rows", rows),
        int("scatter_rows", k),
        int("scatter_rows", n),
        int("scatter_rows", c),
    );
    launch!(
        dev,
        "scatter_rows_add",
        grid(rows * c),
        [&po, &px, &pi, &r_, &k_, &n_, &c_]
    );
}
