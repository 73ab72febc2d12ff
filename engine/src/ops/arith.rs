//! Elementwise arithmetic with the broadcasts a transformer uses, and reductions.
//!
//! Broadcasting rule (kept small on purpose): the second operand either has the
//! same shape as the first, or its shape equals a suffix of the first's shape
//! after dropping leading 1s (bias (C) on (B, N, C); position table (1, N, C)
//! on (B, N, C)). Its gradient sums over the broadcast leading dims.

use pixel_kernels::elementwise::{self as ew, BinaryOp};

use super::device_of;
use crate::tape::{Tape, Var};
use crate::tensor::{normalize_axis, Tensor};

/// Number of leading repeats when `b` broadcasts over `a`; panics otherwise.
fn broadcast_repeats(op: &str, a: &[usize], b: &[usize]) -> usize {
    let b_trim: &[usize] = {
        let first = b.iter().position(|&d| d != 1).unwrap_or(b.len());
        &b[first..]
    };
    let ok = a == b || (b_trim.len() <= a.len() && a[a.len() - b_trim.len()..] == *b_trim);
    assert!(ok, "{op}: cannot broadcast shape {b:?} onto {a:?}");
    let nb: usize = b.iter().product();
    a.iter().product::<usize>() / nb.max(1)
}

/// Sum a gradient of `a`'s shape down to `b`'s shape (over `reps` leading repeats).
fn reduce_to(d: &Tensor, b_shape: &[usize], reps: usize) -> Tensor {
    if reps == 1 {
        return d.clone().reshape(b_shape);
    }
    let mut out = Tensor::zeros_on(b_shape, d.device());
    let cols = out.numel();
    ew::sum_rows(out.buffer_mut(), d.buffer(), reps, cols);
    out
}

/// `a op b`, b repeated over a's leading dims.
fn apply(a: &Tensor, b: &Tensor, op: BinaryOp) -> Tensor {
    let mut out = Tensor::zeros_on(a.shape(), a.device());
    ew::binary(
        out.buffer_mut(),
        a.buffer(),
        b.buffer(),
        op,
        a.numel(),
        b.numel(),
    );
    out
}

/// `a + b`, `a - b` or `a * b` (b same shape or broadcast over leading dims).
fn binary(t: &mut Tape, name: &'static str, a: &Var, b: &Var, op: BinaryOp) -> Var {
    let reps = broadcast_repeats(name, a.shape(), b.shape());
    device_of(name, &[a, b]);
    let out = apply(a.value(), b.value(), op);
    if !t.needs_grad(&[a, b]) {
        return Var::constant(out);
    }
    let b_shape = b.shape().to_vec();
    if op != BinaryOp::Mul {
        // The gradients of a sum or difference need no input values: save
        // none (a residual add would otherwise keep both inputs alive).
        let sign = if op == BinaryOp::Sub { -1.0 } else { 1.0 };
        return t.record(
            name,
            out,
            &[a, b],
            Box::new(move |dy, needs| {
                let db = needs[1].then(|| {
                    let mut d = reduce_to(&dy, &b_shape, reps);
                    if sign != 1.0 {
                        d.scale_in_place(sign);
                    }
                    d
                });
                vec![needs[0].then_some(dy), db]
            }),
        );
    }
    let (av, bv) = (a.arc(), b.arc());
    t.record(
        name,
        out,
        &[a, b],
        Box::new(move |dy, needs| {
            let da = needs[0].then(|| apply(&dy, &bv, BinaryOp::Mul));
            let db = needs[1].then(|| reduce_to(&apply(&dy, &av, BinaryOp::Mul), &b_shape, reps));
            vec![da, db]
        }),
    )
}

/// `a + b` (b same shape or broadcast over leading dims).
pub fn add(t: &mut Tape, a: &Var, b: &Var) -> Var {
    binary(t, "add", a, b, BinaryOp::Add)
}

/// `a - b` (b same shape or broadcast over leading dims).
pub fn sub(t: &mut Tape, a: &Var, b: &Var) -> Var {
    binary(t, "sub", a, b, BinaryOp::Sub)
}

/// `a * b` elementwise (b same shape or broadcast over leading dims).
pub fn mul(t: &mut Tape, a: &Var, b: &Var) -> Var {
    binary(t, "mul", a, b, BinaryOp::Mul)
}

