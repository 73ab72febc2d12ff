//! Shape ops: reshape, permute/transpose (head split and merge), concat (prepend
//! CLS), narrow (drop CLS), expand over a new batch, and row gather/scatter by
//! index (MAE keep/restore).

use pixel_kernels::{elementwise, layout};

use super::device_of;
use crate::tape::{Tape, Var};
use crate::tensor::{normalize_axis, numel, Tensor};

/// Same values, new shape.
pub fn reshape(t: &mut Tape, a: &Var, shape: &[usize]) -> Var {
    assert_eq!(
        numel(shape),
        a.value().numel(),
        "reshape: cannot view shape {:?} as {shape:?}",
        a.shape()
    );
    let old = a.shape().to_vec();
    let out = a.value().clone().reshape(shape);
    t.record(
        "reshape",
        out,
        &[a],
        Box::new(move |dy, _| vec![Some(dy.reshape(&old))]),
    )
}

/// A copy of `x` with dims reordered by `perm` (`out.shape[i] = x.shape[perm[i]]`).
fn permuted(x: &Tensor, perm: &[usize]) -> Tensor {
    let rank = x.shape().len();
    assert!(
        perm.len() == rank && (0..rank).all(|d| perm.contains(&d)),
        "permute: {perm:?} is not a permutation of {rank} dims (shape {:?})",
        x.shape()
    );
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let mut out = Tensor::zeros_on(&shape, x.device());
    layout::permute(out.buffer_mut(), x.buffer(), x.shape(), perm);
    out
}

/// Reorder dims: `out.shape[i] = a.shape[perm[i]]` (copies).
pub fn permute(t: &mut Tape, a: &Var, perm: &[usize]) -> Var {
    let out = permuted(a.value(), perm);
    let mut inverse = vec![0usize; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inverse[p] = i;
    }
    t.record(
        "permute",
        out,
        &[a],
        Box::new(move |dy, _| vec![Some(permuted(&dy, &inverse))]),
    )
}

/// Swap two dims (copies).
pub fn transpose(t: &mut Tape, a: &Var, d0: isize, d1: isize) -> Var {
    let rank = a.shape().len();
    let (d0, d1) = (normalize_axis(d0, rank), normalize_axis(d1, rank));
    let mut perm: Vec<usize> = (0..rank).collect();
    perm.swap(d0, d1);
    permute(t, a, &perm)
}

/// Concatenate along `axis`; all other dims must agree.
pub fn concat(t: &mut Tape, xs: &[&Var], axis: isize) -> Var {
    assert!(!xs.is_empty(), "concat: no inputs");
    let rank = xs[0].shape().len();
    let ax = normalize_axis(axis, rank);
    for x in xs {
        let ok = x.shape().len() == rank
            && (0..rank).all(|d| d == ax || x.shape()[d] == xs[0].shape()[d]);
        assert!(
            ok,
            "concat: shape {:?} does not match {:?} outside axis {ax}",
            x.shape(),
            xs[0].shape()
        );
    }
    let device = device_of("concat", xs);
    // Each input is (outer, len_i, inner); row o of input i lands at column
    // offset (sum of earlier lens) * inner of row o of the output.
    let outer: usize = xs[0].shape()[..ax].iter().product();
    let inner: usize = xs[0].shape()[ax + 1..].iter().product();
    let lens: Vec<usize> = xs.iter().map(|x| x.shape()[ax]).collect();
    let total: usize = lens.iter().sum();
    let mut shape = xs[0].shape().to_vec();
    shape[ax] = total;
    let mut out = Tensor::zeros_on(&shape, device);
    let mut off = 0;
    for (x, &len) in xs.iter().zip(&lens) {
        let (ld, w) = (total * inner, len * inner);
        layout::copy_2d(
            out.buffer_mut(),
            off * inner,
            ld,
            x.value().buffer(),
            0,
            w,
            outer,
            w,
        );
        off += len;
    }
    let in_shapes: Vec<Vec<usize>> = xs.iter().map(|x| x.shape().to_vec()).collect();
    t.record(
        "concat",
        out,
        xs,
        Box::new(move |dy, needs| {
            let mut off = 0;
            let mut grads = Vec::with_capacity(lens.len());
            for (i, &len) in lens.iter().enumerate() {
                grads.push(needs[i].then(|| {
                    let mut g = Tensor::zeros_on(&in_shapes[i], device);
                    let (ld, w) = (total * inner, len * inner);
                    layout::copy_2d(g.buffer_mut(), 0, w, dy.buffer(), off * inner, ld, outer, w);
                    g
                }));
                off += len;
            }
            grads
        }),
    )
}

