//! Pointwise nonlinearities and dropout.

use pixel_kernels::elementwise::{self as ew, UnaryOp};
use pixel_kernels::{dropout as dropout_kernel, gelu as gelu_kernel};

use crate::rng::Rng;
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// Exact (erf) GELU. Saves its input.
pub fn gelu(t: &mut Tape, x: &Var) -> Var {
    let (n, device) = (x.value().numel(), x.value().device());
    let mut out = Tensor::zeros_on(x.shape(), device);
    gelu_kernel::forward(out.buffer_mut(), x.value().buffer(), n);
    if !t.needs_grad(&[x]) {
        return Var::constant(out);
    }
    let xv = x.arc();
    t.record(
        "gelu",
        out,
        &[x],
        Box::new(move |dy, _| {
            let mut dx = Tensor::zeros_on(xv.shape(), device);
            gelu_kernel::backward(dx.buffer_mut(), dy.buffer(), xv.buffer(), n);
            vec![Some(dx)]
        }),
    )
}

/// tanh or relu. Saves its output (d tanh = 1 - y^2; relu: the sign pattern).
fn unary(t: &mut Tape, name: &'static str, x: &Var, op: UnaryOp) -> Var {
    let (n, device) = (x.value().numel(), x.value().device());
    let mut out = Tensor::zeros_on(x.shape(), device);
    ew::unary(out.buffer_mut(), x.value().buffer(), op, n);
    if !t.needs_grad(&[x]) {
        return Var::constant(out);
    }
    let y = out.clone();
    t.record(
        name,
        out,
        &[x],
        Box::new(move |dy, _| {
            let mut dx = Tensor::zeros_on(y.shape(), device);
            ew::unary_backward(dx.buffer_mut(), dy.buffer(), y.buffer(), op, n);
            vec![Some(dx)]
        }),
    )
}

/// tanh. Saves its output.
pub fn tanh(t: &mut Tape, x: &Var) -> Var {
    unary(t, "tanh", x, UnaryOp::Tanh)
}

/// ReLU. Saves its output.
pub fn relu(t: &mut Tape, x: &Var) -> Var {
    unary(t, "relu", x, UnaryOp::Relu)
}

/// Inverted dropout with probability `p` (identity when `p == 0` or not
/// training). The mask is a hash of (seed, element index) with one seed drawn
/// from `rng`: nothing is saved, backward regenerates it, and a seed gives the
/// same mask on every device.
pub fn dropout(t: &mut Tape, x: &Var, p: f32, training: bool, rng: &mut Rng) -> Var {
    assert!(
        (0.0..1.0).contains(&p),
        "dropout: p must be in [0, 1), got {p}"
    );
    if !training || p == 0.0 {
        return x.clone();
    }
    let seed = rng.next_u64();
    let n = x.value().numel();
    let mut out = x.value().clone();
    dropout_kernel::apply_in_place(out.buffer_mut(), n, seed, p);
    t.record(
        "dropout",
        out,
        &[x],
        Box::new(move |mut dy, _| {
            dropout_kernel::apply_in_place(dy.buffer_mut(), n, seed, p);
            vec![Some(dy)]
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::randn;
    use crate::ops;
    use crate::test_support::{check, forward_backward, inputs, on, rng, test_device};

    #[test]
    fn dropout_drops_about_p_and_scales_the_rest() {
        let mut rng = Rng::new(5);
        let n = 100_003; // not a multiple of the kernel's chunk
        let x = Var::constant(Tensor::full(&[n], 1.0));
        let y = dropout(&mut Tape::new(), &x, 0.3, true, &mut rng);
        let y = y.data();
        let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
        assert!((dropped - 0.3).abs() < 0.01, "dropped fraction {dropped}");
        assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6));
    }

    #[test]
    fn gradcheck_gelu_tanh_relu() {
        let mut r = rng();
        let x = randn(&[5, 7], &mut r);
        check(vec![x.clone()], |t, v| ops::gelu(t, &v[0]));
        check(vec![x.clone()], |t, v| ops::tanh(t, &v[0]));
        // Keep ReLU inputs away from the kink where finite differences are wrong.
        let mut xr = x;
        xr.data_mut().iter_mut().for_each(|v| {
            if v.abs() < 0.05 {
                *v += 0.2
            }
        });
        check(vec![xr], |t, v| ops::relu(t, &v[0]));
    }

    #[test]
    fn gradcheck_dropout_same_seed_same_mask() {
        let mut r = rng();
        let x = randn(&[4, 6], &mut r);
        check(vec![x], |t, v| {
            let mut rng = Rng::new(99); // same mask on every evaluation
            ops::dropout(t, &v[0], 0.3, true, &mut rng)
        });
    }

    test_device!(pointwise_activations, 1e-5, |d| {
        let x = inputs(&[&[3, 7]], 37);
        let mut out = forward_backward(d, &x, 38, |t, v| ops::gelu(t, &v[0]));
        out.extend(forward_backward(d, &x, 39, |t, v| ops::tanh(t, &v[0])));
        out.extend(forward_backward(d, &x, 40, |t, v| ops::relu(t, &v[0])));
        // Dropout off (p = 0 or not training) is the identity on every device.
        out.extend(forward_backward(d, &x, 41, |t, v| {
            ops::dropout(t, &v[0], 0.0, true, &mut Rng::new(1))
        }));
        out
    });

    // Each device asserts the properties of its own mask (every output is 0 or
    // x / (1 - p), about p of them are 0, the gradient uses the same mask): the
    // CPU/CUDA comparison alone would pass if both were wrong. The mask is a
    // hash of (seed, index) on every device, so the outputs are also compared.
    test_device!(dropout_masks_are_consistent, 1e-6, |d| {
        let p = 0.25f32;
        let x = Tensor::full(&[64, 64], 2.0);
        let mut tape = Tape::new();
        let v = tape.leaf_tensor(on(d, &x));
        let y = ops::dropout(&mut tape, &v, p, true, &mut Rng::new(3));
        let dout = Tensor::full(&[64, 64], 1.0);
        let grads = tape.backward_with(&y, on(d, &dout));
        let (y, g) = (y.value().to_host(), grads.get(&v).unwrap().to_host());
        let kept = 2.0 / (1.0 - p);
        let consistent = y.data().iter().zip(g.data()).all(|(&y, &g)| {
            (y == 0.0 && g == 0.0)
                || ((y - kept).abs() < 1e-6 && (g - 1.0 / (1.0 - p)).abs() < 1e-6)
        });
        let dropped = y.data().iter().filter(|&&v| v == 0.0).count() as f32 / 4096.0;
        assert!(
            consistent && (dropped - p).abs() < 0.05,
            "dropout on {d:?}: consistent {consistent}, dropped fraction {dropped}"
        );
        vec![y, g]
    });
}
