//! Single-precision GEMM on row-major slices: our blocked GEMM (`packed.rs`,
//! micro-kernels per ISA in `microkernel.rs`) or `matrixmultiply`, chosen in
//! [`default_path`]; parallelised with rayon inside one big product or over
//! the batch (many small products, e.g. attention heads).
//!
//! `C (m, n) = alpha * op(A) (m, k) @ op(B) (k, n) + beta * C`, where
//! `op(A) = A` is stored (m, k) and `op(A) = A^T` is stored (k, m); likewise
//! `op(B) = B` stored (k, n) and `op(B) = B^T` stored (n, k) (PyTorch `nn.Linear`
//! weight layout for `x @ W^T`). Operands are never copied or transposed in memory.

use crate::cpu::Isa;
use rayon::prelude::*;

mod microkernel;
mod packed;
pub(crate) use microkernel::{for_isa as micro_kernel, MicroKernel};
pub use packed::{blocking_for, Blocking};
pub(crate) use packed::{multiply_packed, pack_panel};

/// Layout of one GEMM: sizes and transpose flags.
#[derive(Clone, Copy, Debug)]
pub struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// A is stored (k, m) and used transposed.
    pub trans_a: bool,
    /// B is stored (n, k) and used transposed.
    pub trans_b: bool,
}

impl GemmShape {
    pub fn new(m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool) -> GemmShape {
        GemmShape {
            m,
            n,
            k,
            trans_a,
            trans_b,
        }
    }

    /// `A (m, k) @ B (k, n)`.
    pub fn nn(m: usize, n: usize, k: usize) -> GemmShape {
        GemmShape::new(m, n, k, false, false)
    }

    /// `A (m, k) @ B^T`, B stored (n, k): `x @ W^T`, `q @ k^T`.
    pub fn nt(m: usize, n: usize, k: usize) -> GemmShape {
        GemmShape::new(m, n, k, false, true)
    }

    /// `A^T @ B`, A stored (k, m): weight gradients `dy^T @ x`.
    pub fn tn(m: usize, n: usize, k: usize) -> GemmShape {
        GemmShape::new(m, n, k, true, false)
    }

    /// Floating-point operations of one product (2 m n k).
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64
    }
}

/// Minimum rows (or columns) in a parallel block of the matrixmultiply path:
/// below this, splitting costs more than it saves.
const MIN_ROWS_PER_TASK: usize = 64;

/// Products under this many flops run on the calling thread.
const MIN_PARALLEL_FLOPS: f64 = 4.0e6;

/// Which code computes a CPU GEMM: the one place the choice is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmPath {
    /// Our blocked GEMM (`packed.rs`) with the micro-kernel of this ISA: the B
    /// panel packed once and shared by the threads.
    Packed(Isa),
    /// `matrixmultiply` (its own micro-kernel, AVX2 at best), one
    /// single-threaded call per block of C: the path before the packed GEMM,
    /// kept to A/B against.
    Matrixmultiply,
}

impl GemmPath {
    pub fn name(self) -> String {
        match self {
            GemmPath::Packed(isa) => format!("packed-{isa}"),
            GemmPath::Matrixmultiply => "matrixmultiply".to_string(),
        }
    }
}

/// The path [`sgemm`] takes: the packed GEMM with the process's ISA
/// ([`crate::cpu::isa`]), unless `PIXEL_GEMM=matrixmultiply`.
pub fn default_path() -> GemmPath {
    static PATH: std::sync::OnceLock<GemmPath> = std::sync::OnceLock::new();
    *PATH.get_or_init(|| match std::env::var("PIXEL_GEMM").as_deref() {
        Ok("matrixmultiply") => GemmPath::Matrixmultiply,
        _ => GemmPath::Packed(crate::cpu::isa()),
    })
}

/// Which operand of a product is read through the exact GELU: `C = gelu(op(A))
/// op(B)` or `op(A) gelu(op(B))`, GELU applied to the operand's elements as
/// the packed GEMM packs them (each once when op(B) fits one column panel),
/// elsewhere into a temporary first. A transformer MLP's `gelu(X) W^T` and
/// `dY^T gelu(X)` without a (rows, hidden) gelu(X) in memory: the same bits
/// as GELU on the whole operand, then the product.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GeluOperand {
    #[default]
    Neither,
    A,
    B,
}

