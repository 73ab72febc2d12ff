//! The CPU attention of one head, in blocks of queries, on the GEMM
//! micro-kernels (flash-attention's blocking, with an exact softmax: a block
//! spans every key, so no running rescale is needed).
//!
//! For a block of `QB` queries the scores are computed transposed, keys down
//! and queries across, `S^T (n, QB) = scale K Q_blk^T`, so the softmax over
//! keys runs down columns with the queries in vector lanes (no horizontal
//! reductions), and every product reads `S^T` or its gradient straight from
//! this layout through the GEMM packing:
//!
//! ```text
//! forward   S^T  = scale K Q^T      A: K (once per head)    B: Q_blk^T
//!           P^T  = softmax_columns(S^T + key mask), dropout
//!           ctx  = P V              A: P (from P^T)         B: V (once per head)
//! backward  dP^T = V dC^T           A: V (once per head)    B: dC_blk^T
//!           dV  += P^T dC           A: P^T                  B: dC_blk
//!           dS^T = P^T (dP^T - colsum(P^T dP^T))
//!           dK  += scale dS^T Q     A: dS^T                 B: Q_blk
//!           dQ   = scale dS K       A: dS (from dS^T)       B: K (once per head)
//! ```
//! Backward recomputes `P` (no N x N buffer outlives a block). Everything a
//! head needs (packed K and V, one block's scores) fits in L2 at PIXEL's
//! sizes. `QB` is the least common multiple of the micro-kernel's MR and NR,
//! so the query block is whole slivers as either operand.

use std::cell::RefCell;

use rayon::prelude::*;

use super::columns::{softmax_columns, softmax_columns_backward};
use super::AttentionShape;
use crate::cpu::Isa;
use crate::dropout::keeps;
use crate::gemm::{micro_kernel, multiply_packed, pack_panel, MicroKernel};

/// One head's operands, read in place from the packed projections: row r of
/// q, k, v starts at `r * ld` (ld = 3 H D in a (B, N, 3 H D) qkv buffer);
/// `mask` holds the n additive key-mask values of the head's batch item;
/// `head` is its index in B * H (it selects the dropout mask).
#[derive(Clone, Copy)]
pub(crate) struct Head<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub mask: Option<&'a [f32]>,
    pub ld: usize,
    pub head: usize,
}

/// Where one head's output rows go: row r at `ptr + r * ld`. The kernels
/// write a block into contiguous scratch first and copy it out row by row:
/// micro-kernel tiles straight into rows `ld` apart (2-9 KiB at PIXEL's
/// widths) land in a few L1 sets and evict each other.
#[derive(Clone, Copy)]
pub(crate) struct HeadOut {
    ptr: *mut f32,
    ld: usize,
}

impl HeadOut {
    /// Rows `r0 .. r0 + rows` of the head from `src` (rows of d values).
    ///
    /// # Safety
    /// Those rows (d values each, `ld` apart) are the caller's to write.
    unsafe fn write_rows(self, r0: usize, src: &[f32], rows: usize, d: usize) {
        for (r, row) in src.chunks_exact(d).take(rows).enumerate() {
            // SAFETY: row r0 + r of the head (caller); d values.
            unsafe {
                std::ptr::copy_nonoverlapping(row.as_ptr(), self.ptr.add((r0 + r) * self.ld), d)
            };
        }
    }
}

/// An output buffer shared by the head tasks; each writes its own columns
/// of its own batch item's rows.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint (row, head) blocks; the buffer outlives the loop.
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// Head output at `offset` values in, rows `ld` apart (a method, so
    /// closures capture the whole Send wrapper rather than its pointer field).
    ///
    /// # Safety
    /// `offset` is inside the buffer.
    unsafe fn head(self, offset: usize, ld: usize) -> HeadOut {
        // SAFETY: caller.
        HeadOut {
            ptr: unsafe { self.0.add(offset) },
            ld,
        }
    }
}

/// Offsets of head `i` (of B * H): its first value in a (B, N, C) context
/// buffer and in a (B, N, 3 C) qkv buffer (its query; key and value are C and
/// 2 C further), C = H D.
fn head_offsets(i: usize, s: AttentionShape) -> (usize, usize) {
    let c = s.heads * s.head_dim;
    let (b, h) = (i / s.heads, i % s.heads);
    (
        b * s.seq * c + h * s.head_dim,
        b * s.seq * 3 * c + h * s.head_dim,
    )
}

