//! Fused ops that trade a little recomputation for memory.

use pixel_kernels::gelu;
use pixel_kernels::gemm::{gemm_gelu, GeluOperand, GemmShape, Operand};
use pixel_kernels::layout;

use super::device_of;
use super::matmul::{bias_grad, linear_forward, linear_input_grad, linear_weight_grad};
use super::norm::{layer_norm_grads, layer_norm_values};
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// `gelu(x) W^T + b` for x (rows, in), w (out, in), b (out), into a tensor of
/// `shape`: GELU applied as the GEMM packs x, so gelu(x) is never in memory.
fn gelu_linear_values(x: &Tensor, w: &Tensor, b: &Tensor, rows: usize, shape: &[usize]) -> Tensor {
    let (out_f, in_f) = (w.shape()[0], w.shape()[1]);
    let mut y = Tensor::zeros_on(shape, x.device());
    let (xo, wo) = (Operand::new(x.buffer(), 0), Operand::new(w.buffer(), 0));
    let s = GemmShape::nt(rows, out_f, in_f);
    gemm_gelu(s, xo, wo, Some(b.buffer()), y.buffer_mut(), GeluOperand::A);
    y
}

/// `dW = dy^T gelu(x)` (out, in) for dy (rows, out), x (rows, in): the weight
/// gradient of [`gelu_linear_values`], gelu(x) again made while packing.
fn gelu_linear_weight_grad(dy: &Tensor, x: &Tensor, rows: usize) -> Tensor {
    let (out_f, in_f) = (dy.numel() / rows, x.numel() / rows);
    let mut dw = Tensor::zeros_on(&[out_f, in_f], dy.device());
    let (dyo, xo) = (Operand::new(dy.buffer(), 0), Operand::new(x.buffer(), 0));
    let s = GemmShape::tn(out_f, in_f, rows);
    gemm_gelu(s, dyo, xo, None, dw.buffer_mut(), GeluOperand::B);
    dw
}

/// `y = gelu(x) W^T + b`: the second half of a transformer MLP as one node.
/// x (..., in), w (out, in), b (out). gelu(x) is never in memory: the GEMM
/// applies GELU to x as it packs it, in forward and again for the weight
/// gradient in backward, so only `x` is saved, and no (..., in) temporary
/// (for PIXEL's MLP the largest buffer of every layer) is made either.
pub fn gelu_linear(t: &mut Tape, x: &Var, w: &Var, b: &Var) -> Var {
    let xs = x.shape().to_vec();
    let ws = w.shape();
    assert!(
        ws.len() == 2 && !xs.is_empty() && xs[xs.len() - 1] == ws[1] && b.shape() == [ws[0]],
        "gelu_linear: input {xs:?}, weight {ws:?} and bias {:?} do not fit (expected [out, {}] and [out])",
        b.shape(),
        xs.last().copied().unwrap_or(0)
    );
    device_of("gelu_linear", &[x, w, b]); // one device for all, or a panic naming the op
    let (out_f, in_f) = (ws[0], ws[1]);
    let rows = x.value().numel() / in_f;
    let mut ys = xs.clone();
    *ys.last_mut().unwrap() = out_f;
    let y = gelu_linear_values(x.value(), w.value(), b.value(), rows, &ys);
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
            let dw = needs[1].then(|| gelu_linear_weight_grad(&dy, &xv, rows)); // gelu recomputed
            let db = needs[2].then(|| bias_grad(&dy, rows, out_f));
            let dx = needs[0].then(|| {
                let mut dx = linear_input_grad(&dy, &wv, xv.shape()); // d gelu(x), then dx
                gelu::backward_in_place(dx.buffer_mut(), xv.buffer(), xv.numel());
                dx
            });
            vec![dx, dw, db]
        }),
    )
}

/// The rows of `parts` (each (rows_i, cols)) stacked into one (sum rows_i,
/// cols) tensor.
fn stack_rows(parts: &[&Tensor]) -> Tensor {
    let cols = parts[0].shape()[1..].iter().product::<usize>();
    let rows: usize = parts.iter().map(|p| p.numel() / cols.max(1)).sum();
    let mut shape = parts[0].shape().to_vec();
    shape[0] = rows;
    let mut out = Tensor::zeros_on(&shape, parts[0].device());
    let mut at = 0;
    for p in parts {
        layout::copy_2d(out.buffer_mut(), at, 0, p.buffer(), 0, 0, 1, p.numel());
        at += p.numel();
    }
    out
}

