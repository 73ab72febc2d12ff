//! CUDA launchers of the elementwise kernels (elementwise.cu).

use std::sync::Arc;

use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::{BinaryOp, UnaryOp};
use crate::cuda::context::{DeviceBuffer, GpuDevice};
use crate::cuda::launch::{
    check, column_chunks, grid, int, launch, ptr, same_device, BLOCK, REDUCE_BLOCKS,
};

/// `x[..n] = value`.
pub fn fill(x: &mut DeviceBuffer, n: usize, value: f32) {
    check("fill", x, n);
    let (p, n_) = (ptr(x, 0), int("fill", n));
    launch!(&x.device, "fill", grid(n), [&p, &value, &n_]);
}

/// `x[..n] = alpha * src[0]` (src a device scalar).
pub fn fill_from_scalar(x: &mut DeviceBuffer, n: usize, src: &DeviceBuffer, alpha: f32) {
    check("fill_from_scalar", x, n);
    let dev = same_device("fill_from_scalar", &[x, src]);
    let (px, ps, n_) = (ptr(x, 0), ptr(src, 0), int("fill_from_scalar", n));
    launch!(dev, "fill_from_scalar", grid(n), [&px, &ps, &alpha, &n_]);
}

/// `x[..n] *= alpha`.
pub fn scale(x: &mut DeviceBuffer, n: usize, alpha: f32) {
    check("scale", x, n);
    let (p, n_) = (ptr(x, 0), int("scale", n));
    launch!(&x.device, "scale", grid(n), [&p, &alpha, &n_]);
}

/// `y[..n] += alpha * x[..n]`.
pub fn axpy(y: &mut DeviceBuffer, alpha: f32, x: &DeviceBuffer, n: usize) {
    check("axpy", y, n);
    check("axpy", x, n);
    let dev = same_device("axpy", &[y, x]);
    let (py, px, n_) = (ptr(y, 0), ptr(x, 0), int("axpy", n));
    launch!(dev, "axpy", grid(n), [&py, &alpha, &px, &n_]);
}

/// `out = a op b` over n values, b (nb values) repeated over a's leading dims.
pub fn binary_broadcast(
    out: &mut DeviceBuffer,
    a: &DeviceBuffer,
    b: &DeviceBuffer,
    op: BinaryOp,
    n: usize,
    nb: usize,
) {
    assert!(
        nb > 0 && n.is_multiple_of(nb),
        "binary_broadcast: {nb} does not divide {n}"
    );
    check("binary_broadcast", out, n);
    check("binary_broadcast", a, n);
    check("binary_broadcast", b, nb);
    let dev = same_device("binary_broadcast", &[out, a, b]);
    let (po, pa, pb) = (ptr(out, 0), ptr(a, 0), ptr(b, 0));
    let (op_, n_, nb_) = (
        op as i32,
        int("binary_broadcast", n),
        int("binary_broadcast", nb),
    );
    launch!(
        dev,
        "binary_broadcast",
        grid(n),
        [&po, &pa, &pb, &op_, &n_, &nb_]
    );
}

/// `x[i] += b[i % nb]` in place (a bias over rows).
pub fn add_broadcast_in_place(x: &mut DeviceBuffer, b: &DeviceBuffer, n: usize, nb: usize) {
    assert!(
        nb > 0 && n.is_multiple_of(nb),
        "add_broadcast_in_place: {nb} does not divide {n}"
    );
    check("add_broadcast_in_place", x, n);
    check("add_broadcast_in_place", b, nb);
    let dev = same_device("add_broadcast_in_place", &[x, b]);
    let (px, pb) = (ptr(x, 0), ptr(b, 0));
    let (op, n_, nb_) = (
        BinaryOp::Add as i32,
        int("add_broadcast", n),
        int("add_broadcast", nb),
    );
    launch!(
        dev,
        "binary_broadcast",
        grid(n),
        [&px, &px, &pb, &op, &n_, &nb_]
    );
}

/// `out = f(x)` over n values.
pub fn unary(out: &mut DeviceBuffer, x: &DeviceBuffer, op: UnaryOp, n: usize) {
    check("unary", out, n);
    check("unary", x, n);
    let dev = same_device("unary", &[out, x]);
    let (po, px, op_, n_) = (ptr(out, 0), ptr(x, 0), op as i32, int("unary", n));
    launch!(dev, "unary", grid(n), [&po, &px, &op_, &n_]);
}

/// `dx = dy * f'(x)` from the output `y = f(x)`.
pub fn unary_backward(
    dx: &mut DeviceBuffer,
    dy: &DeviceBuffer,
    y: &DeviceBuffer,
    op: UnaryOp,
    n: usize,
) {
    check("unary_backward", dx, n);
    check("unary_backward", dy, n);
    check("unary_backward", y, n);
    let dev = same_device("unary_backward", &[dx, dy, y]);
    let (pdx, pdy, py) = (ptr(dx, 0), ptr(dy, 0), ptr(y, 0));
    let (op_, n_) = (op as i32, int("unary_backward", n));
    launch!(dev, "unary_backward", grid(n), [&pdx, &pdy, &py, &op_, &n_]);
}