/// `alpha * a`.
pub fn scale(t: &mut Tape, a: &Var, alpha: f32) -> Var {
    let mut out = a.value().clone();
    out.scale_in_place(alpha);
    t.record(
        "scale",
        out,
        &[a],
        Box::new(move |mut dy, _| {
            dy.scale_in_place(alpha);
            vec![Some(dy)]
        }),
    )
}

/// Sum of all elements -> shape [] (accumulated in f64).
pub fn sum_all(t: &mut Tape, a: &Var) -> Var {
    let device = a.value().device();
    let mut out = Tensor::zeros_on(&[], device);
    ew::sum_all(out.buffer_mut(), a.value().buffer(), a.value().numel(), 1.0);
    let shape = a.shape().to_vec();
    t.record(
        "sum_all",
        out,
        &[a],
        Box::new(move |dy, _| {
            let mut dx = Tensor::zeros_on(&shape, device);
            let n = dx.numel();
            ew::fill_from_scalar(dx.buffer_mut(), n, dy.buffer(), 1.0);
            vec![Some(dx)]
        }),
    )
}

/// Mean of all elements -> shape [].
pub fn mean_all(t: &mut Tape, a: &Var) -> Var {
    let n = a.value().numel().max(1) as f32;
    let s = sum_all(t, a);
    scale(t, &s, 1.0 / n)
}

/// Sum over one axis (removed from the shape).
pub fn sum_axis(t: &mut Tape, a: &Var, axis: isize) -> Var {
    let shape = a.shape().to_vec();
    let ax = normalize_axis(axis, shape.len());
    let outer: usize = shape[..ax].iter().product();
    let len = shape[ax];
    let inner: usize = shape[ax + 1..].iter().product();
    let mut out_shape = shape.clone();
    out_shape.remove(ax);
    let device = a.value().device();
    let mut out = Tensor::zeros_on(&out_shape, device);
    ew::sum_axis(out.buffer_mut(), a.value().buffer(), outer, len, inner);
    t.record(
        "sum_axis",
        out,
        &[a],
        Box::new(move |dy, _| {
            let mut dx = Tensor::zeros_on(&shape, device);
            ew::expand_axis(dx.buffer_mut(), dy.buffer(), outer, len, inner);
            vec![Some(dx)]
        }),
    )
}

