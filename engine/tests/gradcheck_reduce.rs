//! Finite-difference checks and exact values of the reduction ops in `ops::reduce`.

use pixel_engine::gradcheck::{gradcheck, randn, GradcheckConfig};
use pixel_engine::ops;
use pixel_engine::{Rng, Tape, Tensor, Var};

#[test]
fn gradcheck_max_axis_every_axis() {
    let mut rng = Rng::new(0x6d6178);
    // Spread values well apart so a finite-difference step never changes the argmax.
    let x = randn(&[2, 5, 3], &mut rng);
    let mut spread = Tensor::zeros(x.shape());
    for (i, (d, v)) in spread.data_mut().iter_mut().zip(x.data()).enumerate() {
        *d = v + 0.37 * i as f32;
    }
    for axis in [0isize, 1, 2, -1] {
        let worst = gradcheck(
            std::slice::from_ref(&spread),
            &[true],
            GradcheckConfig::default(),
            |t, v| ops::max_axis(t, &v[0], axis),
        )
        .unwrap_or_else(|e| panic!("max_axis over axis {axis}: {e}"));
        assert!(worst < 0.05, "axis {axis}: worst relative error {worst}");
    }
}

#[test]
fn max_axis_values_and_gradient_go_to_the_first_maximum() {
    // (2, 3): rows [1, 5, 5] and [-2, -7, -3].
    let x = Tensor::new(&[2, 3], vec![1.0, 5.0, 5.0, -2.0, -7.0, -3.0]);
    let mut tape = Tape::new();
    let xv = tape.leaf_tensor(x);
    let m = ops::max_axis(&mut tape, &xv, 1);
    assert_eq!(m.shape(), &[2]);
    assert_eq!(m.data(), &[5.0, -2.0]);
    let grads = tape.backward_with(&m, Tensor::new(&[2], vec![10.0, 20.0]));
    let g = grads.get(&xv).expect("gradient of x");
    assert_eq!(g.data(), &[0.0, 10.0, 0.0, 20.0, 0.0, 0.0]);

    // Over axis 0 of the same values: column-wise max.
    let mut tape = Tape::no_grad();
    let x = Var::constant(Tensor::new(&[2, 3], vec![1.0, 5.0, 5.0, -2.0, -7.0, 6.0]));
    let m = ops::max_axis(&mut tape, &x, 0);
    assert_eq!(m.data(), &[1.0, 5.0, 6.0]);
}
