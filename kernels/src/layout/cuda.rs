//! CUDA launchers of the layout kernels (layout.cu).

use cudarc::driver::{DevicePtr, DeviceRepr, PushKernelArg};

use crate::cuda::context::{upload, DeviceBuffer, GpuDevice};
use crate::cuda::launch::{check, grid, int, launch, ptr, same_device};
use crate::elementwise::cuda::fill;

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

/// `out[i] = a[i % na]` for i < n.
pub fn repeat(out: &mut DeviceBuffer, a: &DeviceBuffer, n: usize, na: usize) {
    assert!(na > 0, "repeat: empty source");
    check("repeat", out, n);
    check("repeat", a, na);
    let dev = same_device("repeat", &[out, a]);
    let (po, pa, n_, na_) = (ptr(out, 0), ptr(a, 0), int("repeat", n), int("repeat", na));
    launch!(dev, "repeat", grid(n), [&po, &pa, &n_, &na_]);
}

/// Copy `rows` rows of `cols` values: `dst[dst_offset + r * dst_ld + c] =
/// src[src_offset + r * src_ld + c]`.
#[allow(clippy::too_many_arguments)]
pub fn copy_2d(
    dst: &mut DeviceBuffer,
    dst_offset: usize,
    dst_ld: usize,
    src: &DeviceBuffer,
    src_offset: usize,
    src_ld: usize,
    rows: usize,
    cols: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    check("copy_2d", dst, dst_offset + (rows - 1) * dst_ld + cols);
    check("copy_2d", src, src_offset + (rows - 1) * src_ld + cols);
    let dev = same_device("copy_2d", &[dst, src]);
    let (pd, ps) = (ptr(dst, dst_offset), ptr(src, src_offset));
    let (dl, sl) = (int("copy_2d", dst_ld), int("copy_2d", src_ld));
    let (r, c) = (int("copy_2d", rows), int("copy_2d", cols));
    launch!(
        dev,
        "copy_2d",
        grid(rows * cols),
        [&pd, &dl, &ps, &sl, &r, &c]
    );
}

/// Kernel argument of `permute` (layout of `PermuteArgs` in layout.cu).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct PermuteArgs {
    rank: i32,
    out_shape: [i32; 6],
    in_strides: [i64; 6],
}

// SAFETY: plain old data with the C layout of the kernel's struct.
unsafe impl DeviceRepr for PermuteArgs {}

/// `out` = `x` (shape `shape`) with dims reordered: `out.shape[i] = shape[perm[i]]`.
pub fn permute(out: &mut DeviceBuffer, x: &DeviceBuffer, shape: &[usize], perm: &[usize]) {
    let rank = shape.len();
    assert!(
        rank <= 6 && perm.len() == rank && (0..rank).all(|d| perm.contains(&d)),
        "permute: {perm:?} is not a permutation of {rank} <= 6 dims"
    );
    let n: usize = shape.iter().product();
    if n == 0 {
        return;
    }
    check("permute", out, n);
    check("permute", x, n);
    let mut strides = vec![1usize; rank];
    for d in (0..rank.saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    let mut args = PermuteArgs {
        rank: rank as i32,
        out_shape: [1; 6],
        in_strides: [0; 6],
    };
    for (i, &p) in perm.iter().enumerate() {
        args.out_shape[i] = int("permute", shape[p]);
        args.in_strides[i] = strides[p] as i64;
    }
    let dev = same_device("permute", &[out, x]);
    let (po, px, n_) = (ptr(out, 0), ptr(x, 0), int("permute", n));
    launch!(dev, "permute", grid(n), [&po, &px, &args, &n_]);
}
