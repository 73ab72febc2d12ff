//! Shape ops: reshape, permute/transpose (head split and merge), concat (prepend
//! CLS), narrow (drop CLS), expand over a new batch, and row gather/scatter by
//! index (MAE keep/restore).

use rayon::prelude::*;

#[cfg(feature = "cuda")]
use super::cuda;
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

/// Copy `x` (shape `shape`) into the layout with dims reordered by `perm`
/// (`out.shape[i] = shape[perm[i]]`).
pub fn permute_data(x: &[f32], shape: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<f32>) {
    let rank = shape.len();
    assert!(
        perm.len() == rank && (0..rank).all(|d| perm.contains(&d)),
        "permute: {perm:?} is not a permutation of {rank} dims (shape {shape:?})"
    );
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    // Input strides, reordered to the output's dims.
    let mut in_strides = vec![1usize; rank];
    for d in (0..rank.saturating_sub(1)).rev() {
        in_strides[d] = in_strides[d + 1] * shape[d + 1];
    }
    let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let n = numel(shape);
    let mut out = vec![0.0f32; n];
    if n == 0 {
        return (out_shape, out);
    }
    // The innermost output dim is copied in a tight loop; blocks of rows run in
    // parallel, each walking its rows with an odometer (no division per row).
    let inner = out_shape[rank - 1];
    let inner_stride = strides[rank - 1];
    let rows_per_task = (16384 / inner.max(1)).max(1);
    out.par_chunks_mut(inner * rows_per_task)
        .enumerate()
        .for_each(|(task, block)| {
            // Multi-index (over the outer dims) of the block's first row.
            let mut index = vec![0usize; rank - 1];
            let mut rem = task * rows_per_task;
            for d in (0..rank - 1).rev() {
                index[d] = rem % out_shape[d];
                rem /= out_shape[d];
            }
            let mut base: usize = (0..rank - 1).map(|d| index[d] * strides[d]).sum();
            for dst in block.chunks_mut(inner) {
                if inner_stride == 1 {
                    dst.copy_from_slice(&x[base..base + inner]);
                } else {
                    for (j, v) in dst.iter_mut().enumerate() {
                        *v = x[base + j * inner_stride];
                    }
                }
                // Advance the odometer by one row.
                for d in (0..rank - 1).rev() {
                    index[d] += 1;
                    base += strides[d];
                    if index[d] < out_shape[d] {
                        break;
                    }
                    base -= index[d] * strides[d];
                    index[d] = 0;
                }
            }
        });
    (out_shape, out)
}