/// Head `i` of qkv (B, N, 3 C) and its batch item's key mask (B, N).
fn head<'a>(qkv: &'a [f32], mask: Option<&'a [f32]>, i: usize, s: AttentionShape) -> Head<'a> {
    let c = s.heads * s.head_dim;
    let off = head_offsets(i, s).1;
    let b = i / s.heads;
    Head {
        q: &qkv[off..],
        k: &qkv[off + c..],
        v: &qkv[off + 2 * c..],
        mask: mask.map(|m| &m[b * s.seq..(b + 1) * s.seq]),
        ld: 3 * c,
        head: i,
    }
}

/// Checks that the context-shaped buffers hold B N C values, the qkv-shaped
/// ones 3 B N C, and the mask B N.
fn check_lengths(
    what: &str,
    ctx_like: &[usize],
    qkv_like: &[usize],
    mask: Option<&[f32]>,
    s: AttentionShape,
) {
    let c = s.heads * s.head_dim;
    let want = s.batch * s.seq * c;
    assert!(
        ctx_like.iter().all(|&l| l >= want) && qkv_like.iter().all(|&l| l >= 3 * want),
        "{what}: a buffer is shorter than (B, N, C) = ({}, {}, {c}) or (B, N, 3 C)",
        s.batch,
        s.seq,
    );
    assert!(
        mask.is_none_or(|m| m.len() >= s.batch * s.seq),
        "{what}: mask shorter than (B, N) = ({}, {})",
        s.batch,
        s.seq
    );
}

/// `ctx (B, N, C)` of attention over `qkv (B, N, 3 C)` (each row: the query,
/// key and value projections side by side, heads of D inside each) with
/// `isa`'s kernels, one rayon task per head; `mask` (B, N) additive on keys.
pub(crate) fn forward(
    isa: Isa,
    ctx: &mut [f32],
    qkv: &[f32],
    mask: Option<&[f32]>,
    s: AttentionShape,
) {
    check_lengths("attention forward", &[ctx.len()], &[qkv.len()], mask, s);
    let out = SharedOut(ctx.as_mut_ptr());
    let c = s.heads * s.head_dim;
    (0..s.batch * s.heads).into_par_iter().for_each(|i| {
        // SAFETY: head i writes only its own columns of its batch item's rows,
        // inside ctx (lengths checked).
        let ctx = unsafe { out.head(head_offsets(i, s).0, c) };
        forward_head(isa, head(qkv, mask, i, s), ctx, s);
    });
}

/// `dqkv (B, N, 3 C)` of [`forward`] from `dctx (B, N, C)`; with `ctx`, also
/// the forward's output again (the same bits), from the probabilities that
/// backward recomputes anyway.
pub(crate) fn backward(
    isa: Isa,
    dqkv: &mut [f32],
    ctx: Option<&mut [f32]>,
    dctx: &[f32],
    qkv: &[f32],
    mask: Option<&[f32]>,
    s: AttentionShape,
) {
    let ctx_len = ctx.as_ref().map_or(usize::MAX, |c| c.len());
    check_lengths(
        "attention backward",
        &[dctx.len(), ctx_len],
        &[dqkv.len(), qkv.len()],
        mask,
        s,
    );
    let out = SharedOut(dqkv.as_mut_ptr());
    let ctx_out = ctx.map(|c| SharedOut(c.as_mut_ptr()));
    let c = s.heads * s.head_dim;
    (0..s.batch * s.heads).into_par_iter().for_each(|i| {
        let (off_ctx, off) = head_offsets(i, s);
        // SAFETY: as in forward: head i's own columns of its own rows.
        let [dq, dk, dv] = [0, c, 2 * c].map(|o| unsafe { out.head(off + o, 3 * c) });
        let grads = HeadGrads { dq, dk, dv };
        // SAFETY: as in forward.
        let ctx = ctx_out.map(|o| unsafe { o.head(off_ctx, c) });
        backward_head(
            isa,
            head(qkv, mask, i, s),
            &dctx[off_ctx..],
            c,
            grads,
            ctx,
            s,
        );
    });
}