/// `len` entries of `axis` starting at `start` (copies).
pub fn narrow(t: &mut Tape, a: &Var, axis: isize, start: usize, len: usize) -> Var {
    let shape = a.shape().to_vec();
    let ax = normalize_axis(axis, shape.len());
    assert!(
        start + len <= shape[ax],
        "narrow: range {start}..{} out of bounds for axis {ax} of shape {shape:?}",
        start + len
    );
    let outer: usize = shape[..ax].iter().product();
    let inner: usize = shape[ax + 1..].iter().product();
    let full = shape[ax];
    let mut out_shape = shape.clone();
    out_shape[ax] = len;
    let device = a.value().device();
    let mut out = Tensor::zeros_on(&out_shape, device);
    let (ld, w) = (full * inner, len * inner);
    layout::copy_2d(
        out.buffer_mut(),
        0,
        w,
        a.value().buffer(),
        start * inner,
        ld,
        outer,
        w,
    );
    t.record(
        "narrow",
        out,
        &[a],
        Box::new(move |dy, _| {
            let mut dx = Tensor::zeros_on(&shape, device);
            layout::copy_2d(
                dx.buffer_mut(),
                start * inner,
                ld,
                dy.buffer(),
                0,
                w,
                outer,
                w,
            );
            vec![Some(dx)]
        }),
    )
}

/// Repeat a tensor whose first dim is 1 `n` times along that dim
/// ((1, ...) -> (n, ...)); the gradient sums the copies.
pub fn expand_first(t: &mut Tape, a: &Var, n: usize) -> Var {
    let shape = a.shape().to_vec();
    assert!(
        !shape.is_empty() && shape[0] == 1,
        "expand_first: first dim must be 1, got shape {shape:?}"
    );
    let na = a.value().numel();
    let mut out_shape = shape.clone();
    out_shape[0] = n;
    let device = a.value().device();
    let mut out = Tensor::zeros_on(&out_shape, device);
    if na > 0 {
        layout::repeat(out.buffer_mut(), a.value().buffer(), n * na, na);
    }
    t.record(
        "expand_first",
        out,
        &[a],
        Box::new(move |dy, _| {
            let mut g = Tensor::zeros_on(&shape, device);
            if na > 0 {
                elementwise::sum_rows(g.buffer_mut(), dy.buffer(), n, na);
            }
            vec![Some(g)]
        }),
    )
}

/// Check a (B, K) row-index list against N rows per batch item.
fn check_indices(op: &str, idx: &[usize], b: usize, k: usize, n: usize) {
    assert!(
        idx.len() == b * k && idx.iter().all(|&i| i < n),
        "{op}: index list of length {} (max {:?}) invalid for (B, K) = ({b}, {k}) and N = {n}",
        idx.len(),
        idx.iter().max()
    );
}

/// Gather rows: x (B, N, C), idx (B, K) with entries < N -> (B, K, C),
/// `out[b, k] = x[b, idx[b, k]]`. The gradient scatter-adds back.
pub fn gather_rows(t: &mut Tape, x: &Var, idx: &[usize], k: usize) -> Var {
    let shape = x.shape().to_vec();
    assert!(
        shape.len() == 3,
        "gather_rows: input must be (B, N, C), got {shape:?}"
    );
    let (b, n, c) = (shape[0], shape[1], shape[2]);
    check_indices("gather_rows", idx, b, k, n);
    let device = x.value().device();
    let mut out = Tensor::zeros_on(&[b, k, c], device);
    layout::gather_rows(out.buffer_mut(), x.value().buffer(), idx, k, n, c);
    let idx = idx.to_vec();
    t.record(
        "gather_rows",
        out,
        &[x],
        Box::new(move |dy, _| {
            let mut dx = Tensor::zeros_on(&[b, n, c], device);
            layout::scatter_rows_add(dx.buffer_mut(), dy.buffer(), &idx, k, n, c);
            vec![Some(dx)]
        }),
    )
}