/// Reorder dims: `out.shape[i] = a.shape[perm[i]]` (copies).
pub fn permute(t: &mut Tape, a: &Var, perm: &[usize]) -> Var {
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[a]) {
        return cuda::shape::permute(t, a, perm);
    }
    let (shape, data) = permute_data(a.data(), a.shape(), perm);
    let mut inverse = vec![0usize; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inverse[p] = i;
    }
    t.record(
        "permute",
        Tensor::new(&shape, data),
        &[a],
        Box::new(move |dy, _| {
            let (s, d) = permute_data(dy.data(), dy.shape(), &inverse);
            vec![Some(Tensor::new(&s, d))]
        }),
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
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(xs) {
        return cuda::shape::concat(t, xs, ax);
    }
    let outer: usize = xs[0].shape()[..ax].iter().product();
    let inner: usize = xs[0].shape()[ax + 1..].iter().product();
    let lens: Vec<usize> = xs.iter().map(|x| x.shape()[ax]).collect();
    let total: usize = lens.iter().sum();
    let mut out = vec![0.0f32; outer * total * inner];
    let mut off = 0;
    for (x, &len) in xs.iter().zip(&lens) {
        let xd = x.data();
        for o in 0..outer {
            let dst = (o * total + off) * inner;
            out[dst..dst + len * inner]
                .copy_from_slice(&xd[o * len * inner..(o + 1) * len * inner]);
        }
        off += len;
    }
    let mut shape = xs[0].shape().to_vec();
    shape[ax] = total;
    let in_shapes: Vec<Vec<usize>> = xs.iter().map(|x| x.shape().to_vec()).collect();
    t.record(
        "concat",
        Tensor::new(&shape, out),
        xs,
        Box::new(move |dy, needs| {
            let d = dy.data();
            let mut off = 0;
            let mut grads = Vec::with_capacity(lens.len());
            for (i, &len) in lens.iter().enumerate() {
                grads.push(needs[i].then(|| {
                    let mut g = vec![0.0f32; outer * len * inner];
                    for o in 0..outer {
                        let src = (o * total + off) * inner;
                        g[o * len * inner..(o + 1) * len * inner]
                            .copy_from_slice(&d[src..src + len * inner]);
                    }
                    Tensor::new(&in_shapes[i], g)
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
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[a]) {
        return cuda::shape::narrow(t, a, ax, start, len);
    }
    let outer: usize = shape[..ax].iter().product();
    let inner: usize = shape[ax + 1..].iter().product();
    let full = shape[ax];
    let x = a.data();
    let mut out = Vec::with_capacity(outer * len * inner);
    for o in 0..outer {
        out.extend_from_slice(&x[(o * full + start) * inner..(o * full + start + len) * inner]);
    }
    let mut out_shape = shape.clone();
    out_shape[ax] = len;
    t.record(
        "narrow",
        Tensor::new(&out_shape, out),
        &[a],
        Box::new(move |dy, _| {
            let mut dx = vec![0.0f32; outer * full * inner];
            let d = dy.data();
            for o in 0..outer {
                dx[(o * full + start) * inner..(o * full + start + len) * inner]
                    .copy_from_slice(&d[o * len * inner..(o + 1) * len * inner]);
            }
            vec![Some(Tensor::new(&shape, dx))]
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
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[a]) {
        return cuda::shape::expand_first(t, a, n);
    }
    let mut out = Vec::with_capacity(n * a.value().numel());
    for _ in 0..n {
        out.extend_from_slice(a.data());
    }
    let mut out_shape = shape.clone();
    out_shape[0] = n;
    t.record(
        "expand_first",
        Tensor::new(&out_shape, out),
        &[a],
        Box::new(move |dy, _| {
            let mut g = vec![0.0f32; numel(&shape)];
            pixel_kernels::elementwise::sum_rows_into(&mut g, dy.data());
            vec![Some(Tensor::new(&shape, g))]
        }),
    )
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
    assert!(
        idx.len() == b * k && idx.iter().all(|&i| i < n),
        "gather_rows: index list of length {} (max {:?}) invalid for (B, K) = ({b}, {k}) and N = {n}",
        idx.len(),
        idx.iter().max()
    );
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[x]) {
        return cuda::shape::gather_rows(t, x, idx, k);
    }
    let xd = x.data();
    let mut out = vec![0.0f32; b * k * c];
    for (r, dst) in out.chunks_mut(c).enumerate() {
        let src = (r / k) * n + idx[r];
        dst.copy_from_slice(&xd[src * c..(src + 1) * c]);
    }
    let idx = idx.to_vec();
    t.record(
        "gather_rows",
        Tensor::new(&[b, k, c], out),
        &[x],
        Box::new(move |dy, _| {
            let mut dx = vec![0.0f32; b * n * c];
            for (r, src) in dy.data().chunks(c).enumerate() {
                let dst = (r / k) * n + idx[r];
                dx[dst * c..(dst + 1) * c]
                    .iter_mut()
                    .zip(src)
                    .for_each(|(d, s)| *d += s);
            }
            vec![Some(Tensor::new(&[b, n, c], dx))]
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
    assert!(
        idx.len() == b * k && idx.iter().all(|&i| i < n),
        "scatter_rows: index list of length {} invalid for (B, K) = ({b}, {k}) and N = {n}",
        idx.len()
    );
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[x]) {
        return cuda::shape::scatter_rows(t, x, idx, n);
    }
    let mut out = vec![0.0f32; b * n * c];
    for (r, src) in x.data().chunks(c).enumerate() {
        let dst = (r / k) * n + idx[r];
        out[dst * c..(dst + 1) * c]
            .iter_mut()
            .zip(src)
            .for_each(|(d, s)| *d += s);
    }
    let idx = idx.to_vec();
    t.record(
        "scatter_rows",
        Tensor::new(&[b, n, c], out),
        &[x],
        Box::new(move |dy, _| {
            let d = dy.data();
            let mut dx = vec![0.0f32; b * k * c];
            for (r, dst) in dx.chunks_mut(c).enumerate() {
                let src = (r / k) * n + idx[r];
                dst.copy_from_slice(&d[src * c..(src + 1) * c]);
            }
            vec![Some(Tensor::new(&[b, k, c], dx))]
        }),
    )
}