/// Where one head's gradients go.
#[derive(Clone, Copy)]
struct HeadGrads {
    dq: HeadOut,
    dk: HeadOut,
    dv: HeadOut,
}

/// Queries per block for a micro-kernel: lcm(MR, NR).
fn query_block(mk: &MicroKernel) -> usize {
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    mk.mr / gcd(mk.mr, mk.nr) * mk.nr
}

thread_local! {
    /// Per-thread scratch of the head tasks, reused across heads and calls.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `lens.len()` disjoint scratch slices of the given lengths,
/// each starting on a 64-byte boundary (so a sliver's vector loads never
/// split a cache line). Contents are left from earlier use.
fn with_scratch<R, const K: usize>(lens: [usize; K], f: impl FnOnce([&mut [f32]; K]) -> R) -> R {
    let total: usize = lens.iter().map(|l| l.next_multiple_of(16)).sum::<usize>() + 16;
    let run = |buf: &mut Vec<f32>| {
        if buf.len() < total {
            buf.resize(total, 0.0);
        }
        let off = buf.as_ptr().align_offset(64).min(16);
        let mut rest = &mut buf[off..];
        f(lens.map(|len| {
            // Each part starts 16 values (64 bytes) after a boundary.
            let (part, tail) = std::mem::take(&mut rest).split_at_mut(len.next_multiple_of(16));
            rest = tail;
            &mut part[..len]
        }))
    };
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => run(&mut buf),
        Err(_) => run(&mut Vec::new()),
    })
}

/// One head's context rows (n of d values) at `ctx`.
fn forward_head(isa: Isa, h: Head<'_>, ctx: HeadOut, s: AttentionShape) {
    let mk = micro_kernel(isa);
    let (n, d, ld) = (s.seq, s.head_dim, h.ld);
    let qb = query_block(&mk);
    let lens = [
        n.div_ceil(mk.mr) * mk.mr * d, // K as A slivers: (n/MR, d, MR)
        d.div_ceil(mk.nr) * mk.nr * n, // V as B slivers: (d/NR, n, NR)
        qb * d,                        // Q_blk^T as B slivers: (QB/NR, d, NR)
        n * qb,                        // S^T, then P^T: (n, QB)
        qb * n,                        // P as A slivers: (QB/MR, n, MR)
        qb * d,                        // the block's context rows (QB, d)
    ];
    with_scratch(lens, |[k_a, v_b, q_b, p_t, p_a, ctx_blk]| {
        pack_panel(k_a, h.k, 0, 0, d, n, mk.mr, 1, ld);
        pack_panel(v_b, h.v, 0, 0, n, d, mk.nr, ld, 1);
        for q0 in (0..n).step_by(qb) {
            let w = qb.min(n - q0);
            probabilities_t(isa, &mk, h, k_a, q_b, p_t, q0, w, s);
            if let Some((seed, p)) = s.dropout {
                dropout_columns(p_t, qb, n, w, seed, p, (h.head * n + q0) * n, n);
            }
            context_rows(&mk, p_t, p_a, v_b, ctx_blk, ctx, q0, w, s);
        }
    });
}

