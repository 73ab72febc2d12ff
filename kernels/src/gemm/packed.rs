//! The blocked GEMM around the micro-kernels (the BLIS loop nest), with the
//! B panel packed once and shared by every thread.
//!
//! ```text
//! for jc in N step NC:                  B panel columns
//!   for pc in K step KC:                depth block
//!     pack op(B)[pc.., jc..] (KC x NC)  in NR-column slivers, threads split it
//!     parallel over row blocks ic (MC rows, and column chunks when M is small):
//!       pack op(A)[ic.., pc..]          in MR-row slivers, per thread (L2)
//!       for jr in NC step NR:           the B sliver stays in L1 / L2
//!         for ir in MC step MR:         A slivers stream from L2
//!           micro-kernel: C[ir.., jr..] (+)= A sliver x B sliver
//! ```
//! Each operand is packed once per depth block. Block sizes come from the
//! caches the OS reports ([`crate::cpu::caches`]; see [`Blocking`]).

use super::microkernel::{self, MicroKernel};
use super::{GeluOperand, GemmShape};
use crate::cpu::{caches, Caches, Isa};
use rayon::prelude::*;
use std::cell::RefCell;

/// Block sizes for one micro-kernel on one CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocking {
    pub kc: usize,
    pub nc: usize,
    /// Most rows of A one task packs.
    pub mc: usize,
}

impl Blocking {
    /// Blocks for a product of depth `k`. KC: as deep as an eighth of L2 holds
    /// one B sliver, at most 768, split evenly over the depth (every depth
    /// block re-reads and re-writes all of C, which costs memory bandwidth);
    /// MC: a packed A block fills half of L2; NC: the shared B panel fills a
    /// quarter of L3.
    fn new(mk: &MicroKernel, c: Caches, k: usize) -> Blocking {
        if let Some((kc_max, mc, nc)) = blocks_override() {
            let passes = k.max(1).div_ceil(kc_max);
            let kc = k.max(1).div_ceil(passes).next_multiple_of(8);
            return Blocking {
                kc,
                mc: mc.next_multiple_of(mk.mr),
                nc: nc.next_multiple_of(mk.nr),
            };
        }
        let kc_max = (c.l2 / 8 / (4 * mk.nr)).clamp(128, 768);
        let passes = k.max(1).div_ceil(kc_max);
        let kc = k.max(1).div_ceil(passes).next_multiple_of(8);
        let mc = ((c.l2 / 2 / (4 * kc)) / mk.mr * mk.mr).clamp(mk.mr * 4, 2048);
        let nc = ((c.l3 / 4 / (4 * kc)) / mk.nr * mk.nr).clamp(mk.nr * 4, 4096);
        Blocking { kc, nc, mc }
    }
}

/// `PIXEL_GEMM_BLOCKS=KC,MC,NC` (most depth, rows, columns per block) replaces
/// the cache-derived blocking, to A/B block sizes on one machine.
fn blocks_override() -> Option<(usize, usize, usize)> {
    static BLOCKS: std::sync::OnceLock<Option<(usize, usize, usize)>> = std::sync::OnceLock::new();
    *BLOCKS.get_or_init(|| {
        let v = std::env::var("PIXEL_GEMM_BLOCKS").ok()?;
        let n: Vec<usize> = v
            .split(',')
            .map(|x| x.trim().parse().ok())
            .collect::<Option<_>>()?;
        match n[..] {
            [kc, mc, nc] if kc > 0 && mc > 0 && nc > 0 => Some((kc, mc, nc)),
            _ => None,
        }
    })
}

/// The blocking `sgemm_packed` uses with `isa` on this CPU for depth `k`.
pub fn blocking_for(isa: Isa, k: usize) -> Blocking {
    Blocking::new(&microkernel::for_isa(isa), caches(), k)
}

