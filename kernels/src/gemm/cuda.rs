//! Matmuls through cuBLAS in the row-major convention of [`crate::gemm`].
//!
//! cuBLAS is column-major. A row-major (r, c) matrix is its column-major
//! transpose, so `C = op(A) op(B)` (row-major) is computed as
//! `C^T = op(B)^T op(A)^T` (column-major): swap the operands and keep each
//! one's transpose flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use cudarc::cublas::sys::{cublasMath_t, cublasOperation_t};
use cudarc::cublas::{Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaEvent, CudaView, CudaViewMut};

use crate::cuda::context::GpuDevice;
use crate::gemm::GemmShape;

/// TF32 tensor-core matmuls (faster, ~1e-3 relative error). Off by default so
/// CUDA results match the CPU's FP32.
static TF32: AtomicBool = AtomicBool::new(false);

/// Allow (or forbid) TF32 in every later matmul on every device.
pub fn set_tf32(on: bool) {
    TF32.store(on, Ordering::Relaxed);
}

pub fn tf32_enabled() -> bool {
    TF32.load(Ordering::Relaxed)
}

/// While timing is on, a (start, end) event pair around every matmul.
static GEMM_EVENTS: Mutex<Option<Vec<(CudaEvent, CudaEvent)>>> = Mutex::new(None);

/// Start timing every matmul (events on the stream: no synchronisation per call).
pub fn gemm_timing_start() {
    *GEMM_EVENTS.lock().expect("GEMM timing poisoned") = Some(Vec::new());
}

/// Stop timing; the GPU time of the matmuls since [`gemm_timing_start`], in ms
/// (waits for them to finish).
pub fn gemm_timing_take() -> f64 {
    let events = GEMM_EVENTS.lock().expect("GEMM timing poisoned").take();
    events
        .unwrap_or_default()
        .iter()
        .map(|(start, end)| start.elapsed_ms(end).expect("GEMM timing event") as f64)
        .sum()
}

/// A timing event recorded on the device's stream now.
fn timing_event(dev: &GpuDevice) -> CudaEvent {
    let e = dev
        .ctx
        .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
        .expect("GEMM timing: cannot create an event");
    e.record(&dev.stream)
        .expect("GEMM timing: cannot record an event");
    e
}

/// Put the device's cuBLAS handle in the math mode the TF32 flag asks for.
fn apply_math_mode(dev: &GpuDevice) {
    let want = tf32_enabled();
    if dev.tf32_applied.load(Ordering::Relaxed) == want {
        return;
    }
    let mode = if want {
        cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH
    } else {
        cublasMath_t::CUBLAS_DEFAULT_MATH
    };
    // SAFETY: the handle is valid for the device's lifetime.
    let status = unsafe { cudarc::cublas::sys::cublasSetMathMode(*dev.blas.handle(), mode) };
    assert_eq!(
        status,
        cudarc::cublas::sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS,
        "cublasSetMathMode failed"
    );
    dev.tf32_applied.store(want, Ordering::Relaxed);
}

/// `C_i = alpha op(A_i) op(B_i) + beta C_i` for `batch` products, each operand
/// `stride_*` values after the previous one (stride 0: shared by every item).
/// Shapes as in [`GemmShape`]: A (M, K) or (K, M) if trans_a, B (K, N) or
/// (N, K) if trans_b, C (M, N), all row-major and contiguous.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_strided_batched(
    dev: &GpuDevice,
    s: GemmShape,
    batch: usize,
    alpha: f32,
    a: &CudaView<'_, f32>,
    stride_a: usize,
    b: &CudaView<'_, f32>,
    stride_b: usize,
    beta: f32,
    c: &mut CudaViewMut<'_, f32>,
    stride_c: usize,
) {
    let GemmShape {
        m,
        n,
        k,
        trans_a,
        trans_b,
    } = s;
    if batch == 0 || m == 0 || n == 0 {
        return;
    }
    assert!(
        a.len() >= (batch - 1) * stride_a + m * k
            && b.len() >= (batch - 1) * stride_b + k * n
            && c.len() >= (batch - 1) * stride_c + m * n,
        "sgemm_strided_batched: buffers too small for {batch} x {s:?}"
    );
    apply_math_mode(dev);
    let op = |t: bool| {
        if t {
            cublasOperation_t::CUBLAS_OP_T
        } else {
            cublasOperation_t::CUBLAS_OP_N
        }
    };
    let int = |v: usize| i32::try_from(v).expect("sgemm_strided_batched: dimension over i32");
    // Column-major C^T (N, M) = op(B)^T (N, K) op(A)^T (K, M). Each leading
    // dimension is the row length of the operand as stored row-major (B: N,
    // or K if trans_b; A: K, or M if trans_a; C: N). cuBLAS rejects a leading
    // dimension under 1 (CUBLAS_STATUS_INVALID_VALUE), which K = 0 would give:
    // clamp it (nothing is read then; C = beta C, as on the CPU).
    let gemm = GemmConfig {
        transa: op(trans_b),
        transb: op(trans_a),
        m: int(n),
        n: int(m),
        k: int(k),
        alpha,
        lda: int(if trans_b { k } else { n }.max(1)),
        ldb: int(if trans_a { m } else { k }.max(1)),
        beta,
        ldc: int(n),
    };
    let cfg = StridedBatchedConfig {
        gemm,
        batch_size: int(batch),
        stride_a: stride_b as i64,
        stride_b: stride_a as i64,
        stride_c: stride_c as i64,
    };
    // cuBLAS runs on the calling thread's current context; cudarc binds it
    // for its own driver calls but not for cuBLAS, and ops may run on any thread.
    dev.ctx
        .bind_to_thread()
        .unwrap_or_else(|e| panic!("cuda:{}: cannot bind the context: {e}", dev.ordinal));
    let timing = GEMM_EVENTS.lock().expect("GEMM timing poisoned").is_some();
    let start = timing.then(|| timing_event(dev));
    // SAFETY: the sizes were checked against the buffer lengths above.
    unsafe { dev.blas.gemm_strided_batched(cfg, b, a, c) }.unwrap_or_else(|e| {
        panic!(
            "cuda:{}: cuBLAS sgemm {s:?} x {batch} failed: {e}",
            dev.ordinal
        )
    });
    if let Some(start) = start {
        let end = timing_event(dev);
        if let Some(events) = GEMM_EVENTS.lock().expect("GEMM timing poisoned").as_mut() {
            events.push((start, end));
        }
    }
}
