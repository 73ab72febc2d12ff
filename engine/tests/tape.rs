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

/// `backward_reporting` hands out the gradients `backward` computes, each leaf
/// once, as soon as it is final: the second layer's weight (used last in the
/// forward) before the first's, an unused leaf and a constant at the end.
#[test]
fn backward_reporting_reports_each_leaf_once_when_final() {
    let build = |t: &mut Tape| {
        let x = Var::constant(Tensor::new(&[2, 3], vec![0.5, -1.0, 2.0, 1.5, 0.25, -0.75]));
        let w1 = t.leaf(Arc::new(Tensor::new(
            &[3, 3],
            (0..9).map(|i| 0.1 * i as f32).collect(),
        )));
        let w2 = t.leaf(Arc::new(Tensor::new(
            &[2, 3],
            vec![0.3, -0.2, 0.1, 0.4, 0.5, -0.6],
        )));
        let unused = t.leaf(Arc::new(Tensor::full(&[2], 1.0)));
        let h = ops::linear(t, &x, &w1, None);
        let h = ops::mul(t, &h, &h);
        let y = ops::linear(t, &h, &w2, None);
        let loss = ops::sum_all(t, &y);
        (vec![w1, w2, unused, x], loss)
    };
    let mut plain = Tape::new();
    let (leaves, loss) = build(&mut plain);
    let mut expected = plain.backward(&loss);
    let expected: Vec<Option<Tensor>> = leaves.iter().map(|v| expected.take(v)).collect();

    let mut tape = Tape::new();
    let (leaves, loss) = build(&mut tape);
    let mut order = Vec::new();
    let mut got: Vec<Option<Tensor>> = vec![None; leaves.len()];
    tape.backward_reporting(&loss, &leaves, &mut |i, g| {
        order.push(i);
        got[i] = g;
    });
    assert_eq!(order, [1, 0, 2, 3]);
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(
            g.as_ref().map(|t| t.data().to_vec()),
            e.as_ref().map(|t| t.data().to_vec()),
            "leaf {i}"
        );
    }
    assert!(got[0].is_some() && got[1].is_some() && got[2].is_none() && got[3].is_none());
}
