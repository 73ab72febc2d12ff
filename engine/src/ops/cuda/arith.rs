//! CUDA twins of `ops/arith.rs`: broadcast add/sub/mul, scale and reductions.

use pixel_kernels::cuda::launch::{self as k, BinaryOp};

use super::{buf, device_of, zeros};
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// Sum a gradient of `a`'s shape down to `b`'s shape (over `reps` leading repeats).
fn reduce_to(op: &str, d: &Tensor, b_shape: &[usize], reps: usize) -> Tensor {
    if reps == 1 {
        return d.clone().reshape(b_shape);
    }
    let dev = buf(op, d).device().clone();
    let mut out = zeros(&dev, b_shape);
    let nb = out.numel();
    k::sum_rows(out.cuda_buffer_mut(op), buf(op, d), reps, nb);
    out
}

/// `a op b` on the device, b broadcast over `reps` leading repeats of a.
fn apply(op_name: &str, a: &Tensor, b: &Tensor, op: BinaryOp) -> Tensor {
    let dev = device_of(op_name, &[a, b]);
    let mut out = zeros(&dev, a.shape());
    let (n, nb) = (a.numel(), b.numel());
    k::binary_broadcast(
        out.cuda_buffer_mut(op_name),
        buf(op_name, a),
        buf(op_name, b),
        op,
        n,
        nb,
    );
    out
}

/// `a + b`, `a - b` or `a * b` (b same shape or broadcast over leading dims).
pub fn binary(
    t: &mut Tape,
    name: &'static str,
    a: &Var,
    b: &Var,
    reps: usize,
    op: BinaryOp,
) -> Var {
    let out = apply(name, a.value(), b.value(), op);
    if !t.needs_grad(&[a, b]) {
        return Var::constant(out);
    }
    let (av, bv) = (a.arc(), b.arc());
    t.record(
        name,
        out,
        &[a, b],
        Box::new(move |dy, needs| match op {
            BinaryOp::Add => {
                let db = needs[1].then(|| reduce_to(name, &dy, bv.shape(), reps));
                vec![needs[0].then_some(dy), db]
            }
            BinaryOp::Sub => {
                let db = needs[1].then(|| {
                    let mut d = reduce_to(name, &dy, bv.shape(), reps);
                    let n = d.numel();
                    k::scale(d.cuda_buffer_mut(name), n, -1.0);
                    d
                });
                vec![needs[0].then_some(dy), db]
            }
            BinaryOp::Mul => {
                let da = needs[0].then(|| apply(name, &dy, &bv, BinaryOp::Mul));
                let db = needs[1].then(|| {
                    let prod = apply(name, &dy, &av, BinaryOp::Mul);
                    reduce_to(name, &prod, bv.shape(), reps)
                });
                vec![da, db]
            }
        }),
    )
}

/// `alpha * a`.
pub fn scale(t: &mut Tape, a: &Var, alpha: f32) -> Var {
    let mut out = a.value().clone();
    let n = out.numel();
    k::scale(out.cuda_buffer_mut("scale"), n, alpha);
    t.record(
        "scale",
        out,
        &[a],
        Box::new(move |mut dy, _| {
            let n = dy.numel();
            k::scale(dy.cuda_buffer_mut("scale"), n, alpha);
            vec![Some(dy)]
        }),
    )
}

/// Sum of all elements -> shape [] (on the device).
pub fn sum_all(t: &mut Tape, a: &Var) -> Var {
    let dev = device_of("sum_all", &[a.value()]);
    let mut out = zeros(&dev, &[]);
    k::sum_to_scalar(
        out.cuda_buffer_mut("sum_all"),
        buf("sum_all", a.value()),
        a.value().numel(),
        1.0,
    );
    let shape = a.shape().to_vec();
    t.record(
        "sum_all",
        out,
        &[a],
        Box::new(move |dy, _| {
            let mut dx = zeros(&dev, &shape);
            let n = dx.numel();
            k::fill_from_scalar(dx.cuda_buffer_mut("sum_all"), n, buf("sum_all", &dy), 1.0);
            vec![Some(dx)]
        }),
    )
}

/// Sum over the middle axis of (outer, len, inner) (removed from the shape).
pub fn sum_axis(
    t: &mut Tape,
    a: &Var,
    outer: usize,
    len: usize,
    inner: usize,
    out_shape: Vec<usize>,
) -> Var {
    let dev = device_of("sum_axis", &[a.value()]);
    let mut out = zeros(&dev, &out_shape);
    k::sum_axis(
        out.cuda_buffer_mut("sum_axis"),
        buf("sum_axis", a.value()),
        outer,
        len,
        inner,
    );
    let shape = a.shape().to_vec();
    t.record(
        "sum_axis",
        out,
        &[a],
        Box::new(move |dy, _| {
            let mut dx = zeros(&dev, &shape);
            k::expand_axis(
                dx.cuda_buffer_mut("sum_axis"),
                buf("sum_axis", &dy),
                outer,
                len,
                inner,
            );
            vec![Some(dx)]
        }),
    )
}
