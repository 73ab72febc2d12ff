//! Elementwise arithmetic with the broadcasts a transformer uses, and reductions.
//!
//! Broadcasting rule (kept small on purpose): the second operand either has the
//! same shape as the first, or its shape equals a suffix of the first's shape
//! after dropping leading 1s (bias (C) on (B, N, C); position table (1, N, C)
//! on (B, N, C)). Its gradient sums over the broadcast leading dims.

use pixel_kernels::elementwise as ew;

#[cfg(feature = "cuda")]
use super::cuda;
#[cfg(feature = "cuda")]
use pixel_kernels::cuda::launch::BinaryOp;

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

/// Sum a gradient of `a`'s shape down to `b`'s shape (over leading repeats).
fn reduce_to(d: &Tensor, b_shape: &[usize], repeats: usize) -> Tensor {
    if repeats == 1 {
        return d.clone().reshape(b_shape);
    }
    let mut out = vec![0.0f32; d.numel() / repeats];
    ew::sum_rows_into(&mut out, d.data());
    Tensor::new(b_shape, out)
}

/// `a + b` (b same shape or broadcast over leading dims).
pub fn add(t: &mut Tape, a: &Var, b: &Var) -> Var {
    let reps = broadcast_repeats("add", a.shape(), b.shape());
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[a, b]) {
        return cuda::arith::binary(t, "add", a, b, reps, BinaryOp::Add);
    }
    let mut out = a.value().clone();
    if reps == 1 {
        ew::add_assign(out.data_mut(), b.data());
    } else {
        ew::add_row_broadcast(out.data_mut(), b.data());
    }
    let b_shape = b.shape().to_vec();
    t.record(
        "add",
        out,
        &[a, b],
        Box::new(move |dy, needs| {
            let db = needs[1].then(|| reduce_to(&dy, &b_shape, reps));
            vec![needs[0].then_some(dy), db]
        }),
    )
}

/// `a - b` (b same shape or broadcast over leading dims).
pub fn sub(t: &mut Tape, a: &Var, b: &Var) -> Var {
    let reps = broadcast_repeats("sub", a.shape(), b.shape());
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[a, b]) {
        return cuda::arith::binary(t, "sub", a, b, reps, BinaryOp::Sub);
    }
    let mut out = a.value().clone();
    let nb = b.value().numel();
    for chunk in out.data_mut().chunks_mut(nb) {
        chunk.iter_mut().zip(b.data()).for_each(|(x, y)| *x -= y);
    }
    let b_shape = b.shape().to_vec();
    t.record(
        "sub",
        out,
        &[a, b],
        Box::new(move |dy, needs| {
            let db = needs[1].then(|| {
                let mut d = reduce_to(&dy, &b_shape, reps);
                ew::scale(d.data_mut(), -1.0);
                d
            });
            vec![needs[0].then_some(dy), db]
        }),
    )
}

/// `a * b` elementwise (b same shape or broadcast over leading dims).
pub fn mul(t: &mut Tape, a: &Var, b: &Var) -> Var {
    let reps = broadcast_repeats("mul", a.shape(), b.shape());
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[a, b]) {
        return cuda::arith::binary(t, "mul", a, b, reps, BinaryOp::Mul);
    }
    let nb = b.value().numel();
    let mut out = a.value().clone();
    for chunk in out.data_mut().chunks_mut(nb) {
        chunk.iter_mut().zip(b.data()).for_each(|(x, y)| *x *= y);
    }
    if !t.needs_grad(&[a, b]) {
        return Var::constant(out);
    }
    let (av, bv) = (a.arc(), b.arc());
    t.record(
        "mul",
        out,
        &[a, b],
        Box::new(move |dy, needs| {
            let da = needs[0].then(|| {
                let mut d = dy.clone();
                for chunk in d.data_mut().chunks_mut(nb) {
                    chunk.iter_mut().zip(bv.data()).for_each(|(x, y)| *x *= y);
                }
                d
            });
            let db = needs[1].then(|| {
                let mut prod = dy.clone();
                ew::mul(prod.data_mut(), dy.data(), av.data());
                reduce_to(&prod, bv.shape(), reps)
            });
            vec![da, db]
        }),
    )
}

/// `alpha * a`.
pub fn scale(t: &mut Tape, a: &Var, alpha: f32) -> Var {
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[a]) {
        return cuda::arith::scale(t, a, alpha);
    }
    let mut out = a.value().clone();
    ew::scale(out.data_mut(), alpha);
    t.record(
        "scale",
        out,
        &[a],
        Box::new(move |mut dy, _| {
            ew::scale(dy.data_mut(), alpha);
            vec![Some(dy)]
        }),
    )
}

/// Sum of all elements -> shape [].
pub fn sum_all(t: &mut Tape, a: &Var) -> Var {
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[a]) {
        return cuda::arith::sum_all(t, a);
    }
    let s: f64 = a.data().iter().map(|&v| v as f64).sum();
    let shape = a.shape().to_vec();
    t.record(
        "sum_all",
        Tensor::scalar(s as f32),
        &[a],
        Box::new(move |dy, _| vec![Some(Tensor::full(&shape, dy.item()))]),
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
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[a]) {
        let mut out_shape = shape.clone();
        out_shape.remove(ax);
        return cuda::arith::sum_axis(t, a, outer, len, inner, out_shape);
    }
    let mut out = vec![0.0f32; outer * inner];
    let x = a.data();
    for o in 0..outer {
        for l in 0..len {
            let src = &x[(o * len + l) * inner..(o * len + l + 1) * inner];
            out[o * inner..(o + 1) * inner]
                .iter_mut()
                .zip(src)
                .for_each(|(d, s)| *d += s);
        }
    }
    let mut out_shape = shape.clone();
    out_shape.remove(ax);
    t.record(
        "sum_axis",
        Tensor::new(&out_shape, out),
        &[a],
        Box::new(move |dy, _| {
            let mut dx = vec![0.0f32; outer * len * inner];
            let d = dy.data();
            for o in 0..outer {
                for l in 0..len {
                    dx[(o * len + l) * inner..(o * len + l + 1) * inner]
                        .copy_from_slice(&d[o * inner..(o + 1) * inner]);
                }
            }
            vec![Some(Tensor::new(&shape, dx))]
        }),
    )
}

/// Mean over one axis (removed from the shape).
pub fn mean_axis(t: &mut Tape, a: &Var, axis: isize) -> Var {
    let len = a.value().dim(axis) as f32;
    let s = sum_axis(t, a, axis);
    scale(t, &s, 1.0 / len.max(1.0))
}
