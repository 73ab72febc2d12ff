//! CUDA twins of `ops/shape.rs`: permute, concat, narrow, expand_first and
//! row gather/scatter. (reshape needs no twin: it only relabels the shape.)

use pixel_kernels::cuda::launch as k;

use super::{buf, device_of, values, zeros};
use crate::tape::{Tape, Var};
use crate::tensor::{numel, Tensor};

/// Device copy of `x` (shape `shape`) with dims reordered by `perm`.
fn permute_tensor(x: &Tensor, perm: &[usize]) -> Tensor {
    let dev = device_of("permute", &[x]);
    let out_shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let mut out = zeros(&dev, &out_shape);
    k::permute(
        out.cuda_buffer_mut("permute"),
        buf("permute", x),
        x.shape(),
        perm,
    );
    out
}

/// Reorder dims (checked by the CPU op): `out.shape[i] = a.shape[perm[i]]`.
pub fn permute(t: &mut Tape, a: &Var, perm: &[usize]) -> Var {
    let out = permute_tensor(a.value(), perm);
    let mut inverse = vec![0usize; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inverse[p] = i;
    }
    t.record(
        "permute",
        out,
        &[a],
        Box::new(move |dy, _| vec![Some(permute_tensor(&dy, &inverse))]),
    )
}

/// Concatenate along an axis split as (outer, len_i, inner) (checked by the CPU op).
pub fn concat(t: &mut Tape, xs: &[&Var], ax: usize) -> Var {
    let dev = device_of("concat", &values(xs));
    let s0 = xs[0].shape();
    let outer: usize = s0[..ax].iter().product();
    let inner: usize = s0[ax + 1..].iter().product();
    let lens: Vec<usize> = xs.iter().map(|x| x.shape()[ax]).collect();
    let total: usize = lens.iter().sum();
    let mut shape = s0.to_vec();
    shape[ax] = total;
    let mut out = zeros(&dev, &shape);
    let mut off = 0;
    for (x, &len) in xs.iter().zip(&lens) {
        // Row o of x (len * inner values) goes to row o of out at column off * inner.
        k::copy_2d(
            out.cuda_buffer_mut("concat"),
            off * inner,
            total * inner,
            buf("concat", x.value()),
            0,
            len * inner,
            outer,
            len * inner,
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
                    let mut g = zeros(&dev, &in_shapes[i]);
                    k::copy_2d(
                        g.cuda_buffer_mut("concat"),
                        0,
                        len * inner,
                        buf("concat", &dy),
                        off * inner,
                        total * inner,
                        outer,
                        len * inner,
                    );
                    g
                }));
                off += len;
            }
            grads
        }),
    )
}

/// `len` entries of axis `ax` from `start` (checked by the CPU op).
pub fn narrow(t: &mut Tape, a: &Var, ax: usize, start: usize, len: usize) -> Var {
    let dev = device_of("narrow", &[a.value()]);
    let shape = a.shape().to_vec();
    let outer: usize = shape[..ax].iter().product();
    let inner: usize = shape[ax + 1..].iter().product();
    let full = shape[ax];
    let mut out_shape = shape.clone();
    out_shape[ax] = len;
    let mut out = zeros(&dev, &out_shape);
    k::copy_2d(
        out.cuda_buffer_mut("narrow"),
        0,
        len * inner,
        buf("narrow", a.value()),
        start * inner,
        full * inner,
        outer,
        len * inner,
    );
    t.record(
        "narrow",
        out,
        &[a],
        Box::new(move |dy, _| {
            let mut dx = zeros(&dev, &shape);
            k::copy_2d(
                dx.cuda_buffer_mut("narrow"),
                start * inner,
                full * inner,
                buf("narrow", &dy),
                0,
                len * inner,
                outer,
                len * inner,
            );
            vec![Some(dx)]
        }),
    )
}

/// (1, ...) -> (n, ...); the gradient sums the copies.
pub fn expand_first(t: &mut Tape, a: &Var, n: usize) -> Var {
    let dev = device_of("expand_first", &[a.value()]);
    let shape = a.shape().to_vec();
    let na = numel(&shape);
    let mut out_shape = shape.clone();
    out_shape[0] = n;
    let mut out = zeros(&dev, &out_shape);
    k::repeat(
        out.cuda_buffer_mut("expand_first"),
        buf("expand_first", a.value()),
        n * na,
        na,
    );
    t.record(
        "expand_first",
        out,
        &[a],
        Box::new(move |dy, _| {
            let mut g = zeros(&dev, &shape);
            k::sum_rows(
                g.cuda_buffer_mut("expand_first"),
                buf("expand_first", &dy),
                n,
                na,
            );
            vec![Some(g)]
        }),
    )
}

/// x (B, N, C) -> (B, K, C) rows by index (checked by the CPU op).
pub fn gather_rows(t: &mut Tape, x: &Var, idx: &[usize], kk: usize) -> Var {
    let dev = device_of("gather_rows", &[x.value()]);
    let (b, n, c) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let mut out = zeros(&dev, &[b, kk, c]);
    k::gather_rows(
        out.cuda_buffer_mut("gather_rows"),
        buf("gather_rows", x.value()),
        idx,
        kk,
        n,
        c,
    );
    let idx = idx.to_vec();
    t.record(
        "gather_rows",
        out,
        &[x],
        Box::new(move |dy, _| {
            let mut dx = zeros(&dev, &[b, n, c]);
            k::scatter_rows_add(
                dx.cuda_buffer_mut("gather_rows"),
                buf("gather_rows", &dy),
                &idx,
                kk,
                n,
                c,
            );
            vec![Some(dx)]
        }),
    )
}

/// x (B, K, C) added into zeros (B, N, C) at rows by index (checked by the CPU op).
pub fn scatter_rows(t: &mut Tape, x: &Var, idx: &[usize], n: usize) -> Var {
    let dev = device_of("scatter_rows", &[x.value()]);
    let (b, kk, c) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let mut out = zeros(&dev, &[b, n, c]);
    k::scatter_rows_add(
        out.cuda_buffer_mut("scatter_rows"),
        buf("scatter_rows", x.value()),
        idx,
        kk,
        n,
        c,
    );
    let idx = idx.to_vec();
    t.record(
        "scatter_rows",
        out,
        &[x],
        Box::new(move |dy, _| {
            let mut dx = zeros(&dev, &[b, kk, c]);
            k::gather_rows(
                dx.cuda_buffer_mut("scatter_rows"),
                buf("scatter_rows", &dy),
                &idx,
                kk,
                n,
                c,
            );
            vec![Some(dx)]
        }),
    )
}