/// Scatter rows: x (B, K, C) into zeros (B, N, C) at `out[b, idx[b, k]] += x[b, k]`.
/// The gradient gathers.
pub fn scatter_rows(t: &mut Tape, x: &Var, idx: &[usize], n: usize) -> Var {
    let shape = x.shape().to_vec();
    assert!(
        shape.len() == 3,
        "scatter_rows: input must be (B, K, C), got {shape:?}"
    );
    let (b, k, c) = (shape[0], shape[1], shape[2]);
    check_indices("scatter_rows", idx, b, k, n);
    let device = x.value().device();
    let mut out = Tensor::zeros_on(&[b, n, c], device);
    layout::scatter_rows_add(out.buffer_mut(), x.value().buffer(), idx, k, n, c);
    let idx = idx.to_vec();
    t.record(
        "scatter_rows",
        out,
        &[x],
        Box::new(move |dy, _| {
            let mut dx = Tensor::zeros_on(&[b, k, c], device);
            layout::gather_rows(dx.buffer_mut(), dy.buffer(), &idx, k, n, c);
            vec![Some(dx)]
        }),
    )
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::randn;
    use crate::ops;
    use crate::test_support::{check, forward_backward, inputs, rng, test_device};

    #[test]
    fn gradcheck_shape_ops() {
        let mut r = rng();
        let a = randn(&[2, 3, 4, 5], &mut r);
        check(vec![a.clone()], |t, v| ops::reshape(t, &v[0], &[6, 20]));
        check(vec![a.clone()], |t, v| {
            ops::permute(t, &v[0], &[0, 2, 1, 3])
        });
        check(vec![a.clone()], |t, v| {
            ops::permute(t, &v[0], &[3, 1, 0, 2])
        });
        check(vec![a.clone()], |t, v| ops::transpose(t, &v[0], 1, -1));
        check(vec![a.clone()], |t, v| ops::narrow(t, &v[0], 2, 1, 2));
        let b = randn(&[2, 3, 1, 5], &mut r);
        check(vec![a, b], |t, v| ops::concat(t, &[&v[0], &v[1]], 2));
        let cls = randn(&[1, 1, 4], &mut r);
        check(vec![cls], |t, v| ops::expand_first(t, &v[0], 3));
    }

    #[test]
    fn gradcheck_gather_and_scatter_rows() {
        let mut r = rng();
        let x = randn(&[2, 5, 3], &mut r);
        // Repeated indices exercise the scatter-add in the gather backward.
        let idx = vec![4, 0, 2, 1, 1, 3];
        check(vec![x], move |t, v| ops::gather_rows(t, &v[0], &idx, 3));
        let y = randn(&[2, 3, 3], &mut r);
        let idx = vec![4, 0, 2, 1, 3, 0];
        check(vec![y], move |t, v| ops::scatter_rows(t, &v[0], &idx, 5));
    }

    test_device!(reshape_permute_transpose, 0.0, |d| {
        let x = inputs(&[&[2, 3, 4, 5]], 11);
        let mut out = forward_backward(d, &x, 12, |t, v| ops::reshape(t, &v[0], &[6, 20]));
        out.extend(forward_backward(d, &x, 13, |t, v| {
            ops::permute(t, &v[0], &[0, 2, 1, 3])
        }));
        out.extend(forward_backward(d, &x, 14, |t, v| {
            ops::permute(t, &v[0], &[3, 1, 0, 2])
        }));
        out.extend(forward_backward(d, &x, 15, |t, v| {
            ops::transpose(t, &v[0], 1, -1)
        }));
        // The patch-embedding permute of PIXEL (rank 5).
        let p = inputs(&[&[2, 3, 4, 5, 4]], 16);
        out.extend(forward_backward(d, &p, 17, |t, v| {
            ops::permute(t, &v[0], &[0, 3, 1, 2, 4])
        }));
        out
    });

    test_device!(concat_narrow_expand, 0.0, |d| {
        let x = inputs(&[&[2, 1, 4], &[2, 5, 4]], 18);
        let mut out = forward_backward(d, &x, 19, |t, v| ops::concat(t, &[&v[0], &v[1]], 1));
        let y = inputs(&[&[3, 6, 4]], 20);
        out.extend(forward_backward(d, &y, 21, |t, v| {
            ops::narrow(t, &v[0], 1, 2, 3)
        }));
        out.extend(forward_backward(d, &y, 22, |t, v| {
            ops::narrow(t, &v[0], -1, 1, 2)
        }));
        let z = inputs(&[&[1, 2, 4]], 23);
        out.extend(forward_backward(d, &z, 24, |t, v| {
            ops::expand_first(t, &v[0], 3)
        }));
        out
    });

    test_device!(gather_and_scatter_rows, 1e-6, |d| {
        let x = inputs(&[&[2, 5, 3]], 25);
        // Repeated indices: the decoder's restore reads the mask token many times.
        let idx = [4usize, 0, 0, 2, 1, 1, 3, 1];
        let mut out = forward_backward(d, &x, 26, |t, v| ops::gather_rows(t, &v[0], &idx, 4));
        let y = inputs(&[&[2, 4, 3]], 27);
        out.extend(forward_backward(d, &y, 28, |t, v| {
            ops::scatter_rows(t, &v[0], &idx, 5)
        }));
        out
    });
}