/// `C = alpha * op(A) @ op(B) + beta * C` for one product, on the rayon pool
/// when it is large enough.
pub fn sgemm(s: GemmShape, alpha: f32, a: &[f32], b: &[f32], beta: f32, c: &mut [f32]) {
    sgemm_on(default_path(), true, s, alpha, a, b, beta, c);
}

/// [`sgemm`] on a chosen path; `parallel: false` keeps it on the calling thread.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_on(
    path: GemmPath,
    parallel: bool,
    s: GemmShape,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    sgemm_with_bias_on(
        path,
        parallel,
        s,
        alpha,
        a,
        b,
        beta,
        c,
        None,
        GeluOperand::Neither,
    );
}

/// `C = op(A) @ op(B) + bias` (bias (n,) added to every row) on the pool: the
/// forward of a linear layer. The packed GEMM adds the bias as it writes C
/// (one pass over C fewer), rounded as `(A B) + bias` like a separate add.
pub fn sgemm_bias(s: GemmShape, a: &[f32], b: &[f32], bias: &[f32], c: &mut [f32]) {
    let no_gelu = GeluOperand::Neither;
    sgemm_with_bias_on(
        default_path(),
        true,
        s,
        1.0,
        a,
        b,
        0.0,
        c,
        Some(bias),
        no_gelu,
    );
}

/// [`sgemm_on`] with an optional bias epilogue and an operand read through
/// GELU ([`GeluOperand`]).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_with_bias_on(
    path: GemmPath,
    parallel: bool,
    s: GemmShape,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
    bias: Option<&[f32]>,
    gelu: GeluOperand,
) {
    check_lengths(&s, a, b, c);
    if gelu != GeluOperand::Neither && !matches!(path, GemmPath::Packed(_)) {
        // Other paths cannot transform while packing: GELU into a copy.
        let (a, b) = (&a[..s.m * s.k], &b[..s.k * s.n]);
        let mut g = vec![
            0.0;
            if gelu == GeluOperand::A {
                a.len()
            } else {
                b.len()
            }
        ];
        let (a, b) = match gelu {
            GeluOperand::A => {
                crate::gelu::gelu_forward(&mut g, a);
                (&g[..], b)
            }
            _ => {
                crate::gelu::gelu_forward(&mut g, b);
                (a, &g[..])
            }
        };
        let no_gelu = GeluOperand::Neither;
        return sgemm_with_bias_on(path, parallel, s, alpha, a, b, beta, c, bias, no_gelu);
    }
    if let Some(bias) = bias {
        assert!(
            bias.len() == s.n,
            "sgemm: bias has {} values for n = {}",
            bias.len(),
            s.n
        );
    }
    if s.m == 0 || s.n == 0 {
        return;
    }
    let parallel = parallel && rayon::current_num_threads() > 1 && s.flops() >= MIN_PARALLEL_FLOPS;
    match path {
        GemmPath::Packed(isa) => {
            assert!(isa.is_available(), "sgemm: this CPU has no {isa}");
            // SAFETY: lengths checked above; `c` is borrowed mutably for the call.
            unsafe {
                let c = c.as_mut_ptr();
                packed::sgemm_packed(isa, s, alpha, a, b, beta, c, bias, gelu, parallel)
            }
        }
        GemmPath::Matrixmultiply => {
            if parallel {
                sgemm_matrixmultiply_split(s, alpha, a, b, beta, c);
            } else {
                let block = Block {
                    row0: 0,
                    rows: s.m,
                    col0: 0,
                    cols: s.n,
                };
                // SAFETY: `c` holds all m x n values of C (checked above).
                unsafe { sgemm_block(s, alpha, a, b, beta, c.as_mut_ptr(), block) };
            }
            if let Some(bias) = bias {
                crate::elementwise::add_row_broadcast(&mut c[..s.m * s.n], bias);
            }
        }
    }
}

