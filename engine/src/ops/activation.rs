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
}
