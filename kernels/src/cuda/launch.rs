//! One typed wrapper per kernel of `kernels/cuda`. Each checks buffer lengths
//! (the kernels do not), then queues the kernel on the device's stream.
//!
//! Buffers are passed to kernels as raw device addresses: several kernels run
//! in place (out aliases an input), which borrowed slices cannot express. All
//! work is on one stream, so a buffer freed after a launch is freed in stream
//! order, after the kernel ran.

use cudarc::driver::{DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg};

use std::sync::Arc;

use super::context::{upload, DeviceBuffer, GpuDevice};

/// Threads per block of every kernel (a multiple of 32, as the block reductions need).
const BLOCK: u32 = 256;
/// Blocks of a grid-stride launch are capped here; the loop covers the rest.
const MAX_GRID: usize = 1 << 16;
/// Partial sums of a reduction (one per block).
const REDUCE_BLOCKS: usize = 512;

/// Queue kernel `$name` with `$cfg` and the given argument references.
macro_rules! launch {
    ($dev:expr, $name:literal, $cfg:expr, [$($arg:expr),* $(,)?]) => {{
        let dev: &GpuDevice = &$dev;
        let mut builder = dev.stream.launch_builder(dev.function($name));
        $( builder.arg($arg); )*
        // SAFETY: the argument list matches the kernel's signature in
        // kernels/cuda (count, order, C types) and the wrapper checked every
        // buffer's length against the sizes the kernel indexes.
        unsafe { builder.launch($cfg) }.unwrap_or_else(|e| {
            panic!("cuda:{}: kernel {} failed to launch: {e}", dev.ordinal, $name)
        });
    }};
}

/// Device address of `b`'s first value plus `offset` values.
fn ptr(b: &DeviceBuffer, offset: usize) -> u64 {
    let (p, _sync) = b.slice.device_ptr(&b.device.stream);
    p + 4 * offset as u64
}

fn int(op: &str, v: usize) -> i32 {
    i32::try_from(v).unwrap_or_else(|_| panic!("{op}: size {v} does not fit the kernels' i32"))
}

fn check(op: &str, b: &DeviceBuffer, need: usize) {
    assert!(
        b.capacity() >= need,
        "{op}: device buffer of {} values, kernel needs {need}",
        b.capacity()
    );
}

/// All buffers on one device; returns it.
fn same_device(op: &str, bufs: &[&DeviceBuffer]) -> Arc<GpuDevice> {
    let d = &bufs[0].device;
    for b in bufs {
        assert!(
            b.device.ordinal == d.ordinal,
            "{op}: buffers on cuda:{} and cuda:{}",
            d.ordinal,
            b.device.ordinal
        );
    }
    d.clone()
}

/// Grid-stride launch over n elements.
fn grid(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, MAX_GRID);
    LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per row; fewer threads for short rows.