/// The matrixmultiply path on the pool: one block of C per rayon thread, each
/// a single-threaded `matrixmultiply` call on strided views (every thread packs
/// its own copy of B): row blocks when C has enough rows, else column blocks.
fn sgemm_matrixmultiply_split(
    s: GemmShape,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    let threads = rayon::current_num_threads().max(1);
    if s.m >= 2 * MIN_ROWS_PER_TASK {
        let tasks = threads.min(s.m / MIN_ROWS_PER_TASK);
        // Split C (and the matching rows of op(A)) into `tasks` row blocks.
        let rows_per_task = s.m.div_ceil(tasks);
        c[..s.m * s.n]
            .par_chunks_mut(rows_per_task * s.n)
            .enumerate()
            .for_each(|(t, c_block)| {
                let rows = c_block.len() / s.n;
                let block = Block {
                    row0: t * rows_per_task,
                    rows,
                    col0: 0,
                    cols: s.n,
                };
                // SAFETY: `c_block` is exactly rows [row0, row0 + rows) of C.
                unsafe { sgemm_block(s, alpha, a, b, beta, c_block.as_mut_ptr(), block) };
            });
    } else {
        // Few rows (e.g. a CLS head): split the columns of C and op(B) instead.
        // Column blocks are multiples of 16 so the 8-wide kernel tiles stay whole.
        let tasks = threads.min(s.n / MIN_ROWS_PER_TASK).max(1);
        let cols_per_task = s.n.div_ceil(tasks).next_multiple_of(16);
        let c_ptr = SharedMutPtr(c.as_mut_ptr());
        (0..s.n.div_ceil(cols_per_task))
            .into_par_iter()
            .for_each(|t| {
                let col0 = t * cols_per_task;
                let block = Block {
                    row0: 0,
                    rows: s.m,
                    col0,
                    cols: cols_per_task.min(s.n - col0),
                };
                // SAFETY: each task writes only columns [col0, col0 + cols) of C,
                // disjoint from every other task's; C outlives the parallel loop.
                unsafe { sgemm_block(s, alpha, a, b, beta, c_ptr.get(), block) };
            });
    }
}

/// A raw pointer into C that rayon tasks may share; each task writes a
/// disjoint column range.
#[derive(Clone, Copy)]
struct SharedMutPtr(*mut f32);
// SAFETY: only used for disjoint writes from the column split.
unsafe impl Send for SharedMutPtr {}
// SAFETY: as above.
unsafe impl Sync for SharedMutPtr {}

impl SharedMutPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `batch` independent products; A, B and C advance by their strides per batch
/// item (a stride of 0 shares one operand across the batch, e.g. a weight).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched(
    s: GemmShape,
    batch: usize,
    alpha: f32,
    a: &[f32],
    a_stride: usize,
    b: &[f32],
    b_stride: usize,
    beta: f32,
    c: &mut [f32],
) {
    let c_stride = s.m * s.n;
    assert!(c.len() >= batch * c_stride, "sgemm_batched: C too short");
    if batch == 0 || c_stride == 0 {
        return;
    }
    if batch == 1 {
        sgemm(
            s,
            alpha,
            &a[..s.m * s.k],
            &b[..s.k * s.n],
            beta,
            &mut c[..c_stride],
        );
        return;
    }
    let threads = rayon::current_num_threads().max(1);
    if batch < threads && s.flops() >= MIN_PARALLEL_FLOPS {
        // Fewer items than threads: parallelise inside each product instead.
        for (i, c_i) in c[..batch * c_stride].chunks_mut(c_stride).enumerate() {
            let a_i = &a[i * a_stride..i * a_stride + s.m * s.k];
            let b_i = &b[i * b_stride..i * b_stride + s.k * s.n];
            sgemm(s, alpha, a_i, b_i, beta, c_i);
        }
        return;
    }
    // One whole product per task: the small attention GEMMs (B * H of them).
    c[..batch * c_stride]
        .par_chunks_mut(c_stride)
        .enumerate()
        .for_each(|(i, c_i)| {
            let a_i = &a[i * a_stride..i * a_stride + s.m * s.k];
            let b_i = &b[i * b_stride..i * b_stride + s.k * s.n];
            sgemm_serial(s, alpha, a_i, b_i, beta, c_i);
        });
}

fn check_lengths(s: &GemmShape, a: &[f32], b: &[f32], c: &[f32]) {
    assert!(
        a.len() >= s.m * s.k && b.len() >= s.k * s.n && c.len() >= s.m * s.n,
        "sgemm: operand too short for {s:?}: |A|={} |B|={} |C|={}",
        a.len(),
        b.len(),
        c.len()
    );
}

