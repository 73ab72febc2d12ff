//! Reductions that pick one element: max over an axis (max pooling).

use crate::tape::{Tape, Var};
use crate::tensor::{normalize_axis, Tensor};

/// Maximum over one axis (removed from the shape), as `torch.max(x, axis)[0]`.
/// The gradient goes to the first position holding the maximum (the argmax),
/// zero elsewhere. Saves only the argmax indices.
pub fn max_axis(t: &mut Tape, a: &Var, axis: isize) -> Var {
    let shape = a.shape().to_vec();
    let ax = normalize_axis(axis, shape.len());
    let outer: usize = shape[..ax].iter().product();
    let len = shape[ax];
    let inner: usize = shape[ax + 1..].iter().product();
    assert!(len > 0, "max_axis: axis {ax} of {shape:?} is empty");
    let x = a.data();
    let mut out = vec![f32::NEG_INFINITY; outer * inner];
    // argmax[o * inner + i] = position along the axis of the maximum.
    let mut argmax = vec![0usize; outer * inner];
    for o in 0..outer {
        for l in 0..len {
            let src = &x[(o * len + l) * inner..(o * len + l + 1) * inner];
            let dst = &mut out[o * inner..(o + 1) * inner];
            let arg = &mut argmax[o * inner..(o + 1) * inner];
            for i in 0..inner {
                // Strict `>` keeps the first maximum; `l == 0` takes NaN-free first values.
                if l == 0 || src[i] > dst[i] {
                    dst[i] = src[i];
                    arg[i] = l;
                }
            }
        }
    }
    let mut out_shape = shape.clone();
    out_shape.remove(ax);
    t.record(
        "max_axis",
        Tensor::new(&out_shape, out),
        &[a],
        Box::new(move |dy, _| {
            let mut dx = vec![0.0f32; outer * len * inner];
            let d = dy.data();
            for o in 0..outer {
                for i in 0..inner {
                    let l = argmax[o * inner + i];
                    dx[(o * len + l) * inner + i] = d[o * inner + i];
                }
            }
            vec![Some(Tensor::new(&shape, dx))]
        }),
    )
}