/// One head's gradients from `dctx` (its rows of d values, `ld_ctx` apart),
/// recomputing the probabilities block by block; with `ctx`, also its
/// context rows as [`forward_head`] computes them (the same packing and
/// products, so the same bits).
fn backward_head(
    isa: Isa,
    h: Head<'_>,
    dctx: &[f32],
    ld_ctx: usize,
    HeadGrads { dq, dk, dv }: HeadGrads,
    ctx: Option<HeadOut>,
    s: AttentionShape,
) {
    let mk = micro_kernel(isa);
    let (n, d, ld) = (s.seq, s.head_dim, h.ld);
    let qb = query_block(&mk);
    let keys_a = n.div_ceil(mk.mr) * mk.mr;
    let dims_b = d.div_ceil(mk.nr) * mk.nr;
    let with_ctx = usize::from(ctx.is_some());
    let lens = [
        with_ctx * dims_b * n, // V as B slivers (for ctx only)
        with_ctx * qb * n,     // P_used as A slivers (for ctx only)
        keys_a * d,            // K as A slivers
        keys_a * d,            // V as A slivers
        dims_b * n,            // K as B slivers (columns = dims, depth = keys)
        qb * d,                // Q_blk^T, then dC_blk^T, as B slivers
        n * qb,                // S^T, then P^T: (n, QB)
        n * qb,                // dP^T, then dS^T: (n, QB)
        keys_a * qb,           // P^T or dS^T as A slivers (rows = keys, depth = queries)
        dims_b * qb,           // dC_blk or Q_blk as B slivers (depth = queries)
        qb * n,                // dS as A slivers (rows = queries, depth = keys)
        n * d,                 // dK (n, d), summed over the blocks
        n * d,                 // dV (n, d), summed over the blocks
        qb * d,                // the block's dQ rows (QB, d)
    ];
    with_scratch(
        lens,
        |[v_b, p_a, k_a, v_a, k_b, blk_t, p_t, ds_t, keys_by_q, dims_by_q, ds_a, dk_sum, dv_sum, dq_blk]| {
            pack_panel(k_a, h.k, 0, 0, d, n, mk.mr, 1, ld);
            pack_panel(v_a, h.v, 0, 0, d, n, mk.mr, 1, ld);
            pack_panel(k_b, h.k, 0, 0, n, d, mk.nr, ld, 1);
            if ctx.is_some() {
                pack_panel(v_b, h.v, 0, 0, n, d, mk.nr, ld, 1);
            }
            for q0 in (0..n).step_by(qb) {
                let w = qb.min(n - q0);
                // dK and dV: the first block writes, later ones add.
                let beta_kv = if q0 == 0 { 0.0 } else { 1.0 };
                probabilities_t(isa, &mk, h, k_a, blk_t, p_t, q0, w, s);
                // dP^T (n, w) = V dC_blk^T
                pack_panel(blk_t, dctx, 0, q0, d, w, mk.nr, 1, ld_ctx);
                product(&mk, d, v_a, n, blk_t, w, ds_t, qb, 1.0, 0.0);
                // dV += P_used^T dC_blk, P_used = dropout(P); the same mask
                // takes dP back through the dropout.
                match s.dropout {
                    Some((seed, p)) => {
                        let start = (h.head * n + q0) * n;
                        dropout_columns(ds_t, qb, n, w, seed, p, start, n);
                        // P_used^T goes through ds_a's space (dS is packed
                        // there only after this is consumed).
                        let used = &mut ds_a[..n * qb];
                        used.copy_from_slice(&p_t[..n * qb]);
                        dropout_columns(used, qb, n, w, seed, p, start, n);
                        pack_panel(keys_by_q, used, 0, 0, w, n, mk.mr, 1, qb);
                        if let Some(ctx) = ctx {
                            context_rows(&mk, used, p_a, v_b, dq_blk, ctx, q0, w, s);
                        }
                    }
                    None => {
                        pack_panel(keys_by_q, p_t, 0, 0, w, n, mk.mr, 1, qb);
                        if let Some(ctx) = ctx {
                            context_rows(&mk, p_t, p_a, v_b, dq_blk, ctx, q0, w, s);
                        }
                    }
                }
                pack_panel(dims_by_q, dctx, q0, 0, w, d, mk.nr, ld_ctx, 1);
                product(&mk, w, keys_by_q, n, dims_by_q, d, dv_sum, d, 1.0, beta_kv);
                softmax_columns_backward(isa, ds_t, p_t, qb, n, w);
                // dK += scale dS^T Q_blk
                pack_panel(keys_by_q, ds_t, 0, 0, w, n, mk.mr, 1, qb);
                pack_panel(dims_by_q, h.q, q0, 0, w, d, mk.nr, ld, 1);
                product(
                    &mk, w, keys_by_q, n, dims_by_q, d, dk_sum, d, s.scale, beta_kv,
                );
                // dQ_blk = scale dS_blk K
                pack_panel(ds_a, ds_t, 0, 0, n, w, mk.mr, qb, 1);
                product(&mk, n, ds_a, w, k_b, d, dq_blk, d, s.scale, 0.0);
                // SAFETY: rows q0..q0 + w of the head's dq (caller).
                unsafe { dq.write_rows(q0, dq_blk, w, d) };
            }
            // SAFETY: all n rows of the head's dk and dv (caller).
            unsafe {
                dk.write_rows(0, dk_sum, n, d);
                dv.write_rows(0, dv_sum, n, d);
            }
        },
    );
}