/// One product on the calling thread.
pub fn sgemm_serial(s: GemmShape, alpha: f32, a: &[f32], b: &[f32], beta: f32, c: &mut [f32]) {
    sgemm_on(default_path(), false, s, alpha, a, b, beta, c);
}

/// A rectangle of C: rows [row0, row0 + rows), columns [col0, col0 + cols).
#[derive(Clone, Copy, Debug)]
struct Block {
    row0: usize,
    rows: usize,
    col0: usize,
    cols: usize,
}

/// Computes `block` of C on the calling thread.
///
/// `c_rows` points at row `block.row0`, column 0 of C (row stride `s.n`).
///
/// # Safety
/// `a` and `b` hold op(A) and op(B) for `s` (checked by `check_lengths`);
/// `c_rows` must be valid for writes over the whole block, and no other
/// thread may touch that block during the call.
unsafe fn sgemm_block(
    s: GemmShape,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c_rows: *mut f32,
    block: Block,
) {
    // Strides of op(A) (m, k) and op(B) (k, n) in elements.
    let (rsa, csa) = if s.trans_a { (1, s.m) } else { (s.k, 1) };
    let (rsb, csb) = if s.trans_b { (1, s.k) } else { (s.n, 1) };
    debug_assert!(block.row0 + block.rows <= s.m && block.col0 + block.cols <= s.n);
    // SAFETY: the offsets stay inside the views described by the strides
    // (block within m x n, lengths checked), and the caller owns the C block.
    unsafe {
        matrixmultiply::sgemm(
            block.rows,
            s.k,
            block.cols,
            alpha,
            a.as_ptr().add(block.row0 * rsa),
            rsa as isize,
            csa as isize,
            b.as_ptr().add(block.col0 * csb),
            rsb as isize,
            csb as isize,
            beta,
            c_rows.add(block.col0),
            s.n as isize,
            1,
        );
    }
}

/// Naive triple loop in f64 accumulation: the reference the tests compare with.
pub fn sgemm_reference(s: GemmShape, alpha: f32, a: &[f32], b: &[f32], beta: f32, c: &mut [f32]) {
    for i in 0..s.m {
        for j in 0..s.n {
            let mut acc = 0.0f64;
            for p in 0..s.k {
                let av = if s.trans_a {
                    a[p * s.m + i]
                } else {
                    a[i * s.k + p]
                };
                let bv = if s.trans_b {
                    b[j * s.k + p]
                } else {
                    b[p * s.n + j]
                };
                acc += av as f64 * bv as f64;
            }
            let prev = if beta == 0.0 {
                0.0
            } else {
                beta * c[i * s.n + j]
            };
            c[i * s.n + j] = alpha * acc as f32 + prev;
        }
    }
}

// ---------------------------------------------------------------------------
// Device-dispatched entry point: matrixmultiply on the CPU, cuBLAS on CUDA.

use crate::buffer::Buffer;

#[cfg(feature = "cuda")]
pub(crate) mod cuda;

/// One operand of [`gemm`]: its buffer, where its first matrix starts and the
/// distance between the batch's matrices (0: one matrix shared by every item).
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    pub buf: &'a Buffer,
    pub offset: usize,
    pub stride: usize,
}

