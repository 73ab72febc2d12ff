//! Fused ops that trade a little recomputation for memory.

use pixel_kernels::gelu;

use super::device_of;
use super::matmul::{bias_grad, linear_forward, linear_input_grad, linear_weight_grad};
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// gelu(x), a fresh tensor.
fn gelu_of(x: &Tensor) -> Tensor {
    let mut g = Tensor::zeros_on(x.shape(), x.device());
    gelu::forward(g.buffer_mut(), x.buffer(), x.numel());
    g
}

/// `y = gelu(x) W^T + b`: the second half of a transformer MLP as one node.
/// x (..., in), w (out, in), b (out). Only `x` is saved: backward recomputes
/// gelu(x) (one cheap elementwise pass) instead of keeping a second (..., in)
/// activation alive until backward, which for PIXEL's FFN is the largest buffer
/// of every layer.
pub fn gelu_linear(t: &mut Tape, x: &Var, w: &Var, b: &Var) -> Var {
    let xs = x.shape().to_vec();
    let ws = w.shape();
    assert!(
        ws.len() == 2 && !xs.is_empty() && xs[xs.len() - 1] == ws[1] && b.shape() == [ws[0]],
        "gelu_linear: input {xs:?}, weight {ws:?} and bias {:?} do not fit (expected [out, {}] and [out])",
        b.shape(),
        xs.last().copied().unwrap_or(0)
    );
    let device = device_of("gelu_linear", &[x, w, b]);
    let (out_f, in_f) = (ws[0], ws[1]);
    let rows = x.value().numel() / in_f;
    let mut ys = xs.clone();
    *ys.last_mut().unwrap() = out_f;
    let g = gelu_of(x.value()); // (rows, in), dropped after use
    let y = linear_forward(&g, w.value(), Some(b.value()), rows, &ys);
    drop(g);
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
            let dw = needs[1].then(|| linear_weight_grad(&dy, &gelu_of(&xv), rows)); // gelu recomputed
            let db = needs[2].then(|| bias_grad(&dy, rows, out_f));
            let dx = needs[0].then(|| {
                let dg = linear_input_grad(&dy, &wv, xv.shape());
                let mut dx = Tensor::zeros_on(xv.shape(), device);
                gelu::backward(dx.buffer_mut(), dg.buffer(), xv.buffer(), xv.numel());
                dx
            });
            vec![dx, dw, db]
        }),
    )
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::randn;
    use crate::ops;
    use crate::test_support::{check, forward_backward, inputs, rng, test_device};
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

    // The inputs of `ops::matmul`'s `linear_with_and_without_bias`.
    test_device!(gelu_linear, 1e-4, |d| {
        let x = inputs(&[&[2, 3, 5], &[4, 5], &[4]], 33);
        forward_backward(d, &x, 36, |t, v| ops::gelu_linear(t, &v[0], &v[1], &v[2]))
    });
}