/// Context rows `q0 .. q0 + w` of a head into `ctx`, `ctx = P_used V`, from
/// `p_t` (n, QB), the block's probabilities after dropout, and V packed as B
/// slivers: the forward's last product (`p_a` and `rows` are scratch).
#[allow(clippy::too_many_arguments)]
fn context_rows(
    mk: &MicroKernel,
    p_t: &[f32],
    p_a: &mut [f32],
    v_b: &[f32],
    rows: &mut [f32],
    ctx: HeadOut,
    q0: usize,
    w: usize,
    s: AttentionShape,
) {
    let (n, d) = (s.seq, s.head_dim);
    let qb = p_a.len() / n;
    pack_panel(p_a, p_t, 0, 0, n, w, mk.mr, qb, 1);
    product(mk, n, p_a, w, v_b, d, rows, d, 1.0, 0.0);
    // SAFETY: rows q0..q0 + w of the head's context (caller).
    unsafe { ctx.write_rows(q0, rows, w, d) };
}

/// `c = alpha A B + beta c` for packed A (m rows, depth kc) and B (n
/// columns), `c` a scratch block of m rows `ldc` apart: [`multiply_packed`]
/// with the bounds of C checked, so the products need no unsafe.
#[allow(clippy::too_many_arguments)]
fn product(
    mk: &MicroKernel,
    kc: usize,
    a: &[f32],
    m: usize,
    b: &[f32],
    n: usize,
    c: &mut [f32],
    ldc: usize,
    alpha: f32,
    beta: f32,
) {
    assert!(m == 0 || (n <= ldc && c.len() >= (m - 1) * ldc + n));
    // SAFETY: c holds the m x n block (asserted) and is borrowed mutably.
    unsafe {
        multiply_packed(
            mk,
            kc,
            a,
            m,
            b,
            n,
            c.as_mut_ptr(),
            ldc,
            alpha,
            beta,
            std::ptr::null(),
        )
    };
}

/// `P^T (n, QB)` of queries `q0 .. q0 + w` into `p_t`: `S^T = scale K Q_blk^T`
/// plus the key mask, softmax down each column. `k_a`: K packed as A slivers;
/// `q_b`: scratch for Q_blk^T. Columns `w..QB` are left unspecified.
#[allow(clippy::too_many_arguments)]
fn probabilities_t(
    isa: Isa,
    mk: &MicroKernel,
    h: Head<'_>,
    k_a: &[f32],
    q_b: &mut [f32],
    p_t: &mut [f32],
    q0: usize,
    w: usize,
    s: AttentionShape,
) {
    let (n, d) = (s.seq, s.head_dim);
    let qb = p_t.len() / n;
    pack_panel(q_b, h.q, 0, q0, d, w, mk.nr, 1, h.ld);
    product(mk, d, k_a, n, q_b, w, p_t, qb, s.scale, 0.0);
    softmax_columns(isa, p_t, qb, n, w, h.mask);
}

/// Inverted dropout on columns `0..w` of `x` (rows keys, row stride `stride`):
/// element (key r, query j) is mask element `start + j * n + r`, the index it
/// has in the (queries, keys) probabilities of the head.
#[allow(clippy::too_many_arguments)]
fn dropout_columns(
    x: &mut [f32],
    stride: usize,
    rows: usize,
    w: usize,
    seed: u64,
    p: f32,
    start: usize,
    n: usize,
) {
    let keep_scale = 1.0 / (1.0 - p);
    for (r, row) in x.chunks_mut(stride).take(rows).enumerate() {
        for (j, v) in row[..w].iter_mut().enumerate() {
            *v = if keeps(seed, p, (start + j * n + r) as u64) {
                *v * keep_scale
            } else {
                0.0
            };
        }
    }
}