impl<'a> Operand<'a> {
    /// The whole buffer, matrices `stride` apart.
    pub fn new(buf: &'a Buffer, stride: usize) -> Operand<'a> {
        Operand {
            buf,
            offset: 0,
            stride,
        }
    }
}

/// `C = op(A) op(B) + bias` for one product, `bias` (n,) added to every row:
/// the forward of a linear layer (CPU: in the GEMM's epilogue; CUDA: cuBLAS,
/// then the broadcast add).
pub fn gemm_bias(s: GemmShape, a: Operand<'_>, b: Operand<'_>, bias: &Buffer, c: &mut Buffer) {
    const K: &str = "gemm_bias";
    if s.m == 0 || s.n == 0 {
        return;
    }
    match c {
        Buffer::Cpu(cv) => sgemm_bias(
            s,
            &a.buf.host(K)[a.offset..a.offset + s.m * s.k],
            &b.buf.host(K)[b.offset..b.offset + s.k * s.n],
            &bias.host(K)[..s.n],
            &mut cv[..s.m * s.n],
        ),
        #[cfg(feature = "cuda")]
        Buffer::Cuda(_) => {
            gemm(s, 1, 1.0, a, b, 0.0, c, 0);
            crate::elementwise::add_row(c, bias, s.m * s.n, s.n);
        }
    }
}

/// `C = op(A) op(B) (+ bias)` with one operand read through GELU
/// ([`GeluOperand`]): `gelu(X) W^T + b` and `dY^T gelu(X)` of an MLP without
/// gelu(X) in memory on the CPU (the GPU makes it in a temporary first).
pub fn gemm_gelu(
    s: GemmShape,
    a: Operand<'_>,
    b: Operand<'_>,
    bias: Option<&Buffer>,
    c: &mut Buffer,
    gelu: GeluOperand,
) {
    const K: &str = "gemm_gelu";
    if s.m == 0 || s.n == 0 {
        return;
    }
    match c {
        Buffer::Cpu(cv) => sgemm_with_bias_on(
            default_path(),
            true,
            s,
            1.0,
            &a.buf.host(K)[a.offset..a.offset + s.m * s.k],
            &b.buf.host(K)[b.offset..b.offset + s.k * s.n],
            0.0,
            &mut cv[..s.m * s.n],
            bias.map(|b| &b.host(K)[..s.n]),
            gelu,
        ),
        #[cfg(feature = "cuda")]
        Buffer::Cuda(_) => {
            let of = |x: Operand<'_>, len: usize| {
                let mut g = Buffer::zeros(x.buf.device(), len);
                if x.offset == 0 {
                    crate::gelu::forward(&mut g, x.buf, len);
                } else {
                    // The GELU kernel reads from the start of its input.
                    let mut part = Buffer::zeros(x.buf.device(), len);
                    crate::layout::copy_2d(&mut part, 0, 0, x.buf, x.offset, 0, 1, len);
                    crate::gelu::forward(&mut g, &part, len);
                }
                g
            };
            let (ga, gb);
            let (a, b) = match gelu {
                GeluOperand::A => {
                    ga = of(a, s.m * s.k);
                    (Operand::new(&ga, 0), b)
                }
                GeluOperand::B => {
                    gb = of(b, s.k * s.n);
                    (a, Operand::new(&gb, 0))
                }
                GeluOperand::Neither => (a, b),
            };
            match bias {
                Some(bias) => gemm_bias(s, a, b, bias, c),
                None => gemm(s, 1, 1.0, a, b, 0.0, c, 0),
            }
        }
    }
}

/// `C_i = alpha op(A_i) op(B_i) + beta C_i` for `batch` products (row-major, as
/// [`sgemm`]); C_i starts at `c_offset + i * m * n` of `c`.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    s: GemmShape,
    batch: usize,
    alpha: f32,
    a: Operand<'_>,
    b: Operand<'_>,
    beta: f32,
    c: &mut Buffer,
    c_offset: usize,
) {
    const K: &str = "gemm";
    if batch == 0 || s.m == 0 || s.n == 0 {
        return; // an empty product: C is unchanged (`batch - 1` below needs batch > 0)
    }
    let la = (batch - 1) * a.stride + s.m * s.k;
    let lb = (batch - 1) * b.stride + s.k * s.n;
    let lc = batch * s.m * s.n;
    match c {
        Buffer::Cpu(c) => sgemm_batched(
            s,
            batch,
            alpha,
            &a.buf.host(K)[a.offset..a.offset + la],
            a.stride,
            &b.buf.host(K)[b.offset..b.offset + lb],
            b.stride,
            beta,
            &mut c[c_offset..c_offset + lc],
        ),
        #[cfg(feature = "cuda")]
        Buffer::Cuda(c) => {
            let dev = c.device().clone();
            let av = a.buf.cuda(K).view(a.offset..a.offset + la);
            let bv = b.buf.cuda(K).view(b.offset..b.offset + lb);
            let mut cv = c.view_mut(c_offset..c_offset + lc);
            cuda::sgemm_strided_batched(
                &dev,
                s,
                batch,
                alpha,
                &av,
                a.stride,
                &bv,
                b.stride,
                beta,
                &mut cv,
                s.m * s.n,
            );
        }
    }
}
