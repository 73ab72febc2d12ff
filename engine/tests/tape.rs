//! Tape behaviour: accumulation, no-grad mode, shape errors.

use std::sync::Arc;

use pixel_engine::ops;
use pixel_engine::{Tape, Tensor, Var};

#[test]
fn gradient_of_a_var_used_twice_accumulates() {
    let mut t = Tape::new();
    let x = t.leaf(Arc::new(Tensor::new(&[3], vec![1.0, 2.0, 3.0])));
    let y = ops::mul(&mut t, &x, &x); // x^2
    let z = ops::add(&mut t, &y, &x); // x^2 + x
    let s = ops::sum_all(&mut t, &z);
    let g = t.backward(&s);
    assert_eq!(g.get(&x).unwrap().data(), &[3.0, 5.0, 7.0]);
}

#[test]
fn no_grad_tape_records_nothing() {
    let mut t = Tape::no_grad();
    let x = t.leaf(Arc::new(Tensor::full(&[4, 4], 0.5)));
    let w = t.leaf(Arc::new(Tensor::full(&[4, 4], 0.25)));
    let y = ops::linear(&mut t, &x, &w, None);
    let y = ops::gelu(&mut t, &y);
    assert!(t.is_empty());
    assert!(!y.requires_grad());
    assert!((y.data()[0] - 0.5 * 0.5 * (1.0 + libm_erf(0.5 / 2f64.sqrt()) as f32)).abs() < 1e-6);
}

fn libm_erf(x: f64) -> f64 {
    // erf via its Taylor series (enough terms for |x| < 1).
    let mut sum = 0.0;
    let mut term = x;
    for n in 0..30 {
        sum += term / (2 * n + 1) as f64;
        term *= -x * x / (n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn constants_get_no_gradient_and_unused_leaves_none() {
    let mut t = Tape::new();
    let x = t.leaf(Arc::new(Tensor::full(&[2], 1.0)));
    let unused = t.leaf(Arc::new(Tensor::full(&[2], 1.0)));
    let c = Var::constant(Tensor::full(&[2], 3.0));
    let y = ops::mul(&mut t, &x, &c);
    let s = ops::sum_all(&mut t, &y);
    let g = t.backward(&s);
    assert_eq!(g.get(&x).unwrap().data(), &[3.0, 3.0]);
    assert!(g.get(&unused).is_none());
    assert!(g.get(&c).is_none());
}

#[test]
#[should_panic(expected = "linear: input [2, 3] does not match weight [4, 5]")]
fn shape_mismatch_names_op_and_shapes() {
    let mut t = Tape::new();
    let x = Var::constant(Tensor::zeros(&[2, 3]));
    let w = Var::constant(Tensor::zeros(&[4, 5]));
    ops::linear(&mut t, &x, &w, None);
}

#[test]
#[should_panic(expected = "add: cannot broadcast shape [3] onto [2, 4]")]
fn broadcast_mismatch_names_shapes() {
    let mut t = Tape::new();
    let a = Var::constant(Tensor::zeros(&[2, 4]));
    let b = Var::constant(Tensor::zeros(&[3]));
    ops::add(&mut t, &a, &b);
}
