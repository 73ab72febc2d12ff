//! Matrix products: `matmul` (batched, transposed operands) and `linear`
//! (x W^T + b with PyTorch's [out, in] weight layout).

use pixel_kernels::elementwise::sum_rows_into;
use pixel_kernels::gemm::{sgemm, sgemm_batched, GemmShape};

#[cfg(feature = "cuda")]
use super::cuda;
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// Split a shape into (batch, rows, cols) over its last two dims.
fn batch_rows_cols(op: &str, shape: &[usize]) -> (usize, usize, usize) {
    assert!(
        shape.len() >= 2,
        "{op}: need rank >= 2, got shape {shape:?}"
    );
    let r = shape.len();
    (shape[..r - 2].iter().product(), shape[r - 2], shape[r - 1])
}

/// `C = op(A) @ op(B)`, batched over leading dims. `op(X) = X^T` (last two
/// dims swapped) when the flag is set. B may be 2-D (shared by every batch
/// item, e.g. a weight); otherwise A and B have the same leading dims.
/// A (..., M, K) [or (..., K, M) if trans_a], B (..., K, N) [or (..., N, K)].
pub fn matmul(t: &mut Tape, a: &Var, b: &Var, trans_a: bool, trans_b: bool) -> Var {
    let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
    let (batch, ar, ac) = batch_rows_cols("matmul", &sa);
    let (b_batch, br, bc) = batch_rows_cols("matmul", &sb);
    let (m, k) = if trans_a { (ac, ar) } else { (ar, ac) };
    let (k2, n) = if trans_b { (bc, br) } else { (br, bc) };
    let b_shared = sb.len() == 2;
    assert!(
        k == k2 && (b_shared || (sa[..sa.len() - 2] == sb[..sb.len() - 2])),
        "matmul: incompatible shapes {sa:?} (trans {trans_a}) and {sb:?} (trans {trans_b})"
    );
    let _ = b_batch;
    let s = GemmShape {
        m,
        n,
        k,
        trans_a,
        trans_b,
    };
    let mut out_shape = sa[..sa.len() - 2].to_vec();
    out_shape.extend([m, n]);
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[a, b]) {
        return cuda::linalg::matmul(t, a, b, s, batch, b_shared, out_shape);
    }
    let mut c = vec![0.0f32; batch * m * n];
    let b_stride = if b_shared { 0 } else { k * n };
    sgemm_batched(
        s,
        batch,
        1.0,
        a.data(),
        m * k,
        b.data(),
        b_stride,
        0.0,
        &mut c,
    );
    let out = Tensor::new(&out_shape, c);
    if !t.needs_grad(&[a, b]) {
        return Var::constant(out);
    }
    let (av, bv) = (a.arc(), b.arc());
    t.add_flops(2.0 * (batch * m * n * k) as f64);
    t.record(
        "matmul",
        out,
        &[a, b],
        Box::new(move |dc, needs| {
            let dc = dc.data();
            // dA: op(A) = dC op(B)^T, stored transposed if trans_a.
            let da = needs[0].then(|| {
                let mut da = vec![0.0f32; batch * m * k];
                if trans_a {
                    // A (K, M) = op(B) dC^T
                    let s = GemmShape {
                        m: k,
                        n: m,
                        k: n,
                        trans_a: trans_b,
                        trans_b: true,
                    };
                    sgemm_batched(s, batch, 1.0, bv.data(), b_stride, dc, m * n, 0.0, &mut da);
                } else {
                    // A (M, K) = dC op(B)^T
                    let s = GemmShape {
                        m,
                        n: k,
                        k: n,
                        trans_a: false,
                        trans_b: !trans_b,
                    };
                    sgemm_batched(s, batch, 1.0, dc, m * n, bv.data(), b_stride, 0.0, &mut da);
                }
                Tensor::new(av.shape(), da)
            });
            let db = needs[1].then(|| {
                let mut db = vec![0.0f32; if b_shared { k * n } else { batch * k * n }];
                if b_shared {
                    // Sum over the batch: one GEMM over all rows when A is not transposed.
                    for i in 0..batch {
                        let a_i = &av.data()[i * m * k..(i + 1) * m * k];
                        let dc_i = &dc[i * m * n..(i + 1) * m * n];
                        db_one(
                            trans_a,
                            trans_b,
                            m,
                            n,
                            k,
                            a_i,
                            dc_i,
                            &mut db,
                            if i == 0 { 0.0 } else { 1.0 },
                        );
                    }
                } else {
                    for_batch_db(trans_a, trans_b, m, n, k, batch, av.data(), dc, &mut db);
                }
                Tensor::new(bv.shape(), db)
            });
            vec![da, db]
        }),
    )
}

