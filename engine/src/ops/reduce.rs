//! Reductions that pick one element: max over an axis (max pooling).

use pixel_kernels::reduce as kernel;

use crate::tape::{Tape, Var};
use crate::tensor::{normalize_axis, Tensor};

/// Maximum over one axis (removed from the shape), as `torch.max(x, axis)[0]`.
/// The gradient goes to the first position holding the maximum (the argmax),
/// zero elsewhere; backward finds it again from the saved input.
pub fn max_axis(t: &mut Tape, a: &Var, axis: isize) -> Var {
    let shape = a.shape().to_vec();
    let ax = normalize_axis(axis, shape.len());
    let outer: usize = shape[..ax].iter().product();
    let len = shape[ax];
    let inner: usize = shape[ax + 1..].iter().product();
    assert!(len > 0, "max_axis: axis {ax} of {shape:?} is empty");
    let mut out_shape = shape.clone();
    out_shape.remove(ax);
    let device = a.value().device();
    let mut out = Tensor::zeros_on(&out_shape, device);
    kernel::max_axis_forward(out.buffer_mut(), a.value().buffer(), outer, len, inner);
    if !t.needs_grad(&[a]) {
        return Var::constant(out);
    }
    let av = a.arc();
    t.record(
        "max_axis",
        out,
        &[a],
        Box::new(move |dy, _| {
            let mut dx = Tensor::zeros_on(&shape, device);
            kernel::max_axis_backward(dx.buffer_mut(), dy.buffer(), av.buffer(), outer, len, inner);
            vec![Some(dx)]
        }),
    )
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::{gradcheck, randn, GradcheckConfig};
    use crate::ops;
    use crate::test_support::{forward_backward, inputs, test_device};
    use crate::{Rng, Tape, Tensor, Var};

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

    // Every axis (max pooling runs over the sequence axis), and ties: the
    // gradient goes to the first maximum on every device.
    test_device!(max_axis_every_axis_and_ties, 0.0, |d| {
        let x = inputs(&[&[2, 5, 3]], 84);
        let mut out = Vec::new();
        for axis in [0isize, 1, 2, -1] {
            out.extend(forward_backward(d, &x, 85, move |t, v| {
                ops::max_axis(t, &v[0], axis)
            }));
        }
        let ties = [Tensor::new(&[2, 3], vec![1.0, 5.0, 5.0, -2.0, -2.0, -3.0])];
        out.extend(forward_backward(d, &ties, 86, |t, v| {
            ops::max_axis(t, &v[0], 1)
        }));
        out
    });
}
