//! Layout kernels: permute (head split and merge), strided 2-D block copies
//! (concat, narrow), repeat over a new leading dim, and row gather /
//! scatter-add by index (MAE keep and restore). Pure data movement, so the
//! CPU code here is the reference and the fast path at once.

use rayon::prelude::*;

use crate::buffer::Buffer;

#[cfg(feature = "cuda")]
pub(crate) mod cuda;

/// The output shape of [`permute`] and the input strides reordered to it.
fn permuted(shape: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let rank = shape.len();
    assert!(
        perm.len() == rank && (0..rank).all(|d| perm.contains(&d)),
        "permute: {perm:?} is not a permutation of {rank} dims (shape {shape:?})"
    );
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let mut in_strides = vec![1usize; rank];
    for d in (0..rank.saturating_sub(1)).rev() {
        in_strides[d] = in_strides[d + 1] * shape[d + 1];
    }
    (out_shape, perm.iter().map(|&p| in_strides[p]).collect())
}

/// `out` = `x` (shape `shape`) with dims reordered: `out.shape[i] = shape[perm[i]]`.
pub fn permute_slice(out: &mut [f32], x: &[f32], shape: &[usize], perm: &[usize]) {
    let (out_shape, strides) = permuted(shape, perm);
    let rank = shape.len();
    let n: usize = shape.iter().product();
    assert!(out.len() >= n && x.len() >= n, "permute: buffers too short");
    if n == 0 {
        return;
    }
    // The innermost output dim is copied in a tight loop; blocks of rows run in
    // parallel, each walking its rows with an odometer (no division per row).
    let inner = out_shape[rank - 1];
    let inner_stride = strides[rank - 1];
    let rows_per_task = (16384 / inner.max(1)).max(1);
    out[..n]
        .par_chunks_mut(inner * rows_per_task)
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
}

/// Device-dispatched [`permute_slice`].
pub fn permute(out: &mut Buffer, x: &Buffer, shape: &[usize], perm: &[usize]) {
    const K: &str = "permute";
    match out {
        Buffer::Cpu(o) => permute_slice(o, x.host(K), shape, perm),
        #[cfg(feature = "cuda")]
        Buffer::Cuda(o) => cuda::permute(o, x.cuda(K), shape, perm),
    }
}

/// Copy `rows` rows of `cols` values between row-strided buffers:
/// `dst[dst_offset + r * dst_ld + c] = src[src_offset + r * src_ld + c]`.
#[allow(clippy::too_many_arguments)]
pub fn copy_2d(
    dst: &mut Buffer,
    dst_offset: usize,
    dst_ld: usize,
    src: &Buffer,
    src_offset: usize,
    src_ld: usize,
    rows: usize,
    cols: usize,
) {
    const K: &str = "copy_2d";
    match dst {
        Buffer::Cpu(d) => {
            let s = src.host(K);
            for r in 0..rows {
                let (to, from) = (dst_offset + r * dst_ld, src_offset + r * src_ld);
                d[to..to + cols].copy_from_slice(&s[from..from + cols]);
            }
        }
        #[cfg(feature = "cuda")]
        Buffer::Cuda(d) => cuda::copy_2d(
            d,
            dst_offset,
            dst_ld,
            src.cuda(K),
            src_offset,
            src_ld,
            rows,
            cols,
        ),
    }
}

/// `out[i] = a[i % na]` for i < n: `a` repeated over a new leading dim.
pub fn repeat(out: &mut Buffer, a: &Buffer, n: usize, na: usize) {
    const K: &str = "repeat";
    assert!(
        na > 0 && n.is_multiple_of(na),
        "{K}: {na} values do not tile {n}"
    );
    match out {
        Buffer::Cpu(o) => {
            let a = &a.host(K)[..na];
            o[..n].chunks_mut(na).for_each(|c| c.copy_from_slice(a));
        }
        #[cfg(feature = "cuda")]
        Buffer::Cuda(o) => cuda::repeat(o, a.cuda(K), n, na),
    }
}

/// `out (B, K, C)` row r = `x (B, N, C)` row `(r / k) * n + idx[r]`.
pub fn gather_rows(out: &mut Buffer, x: &Buffer, idx: &[usize], k: usize, n: usize, c: usize) {
    const K: &str = "gather_rows";
    match out {
        Buffer::Cpu(o) => {
            let x = x.host(K);
            for (r, dst) in o[..idx.len() * c].chunks_mut(c).enumerate() {
                let src = (r / k) * n + idx[r];
                dst.copy_from_slice(&x[src * c..(src + 1) * c]);
            }
        }
        #[cfg(feature = "cuda")]
        Buffer::Cuda(o) => cuda::gather_rows(o, x.cuda(K), idx, k, n, c),
    }
}

/// `out (B, N, C)` = zeros, then row `(r / k) * n + idx[r]` += `x (B, K, C)` row r
/// (indices may repeat: the rows add up).
pub fn scatter_rows_add(out: &mut Buffer, x: &Buffer, idx: &[usize], k: usize, n: usize, c: usize) {
    const K: &str = "scatter_rows_add";
    match out {
        Buffer::Cpu(o) => {
            let x = x.host(K);
            let b = idx.len() / k.max(1);
            o[..b * n * c].fill(0.0);
            for (r, src) in x[..idx.len() * c].chunks(c).enumerate() {
                let dst = (r / k) * n + idx[r];
                o[dst * c..(dst + 1) * c]
                    .iter_mut()
                    .zip(src)
                    .for_each(|(d, s)| *d += s);
            }
        }
        #[cfg(feature = "cuda")]
        Buffer::Cuda(o) => cuda::scatter_rows_add(o, x.cuda(K), idx, k, n, c),
    }
}