/// The GEMM that gives dB from op(A) and dC, and whether dC is its left operand:
/// B (N, K) = dC^T op(A) when B is transposed, else B (K, N) = op(A)^T dC.
fn db_gemm(trans_a: bool, trans_b: bool, m: usize, n: usize, k: usize) -> (GemmShape, bool) {
    if trans_b {
        let s = GemmShape {
            m: n,
            n: k,
            k: m,
            trans_a: true,
            trans_b: trans_a,
        };
        (s, true)
    } else {
        let s = GemmShape {
            m: k,
            n,
            k: m,
            trans_a: !trans_a,
            trans_b: false,
        };
        (s, false)
    }
}

/// dB for one product, `db = beta * db + grad`.
#[allow(clippy::too_many_arguments)]
fn db_one(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    dc: &[f32],
    db: &mut [f32],
    beta: f32,
) {
    let (s, dc_left) = db_gemm(trans_a, trans_b, m, n, k);
    if dc_left {
        sgemm(s, 1.0, dc, a, beta, db);
    } else {
        sgemm(s, 1.0, a, dc, beta, db);
    }
}

/// dB of every batch item (B not shared).
#[allow(clippy::too_many_arguments)]
fn for_batch_db(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    batch: usize,
    a: &[f32],
    dc: &[f32],
    db: &mut [f32],
) {
    let (s, dc_left) = db_gemm(trans_a, trans_b, m, n, k);
    if dc_left {
        sgemm_batched(s, batch, 1.0, dc, m * n, a, m * k, 0.0, db);
    } else {
        sgemm_batched(s, batch, 1.0, a, m * k, dc, m * n, 0.0, db);
    }
}

/// `y = x W^T + b`: x (..., in), w (out, in), b (out) or None -> y (..., out).
/// One node; backward: dx = dy W, dW = dy^T x, db = sum of dy over rows.
pub fn linear(t: &mut Tape, x: &Var, w: &Var, b: Option<&Var>) -> Var {
    let xs = x.shape().to_vec();
    let ws = w.shape();
    assert!(
        ws.len() == 2 && !xs.is_empty() && xs[xs.len() - 1] == ws[1],
        "linear: input {xs:?} does not match weight {ws:?} (expected [out, {}])",
        xs.last().copied().unwrap_or(0)
    );
    let (out_f, in_f) = (ws[0], ws[1]);
    if let Some(b) = b {
        assert!(
            b.shape() == [out_f],
            "linear: bias shape {:?} does not match weight {ws:?}",
            b.shape()
        );
    }
    let rows = x.value().numel() / in_f;
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[x, w]) || b.is_some_and(|b| cuda::any_on_device(&[b])) {
        let mut ys = xs.clone();
        *ys.last_mut().unwrap() = out_f;
        return cuda::linalg::linear(t, x, w, b, rows, ys);
    }
    let mut y = vec![0.0f32; rows * out_f];
    let s = GemmShape {
        m: rows,
        n: out_f,
        k: in_f,
        trans_a: false,
        trans_b: true,
    };
    sgemm(s, 1.0, x.data(), w.data(), 0.0, &mut y);
    if let Some(b) = b {
        pixel_kernels::elementwise::add_row_broadcast(&mut y, b.data());
    }
    let mut ys = xs.clone();
    *ys.last_mut().unwrap() = out_f;
    let out = Tensor::new(&ys, y);
    let inputs: Vec<&Var> = match b {
        Some(b) => vec![x, w, b],
        None => vec![x, w],
    };
    if !t.needs_grad(&inputs) {
        return Var::constant(out);
    }
    let (xv, wv) = (x.arc(), w.arc());
    t.add_flops(2.0 * (rows * in_f * out_f) as f64);
    t.record(
        "linear",
        out,
        &inputs,
        Box::new(move |dy, needs| {
            let dyd = dy.data();
            let dx = needs[0].then(|| {
                let mut dx = vec![0.0f32; rows * in_f];
                let s = GemmShape {
                    m: rows,
                    n: in_f,
                    k: out_f,
                    trans_a: false,
                    trans_b: false,
                };
                sgemm(s, 1.0, dyd, wv.data(), 0.0, &mut dx);
                Tensor::new(xv.shape(), dx)
            });
            let dw = needs[1].then(|| {
                let mut dw = vec![0.0f32; out_f * in_f];
                let s = GemmShape {
                    m: out_f,
                    n: in_f,
                    k: rows,
                    trans_a: true,
                    trans_b: false,
                };
                sgemm(s, 1.0, dyd, xv.data(), 0.0, &mut dw);
                Tensor::new(&[out_f, in_f], dw)
            });
            let mut grads = vec![dx, dw];
            if needs.len() == 3 {
                grads.push(needs[2].then(|| {
                    let mut db = vec![0.0f32; out_f];
                    sum_rows_into(&mut db, dyd);
                    Tensor::new(&[out_f], db)
                }));
            }
            grads
        }),
    )
}