fn per_row(rows: usize, cols: usize) -> LaunchConfig {
    let threads = cols.next_multiple_of(32).clamp(32, BLOCK as usize) as u32;
    LaunchConfig {
        grid_dim: (rows.max(1) as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Column blocks x row chunks for column sums; returns (config, rows per block).
fn column_chunks(rows: usize, cols: usize) -> (LaunchConfig, i32) {
    let rows_per_block = rows.div_ceil(65535).max(64);
    let cfg = LaunchConfig {
        grid_dim: (
            cols.div_ceil(BLOCK as usize).max(1) as u32,
            rows.div_ceil(rows_per_block).max(1) as u32,
            1,
        ),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    (cfg, rows_per_block as i32)
}

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

/// The op of [`binary_broadcast`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add = 0,
    Sub = 1,
    Mul = 2,
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

/// `out[i] = a[i % na]` for i < n.
pub fn repeat(out: &mut DeviceBuffer, a: &DeviceBuffer, n: usize, na: usize) {
    assert!(na > 0, "repeat: empty source");
    check("repeat", out, n);
    check("repeat", a, na);
    let dev = same_device("repeat", &[out, a]);
    let (po, pa, n_, na_) = (ptr(out, 0), ptr(a, 0), int("repeat", n), int("repeat", na));
    launch!(dev, "repeat", grid(n), [&po, &pa, &n_, &na_]);
}

/// The op of [`unary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Tanh = 0,
    Relu = 1,
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

/// Kernel argument of `permute` (layout of `PermuteArgs` in elementwise.cu).
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
/// label is -100). Returns the uploaded labels for the backward pass.
pub fn cross_entropy_forward(
    probs: &mut DeviceBuffer,
    row_loss: &mut DeviceBuffer,
    logits: &DeviceBuffer,
    labels: &[i64],
    k: usize,
) -> cudarc::driver::CudaSlice<i32> {
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
    d_labels
}

/// In place on `probs_grad`: probs in, `(probs - onehot) * dloss / count` out.
pub fn cross_entropy_backward_in_place(
    probs_grad: &mut DeviceBuffer,
    labels: &cudarc::driver::CudaSlice<i32>,
    dloss: &DeviceBuffer,
    k: usize,
    inv_count: f32,
) {
    let rows = labels.len();
    check("cross_entropy_backward", probs_grad, rows * k);
    let dev = same_device("cross_entropy_backward", &[probs_grad, dloss]);
    let pl = labels.device_ptr(&dev.stream).0;
    let (pp, pg) = (ptr(probs_grad, 0), ptr(dloss, 0));
    let (r_, k_) = (int("cross_entropy", rows), int("cross_entropy", k));
    launch!(
        dev,
        "cross_entropy_backward",
        grid(rows * k),
        [&pp, &pp, &pl, &pg, &r_, &k_, &inv_count]
    );
}

/// Hyper-parameters of one fused AdamW launch (see [`crate::adamw`]).
#[derive(Clone, Copy, Debug)]
pub struct FusedAdamW {
    /// lr * sqrt(1 - beta2^t) / (1 - beta1^t)
    pub step_size: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

/// One AdamW update of every parameter in one launch. `params[i]` and
/// `grads[i]` hold `lens[i]` values; `m` and `v` are flat (sum of lens);
/// `decay[i]` = lr * weight_decay (0 for undecayed parameters).
pub fn adamw_fused(
    params: &mut [&mut DeviceBuffer],
    grads: &[&DeviceBuffer],
    lens: &[usize],
    m: &mut DeviceBuffer,
    v: &mut DeviceBuffer,
    decay: &[f32],
    h: FusedAdamW,
) {
    let count = params.len();
    assert!(
        grads.len() == count && lens.len() == count && decay.len() == count,
        "adamw_fused: {count} parameters, {} gradients, {} lengths, {} decays",
        grads.len(),
        lens.len(),
        decay.len()
    );
    if count == 0 {
        return;
    }
    let total: usize = lens.iter().sum();
    check("adamw_fused", m, total);
    check("adamw_fused", v, total);
    let dev = m.device.clone();
    let mut offsets = Vec::with_capacity(count);
    let mut at = 0i64;
    for i in 0..count {
        check("adamw_fused", params[i], lens[i]);
        check("adamw_fused", grads[i], lens[i]);
        same_device("adamw_fused", &[params[i], grads[i], m]);
        offsets.push(at);
        at += lens[i] as i64;
    }
    let p_table: Vec<u64> = params.iter().map(|p| ptr(p, 0)).collect();
    let g_table: Vec<u64> = grads.iter().map(|g| ptr(g, 0)).collect();
    let (d_p, d_g, d_off, d_decay) = (
        upload(&dev, &p_table),
        upload(&dev, &g_table),
        upload(&dev, &offsets),
        upload(&dev, decay),
    );
    let pp = d_p.device_ptr(&dev.stream).0;
    let pg = d_g.device_ptr(&dev.stream).0;
    let po = d_off.device_ptr(&dev.stream).0;
    let pd = d_decay.device_ptr(&dev.stream).0;
    let (pm, pv) = (ptr(m, 0), ptr(v, 0));
    let (count_, total_) = (count as i32, total as i64);
    launch!(
        &dev,
        "adamw_fused",
        grid(total),
        [
            &pp,
            &pg,
            &pm,
            &pv,
            &po,
            &pd,
            &count_,
            &total_,
            &h.step_size,
            &h.beta1,
            &h.beta2,
            &h.eps
        ]
    );
}