/// [`stack_rows`] of several tensors; None for one, which is used as it is.
fn stack_if_several(parts: &[&Tensor]) -> Option<Tensor> {
    (parts.len() > 1).then(|| stack_rows(parts))
}

/// The values of `vars`.
fn values<'a>(vars: &[&'a Var]) -> Vec<&'a Tensor> {
    vars.iter().map(|v| v.value()).collect()
}

/// `whole` (sum rows_i, ...) cut back into tensors of `shapes` (the inverse of
/// [`stack_rows`]).
fn split_rows(whole: &Tensor, shapes: &[Vec<usize>]) -> Vec<Tensor> {
    let mut at = 0;
    shapes
        .iter()
        .map(|shape| {
            let mut part = Tensor::zeros_on(shape, whole.device());
            let n = part.numel();
            layout::copy_2d(part.buffer_mut(), 0, 0, whole.buffer(), at, 0, 1, n);
            at += n;
            part
        })
        .collect()
}

/// `y = layer_norm(x) [W_1; ...; W_k]^T + [b_1; ...; b_k]`: a pre-LN block's
/// norm and the projections after it as one node, the projections' outputs
/// side by side in the last dim (q, k and v of attention: one GEMM). x (...,
/// in); ln_w, ln_b (in); each W_i (out_i, in), b_i (out_i) or no biases.
/// Saves x, the per-row mean and rstd, and the weights themselves (their
/// stack is rebuilt when needed, never kept): backward recomputes the
/// normalised activation (one elementwise pass) for the weight gradients, so
/// each pre-LN block keeps one (rows, in) activation fewer until backward.
/// Same arithmetic as `layer_norm` followed by `linear` on the stacked weights.
pub fn layer_norm_linear(
    t: &mut Tape,
    x: &Var,
    ln_w: &Var,
    ln_b: &Var,
    eps: f32,
    ws: &[&Var],
    bs: Option<&[&Var]>,
) -> Var {
    let xs = x.shape().to_vec();
    let c = *xs
        .last()
        .expect("layer_norm_linear: input must have rank >= 1");
    assert!(
        ln_w.shape() == [c] && ln_b.shape() == [c],
        "layer_norm_linear: input {xs:?} needs norm weight and bias of shape [{c}], got {:?} and {:?}",
        ln_w.shape(),
        ln_b.shape()
    );
    assert!(!ws.is_empty(), "layer_norm_linear: no projection weights");
    for (i, w) in ws.iter().enumerate() {
        let (wsh, b) = (w.shape(), bs.map(|bs| bs[i]));
        assert!(
            wsh.len() == 2 && wsh[1] == c && b.is_none_or(|b| b.shape() == [wsh[0]]),
            "layer_norm_linear: input {xs:?} does not fit weight {i} {wsh:?} and bias {:?} (expected [out, {c}] and [out])",
            b.map(|b| b.shape().to_vec())
        );
    }
    assert!(
        bs.is_none_or(|bs| bs.len() == ws.len()),
        "layer_norm_linear: {} weights but {} biases",
        ws.len(),
        bs.map_or(0, |b| b.len())
    );
    let mut inputs = vec![x, ln_w, ln_b];
    inputs.extend(ws);
    inputs.extend(bs.unwrap_or(&[]));
    device_of("layer_norm_linear", &inputs); // one device for all, or a panic naming the op
    let w_shapes: Vec<Vec<usize>> = ws.iter().map(|w| w.shape().to_vec()).collect();
    let out_f: usize = w_shapes.iter().map(|s| s[0]).sum();
    let rows = x.value().numel() / c.max(1);
    let mut ys = xs.clone();
    *ys.last_mut().unwrap() = out_f;
    let w_stack = stack_if_several(&values(ws));
    let b_stack = bs.and_then(|bs| stack_if_several(&values(bs)));
    let w = w_stack.as_ref().unwrap_or(ws[0].value());
    let b = bs.map(|bs| b_stack.as_ref().unwrap_or(bs[0].value()));
    let [h, mean, rstd] = layer_norm_values(x.value(), ln_w.value(), ln_b.value(), rows, c, eps);
    let y = linear_forward(&h, w, b, rows, &ys);
    drop((w_stack, b_stack));
    drop(h);
    if !t.needs_grad(&inputs) {
        return Var::constant(y);
    }
    let (xv, gv, bv) = (x.arc(), ln_w.arc(), ln_b.arc());
    let wvs: Vec<_> = ws.iter().map(|w| w.arc()).collect();
    let k = ws.len();
    let has_bias = bs.is_some();
    t.add_flops(2.0 * (rows * c * out_f) as f64);
    t.record(
        "layer_norm_linear",
        y,
        &inputs,
        Box::new(move |dy, needs| {
            let mut grads: Vec<Option<Tensor>> = vec![None; needs.len()];
            if needs[3..3 + k].iter().any(|&n| n) {
                let [h, _, _] = layer_norm_values(&xv, &gv, &bv, rows, c, eps); // recomputed
                let dw = linear_weight_grad(&dy, &h, rows); // (out_f, in)
                for (i, g) in split_rows(&dw, &w_shapes).into_iter().enumerate() {
                    grads[3 + i] = Some(g);
                }
            }
            if has_bias {
                let db = bias_grad(&dy, rows, out_f);
                let b_shapes: Vec<Vec<usize>> = w_shapes.iter().map(|s| vec![s[0]]).collect();
                for (i, g) in split_rows(&db, &b_shapes).into_iter().enumerate() {
                    grads[3 + k + i] = Some(g);
                }
            }
            let w_stack = stack_if_several(&wvs.iter().map(|w| &**w).collect::<Vec<_>>());
            let dh = linear_input_grad(&dy, w_stack.as_ref().unwrap_or(&wvs[0]), xv.shape());
            drop((dy, w_stack));
            let [dx, dg, dbeta] = layer_norm_grads(&dh, &xv, &gv, &mean, &rstd, rows, c);
            grads[0] = Some(dx);
            grads[1] = Some(dg);
            grads[2] = Some(dbeta);
            grads
        }),
    )
}

