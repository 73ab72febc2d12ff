//! Matrix products: `matmul` (batched, transposed operands) and `linear`
//! (x W^T + b with PyTorch's [out, in] weight layout). Every product is one
//! call of `pixel_kernels::gemm::gemm` (matrixmultiply on the CPU, cuBLAS on
//! CUDA).

use pixel_kernels::elementwise;
use pixel_kernels::gemm::{gemm, gemm_bias, GemmShape, Operand};

use super::device_of;
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// Split a shape into (batch, rows, cols) over its last two dims.
fn batch_rows_cols(op: &str, shape: &[usize]) -> (usize, usize, usize) {
    assert!(
        shape.len() >= 2,
        "{op}: need rank >= 2, got shape {shape:?}"
    );
    let r = shape.len();
    (shape[..r - 2].iter().product(), shape[r - 2], shape[r - 1])
}

/// Batch item `i` of an operand.
fn item(o: Operand<'_>, i: usize) -> Operand<'_> {
    Operand {
        offset: o.offset + i * o.stride,
        ..o
    }
}

/// A fresh tensor of `shape` holding the `batch` products `op(A_i) op(B_i)`.
fn product(
    s: GemmShape,
    batch: usize,
    alpha: f32,
    a: Operand<'_>,
    b: Operand<'_>,
    shape: &[usize],
) -> Tensor {
    let mut c = Tensor::zeros_on(shape, a.buf.device());
    gemm(s, batch, alpha, a, b, 0.0, c.buffer_mut(), 0);
    c
}

/// `C = op(A) @ op(B)`, batched over leading dims. `op(X) = X^T` (last two
/// dims swapped) when the flag is set. B may be 2-D (shared by every batch
/// item, e.g. a weight); otherwise A and B have the same leading dims.
/// A (..., M, K) [or (..., K, M) if trans_a], B (..., K, N) [or (..., N, K)].
pub fn matmul(t: &mut Tape, a: &Var, b: &Var, trans_a: bool, trans_b: bool) -> Var {
    let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
    let (batch, ar, ac) = batch_rows_cols("matmul", &sa);
    let (_, br, bc) = batch_rows_cols("matmul", &sb);
    let (m, k) = if trans_a { (ac, ar) } else { (ar, ac) };
    let (k2, n) = if trans_b { (bc, br) } else { (br, bc) };
    let b_shared = sb.len() == 2;
    assert!(
        k == k2 && (b_shared || (sa[..sa.len() - 2] == sb[..sb.len() - 2])),
        "matmul: incompatible shapes {sa:?} (trans {trans_a}) and {sb:?} (trans {trans_b})"
    );
    let device = device_of("matmul", &[a, b]);
    let mut out_shape = sa[..sa.len() - 2].to_vec();
    out_shape.extend([m, n]);
    let b_stride = if b_shared { 0 } else { k * n };
    let s = GemmShape::new(m, n, k, trans_a, trans_b);
    let (a_op, b_op) = (
        Operand::new(a.value().buffer(), m * k),
        Operand::new(b.value().buffer(), b_stride),
    );
    let out = product(s, batch, 1.0, a_op, b_op, &out_shape);
    if !t.needs_grad(&[a, b]) {
        return Var::constant(out);
    }
    let (av, bv) = (a.arc(), b.arc());
    t.add_flops(2.0 * (batch * m * n * k) as f64);
    t.record(
        "matmul",
        out,
        &[a, b],
        Box::new(move |dc, needs| {
            let dc_op = Operand::new(dc.buffer(), m * n);
            let (a_op, b_op) = (
                Operand::new(av.buffer(), m * k),
                Operand::new(bv.buffer(), b_stride),
            );
            let da = needs[0].then(|| {
                if trans_a {
                    // A (K, M) = op(B) dC^T
                    product(
                        GemmShape::new(k, m, n, trans_b, true),
                        batch,
                        1.0,
                        b_op,
                        dc_op,
                        av.shape(),
                    )
                } else {
                    // A (M, K) = dC op(B)^T
                    product(
                        GemmShape::new(m, k, n, false, !trans_b),
                        batch,
                        1.0,
                        dc_op,
                        b_op,
                        av.shape(),
                    )
                }
            });
            let db = needs[1].then(|| {
                // B (N, K) = dC^T op(A) when B is transposed, else B (K, N) = op(A)^T dC.
                let (s, left, right) = if trans_b {
                    (GemmShape::new(n, k, m, true, trans_a), dc_op, a_op)
                } else {
                    (GemmShape::new(k, n, m, !trans_a, false), a_op, dc_op)
                };
                let mut db = Tensor::zeros_on(bv.shape(), device);
                if b_shared {
                    // One product per batch item, summed into the shared gradient.
                    for i in 0..batch {
                        let (l, r) = (item(left, i), item(right, i));
                        let beta = if i == 0 { 0.0 } else { 1.0 };
                        gemm(s, 1, 1.0, l, r, beta, db.buffer_mut(), 0);
                    }
                } else {
                    gemm(s, batch, 1.0, left, right, 0.0, db.buffer_mut(), 0);
                }
                db
            });
            vec![da, db]
        }),
    )
}

/// `y = x W^T (+ b)` for x (rows, in), w (out, in), b (out), into a tensor of
/// `shape`; the bias is added in the GEMM's epilogue.
pub(crate) fn linear_forward(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    rows: usize,
    shape: &[usize],
) -> Tensor {
    let (out_f, in_f) = (w.shape()[0], w.shape()[1]);
    let s = GemmShape::nt(rows, out_f, in_f);
    let (xo, wo) = (Operand::new(x.buffer(), 0), Operand::new(w.buffer(), 0));
    match b {
        Some(b) => {
            let mut y = Tensor::zeros_on(shape, x.device());
            gemm_bias(s, xo, wo, b.buffer(), y.buffer_mut());
            y
        }
        None => product(s, 1, 1.0, xo, wo, shape),
    }
}

/// dx = dy W for y = x W^T: dy (rows, out), W (out, in) -> x_shape (rows, in).
pub(crate) fn linear_input_grad(dy: &Tensor, w: &Tensor, x_shape: &[usize]) -> Tensor {
    let (out_f, in_f) = (w.shape()[0], w.shape()[1]);
    let rows = dy.numel() / out_f;
    let s = GemmShape::nn(rows, in_f, out_f);
    product(
        s,
        1,
        1.0,
        Operand::new(dy.buffer(), 0),
        Operand::new(w.buffer(), 0),
        x_shape,
    )
}

/// dW = dy^T x for y = x W^T: dy (rows, out), x (rows, in) -> (out, in).
pub(crate) fn linear_weight_grad(dy: &Tensor, x: &Tensor, rows: usize) -> Tensor {
    let (out_f, in_f) = (dy.numel() / rows, x.numel() / rows);
    let s = GemmShape::tn(out_f, in_f, rows);
    product(
        s,
        1,
        1.0,
        Operand::new(dy.buffer(), 0),
        Operand::new(x.buffer(), 0),
        &[out_f, in_f],
    )
}

/// db = sum of dy (rows, cols) over rows -> (cols).
pub(crate) fn bias_grad(dy: &Tensor, rows: usize, cols: usize) -> Tensor {
    let mut db = Tensor::zeros_on(&[cols], dy.device());
    elementwise::sum_rows(db.buffer_mut(), dy.buffer(), rows, cols);
    db
}

/// `y = x W^T + b`: x (..., in), w (out, in), b (out) or None -> y (..., out).
/// One node; backward: dx = dy W, dW = dy^T x, db = sum of dy over rows.
pub fn linear(t: &mut Tape, x: &Var, w: &Var, b: Option<&Var>) -> Var {
    let xs = x.shape().to_vec();
    let ws = w.shape();
    assert!(
        ws.len() == 2 && !xs.is_empty() && xs[xs.len() - 1] == ws[1],
        "linear: input {xs:?} does not match weight {ws:?} (expected [out, {}])",
        xs.last().copied().unwrap_or(0)
    );
    let (out_f, in_f) = (ws[0], ws[1]);
    if let Some(b) = b {
        assert!(
            b.shape() == [out_f],
            "linear: bias shape {:?} does not match weight {ws:?}",
            b.shape()
        );
    }
    let inputs: Vec<&Var> = match b {
        Some(b) => vec![x, w, b],
        None => vec![x, w],
    };
    device_of("linear", &inputs);
    let rows = x.value().numel() / in_f;
    let mut ys = xs.clone();
    *ys.last_mut().unwrap() = out_f;
    let y = linear_forward(x.value(), w.value(), b.map(|b| b.value()), rows, &ys);
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
            let dx = needs[0].then(|| linear_input_grad(&dy, &wv, xv.shape()));
            let dw = needs[1].then(|| linear_weight_grad(&dy, &xv, rows));
            let mut grads = vec![dx, dw];
            if needs.len() == 3 {
                grads.push(needs[2].then(|| bias_grad(&dy, rows, out_f)));
            }
            grads
        }),
    )
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::randn;
    use crate::ops;
    use crate::test_support::{check, forward_backward, inputs, rng, test_device};
    use crate::Tensor;

    #[test]
    fn gradcheck_matmul_all_transposes() {
        let mut r = rng();
        for &(ta, tb) in &[(false, false), (false, true), (true, false), (true, true)] {
            let a_shape = if ta { [2, 5, 3] } else { [2, 3, 5] };
            let b_shape = if tb { [2, 4, 5] } else { [2, 5, 4] };
            let a = randn(&a_shape, &mut r);
            let b = randn(&b_shape, &mut r);
            check(vec![a, b], move |t, v| ops::matmul(t, &v[0], &v[1], ta, tb));
        }
    }

    #[test]
    fn gradcheck_matmul_shared_weight() {
        let mut r = rng();
        for &(ta, tb) in &[(false, false), (false, true), (true, false), (true, true)] {
            let a_shape = if ta { [3, 4, 2] } else { [3, 2, 4] };
            let b_shape = if tb { [6, 4] } else { [4, 6] };
            let a = randn(&a_shape, &mut r);
            let b = randn(&b_shape, &mut r);
            check(vec![a, b], move |t, v| ops::matmul(t, &v[0], &v[1], ta, tb));
        }
    }

    #[test]
    fn gradcheck_linear_with_and_without_bias() {
        let mut r = rng();
        let x = randn(&[2, 3, 5], &mut r);
        let w = randn(&[4, 5], &mut r);
        let b = randn(&[4], &mut r);
        check(vec![x.clone(), w.clone(), b], |t, v| {
            ops::linear(t, &v[0], &v[1], Some(&v[2]))
        });
        check(vec![x, w], |t, v| ops::linear(t, &v[0], &v[1], None));
    }

    #[test]
    fn gradcheck_composite_transformer_block_piece() {
        // LN -> linear -> GELU -> linear -> residual: several ops sharing inputs.
        let mut r = rng();
        let x = randn(&[2, 3, 6], &mut r);
        let w1 = randn(&[8, 6], &mut r);
        let w2 = randn(&[6, 8], &mut r);
        let g = Tensor::full(&[6], 1.0);
        let b = Tensor::zeros(&[6]);
        check(vec![x, w1, w2, g, b], |t, v| {
            let h = ops::layer_norm(t, &v[0], &v[3], &v[4], 1e-12);
            let h = ops::linear(t, &h, &v[1], None);
            let h = ops::gelu(t, &h);
            let h = ops::linear(t, &h, &v[2], None);
            ops::add(t, &v[0], &h)
        });
    }

    test_device!(matmul_all_transposes_batched_and_shared, 1e-4, |d| {
        let mut out = Vec::new();
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let a_shape: &[usize] = if ta { &[2, 5, 3] } else { &[2, 3, 5] };
            let b_shape: &[usize] = if tb { &[2, 4, 5] } else { &[2, 5, 4] };
            let x = inputs(&[a_shape, b_shape], 29);
            out.extend(forward_backward(d, &x, 30, move |t, v| {
                ops::matmul(t, &v[0], &v[1], ta, tb)
            }));
            let shared: &[usize] = if tb { &[4, 5] } else { &[5, 4] };
            let x = inputs(&[a_shape, shared], 31);
            out.extend(forward_backward(d, &x, 32, move |t, v| {
                ops::matmul(t, &v[0], &v[1], ta, tb)
            }));
        }
        out
    });

    // Larger products than the unit shapes: cuBLAS picks other kernels (tiles,
    // split-K), and batch strides and leading dimensions all differ.
    test_device!(matmul_larger_shapes, 1e-4, |d| {
        let mut out = Vec::new();
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let a_shape: &[usize] = if ta { &[3, 130, 70] } else { &[3, 70, 130] };
            let b_shape: &[usize] = if tb { &[3, 50, 130] } else { &[3, 130, 50] };
            let x = inputs(&[a_shape, b_shape], 74);
            out.extend(forward_backward(d, &x, 75, move |t, v| {
                ops::matmul(t, &v[0], &v[1], ta, tb)
            }));
            let shared: &[usize] = if tb { &[50, 130] } else { &[130, 50] };
            let x = inputs(&[a_shape, shared], 76);
            out.extend(forward_backward(d, &x, 77, move |t, v| {
                ops::matmul(t, &v[0], &v[1], ta, tb)
            }));
        }
        out
    });

    test_device!(linear_with_and_without_bias, 1e-4, |d| {
        let x = inputs(&[&[2, 3, 5], &[4, 5], &[4]], 33);
        let mut out = forward_backward(d, &x, 34, |t, v| ops::linear(t, &v[0], &v[1], Some(&v[2])));
        out.extend(forward_backward(d, &x[..2], 35, |t, v| {
            ops::linear(t, &v[0], &v[1], None)
        }));
        out
    });

    // The bias gradient's column sums span several row chunks (130 > 64
    // rows: atomics across blocks).
    test_device!(linear_on_many_rows, 1e-4, |d| {
        let l = inputs(&[&[130, 40], &[20, 40], &[20]], 68);
        forward_backward(d, &l, 69, |t, v| ops::linear(t, &v[0], &v[1], Some(&v[2])))
    });
}
