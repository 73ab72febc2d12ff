//! Max over the middle axis of x (outer, len, inner), as `torch.max(x, axis)[0]`
//! (max pooling). The gradient goes to the first position holding the maximum;
//! backward recomputes that position from x (one pass) instead of storing indices.

use crate::buffer::Buffer;

#[cfg(feature = "cuda")]
pub(crate) mod cuda;

/// The first `l` with the largest `x[o, l, i]` (strict `>` keeps the first).
fn argmax_at(x: &[f32], o: usize, i: usize, len: usize, inner: usize) -> usize {
    let base = o * len * inner + i;
    let (mut best, mut arg) = (x[base], 0);
    for l in 1..len {
        let v = x[base + l * inner];
        if v > best {
            best = v;
            arg = l;
        }
    }
    arg
}

/// `out (outer, inner) = max over l of x (outer, len, inner)`; len > 0.
pub fn max_axis_forward(out: &mut Buffer, x: &Buffer, outer: usize, len: usize, inner: usize) {
    const K: &str = "max_axis_forward";
    assert!(len > 0, "{K}: empty axis");
    match out {
        Buffer::Cpu(out) => {
            let x = x.host(K);
            for o in 0..outer {
                for i in 0..inner {
                    out[o * inner + i] = x[(o * len + argmax_at(x, o, i, len, inner)) * inner + i];
                }
            }
        }
        #[cfg(feature = "cuda")]
        Buffer::Cuda(o) => cuda::max_axis_forward(o, x.cuda(K), outer, len, inner),
    }
}

/// `dx (outer, len, inner)`: `dy[o, i]` at the argmax of each (o, i), 0 elsewhere.
pub fn max_axis_backward(
    dx: &mut Buffer,
    dy: &Buffer,
    x: &Buffer,
    outer: usize,
    len: usize,
    inner: usize,
) {
    const K: &str = "max_axis_backward";
    match dx {
        Buffer::Cpu(dx) => {
            let (dy, x) = (dy.host(K), x.host(K));
            dx[..outer * len * inner].fill(0.0);
            for o in 0..outer {
                for i in 0..inner {
                    let l = argmax_at(x, o, i, len, inner);
                    dx[(o * len + l) * inner + i] = dy[o * inner + i];
                }
            }
        }
        #[cfg(feature = "cuda")]
        Buffer::Cuda(d) => cuda::max_axis_backward(d, dy.cuda(K), x.cuda(K), outer, len, inner),
    }
}