/// `y = gelu(layer_norm(x) W1^T + b1) W2^T + b2`: a pre-LN transformer MLP as
/// one node that keeps only x and the per-row mean and rstd until backward,
/// which recomputes the norm and the first projection (one more GEMM, about
/// 10% more FLOPs for a PIXEL layer) instead of keeping the (rows, hidden)
/// activation alive: activation checkpointing of the MLP, for runs that need
/// the memory. The arithmetic is that of `layer_norm_linear` then
/// `gelu_linear`, so the gradients are the same bits. x (..., in), w1 (hidden,
/// in), b1 (hidden), w2 (out, hidden), b2 (out).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_mlp(
    t: &mut Tape,
    x: &Var,
    ln_w: &Var,
    ln_b: &Var,
    eps: f32,
    w1: &Var,
    b1: &Var,
    w2: &Var,
    b2: &Var,
) -> Var {
    let xs = x.shape().to_vec();
    let c = *xs
        .last()
        .expect("layer_norm_mlp: input must have rank >= 1");
    let (s1, s2) = (w1.shape(), w2.shape());
    assert!(
        ln_w.shape() == [c]
            && ln_b.shape() == [c]
            && s1.len() == 2
            && s1[1] == c
            && b1.shape() == [s1[0]]
            && s2.len() == 2
            && s2[1] == s1[0]
            && b2.shape() == [s2[0]],
        "layer_norm_mlp: input {xs:?}, norm {:?}/{:?}, first {s1:?}/{:?}, second {s2:?}/{:?} do not fit",
        ln_w.shape(),
        ln_b.shape(),
        b1.shape(),
        b2.shape()
    );
    let inputs = [x, ln_w, ln_b, w1, b1, w2, b2];
    device_of("layer_norm_mlp", &inputs); // one device for all, or a panic naming the op
    let (hidden, out_f) = (s1[0], s2[0]);
    let rows = x.value().numel() / c.max(1);
    let shape_with = |last: usize| {
        let mut s = xs.clone();
        *s.last_mut().unwrap() = last;
        s
    };
    let (us, ys) = (shape_with(hidden), shape_with(out_f));
    // The first projection's output u from x: (u, h, mean, rstd).
    let first = move |x: &Tensor, g: &Tensor, b: &Tensor, w1: &Tensor, b1: &Tensor| {
        let [h, mean, rstd] = layer_norm_values(x, g, b, rows, c, eps);
        let u = linear_forward(&h, w1, Some(b1), rows, &us);
        (u, h, mean, rstd)
    };
    let (u, h, mean, rstd) = first(
        x.value(),
        ln_w.value(),
        ln_b.value(),
        w1.value(),
        b1.value(),
    );
    drop(h);
    let y = gelu_linear_values(&u, w2.value(), b2.value(), rows, &ys);
    drop(u);
    if !t.needs_grad(&inputs) {
        return Var::constant(y);
    }
    let saved = inputs.map(|v| v.arc());
    t.add_flops(2.0 * (rows * c * hidden + rows * hidden * out_f) as f64);
    t.record(
        "layer_norm_mlp",
        y,
        &inputs,
        Box::new(move |dy, _| {
            let [xv, gv, bv, w1v, b1v, w2v, _] = &saved;
            let (u, h, _, _) = first(xv, gv, bv, w1v, b1v); // recomputed
            let dw2 = gelu_linear_weight_grad(&dy, &u, rows);
            let db2 = bias_grad(&dy, rows, out_f);
            let mut du = linear_input_grad(&dy, w2v, u.shape()); // d gelu(u), then du
            drop(dy);
            gelu::backward_in_place(du.buffer_mut(), u.buffer(), u.numel());
            drop(u);
            let dw1 = linear_weight_grad(&du, &h, rows);
            let db1 = bias_grad(&du, rows, hidden);
            drop(h);
            let dh = linear_input_grad(&du, w1v, xv.shape());
            drop(du);
            let [dx, dgamma, dbeta] = layer_norm_grads(&dh, xv, gv, &mean, &rstd, rows, c);
            [dx, dgamma, dbeta, dw1, db1, dw2, db2].map(Some).to_vec()
        }),
    )
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::randn;
    use crate::ops;
    use crate::test_support::{
        assert_same_bits, check, forward_backward, inputs, rng, test_device,
    };
    use crate::{Tape, Var};

    #[test]
    fn gradcheck_gelu_linear_fused() {
        let mut r = rng();
        let x = randn(&[2, 3, 6], &mut r);
        let w = randn(&[4, 6], &mut r);
        let b = randn(&[4], &mut r);
        check(vec![x.clone(), w.clone(), b.clone()], |t, v| {
            ops::gelu_linear(t, &v[0], &v[1], &v[2])
        });
        // Same values as the unfused pair.
        let mut t = Tape::no_grad();
        let (xv, wv, bv) = (Var::constant(x), Var::constant(w), Var::constant(b));
        let fused = ops::gelu_linear(&mut t, &xv, &wv, &bv);
        let g = ops::gelu(&mut t, &xv);
        let plain = ops::linear(&mut t, &g, &wv, Some(&bv));
        for (a, b) in fused.data().iter().zip(plain.data()) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn gradcheck_layer_norm_linear_fused() {
        let mut r = rng();
        let x = randn(&[2, 3, 6], &mut r);
        let (g, beta) = (randn(&[6], &mut r), randn(&[6], &mut r));
        let w = randn(&[4, 6], &mut r);
        let b = randn(&[4], &mut r);
        let all = vec![x.clone(), g.clone(), beta.clone(), w.clone(), b.clone()];
        check(all, |t, v| {
            ops::layer_norm_linear(t, &v[0], &v[1], &v[2], 1e-5, &[&v[3]], Some(&[&v[4]]))
        });
        check(
            vec![x.clone(), g.clone(), beta.clone(), w.clone()],
            |t, v| ops::layer_norm_linear(t, &v[0], &v[1], &v[2], 1e-5, &[&v[3]], None),
        );
        // Same values as the unfused pair.
        let mut t = Tape::no_grad();
        let [xv, gv, betav, wv, bv] = [x, g, beta, w, b].map(Var::constant);
        let fused = ops::layer_norm_linear(&mut t, &xv, &gv, &betav, 1e-5, &[&wv], Some(&[&bv]));
        let h = ops::layer_norm(&mut t, &xv, &gv, &betav, 1e-5);
        let plain = ops::linear(&mut t, &h, &wv, Some(&bv));
        for (a, b) in fused.data().iter().zip(plain.data()) {
            assert_eq!(a.to_bits(), b.to_bits(), "{a} vs {b}");
        }
    }

    #[test]
    fn gradcheck_layer_norm_linear_stacked_projections() {
        let mut r = rng();
        let x = randn(&[2, 3, 6], &mut r);
        let (g, beta) = (randn(&[6], &mut r), randn(&[6], &mut r));
        let (w1, w2) = (randn(&[4, 6], &mut r), randn(&[2, 6], &mut r));
        let (b1, b2) = (randn(&[4], &mut r), randn(&[2], &mut r));
        let all = vec![
            x.clone(),
            g.clone(),
            beta.clone(),
            w1.clone(),
            w2.clone(),
            b1.clone(),
            b2.clone(),
        ];
        check(all, |t, v| {
            ops::layer_norm_linear(
                t,
                &v[0],
                &v[1],
                &v[2],
                1e-5,
                &[&v[3], &v[4]],
                Some(&[&v[5], &v[6]]),
            )
        });
        // The outputs side by side: the first 4 columns from W1, the last 2 from W2.
        let mut t = Tape::no_grad();
        let [xv, gv, betav, w1v, w2v, b1v, b2v] = [x, g, beta, w1, w2, b1, b2].map(Var::constant);
        let both = ops::layer_norm_linear(
            &mut t,
            &xv,
            &gv,
            &betav,
            1e-5,
            &[&w1v, &w2v],
            Some(&[&b1v, &b2v]),
        );
        let first = ops::layer_norm_linear(&mut t, &xv, &gv, &betav, 1e-5, &[&w1v], Some(&[&b1v]));
        let second = ops::layer_norm_linear(&mut t, &xv, &gv, &betav, 1e-5, &[&w2v], Some(&[&b2v]));
        for r in 0..6 {
            assert_eq!(
                &both.data()[r * 6..r * 6 + 4],
                &first.data()[r * 4..r * 4 + 4]
            );
            assert_eq!(
                &both.data()[r * 6 + 4..r * 6 + 6],
                &second.data()[r * 2..r * 2 + 2]
            );
        }
    }

    #[test]
    fn layer_norm_mlp_matches_the_unfused_pair_bit_for_bit() {
        let mut r = rng();
        let shapes: [&[usize]; 7] = [&[2, 3, 6], &[6], &[6], &[8, 6], &[8], &[5, 8], &[5]];
        let values: Vec<_> = shapes.iter().map(|s| randn(s, &mut r)).collect();
        check(values.clone(), |t, v| {
            ops::layer_norm_mlp(t, &v[0], &v[1], &v[2], 1e-5, &v[3], &v[4], &v[5], &v[6])
        });
        assert_same_bits(
            "layer_norm_mlp",
            &values,
            |t, v| ops::layer_norm_mlp(t, &v[0], &v[1], &v[2], 1e-5, &v[3], &v[4], &v[5], &v[6]),
            |t, v| {
                let (w1, b1) = ([&v[3]], [&v[4]]);
                let u = ops::layer_norm_linear(t, &v[0], &v[1], &v[2], 1e-5, &w1, Some(&b1));
                ops::gelu_linear(t, &u, &v[5], &v[6])
            },
        );
    }

    test_device!(layer_norm_mlp, 1e-4, |d| {
        let x = inputs(&[&[2, 3, 5], &[5], &[5], &[7, 5], &[7], &[4, 7], &[4]], 35);
        forward_backward(d, &x, 38, |t, v| {
            ops::layer_norm_mlp(t, &v[0], &v[1], &v[2], 1e-5, &v[3], &v[4], &v[5], &v[6])
        })
    });

    test_device!(layer_norm_linear, 1e-4, |d| {
        let x = inputs(&[&[2, 3, 5], &[5], &[5], &[4, 5], &[4]], 34);
        forward_backward(d, &x, 37, |t, v| {
            ops::layer_norm_linear(t, &v[0], &v[1], &v[2], 1e-5, &[&v[3]], Some(&[&v[4]]))
        })
    });

    // The inputs of `ops::matmul`'s `linear_with_and_without_bias`.
    test_device!(gelu_linear, 1e-4, |d| {
        let x = inputs(&[&[2, 3, 5], &[4, 5], &[4]], 33);
        forward_backward(d, &x, 36, |t, v| ops::gelu_linear(t, &v[0], &v[1], &v[2]))
    });
}