/// `out (cols) = sum over rows of x (rows, cols)` (out is overwritten).
pub fn sum_rows(out: &mut DeviceBuffer, x: &DeviceBuffer, rows: usize, cols: usize) {
    check("sum_rows", out, cols);
    check("sum_rows", x, rows * cols);
    same_device("sum_rows", &[out, x]);
    fill(out, cols, 0.0);
    let (cfg, rpb) = column_chunks(rows, cols);
    let (po, px) = (ptr(out, 0), ptr(x, 0));
    let (r_, c_) = (int("sum_rows", rows), int("sum_rows", cols));
    launch!(&x.device, "sum_rows", cfg, [&po, &px, &r_, &c_, &rpb]);
}

/// `out (outer, inner) = sum over the middle axis of x (outer, len, inner)`.
pub fn sum_axis(out: &mut DeviceBuffer, x: &DeviceBuffer, outer: usize, len: usize, inner: usize) {
    check("sum_axis", out, outer * inner);
    check("sum_axis", x, outer * len * inner);
    let dev = same_device("sum_axis", &[out, x]);
    let (po, px) = (ptr(out, 0), ptr(x, 0));
    let (o, l, i) = (
        int("sum_axis", outer),
        int("sum_axis", len),
        int("sum_axis", inner),
    );
    launch!(dev, "sum_axis", grid(outer * inner), [&po, &px, &o, &l, &i]);
}

/// `dx (outer, len, inner) = dy (outer, inner)` repeated over the middle axis.
pub fn expand_axis(
    dx: &mut DeviceBuffer,
    dy: &DeviceBuffer,
    outer: usize,
    len: usize,
    inner: usize,
) {
    check("expand_axis", dx, outer * len * inner);
    check("expand_axis", dy, outer * inner);
    let dev = same_device("expand_axis", &[dx, dy]);
    let (pdx, pdy) = (ptr(dx, 0), ptr(dy, 0));
    let (o, l, i) = (
        int("expand_axis", outer),
        int("expand_axis", len),
        int("expand_axis", inner),
    );
    launch!(
        dev,
        "expand_axis",
        grid(outer * len * inner),
        [&pdx, &pdy, &o, &l, &i]
    );
}

/// f64 partial sums (of squares if `square`) of `x[..n]` into `partials`.
fn sum_partials(partials: &mut DeviceBuffer, x: &DeviceBuffer, n: usize, square: bool) {
    let dev = same_device("sum_partials", &[partials, x]);
    let cfg = LaunchConfig {
        grid_dim: (REDUCE_BLOCKS as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    let (pp, px, sq, n_) = (ptr(partials, 0), ptr(x, 0), square as i32, int("sum", n));
    launch!(dev, "sum_partials", cfg, [&pp, &px, &sq, &n_]);
}

/// A scratch buffer for [`REDUCE_BLOCKS`] f64 partials (two f32 slots each).
fn partials_buffer(dev: &Arc<GpuDevice>) -> DeviceBuffer {
    DeviceBuffer::zeros(dev, 2 * REDUCE_BLOCKS)
}

fn one_block() -> LaunchConfig {
    LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// `out[0] = scale * sum(x[..n])` on the device (f64 accumulation).
pub fn sum_to_scalar(out: &mut DeviceBuffer, x: &DeviceBuffer, n: usize, scale: f32) {
    check("sum_to_scalar", out, 1);
    check("sum_to_scalar", x, n);
    let mut partials = partials_buffer(&x.device);
    sum_partials(&mut partials, x, n, false);
    let (po, pp, np) = (ptr(out, 0), ptr(&partials, 0), REDUCE_BLOCKS as i32);
    launch!(
        &x.device,
        "sum_final_f32",
        one_block(),
        [&po, &pp, &np, &scale]
    );
}

/// Sum of squares of each buffer's first `n` values, in f64, read back to the
/// host (one synchronisation for the whole list: global-norm clipping).
pub fn sum_squares(bufs: &[(&DeviceBuffer, usize)]) -> Vec<f64> {
    if bufs.is_empty() {
        return Vec::new();
    }
    let dev = bufs[0].0.device.clone();
    let results = DeviceBuffer::zeros(&dev, 2 * bufs.len());
    let mut partials = partials_buffer(&dev);
    for (slot, (b, n)) in bufs.iter().enumerate() {
        check("sum_squares", b, *n);
        sum_partials(&mut partials, b, *n, true);
        let (pr, slot_, pp, np) = (
            ptr(&results, 0),
            slot as i32,
            ptr(&partials, 0),
            REDUCE_BLOCKS as i32,
        );
        launch!(&dev, "sum_final_f64", one_block(), [&pr, &slot_, &pp, &np]);
    }
    // The f64 results were written into f32 slots: reinterpret two per value.
    let raw = results.to_host(2 * bufs.len());
    raw.chunks(2)
        .map(|w| {
            let lo = w[0].to_bits() as u64;
            let hi = w[1].to_bits() as u64;
            f64::from_bits(lo | (hi << 32))
        })
        .collect()
}