/// Mean over one axis (removed from the shape).
pub fn mean_axis(t: &mut Tape, a: &Var, axis: isize) -> Var {
    let len = a.value().dim(axis) as f32;
    let s = sum_axis(t, a, axis);
    scale(t, &s, 1.0 / len.max(1.0))
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::randn;
    use crate::ops;
    use crate::test_support::{
        check, check_some, cuda_device, forward_backward, inputs, on, rng, test_device,
    };
    use crate::{Device, Tape, Tensor};

    #[test]
    fn gradcheck_add_sub_mul_broadcast() {
        let mut r = rng();
        let a = randn(&[2, 3, 4], &mut r);
        for b_shape in [vec![2, 3, 4], vec![4], vec![1, 3, 4]] {
            let b = randn(&b_shape, &mut r);
            check(vec![a.clone(), b.clone()], |t, v| ops::add(t, &v[0], &v[1]));
            check(vec![a.clone(), b.clone()], |t, v| ops::sub(t, &v[0], &v[1]));
            check(vec![a.clone(), b], |t, v| ops::mul(t, &v[0], &v[1]));
        }
    }

    #[test]
    fn gradcheck_scale_sum_mean() {
        let mut r = rng();
        let a = randn(&[3, 4, 5], &mut r);
        check(vec![a.clone()], |t, v| ops::scale(t, &v[0], -1.7));
        check(vec![a.clone()], |t, v| ops::sum_all(t, &v[0]));
        check(vec![a.clone()], |t, v| ops::mean_all(t, &v[0]));
        for axis in [0, 1, -1] {
            check(vec![a.clone()], move |t, v| ops::sum_axis(t, &v[0], axis));
            check(vec![a.clone()], move |t, v| ops::mean_axis(t, &v[0], axis));
        }
    }

    #[test]
    fn gradcheck_skips_non_differentiable_inputs() {
        let mut r = rng();
        let a = randn(&[3, 3], &mut r);
        let b = randn(&[3, 3], &mut r);
        check_some(vec![a, b], &[true, false], |t, v| ops::mul(t, &v[0], &v[1]));
    }

    test_device!(add_sub_mul_same_shape_and_broadcast, 1e-5, |d| {
        let mut out = Vec::new();
        for b_shape in [&[2usize, 3, 4][..], &[4], &[1, 3, 4]] {
            let x = inputs(&[&[2, 3, 4], b_shape], 1);
            out.extend(forward_backward(d, &x, 2, |t, v| ops::add(t, &v[0], &v[1])));
            out.extend(forward_backward(d, &x, 3, |t, v| ops::sub(t, &v[0], &v[1])));
            out.extend(forward_backward(d, &x, 4, |t, v| ops::mul(t, &v[0], &v[1])));
        }
        out
    });

    test_device!(scale_and_reductions, 1e-5, |d| {
        let x = inputs(&[&[3, 4, 5]], 5);
        let mut out = forward_backward(d, &x, 6, |t, v| ops::scale(t, &v[0], -0.7));
        out.extend(forward_backward(d, &x, 7, |t, v| ops::sum_all(t, &v[0])));
        out.extend(forward_backward(d, &x, 8, |t, v| ops::mean_all(t, &v[0])));
        for axis in [0isize, 1, -1] {
            out.extend(forward_backward(d, &x, 9, |t, v| {
                ops::sum_axis(t, &v[0], axis)
            }));
            out.extend(forward_backward(d, &x, 10, |t, v| {
                ops::mean_axis(t, &v[0], axis)
            }));
        }
        out
    });

    // Rows longer than a block and a sum over more values than the reduction
    // grid (grid-stride partials); see the other `*_long_rows*` tests.
    test_device!(add_and_sum_all_on_many_rows, 1e-4, |d| {
        let a = inputs(&[&[130, 300], &[300]], 70);
        let mut out = forward_backward(d, &a, 71, |t, v| ops::add(t, &v[0], &v[1]));
        let big = inputs(&[&[600, 500]], 72);
        out.extend(forward_backward(d, &big, 73, |t, v| ops::sum_all(t, &v[0])));
        out
    });

    // A var used twice: its two gradients are added on the tape.
    test_device!(tape_accumulates_gradients, 1e-5, |d| {
        let x = inputs(&[&[3, 4]], 54);
        forward_backward(d, &x, 55, |t, v| {
            let y = ops::mul(t, &v[0], &v[0]);
            ops::add(t, &y, &v[0])
        })
    });

    #[test]
    fn device_reported_and_host_accessors_explain_themselves() {
        let t = Tensor::new(&[2], vec![1.0, 2.0]);
        assert_eq!(t.device(), Device::Cpu);
        assert_eq!(t.to_host().data(), t.data());
        match cuda_device() {
            Ok(d) => {
                let g = on(d, &t);
                assert_eq!(g.device(), d);
                assert_eq!(g.to_host().data(), &[1.0, 2.0]);
                let err = std::panic::catch_unwind(|| g.data().len()).expect_err("data() on CUDA");
                let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
                assert!(msg.contains("to_host()"), "unhelpful message: {msg}");
                // Mixed devices: a clear panic naming the op, never an implicit copy.
                let err = std::panic::catch_unwind(|| {
                    let mut tape = Tape::new();
                    let a = tape.leaf_tensor(t.clone());
                    let b = tape.leaf_tensor(on(d, &t));
                    ops::add(&mut tape, &a, &b);
                })
                .expect_err("add of a host and a device tensor");
                let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
                assert!(
                    msg.contains("add") && msg.contains("Cuda(0)"),
                    "unhelpful message: {msg}"
                );
            }
            Err(why) => {
                eprintln!("CUDA half skipped: {why}");
                if cfg!(not(feature = "cuda")) {
                    let err = t
                        .to_device(Device::Cuda(0))
                        .expect_err("no CUDA in this build");
                    assert!(err.contains("cuda"), "{err}");
                } else {
                    let err = t
                        .to_device(Device::Cuda(0))
                        .expect_err("no driver, yet a device");
                    assert!(err.contains("no CUDA driver found"), "{err}");
                }
            }
        }
    }
}
