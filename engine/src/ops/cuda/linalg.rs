//! CUDA twins of `ops/matmul.rs` and `ops/fused.rs`: every product goes
//! through cuBLAS.

use pixel_kernels::cuda::launch as k;
use pixel_kernels::cuda::sgemm_strided_batched;
use pixel_kernels::gemm::GemmShape;

use super::{buf, device_of, zeros};
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// One operand of a batched GEMM: a tensor, where its first matrix starts and
/// the distance between matrices (0: shared by every batch item).
struct Operand<'a> {
    t: &'a Tensor,
    offset: usize,
    stride: usize,
}

fn op(t: &Tensor, stride: usize) -> Operand<'_> {
    Operand {
        t,
        offset: 0,
        stride,
    }
}

/// `C_i = alpha op(A_i) op(B_i) + beta C_i` for `batch` items (row-major, as
/// `gemm::sgemm`), C_i at `c_offset + i * c_stride` of `c_t`.
#[allow(clippy::too_many_arguments)]
fn gemm(
    name: &str,
    s: GemmShape,
    batch: usize,
    alpha: f32,
    a: Operand<'_>,
    b: Operand<'_>,
    beta: f32,
    c_t: &mut Tensor,
    c_offset: usize,
    c_stride: usize,
) {
    if batch == 0 || s.m == 0 || s.n == 0 {
        return; // an empty product (C keeps its zeros); `batch - 1` below needs batch > 0
    }
    let dev = buf(name, a.t).device().clone();
    let la = (batch - 1) * a.stride + s.m * s.k;
    let lb = (batch - 1) * b.stride + s.k * s.n;
    let lc = (batch - 1) * c_stride + s.m * s.n;
    let av = buf(name, a.t).view(a.offset..a.offset + la);
    let bv = buf(name, b.t).view(b.offset..b.offset + lb);
    let mut cv = c_t.cuda_buffer_mut(name).view_mut(c_offset..c_offset + lc);
    sgemm_strided_batched(
        &dev, s, batch, alpha, &av, a.stride, &bv, b.stride, beta, &mut cv, c_stride,
    );
}

/// A fresh (batch, m, n) product.
#[allow(clippy::too_many_arguments)]
pub(super) fn product(
    name: &str,
    s: GemmShape,
    batch: usize,
    alpha: f32,
    a: &Tensor,
    stride_a: usize,
    b: &Tensor,
    stride_b: usize,
    shape: &[usize],
) -> Tensor {
    let dev = device_of(name, &[a, b]);
    let mut c = zeros(&dev, shape);
    gemm(
        name,
        s,
        batch,
        alpha,
        op(a, stride_a),
        op(b, stride_b),
        0.0,
        &mut c,
        0,
        s.m * s.n,
    );
    c
}