thread_local! {
    /// Per-thread packing buffers, reused across calls: (A block, B panel).
    static PACK: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` with this thread's packing buffer for A or B (a fresh one when the
/// thread's own is in use, e.g. by a GEMM further up this thread's stack that
/// rayon interrupted to run this task).
fn with_buffer<R>(which_b: bool, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    // 64-byte aligned, so no vector load of a sliver splits a cache line.
    fn aligned(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
        if buf.len() < len + 16 {
            buf.resize(len + 16, 0.0);
        }
        let off = buf.as_ptr().align_offset(64).min(16);
        &mut buf[off..off + len]
    }
    PACK.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => {
            let buf = if which_b { &mut bufs.1 } else { &mut bufs.0 };
            f(aligned(buf, len))
        }
        Err(_) => f(aligned(&mut Vec::new(), len)),
    })
}

/// The bias (n,), read by every task.
#[derive(Clone, Copy)]
struct BiasPtr(*const f32);
// SAFETY: read-only during the call; the slice outlives the parallel loops.
unsafe impl Send for BiasPtr {}
// SAFETY: as above.
unsafe impl Sync for BiasPtr {}

/// A pointer to C shared by the tasks; each writes a disjoint rectangle.
#[derive(Clone, Copy)]
struct CPtr(*mut f32);
// SAFETY: tasks write disjoint tiles of C, which outlives the parallel loops.
unsafe impl Send for CPtr {}
// SAFETY: as above.
unsafe impl Sync for CPtr {}

/// `C (m, n) = alpha op(A) op(B) + beta C (+ bias)` with the `isa`
/// micro-kernel; C is row-major with row stride `s.n` and starts at `c`;
/// `bias` (n,), added to every row after the last depth block, so the sum is
/// rounded as `(A B) + bias`. `gelu`: the operand whose packed copy gets
/// GELU applied (see [`GeluOperand`]). `parallel`: use the rayon pool (the
/// B panel is packed once and read by every thread).
///
/// # Safety
/// `a` and `b` hold op(A) and op(B) of `s`; `c` is valid for `s.m * s.n`
/// values that nothing else touches during the call; `isa` is available.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm_packed(
    isa: Isa,
    s: GemmShape,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: *mut f32,
    bias: Option<&[f32]>,
    gelu: GeluOperand,
    parallel: bool,
) {
    let mk = microkernel::for_isa(isa);
    let bl = Blocking::new(&mk, caches(), s.k);
    if let Some(bias) = bias {
        assert!(bias.len() >= s.n, "sgemm: bias shorter than n = {}", s.n);
    }
    if s.k == 0 {
        // op(A) op(B) is all zeros: C = beta C (never read when beta == 0).
        for i in 0..s.m * s.n {
            // SAFETY: i < m n (caller).
            let v = unsafe { &mut *c.add(i) };
            *v = if beta == 0.0 { 0.0 } else { beta * *v } + bias.map_or(0.0, |b| b[i % s.n]);
        }
        return;
    }
    // Strides of op(A) (m, k) and op(B) (k, n).
    let (rsa, csa) = if s.trans_a { (1, s.m) } else { (s.k, 1) };
    let (rsb, csb) = if s.trans_b { (1, s.k) } else { (s.n, 1) };
    let threads = if parallel {
        rayon::current_num_threads().max(1)
    } else {
        1
    };
    let c = CPtr(c);
    for jc in (0..s.n).step_by(bl.nc) {
        let nc = bl.nc.min(s.n - jc);
        let slivers_b = nc.div_ceil(mk.nr);
        for pc in (0..s.k).step_by(bl.kc) {
            let kc = bl.kc.min(s.k - pc);
            // Later depth blocks add to what the first wrote; the last adds the bias.
            let beta = if pc == 0 { beta } else { 1.0 };
            let bias = bias.filter(|_| pc + kc == s.k).map(|b| BiasPtr(b.as_ptr()));
            with_buffer(true, slivers_b * kc * mk.nr, |packed_b| {
                // (slivers_b, kc, NR), in one group of slivers per thread.
                let group = slivers_b.div_ceil(threads);
                let pack = |(g, slivers): (usize, &mut [f32])| {
                    let j0 = jc + g * group * mk.nr;
                    let lines = (group * mk.nr).min(jc + nc - j0);
                    pack_panel(slivers, b, pc, j0, kc, lines, mk.nr, rsb, csb);
                    if gelu == GeluOperand::B {
                        let packed = lines.div_ceil(mk.nr) * kc * mk.nr;
                        crate::gelu::gelu_in_place_with(isa, &mut slivers[..packed]);
                    }
                };
                if threads > 1 && slivers_b > 1 {
                    packed_b
                        .par_chunks_mut(group * kc * mk.nr)
                        .enumerate()
                        .for_each(pack);
                } else {
                    pack((0, packed_b));
                }
                let packed_b: &[f32] = packed_b;
                let gelu_a = (gelu == GeluOperand::A).then_some(isa);
                let tasks = Tasks::new(s.m, slivers_b, threads, &mk, &bl);
                let run = |t: usize| {
                    let (rows, slivers) = tasks.get(t);
                    // SAFETY: tasks cover disjoint tiles of C; sizes as checked.
                    unsafe {
                        block_task(
                            &mk, s, alpha, beta, a, rsa, csa, packed_b, c, bias, rows, slivers, jc,
                            pc, kc, gelu_a,
                        )
                    };
                };
                if threads > 1 && tasks.count() > 1 {
                    (0..tasks.count()).into_par_iter().for_each(run);
                } else {
                    (0..tasks.count()).for_each(run);
                }
            });
        }
    }
}

/// How one (jc, pc) step is split into tasks: row blocks of at most `mc`
/// rows, times column chunks of B slivers when there are fewer row blocks
/// than threads.
struct Tasks {
    m: usize,
    rows_per_task: usize,
    row_tasks: usize,
    slivers: usize,
    slivers_per_task: usize,
    col_tasks: usize,
}

impl Tasks {
    fn new(m: usize, slivers: usize, threads: usize, mk: &MicroKernel, bl: &Blocking) -> Tasks {
        // A whole number of row blocks per thread, so the threads finish together.
        let row_tasks = if threads > 1 {
            m.div_ceil(bl.mc).next_multiple_of(threads)
        } else {
            m.div_ceil(bl.mc)
        };
        let rows_per_task = m.div_ceil(row_tasks).next_multiple_of(mk.mr);
        let row_tasks = m.div_ceil(rows_per_task);
        let col_tasks = if row_tasks < threads {
            threads.div_ceil(row_tasks).min(slivers)
        } else {
            1
        };
        let slivers_per_task = slivers.div_ceil(col_tasks);
        let col_tasks = slivers.div_ceil(slivers_per_task);
        Tasks {
            m,
            rows_per_task,
            row_tasks,
            slivers,
            slivers_per_task,
            col_tasks,
        }
    }

    fn count(&self) -> usize {
        self.row_tasks * self.col_tasks
    }

    /// Task `t`: its rows of C and its B slivers (within the panel).
    fn get(&self, t: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let (r, q) = (t / self.col_tasks, t % self.col_tasks);
        let row0 = r * self.rows_per_task;
        let sliver0 = q * self.slivers_per_task;
        (
            row0..(row0 + self.rows_per_task).min(self.m),
            sliver0..(sliver0 + self.slivers_per_task).min(self.slivers),
        )
    }
}

/// One task: packs its rows of op(A) for this depth block (through GELU
/// with `gelu_a`'s code when given) and runs the micro-kernel over its tiles.
///
/// # Safety
/// As [`sgemm_packed`]; `rows` and `slivers` are this task's own tiles.
#[allow(clippy::too_many_arguments)]
unsafe fn block_task(
    mk: &MicroKernel,
    s: GemmShape,
    alpha: f32,
    beta: f32,
    a: &[f32],
    rsa: usize,
    csa: usize,
    packed_b: &[f32],
    c: CPtr,
    bias: Option<BiasPtr>,
    rows: std::ops::Range<usize>,
    slivers: std::ops::Range<usize>,
    jc: usize,
    pc: usize,
    kc: usize,
    gelu_a: Option<Isa>,
) {
    let slivers_a = rows.len().div_ceil(mk.mr);
    with_buffer(false, slivers_a * kc * mk.mr, |packed_a| {
        // (slivers_a, kc, MR)
        pack_panel(packed_a, a, pc, rows.start, kc, rows.len(), mk.mr, csa, rsa);
        if let Some(isa) = gelu_a {
            crate::gelu::gelu_in_place_with(isa, packed_a);
        }
        let j0 = jc + slivers.start * mk.nr;
        let cols = (slivers.len() * mk.nr).min(s.n - j0);
        // SAFETY: the task's tiles (rows x cols at j0) lie inside C and belong
        // to it; the bias, when present, holds n values.
        unsafe {
            multiply_packed(
                mk,
                kc,
                packed_a,
                rows.len(),
                &packed_b[slivers.start * kc * mk.nr..],
                cols,
                c.0.add(rows.start * s.n + j0),
                s.n,
                alpha,
                beta,
                bias.map_or(std::ptr::null(), |b| b.0.add(j0)),
            )
        };
    });
}

/// `C (m, n) = alpha A B + beta C (+ bias)` from packed operands: `a` holds
/// the m rows of A as (m.div_ceil(MR), kc, MR) slivers, `b` the n columns of
/// B as (n.div_ceil(NR), kc, NR) slivers (as [`pack_panel`] writes them); C is
/// row-major with row stride `rsc`. The B sliver stays in cache while the A
/// slivers stream past it (the two inner loops of the BLIS nest).
///
/// # Safety
/// `c` is valid for m rows of n values `rsc` apart that nothing else touches
/// during the call; `bias` is null or valid for n values; `mk`'s ISA is
/// available.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn multiply_packed(
    mk: &MicroKernel,
    kc: usize,
    a: &[f32],
    m: usize,
    b: &[f32],
    n: usize,
    c: *mut f32,
    rsc: usize,
    alpha: f32,
    beta: f32,
    bias: *const f32,
) {
    let (slivers_a, slivers_b) = (m.div_ceil(mk.mr), n.div_ceil(mk.nr));
    assert!(
        a.len() >= slivers_a * kc * mk.mr && b.len() >= slivers_b * kc * mk.nr,
        "multiply_packed: packed operands too short for m {m}, n {n}, kc {kc}"
    );
    for jr in 0..slivers_b {
        let j0 = jr * mk.nr;
        let b_sliver = b[jr * kc * mk.nr..].as_ptr();
        for ir in 0..slivers_a {
            let i0 = ir * mk.mr;
            // SAFETY: tile (i0.., j0..) of rows x cols lies inside C (caller);
            // the slivers hold kc packed steps (asserted).
            unsafe {
                (mk.run)(
                    kc,
                    a[ir * kc * mk.mr..].as_ptr(),
                    b_sliver,
                    c.add(i0 * rsc + j0),
                    rsc,
                    mk.mr.min(m - i0),
                    mk.nr.min(n - j0),
                    alpha,
                    beta,
                    if bias.is_null() { bias } else { bias.add(j0) },
                )
            };
        }
    }
}

/// Packs `lines` lines (rows of op(A) or columns of op(B)) from `line0` over
/// depth `p0 .. p0 + kc` into consecutive slivers of `lanes` lines, `dst`
/// (slivers, kc, lanes), the last sliver zero-padded. Where lines are
/// contiguous (`line_stride == 1`: A used transposed, B as stored) each
/// depth step is one contiguous run across all the slivers: read it once,
/// instead of `lanes` values per sliver from as many rows (and pages).
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_panel(
    dst: &mut [f32],
    src: &[f32],
    p0: usize,
    line0: usize,
    kc: usize,
    lines: usize,
    lanes: usize,
    depth_stride: usize,
    line_stride: usize,
) {
    let slivers = lines.div_ceil(lanes);
    if line_stride != 1 {
        for (q, sliver) in dst.chunks_mut(kc * lanes).take(slivers).enumerate() {
            let valid = lanes.min(lines - q * lanes);
            pack_sliver(
                sliver,
                src,
                p0,
                line0 + q * lanes,
                kc,
                valid,
                lanes,
                depth_stride,
                line_stride,
            );
        }
        return;
    }
    // The sliver widths of the micro-kernels get a copy of known length (a few
    // vector moves); a run-time length calls memmove once per sliver per step.
    let args = (dst, src, p0, line0, kc, lines, depth_stride);
    match lanes {
        4 => pack_contiguous::<4>(args),
        6 => pack_contiguous::<6>(args),
        8 => pack_contiguous::<8>(args),
        12 => pack_contiguous::<12>(args),
        16 => pack_contiguous::<16>(args),
        32 => pack_contiguous::<32>(args),
        _ => {
            let (dst, src, p0, line0, kc, lines, depth_stride) = args;
            for p in 0..kc {
                let from = line0 + (p0 + p) * depth_stride;
                let row = &src[from..from + lines];
                for (q, part) in row.chunks(lanes).enumerate() {
                    let out = &mut dst[(q * kc + p) * lanes..(q * kc + p + 1) * lanes];
                    out[..part.len()].copy_from_slice(part);
                    out[part.len()..].fill(0.0);
                }
            }
        }
    }
}

/// [`pack_panel`]'s contiguous-lines case for slivers of `L` lines: args are
/// (dst, src, p0, line0, kc, lines, depth_stride).
#[inline(always)]
fn pack_contiguous<const L: usize>(
    (dst, src, p0, line0, kc, lines, depth_stride): (
        &mut [f32],
        &[f32],
        usize,
        usize,
        usize,
        usize,
        usize,
    ),
) {
    let whole = lines / L;
    for p in 0..kc {
        let from = line0 + (p0 + p) * depth_stride;
        let row = &src[from..from + lines];
        let mut parts = row.chunks_exact(L);
        for (q, part) in parts.by_ref().enumerate() {
            let at = (q * kc + p) * L;
            let out: &mut [f32; L] = (&mut dst[at..at + L]).try_into().expect("L values");
            *out = part.try_into().expect("L values");
        }
        let rest = parts.remainder();
        if !rest.is_empty() {
            let at = (whole * kc + p) * L;
            let out = &mut dst[at..at + L];
            out[..rest.len()].copy_from_slice(rest);
            out[rest.len()..].fill(0.0);
        }
    }
}

/// Packs `width` lines (rows of op(A) or columns of op(B)) starting at line
/// `line0`, over depth `p0 .. p0 + kc`, into `dst` as `dst[p * lanes + l]`;
/// lines `valid ..lanes` are zero. `(line_stride, depth_stride)`: strides of
/// one line step and one depth step in `src`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn pack_sliver(
    dst: &mut [f32],
    src: &[f32],
    p0: usize,
    line0: usize,
    kc: usize,
    valid: usize,
    lanes: usize,
    depth_stride: usize,
    line_stride: usize,
) {
    // (A: depth_stride = csa, line_stride = rsa; B: depth_stride = rsb,
    // line_stride = csb.)
    let base = line0 * line_stride + p0 * depth_stride;
    if line_stride == 1 {
        // Lines contiguous: copy `valid` values per depth step.
        for (p, out) in dst.chunks_exact_mut(lanes).enumerate().take(kc) {
            let from = base + p * depth_stride;
            out[..valid].copy_from_slice(&src[from..from + valid]);
            out[valid..].fill(0.0);
        }
    } else if depth_stride == 1 {
        // Depth contiguous (row-major A, B used transposed): a transpose.
        pack_transposing(dst, &src[base..], kc, valid, lanes, line_stride);
    } else {
        // Neither contiguous (not produced by any GemmShape; kept general).
        for l in 0..lanes {
            for p in 0..kc {
                dst[p * lanes + l] = if l < valid {
                    src[base + l * line_stride + p * depth_stride]
                } else {
                    0.0
                };
            }
        }
    }
}

/// `dst[p * lanes + l] = src[l * line_stride + p]` for `p < kc`, `l < valid`
/// (zero for `valid <= l < lanes`): each line is contiguous along the depth,
/// so this is a transpose, done in 4 x 4 blocks with SSE shuffles (x86-64's
/// baseline, so no run-time dispatch) and plain copies at the edges. About
/// 4x faster than the element loop it replaces, which mattered where op(A) is
/// reused by few columns (N = 512 products, attention's P V).
fn pack_transposing(
    dst: &mut [f32],
    src: &[f32],
    kc: usize,
    valid: usize,
    lanes: usize,
    line_stride: usize,
) {
    assert!(dst.len() >= kc * lanes && valid <= lanes);
    assert!(valid == 0 || src.len() >= (valid - 1) * line_stride + kc);
    let (l4, p4) = (valid - valid % 4, kc - kc % 4);
    #[cfg(target_arch = "x86_64")]
    for l0 in (0..l4).step_by(4) {
        for p0 in (0..p4).step_by(4) {
            // SAFETY: rows l0..l0+4 < valid hold p0+4 <= kc values each at
            // line_stride apart (asserted); the four stores write
            // dst[(p0+j) * lanes + l0 .. +4] with l0 + 4 <= valid <= lanes.
            unsafe {
                use std::arch::x86_64::*;
                let s = src.as_ptr().add(l0 * line_stride + p0);
                let r0 = _mm_loadu_ps(s);
                let r1 = _mm_loadu_ps(s.add(line_stride));
                let r2 = _mm_loadu_ps(s.add(2 * line_stride));
                let r3 = _mm_loadu_ps(s.add(3 * line_stride));
                // 4 x 4 transpose: columns of (r0..r3) become rows.
                let t0 = _mm_unpacklo_ps(r0, r1); // r0[0] r1[0] r0[1] r1[1]
                let t1 = _mm_unpacklo_ps(r2, r3);
                let t2 = _mm_unpackhi_ps(r0, r1); // r0[2] r1[2] r0[3] r1[3]
                let t3 = _mm_unpackhi_ps(r2, r3);
                let d = dst.as_mut_ptr().add(p0 * lanes + l0);
                _mm_storeu_ps(d, _mm_movelh_ps(t0, t1));
                _mm_storeu_ps(d.add(lanes), _mm_movehl_ps(t1, t0));
                _mm_storeu_ps(d.add(2 * lanes), _mm_movelh_ps(t2, t3));
                _mm_storeu_ps(d.add(3 * lanes), _mm_movehl_ps(t3, t2));
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let (l4, p4) = (0, 0);
    // Edges: the depth tail of the 4-line blocks, then the remaining lines.
    for l in 0..l4 {
        for p in p4..kc {
            dst[p * lanes + l] = src[l * line_stride + p];
        }
    }
    for p in 0..kc {
        let out = &mut dst[p * lanes..(p + 1) * lanes];
        for (l, o) in out.iter_mut().enumerate().skip(l4) {
            *o = if l < valid {
                src[l * line_stride + p]
            } else {
                0.0
            };
        }
    }
}
