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