/// Batched `op(A) op(B)` (shapes checked by the CPU op); B shared when 2-D.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    t: &mut Tape,
    a: &Var,
    b: &Var,
    s: GemmShape,
    batch: usize,
    b_shared: bool,
    out_shape: Vec<usize>,
) -> Var {
    let (m, n, kk) = (s.m, s.n, s.k);
    let (trans_a, trans_b) = (s.trans_a, s.trans_b);
    let b_stride = if b_shared { 0 } else { kk * n };
    let out = product(
        "matmul",
        s,
        batch,
        1.0,
        a.value(),
        m * kk,
        b.value(),
        b_stride,
        &out_shape,
    );
    if !t.needs_grad(&[a, b]) {
        return Var::constant(out);
    }
    let (av, bv) = (a.arc(), b.arc());
    t.add_flops(2.0 * (batch * m * n * kk) as f64);
    t.record(
        "matmul",
        out,
        &[a, b],
        Box::new(move |dc, needs| {
            let da = needs[0].then(|| {
                if trans_a {
                    // A (K, M) = op(B) dC^T
                    let s = GemmShape {
                        m: kk,
                        n: m,
                        k: n,
                        trans_a: trans_b,
                        trans_b: true,
                    };
                    product(
                        "matmul",
                        s,
                        batch,
                        1.0,
                        &bv,
                        b_stride,
                        &dc,
                        m * n,
                        av.shape(),
                    )
                } else {
                    // A (M, K) = dC op(B)^T
                    let s = GemmShape {
                        m,
                        n: kk,
                        k: n,
                        trans_a: false,
                        trans_b: !trans_b,
                    };
                    product(
                        "matmul",
                        s,
                        batch,
                        1.0,
                        &dc,
                        m * n,
                        &bv,
                        b_stride,
                        av.shape(),
                    )
                }
            });
            let db = needs[1].then(|| {
                // B (N, K) = dC^T op(A) when B is transposed, else B (K, N) = op(A)^T dC.
                let (s, dc_left) = if trans_b {
                    (
                        GemmShape {
                            m: n,
                            n: kk,
                            k: m,
                            trans_a: true,
                            trans_b: trans_a,
                        },
                        true,
                    )
                } else {
                    (
                        GemmShape {
                            m: kk,
                            n,
                            k: m,
                            trans_a: !trans_a,
                            trans_b: false,
                        },
                        false,
                    )
                };
                let dev = device_of("matmul", &[&dc]);
                let mut db = zeros(&dev, bv.shape());
                // Shared B: one product per batch item, summed (beta = 1 after the first).
                let items: Vec<(usize, usize, usize, f32)> = if b_shared {
                    (0..batch)
                        .map(|i| (1, i, 0, if i == 0 { 0.0 } else { 1.0 }))
                        .collect()
                } else {
                    vec![(batch, 0, kk * n, 0.0)]
                };
                for (count, i, c_stride, beta) in items {
                    let a_op = Operand {
                        t: &av,
                        offset: i * m * kk,
                        stride: m * kk,
                    };
                    let dc_op = Operand {
                        t: &dc,
                        offset: i * m * n,
                        stride: m * n,
                    };
                    if dc_left {
                        gemm(
                            "matmul", s, count, 1.0, dc_op, a_op, beta, &mut db, 0, c_stride,
                        );
                    } else {
                        gemm(
                            "matmul", s, count, 1.0, a_op, dc_op, beta, &mut db, 0, c_stride,
                        );
                    }
                }
                db
            });
            vec![da, db]
        }),
    )
}

/// `y = x W^T + b` (shapes checked by the CPU op): x (rows, in), w (out, in).
pub fn linear(t: &mut Tape, x: &Var, w: &Var, b: Option<&Var>, rows: usize, ys: Vec<usize>) -> Var {
    let (out_f, in_f) = (w.shape()[0], w.shape()[1]);
    let nt = GemmShape {
        m: rows,
        n: out_f,
        k: in_f,
        trans_a: false,
        trans_b: true,
    };
    let mut y = product("linear", nt, 1, 1.0, x.value(), 0, w.value(), 0, &ys);
    if let Some(b) = b {
        device_of("linear", &[x.value(), b.value()]);
        k::add_broadcast_in_place(
            y.cuda_buffer_mut("linear"),
            buf("linear", b.value()),
            rows * out_f,
            out_f,
        );
    }
    let inputs: Vec<&Var> = match b {
        Some(b) => vec![x, w, b],
        None => vec![x, w],
    };
    if !t.needs_grad(&inputs) {
        return Var::constant(y);
    }
    let (xv, wv) = (x.arc(), w.arc());
    t.add_flops(2.0 * (rows * in_f * out_f) as f64);
    t.record(
        "linear",
        y,
        &inputs,
        Box::new(move |dy, needs| {
            let dx = needs[0].then(|| linear_input_grad("linear", &dy, &wv, xv.shape()));
            let dw = needs[1].then(|| linear_weight_grad("linear", &dy, &xv, rows));
            let mut grads = vec![dx, dw];
            if needs.len() == 3 {
                grads.push(needs[2].then(|| bias_grad("linear", &dy, rows, out_f)));
            }
            grads
        }),
    )
}

/// dx = dy W for y = x W^T: dy (rows, out), W (out, in) -> x_shape (rows, in).
fn linear_input_grad(name: &str, dy: &Tensor, w: &Tensor, x_shape: &[usize]) -> Tensor {
    let (out_f, in_f) = (w.shape()[0], w.shape()[1]);
    let rows = dy.numel() / out_f;
    let nn = GemmShape {
        m: rows,
        n: in_f,
        k: out_f,
        trans_a: false,
        trans_b: false,
    };
    product(name, nn, 1, 1.0, dy, 0, w, 0, x_shape)
}

/// dW = dy^T x for y = x W^T: dy (rows, out), x (rows, in) -> (out, in).
fn linear_weight_grad(name: &str, dy: &Tensor, x: &Tensor, rows: usize) -> Tensor {
    let (out_f, in_f) = (dy.numel() / rows, x.numel() / rows);
    let tn = GemmShape {
        m: out_f,
        n: in_f,
        k: rows,
        trans_a: true,
        trans_b: false,
    };
    product(name, tn, 1, 1.0, dy, 0, x, 0, &[out_f, in_f])
}

/// Sum of dy (rows, cols) over rows -> (cols).
fn bias_grad(name: &str, dy: &Tensor, rows: usize, cols: usize) -> Tensor {
    let dev = device_of(name, &[dy]);
    let mut db = zeros(&dev, &[cols]);
    k::sum_rows(db.cuda_buffer_mut(name), buf(name, dy), rows, cols);
    db
}

/// gelu(x) on the device.
fn gelu_of(name: &str, x: &Tensor) -> Tensor {
    let dev = device_of(name, &[x]);
    let mut g = zeros(&dev, x.shape());
    k::gelu_forward(g.cuda_buffer_mut(name), buf(name, x), x.numel());
    g
}

/// `y = gelu(x) W^T + b` as one node (shapes checked by the CPU op); only x is saved.
pub fn gelu_linear(t: &mut Tape, x: &Var, w: &Var, b: &Var, rows: usize, ys: Vec<usize>) -> Var {
    device_of("gelu_linear", &[x.value(), w.value(), b.value()]);
    let (out_f, in_f) = (w.shape()[0], w.shape()[1]);
    let g = gelu_of("gelu_linear", x.value()); // (rows, in), dropped after use
    let nt = GemmShape {
        m: rows,
        n: out_f,
        k: in_f,
        trans_a: false,
        trans_b: true,
    };
    let mut y = product("gelu_linear", nt, 1, 1.0, &g, 0, w.value(), 0, &ys);
    drop(g);
    k::add_broadcast_in_place(
        y.cuda_buffer_mut("gelu_linear"),
        buf("gelu_linear", b.value()),
        rows * out_f,
        out_f,
    );
    if !t.needs_grad(&[x, w, b]) {
        return Var::constant(y);
    }
    let (xv, wv) = (x.arc(), w.arc());
    t.add_flops(2.0 * (rows * in_f * out_f) as f64);
    t.record(
        "gelu_linear",
        y,
        &[x, w, b],
        Box::new(move |dy, needs| {
            let dw = needs[1].then(|| {
                let g = gelu_of("gelu_linear", &xv); // recomputed
                linear_weight_grad("gelu_linear", &dy, &g, rows)
            });
            let db = needs[2].then(|| bias_grad("gelu_linear", &dy, rows, out_f));
            let dx = needs[0].then(|| {
                let dg = linear_input_grad("gelu_linear", &dy, &wv, xv.shape());
                let dev = device_of("gelu_linear", &[&dg]);
                let mut dx = zeros(&dev, xv.shape());
                k::gelu_backward(
                    dx.cuda_buffer_mut("gelu_linear"),
                    buf("gelu_linear", &dg),
                    buf("gelu_linear", &xv),
                    xv.numel(),
                );
                dx
            });
            vec![dx, dw, db]
        }),
    )
}
